import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CommandLog } from '../../logger/command-log.js';
import { Entry, EntryType } from '../../raft/index.js';
import { Op, decodeKvCommand } from '../../replica/proto.js';
import { describe, it } from 'node:test';
import { RaftKvClient, startReplica } from '../../replica/index.js';
import { TestCluster } from '../helpers/cluster.js';

describe('embedded mode and the client', () => {
  it('runs a replica inside the caller and serves the TypeScript client, with sessions', async () => {
    const r = await startReplica({ id: 'solo' });
    const client = new RaftKvClient({ targets: [r.clientAddr] });
    try {
      await client.set('a', 'b');
      assert.equal(await client.getString('a'), 'b');
      assert.equal(await client.getString('missing'), undefined);
      assert.equal(r.status().role, 'leader');
      assert.equal(r.sm.sessions.size(), 1, 'writes carry a session');
    } finally {
      client.close();
      await r.stop();
    }
  });

  it('the documented example runs', async () => {
    const example = fileURLToPath(new URL('../../examples/embedded.js', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [example], { timeout: 30_000 });
    assert.match(stdout, /hello from an embedded cluster/);
  });
});

describe('seed flags: --logfolder, --cpuprofile, --memprofile, single-dash style, --help', () => {
  it('writes the application log synchronously and profiles on exit', async () => {
    const c = await TestCluster.create('flags');
    try {
      await c.define('p1');
      const logDir = join(c.dir, 'applog');
      const cpu = join(c.dir, 'cpu.cpuprofile');
      const mem = join(c.dir, 'mem.heapsnapshot');
      c.start('p1', ['-logfolder', logDir, '-cpuprofile', cpu, '-memprofile', mem, '--fsync', 'memory']);
      await c.waitLeader(['p1']);
      const client = new RaftKvClient({ targets: [c.clientAddr('p1')] });
      await client.set('x', 'logged');
      await client.delete('x');
      client.close();
      assert.equal(await c.terminate('p1', 'SIGINT'), 0);
      // The applog is a command log: every applied entry, synced before it was answered.
      const applog = await CommandLog.open(join(logDir, 'p1.applog'));
      const entries: Entry[] = [];
      for await (const b of applog.read(1, applog.info().last)) entries.push(...b);
      await applog.close();
      const writes = entries.filter((e) => e.type === EntryType.Normal).map((e) => decodeKvCommand(e.data)).filter((k) => k.op === Op.SET || k.op === Op.DELETE);
      assert.deepEqual(writes.map((k) => `${Op[k.op]} ${k.key}`), ['SET x', 'DELETE x']);
      assert.deepEqual(entries.map((e) => e.index), entries.map((_, i) => i + 1), 'contiguous from 1');
      assert.ok(existsSync(cpu) && JSON.parse(readFileSync(cpu, 'utf8')).nodes.length > 0, 'CPU profile written');
      assert.ok(existsSync(mem) && statSync(mem).size > 100_000, 'heap snapshot written');
    } finally {
      await c.destroy();
    }
  });

  it('--help documents every flag; bad flags get a clear error', async () => {
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, [fileURLToPath(new URL('../../cli.js', import.meta.url)), 'replica', ...args]).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
    const help = await run(['--help']);
    for (const flag of ['--id', '--port', '--raft', '--join', '--hjoin', '--logfolder', '--cpuprofile', '--memprofile', '--http', '--data-dir', '--app', '--fsync', '--peers', '--config', '--election-timeout', '--heartbeat', '--preload', '--value-size']) {
      assert.ok(help.out.includes(flag), `help mentions ${flag}`);
    }
    const bad = await run(['--app', 'redis']);
    assert.equal(bad.code, 2);
    assert.match(bad.out, /--app/);
    const both = await run(['--peers', 'a=127.0.0.1:1', '--id', 'a', '--join', '127.0.0.1:2', '--fsync', 'memory']);
    assert.notEqual(both.code, 0);
    assert.match(both.out, /exclusive/);
  });
});
