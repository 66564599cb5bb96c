import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RaftKvClient } from '../../replica/index.js';
import { TestCluster } from '../helpers/cluster.js';

/** The sum of a metric's samples whose labels include `label` (e.g. `kind="installed"`). */
function metric(text: string, name: string, label = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '').includes(label)) sum += Number(m[3]);
  }
  return sum;
}

// A replica keeps only the last entries it applied in memory (RaftConfig.logMemoryTail): a
// follower that was down while the cluster went on is caught up from the leader's WAL segments,
// not from memory and not with a snapshot, and ends with every write.
describe('log entries read back from the WAL, real processes', () => {
  let c: TestCluster;
  const ids = ['r1', 'r2', 'r3'];
  before(async () => {
    c = await TestCluster.startStatic('readback', ids);
  });
  after(async () => c.destroy());

  it('a follower back after 400 writes gets them from the leader\'s WAL and ends with every write', async () => {
    const client = new RaftKvClient({ targets: ids.map((id) => c.clientAddr(id)) });
    try {
      const leader = await c.waitLeader(ids);
      const follower = ids.find((id) => id !== leader)!;
      for (let i = 0; i < 20; i++) await client.set(`k${i}`, `v${i}`);
      c.kill9(follower);
      // The leader keeps entries in memory for a follower it still counts as active; it stops
      // counting a silent one at its next quorum check (one election timeout, 1 s).
      await new Promise((r) => setTimeout(r, 2500));
      // Beyond the 64 entries kept in memory, far below a snapshot (100,000 entries).
      for (let i = 20; i < 420; i++) await client.set(`k${i}`, `v${i}`.repeat(20));
      const before = metric((await c.http(leader, 'GET', '/metrics')).json as string, 'raftkv_log_entries_read_back_total');
      c.start(follower, ['--peers', c.peersFlag(ids)]);
      await c.waitConverged(ids);
      const text = (await c.http(leader, 'GET', '/metrics')).json as string;
      const readBack = metric(text, 'raftkv_log_entries_read_back_total') - before;
      assert.ok(readBack >= 300, `the leader read back ${readBack} entries for the follower`);
      const installed = metric((await c.http(follower, 'GET', '/metrics')).json as string, 'raftkv_snapshots_total', 'kind="installed"');
      assert.equal(installed, 0, 'no snapshot was needed');
      for (const k of [0, 19, 20, 200, 419]) {
        const res = await c.http(follower, 'GET', `/v1/kv/k${k}?stale=1`);
        assert.deepEqual(res.json, { key: `k${k}`, value: k < 20 ? `v${k}` : `v${k}`.repeat(20) }, `${follower} k${k}`);
      }
    } finally {
      client.close();
    }
  });
});
