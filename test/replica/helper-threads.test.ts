import assert from 'node:assert/strict';
import { pbkdf2 } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { SCHED_IDLE, SCHED_OTHER, idleHelperThreads, otherThreads, poolThreads, schedulingPolicy } from '../../replica/helper-threads.js';
import { TestCluster } from '../helpers/cluster.js';

/** CPU time (ns) each thread of this process has used. */
function cpuNs(): Map<number, number> {
  return new Map(otherThreads().map((tid) => [tid, Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0])]));
}

/** Each thread's scheduling policy in process `pid`, main thread first. */
function policies(pid: number): { main: number; others: number[] } {
  const tids = readdirSync(`/proc/${pid}/task`).map(Number);
  return { main: schedulingPolicy(pid, pid), others: tids.filter((t) => t !== pid).map((t) => schedulingPolicy(pid, t)) };
}

describe("V8's helper threads under SCHED_IDLE", () => {
  it("tells libuv's pool apart: the threads that do the pool's work are the ones found", async () => {
    const pool = await poolThreads();
    assert.equal(pool.size, 4, "libuv's default pool of 4");
    assert.deepEqual(await poolThreads(), pool, 'the same threads again');
    assert.ok(!pool.has(process.pid), 'the main thread is not in the pool');
    // Long pool jobs: every thread that spends CPU on them must be one the probe found.
    const before = cpuNs();
    await Promise.all(Array.from({ length: 8 }, (_, i) => promisify(pbkdf2)(`job${i}`, 'salt', 100_000, 32, 'sha256')));
    const busy = [...cpuNs()].filter(([tid, ns]) => ns - (before.get(tid) ?? 0) > 5e6).map(([tid]) => tid);
    assert.ok(busy.length >= 2, `the jobs ran on the pool's threads (${busy.length} busy)`);
    for (const tid of busy) assert.ok(pool.has(tid), `thread ${tid} worked for the pool but was not found as one of it`);
  });

  it('a replica puts its helper threads under SCHED_IDLE and keeps its main thread and the pool as they were; --helper-threads normal leaves them all', async () => {
    const c = await TestCluster.create('helpers');
    try {
      await c.define('h1');
      await c.define('h2', ['--helper-threads', 'normal']);
      const p1 = c.start('h1', ['--peers', c.peersFlag(['h1'])]);
      const p2 = c.start('h2', ['--peers', c.peersFlag(['h2'])]);
      await c.waitLeader(['h1']);
      await c.waitLeader(['h2']);
      assert.match(c.logs.get('h1')!, /h1: \d+ V8 helper threads under SCHED_IDLE \(libuv's pool of 4 as before\)/);
      const idle = policies(p1.pid!);
      assert.equal(idle.main, SCHED_OTHER);
      assert.ok(idle.others.filter((p) => p === SCHED_IDLE).length >= 4, `V8's four workers at least: ${idle.others.join(',')}`);
      assert.ok(idle.others.filter((p) => p === SCHED_OTHER).length >= 4, `the pool's four: ${idle.others.join(',')}`);
      const normal = policies(p2.pid!);
      assert.doesNotMatch(c.logs.get('h2')!, /SCHED_IDLE/);
      assert.deepEqual([normal.main, ...normal.others].filter((p) => p !== SCHED_OTHER), []);
    } finally {
      await c.destroy();
    }
  });

  it('without chrt nothing is changed, and the reason is given', async () => {
    // A PATH with mkfifo (the probe's) but no chrt.
    const bin = mkdtempSync(join(tmpdir(), 'raftkv-nochrt-'));
    symlinkSync('/usr/bin/mkfifo', join(bin, 'mkfifo'));
    const path = process.env.PATH;
    process.env.PATH = bin;
    try {
      await assert.rejects(idleHelperThreads(), /chrt \(util-linux\) not found/);
    } finally {
      process.env.PATH = path;
      rmSync(bin, { recursive: true, force: true });
    }
    assert.deepEqual(otherThreads().map((tid) => schedulingPolicy(process.pid, tid)).filter((p) => p !== SCHED_OTHER), [], 'every thread as it was');
  });
});
