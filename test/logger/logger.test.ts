/**
 * The decoupled logger with real processes: replicas and loggers on 127.0.0.1, real files, real
 * fsync, kill -9. One logger serves two clusters; the logs are compared byte for byte with a
 * replica's applog (every applied entry, in order); truncation, recovery, catch-up and restore.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Entry } from '../../raft/index.js';
import { RaftKvClient } from '../../replica/client.js';
import { CLI, TestCluster } from '../helpers/cluster.js';
import { recovBase, recovRange } from '../../logger/recov.js';
import { decodeSnapshot, encodeSnapshot } from '../../raft/storage/snapshots.js';
import { freePorts } from '../helpers/ports.js';
import { LoggerProc, defineLogger, loggedRange as range, loggerApi as api, logsOf, startLogger, waitLogged } from '../helpers/logger.js';

function same(a: Entry[], b: Entry[]): void {
  assert.equal(a.length, b.length, 'same number of entries');
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i].index, b[i].index);
    assert.equal(a[i].term, b[i].term, `term of ${a[i].index}`);
    assert.equal(a[i].type, b[i].type, `type of ${a[i].index}`);
    assert.ok(Buffer.from(a[i].data).equals(Buffer.from(b[i].data)), `bytes of entry ${a[i].index}`);
  }
}

describe('decoupled logger (real processes)', () => {
  let c: TestCluster;
  let c2: TestCluster;
  let logA: LoggerProc;
  let logB: LoggerProc;
  const ids = ['n1', 'n2', 'n3'];
  const recov = new Map<string, number>();

  before(async () => {
    c = await TestCluster.create('logger');
    c2 = await TestCluster.create('logger2');
    for (const id of ids) {
      const [p] = await freePorts(1);
      recov.set(id, p);
      await c.define(id, ['--logfolder', join(c.dir, id, 'applog'), '--recov', `127.0.0.1:${p}`, '--snapshot-every', '100']);
    }
    for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
    await c.define('m1');
    c2.nodes.set('m1', c.nodes.get('m1')!);
    c.nodes.delete('m1');
    c2.start('m1');
    await c.waitLeader(ids);
    await c2.waitLeader(['m1']);
    const join1 = ids.map((id) => `127.0.0.1:${c.nodes.get(id)!.http}`).join('|');
    logA = await defineLogger(join(c.dir, 'logA'), ['log0'], join1);
    // The seed's multi-cluster logger: one process, one log per cluster.
    logB = await defineLogger(join(c.dir, 'logB'), ['logb1', 'logb2'], `${join1},127.0.0.1:${c2.nodes.get('m1')!.http}`);
    startLogger(logA);
    startLogger(logB);
  });

  after(async () => {
    if (process.env.RAFTKV_TEST_VERBOSE) console.error(`--- logA\n${logA?.out}\n--- logB\n${logB?.out}\n${c?.dump()}`);
    for (const l of [logA, logB]) l?.proc?.kill('SIGKILL');
    await c2?.destroy();
    await c?.destroy();
  });

  const write = async (cluster: TestCluster, nodes: string[], prefix: string, n: number) => {
    const client = new RaftKvClient({ targets: nodes.map((id) => cluster.clientAddr(id)) });
    try {
      await Promise.all(Array.from({ length: 8 }, async (_, w) => {
        for (let i = w; i < n; i += 8) await client.set(`${prefix}${i % 50}`, `${prefix}-value-${i}`);
      }));
    } finally {
      client.close();
    }
  };

  it('every logger keeps exactly the committed sequence, one log per cluster', async () => {
    await Promise.all([write(c, ids, 'a', 400), write(c2, ['m1'], 'b', 60)]);
    const leader = await c.waitLeader(ids);
    await c.waitConverged(ids);
    const st = (await c.status(leader))!;
    await waitLogged(logA, 'log0', st.commitIndex);
    await waitLogged(logB, 'logb1', st.commitIndex);
    const applog = await range(recov.get(leader)!, '-', 1, st.commitIndex);
    same(await range(logA.recov, 'log0', 1, st.commitIndex), applog);
    same(await range(logB.recov, 'logb1', 1, st.commitIndex), applog);
    const s2 = (await c2.status('m1'))!;
    await waitLogged(logB, 'logb2', s2.commitIndex);
    const logs = await logsOf(logB);
    assert.notEqual(logs[0].clusterId, logs[1].clusterId, 'two clusters, two logs');
    assert.ok(logs.every((x: any) => x.lagEntries >= 0 && x.first === 1));
    // Loggers are non-voters that nobody can promote.
    const members = (await c.status(leader))!.members;
    assert.deepEqual(members.filter((m) => m.id.startsWith('log')).map((m) => m.role), ['logger', 'logger'], JSON.stringify(members));
    const promote = await c.http(leader, 'POST', '/v1/members', { id: 'log0', addr: `127.0.0.1:${logA.raft[0]}`, voter: true });
    assert.equal(promote.status, 409, JSON.stringify(promote.json));
    assert.match(JSON.stringify(promote.json), /never promoted/);
    const metrics = await api(logB.http, '/metrics');
    assert.match(metrics.text, /raftkv_logger_entries_total\{cluster="logb2"/);
    assert.match(metrics.text, /raftkv_logger_lag_entries\{cluster="logb1"/);
  });

  it('a logger killed with SIGKILL and restarted catches up with no gap or duplicate', async () => {
    logA.proc!.kill('SIGKILL');
    await write(c, ids, 'k', 200);
    startLogger(logA);
    const leader = await c.waitLeader(ids);
    await c.waitConverged(ids);
    const st = (await c.status(leader))!;
    await waitLogged(logA, 'log0', st.commitIndex);
    same(await range(logA.recov, 'log0', 1, st.commitIndex), await range(recov.get(leader)!, '-', 1, st.commitIndex));
  });

  it('a logger restarted on its data at a new raft address (a pod\'s new IP) tells the cluster where it is now and catches up', async () => {
    logA.proc!.kill('SIGKILL');
    // A logger never sends first (it never campaigns): the leader only reaches it where the
    // configuration says, unless the logger introduces itself from the new address.
    logA.raft = [(await freePorts(1))[0], ...logA.raft.slice(1)];
    startLogger(logA);
    await write(c, ids, 'n', 100);
    const leader = await c.waitLeader(ids);
    const st = (await c.status(leader))!;
    await waitLogged(logA, 'log0', st.commitIndex);
    same(await range(logA.recov, 'log0', 1, st.commitIndex), await range(recov.get(leader)!, '-', 1, st.commitIndex));
  });

  it('a leader that never heard from a logger still knows it is one: the configuration says so', async () => {
    // Seen in the fault suite: a leader restarted while the logger was cut off reported it as a
    // "non-voter" until the logger's hello came, and would have promoted it to voter meanwhile
    // (a voter whose Raft log is never fsync'd could lose acknowledged writes).
    logA.proc!.kill('SIGKILL');
    for (const id of ids) {
      await c.terminate(id);
      c.start(id);
    }
    const leader = await c.waitLeader(ids);
    const members = (await c.status(leader))!.members;
    const log0 = members.find((m) => m.id === 'log0') as { role: string; raftAddr: string } | undefined;
    assert.equal(log0?.role, 'logger', JSON.stringify(members));
    const promote = await c.http(leader, 'POST', '/v1/members', { id: 'log0', addr: log0.raftAddr, voter: true });
    assert.equal(promote.status, 409, JSON.stringify(promote.json));
    assert.match(JSON.stringify(promote.json), /never promoted/);
    startLogger(logA);
    await write(c, ids, 'h', 50);
    const st = (await c.status(await c.waitLeader(ids)))!;
    await waitLogged(logA, 'log0', st.commitIndex);
  });

  it('recover returns exactly the asked range, and a clear answer outside it or to bad input', async () => {
    const got = await range(logA.recov, 'log0', 10, 20);
    assert.deepEqual(got.map((e) => e.index), Array.from({ length: 11 }, (_, i) => 10 + i));
    const nd = await api(logA.http, '/v1/log/log0?from=10&to=12');
    assert.equal(nd.status, 200);
    const lines = nd.text.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.index), [10, 11, 12]);
    assert.ok(Buffer.from(lines[0].data, 'base64').equals(Buffer.from(got[0].data)));
    const last = (await logsOf(logA))[0].last;
    const beyond = await api(logA.http, `/v1/log/log0?from=1&to=${last + 1000}`);
    assert.equal(beyond.status, 416);
    assert.equal(beyond.json.available.last, last);
    for (const [q, why] of [
      ['from=20&to=10', /reversed/],
      ['from=abc', /positive integer/],
      ['from=1&to=99999999999999999999', /positive integer/],
      ['bogus=1', /unknown parameter/],
    ] as const) {
      const r = await api(logA.http, `/v1/log/log0?${q}`);
      assert.equal(r.status, 400, q);
      assert.match(r.json.error, why);
    }
    assert.equal((await api(logA.http, '/v1/log/nosuch')).status, 404);
    await assert.rejects(range(logA.recov, 'log0', 1, last + 1000), /not in the log yet/);
    await assert.rejects(range(logA.recov, 'nosuch', 1, 2), /no log for cluster/);
    const { Socket } = await import('node:net');
    const raw = async (bytes: Buffer | string) =>
      new Promise<string>((resolve) => {
        const s = new Socket();
        let out = '';
        s.connect(logA.recov, '127.0.0.1', () => s.write(bytes));
        s.on('data', (d) => (out += d.toString()));
        s.on('close', () => resolve(out));
        s.on('error', () => resolve(out));
      });
    assert.match(await raw('hello there\n'), /^ERR unknown request/);
    assert.match(await raw(Buffer.alloc(5000, 0x41)), /^ERR request line longer/);
    assert.match(await raw('RECOVER log0 5\n'), /^ERR usage/);
    // A waiting request gets what arrives while it waits.
    const waiting = recovRange(`127.0.0.1:${logA.recov}`, 'log0', last + 1, last + 5, () => undefined, { waitMs: 20_000 });
    await write(c, ids, 'w', 20);
    assert.equal((await waiting).count, 5);
    // Nothing was changed by any of it.
    assert.equal((await logsOf(logA))[0].first, 1);
  });

  it('truncate is refused without a majority, capped at the smallest index a majority asked, and counts asks made before a kill -9', async () => {
    const st = (await c.status(await c.waitLeader(ids)))!;
    const at = st.commitIndex;
    // As a replica asks: its id, the index its snapshot covers, and where it serves that snapshot.
    const ask = (member: string, index: number) => api(logA.http, '/v1/log/log0/truncate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ member, index, http: `127.0.0.1:${c.nodes.get(member)?.http ?? 1}` }) });
    const bad = await ask('intruder', 50);
    assert.equal(bad.status, 403);
    const bad2 = await api(logA.http, '/v1/log/log0/truncate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"member":"n1","index":-4}' });
    assert.equal(bad2.status, 400);
    const bad3 = await api(logA.http, '/v1/log/log0/truncate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"member":"n1","index":4,"http":"evil host/x"}' });
    assert.equal(bad3.status, 400);
    assert.match(bad3.json.error, /http: must be host:port/);
    const one = await ask('n1', at - 10);
    assert.equal(one.status, 202, one.text);
    assert.equal(one.json.truncated, false);
    assert.equal((await logsOf(logA))[0].first, 1, 'one voter of three cannot truncate');
    // The first ask survives a kill -9 of the logger: the second one makes a majority.
    logA.proc!.kill('SIGKILL');
    startLogger(logA);
    await waitLogged(logA, 'log0', at);
    const two = await ask('n2', 100);
    assert.equal(two.status, 200, two.text);
    assert.equal(two.json.upTo, 100, 'the smallest of the majority that asked');
    const info = (await logsOf(logA))[0];
    assert.equal(info.first, 101);
    assert.ok((info.base as { index: number }).index >= 100, 'a snapshot covering the cut is kept');
    // The base is served, over HTTP and the recov port, as the snapshot file it was fetched as.
    const viaHttp = await fetch(`http://127.0.0.1:${logA.http}/v1/log/log0/base`);
    assert.equal(viaHttp.status, 200);
    const httpBytes = Buffer.from(await viaHttp.arrayBuffer());
    assert.equal(decodeSnapshot(httpBytes).meta.index, (info.base as { index: number }).index);
    assert.equal(viaHttp.headers.get('x-raftkv-index'), String((info.base as { index: number }).index));
    const viaRecov = await recovBase(`127.0.0.1:${logA.recov}`, 'log0');
    assert.ok(viaRecov && encodeSnapshot(viaRecov).equals(httpBytes), 'the recov port serves the same bytes');
    const gone = await api(logA.http, '/v1/log/log0?from=1&to=5');
    assert.equal(gone.status, 416);
    assert.match(gone.json.error, /truncated/);
    // A further cut that the base held already covers fetches nothing and keeps that base.
    const held = (info.base as { index: number }).index;
    if (held > 101) {
      const three = await ask('n3', held);
      assert.equal(three.status, 200, three.text);
      assert.equal(three.json.upTo, Math.min(held, at - 10));
      assert.equal(three.json.base.index, held);
      assert.equal(three.json.base.fetched, false);
      assert.equal((await logsOf(logA))[0].first, three.json.upTo + 1);
    }
  });

  it('a wiped replica catches up from the logger and converges to the same digest', async () => {
    const leader = await c.waitLeader(ids);
    const victim = ids.find((id) => id !== leader)!;
    c.kill9(victim);
    await rm(c.nodes.get(victim)!.dataDir, { recursive: true, force: true });
    await write(c, ids.filter((id) => id !== victim), 'v', 100);
    c.start(victim, ['--join', `127.0.0.1:${c.nodes.get(leader)!.http}`, '--logger', `127.0.0.1:${logA.http}`]);
    await c.waitConverged(ids, 30_000);
    assert.match(c.logs.get(victim)!, /caught up from the logger/);
    const digests = await c.sameIndexDigests(ids);
    assert.equal(new Set(digests.map((d) => d.index)).size, 1, JSON.stringify(digests));
    assert.equal(new Set(digests.map((d) => d.digest)).size, 1, JSON.stringify(digests));
  });

  it('a new member is told of the cluster\'s loggers and takes its state from one, unless --logger off', async () => {
    for (const mode of ['told', 'off'] as const) {
      const leader = await c.waitLeader(ids);
      const [victim, other] = ids.filter((id) => id !== leader);
      c.kill9(victim);
      await rm(c.nodes.get(victim)!.dataDir, { recursive: true, force: true });
      await write(c, ids.filter((id) => id !== victim), `t${mode}`, 100);
      c.logs.set(victim, '');
      // Joined through a follower, which may not know the loggers: the leader is asked too.
      c.start(victim, ['--join', `127.0.0.1:${c.nodes.get(other)!.http}`, ...(mode === 'off' ? ['--logger', 'off'] : [])]);
      await c.waitConverged(ids, 30_000).catch(async (e) => {
        throw new Error(`${e.message}\n${JSON.stringify(await Promise.all(ids.map((id) => c.status(id))))}\n${logA.out}`);
      });
      if (mode === 'told') assert.match(c.logs.get(victim)!, /caught up from the logger/);
      else assert.doesNotMatch(c.logs.get(victim)!, /caught up from the logger/);
      const digests = await c.sameIndexDigests(ids);
      assert.equal(new Set(digests.map((d) => d.index)).size, 1, JSON.stringify(digests));
      assert.equal(new Set(digests.map((d) => d.digest)).size, 1, JSON.stringify(digests));
    }
  });

  it('recovery reports the seed measurements, and restore rebuilds a new cluster after every replica is lost', async () => {
    const leader = await c.waitLeader(ids);
    await c.waitConverged(ids);
    const before = (await c.http(leader, 'GET', '/v1/digest')).json as { index: number; digest: string; keys: number };
    await waitLogged(logA, 'log0', before.index);
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [CLI, 'recovery', '--recov', `127.0.0.1:${logA.recov}`, '--to', String(before.index), '--json']);
    const rec = JSON.parse(stdout);
    assert.equal(rec.digest, before.digest, 'the recovered state equals the replica');
    assert.ok(rec.commands > 0 && rec.stateBytes > 0 && rec.transferSeconds >= 0 && rec.installSeconds >= 0);
    const fromApplog = JSON.parse((await run(process.execPath, [CLI, 'recovery', '--recov', `127.0.0.1:${recov.get(leader)}`, '--to', String(before.index), '--json'])).stdout);
    assert.equal(fromApplog.digest, before.digest, 'a replica applog gives the same state');
    for (const id of ids) c.kill9(id);
    for (const id of ids) await rm(c.nodes.get(id)!.dataDir, { recursive: true, force: true });
    const [raft, client, http] = await freePorts(3);
    const dir = join(c.dir, 'restored');
    const r = await run(process.execPath, [CLI, 'restore', '--from-logger', `127.0.0.1:${logA.http}`, '--cluster', 'log0', '--data-dir', dir, '--id', 'r1', '--raft', `127.0.0.1:${raft}`]);
    assert.match(r.stdout, /new cluster id/);
    c.nodes.set('r1', { id: 'r1', client, raft, http, dataDir: dir, args: [] });
    c.start('r1');
    await c.waitLeader(['r1']);
    const after = (await c.http('r1', 'GET', '/v1/digest')).json as { digest: string; keys: number };
    assert.equal(after.digest, before.digest, 'the new cluster serves the same data');
    const again = await run(process.execPath, [CLI, 'restore', '--from-logger', `127.0.0.1:${logA.http}`, '--data-dir', dir, '--id', 'r1', '--raft', `127.0.0.1:${raft}`]).catch((e) => e);
    assert.match(String(again.stderr), /not empty/);
  });
});
