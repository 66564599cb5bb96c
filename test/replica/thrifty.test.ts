import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RaftKvClient } from '../../replica/index.js';
import { TestCluster } from '../helpers/cluster.js';

// Thrifty replication is the replica's default: a leader sends a new entry at once to one of
// its two followers, the other in batches (raft/node.ts, RaftConfig.thrifty). Whichever follower
// dies, the eager one or the held one, writes must go on and every member must end with every
// write.
describe('thrifty replication, real processes', () => {
  let c: TestCluster;
  const ids = ['t1', 't2', 't3'];
  before(async () => {
    c = await TestCluster.startStatic('thrifty', ids);
  });
  after(async () => c.destroy());

  it('writes go on whichever follower is killed, and the restarted one ends with every write', async () => {
    const client = new RaftKvClient({ targets: ids.map((id) => c.clientAddr(id)) });
    let n = 0;
    try {
      const leader = await c.waitLeader(ids);
      for (const follower of ids.filter((id) => id !== leader)) {
        for (let i = 0; i < 20; i++, n++) await client.set(`k${n}`, `v${n}`);
        c.kill9(follower);
        for (let i = 0; i < 20; i++, n++) await client.set(`k${n}`, `v${n}`);
        c.start(follower, ['--peers', c.peersFlag(ids)]);
        await c.waitLeader(ids);
        await c.waitConverged(ids);
      }
      // Stale (local) reads: each member's own state, the held follower's too.
      for (const id of ids) {
        for (const k of [0, 19, 20, 39, 40, n - 1]) {
          const res = await c.http(id, 'GET', `/v1/kv/k${k}?stale=1`);
          assert.deepEqual(res.json, { key: `k${k}`, value: `v${k}` }, `${id} k${k}`);
        }
      }
    } finally {
      client.close();
    }
  });

  it('writes go on while either follower is paused (SIGSTOP: its connection stays open, it just stops answering)', async () => {
    const client = new RaftKvClient({ targets: ids.map((id) => c.clientAddr(id)) });
    try {
      const leader = await c.waitLeader(ids);
      for (const follower of ids.filter((id) => id !== leader)) {
        const pid = c.procs.get(follower)!.pid!;
        process.kill(pid, 'SIGSTOP');
        try {
          for (let i = 0; i < 20; i++) await client.set(`p${follower}${i}`, `v${i}`);
        } finally {
          process.kill(pid, 'SIGCONT');
        }
        await c.waitConverged(ids);
        assert.deepEqual((await c.http(follower, 'GET', `/v1/kv/p${follower}19?stale=1`)).json, { key: `p${follower}19`, value: 'v19' });
      }
    } finally {
      client.close();
    }
  });

  it('--replication all is accepted and serves writes too', async () => {
    const all = await TestCluster.startStatic('replication-all', ['a1', 'a2', 'a3'], ['--replication', 'all']);
    const client = new RaftKvClient({ targets: ['a1', 'a2', 'a3'].map((id) => all.clientAddr(id)) });
    try {
      for (let i = 0; i < 10; i++) await client.set(`k${i}`, `v${i}`);
      await all.waitConverged(['a1', 'a2', 'a3']);
      for (const id of ['a1', 'a2', 'a3']) assert.deepEqual((await all.http(id, 'GET', '/v1/kv/k9?stale=1')).json, { key: 'k9', value: 'v9' });
    } finally {
      client.close();
      await all.destroy();
    }
  });
});
