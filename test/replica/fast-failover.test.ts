/**
 * A leader whose process dies (kill -9) is replaced as soon as its followers find nothing
 * listening at its address, not after their election timeout (RaftNode.leaderGone, fed by the
 * peer transport's refused redial). The survivors here run with an election timeout of 60 s,
 * which no wait in this test reaches: a new leader can only come from the fast path.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RaftKvClient } from '../../replica/index.js';
import { TestCluster, sleep } from '../helpers/cluster.js';

const LONG_ELECTION_TIMEOUT_MS = 60_000;

/** Wait (bounded) until one of `ids` leads and every other one of them follows it. */
async function waitLeaderAmong(c: TestCluster, ids: string[], timeoutMs: number): Promise<string> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const st = await Promise.all(ids.map((id) => c.status(id)));
    const leader = st.find((s) => s?.role === 'leader');
    if (leader && st.every((s) => s?.leader === leader.id)) return leader.id;
    await sleep(20);
  }
  throw new Error(`no leader among ${ids.join(', ')} within ${timeoutMs} ms\n${c.dump()}`);
}

describe('fast failover after a leader crash', () => {
  it('kill -9 of the leader: followers with a 60 s election timeout elect a new leader at once, and writes go on', async () => {
    const ids = ['f1', 'f2', 'f3'];
    const c = await TestCluster.startStatic('fast-failover', ids);
    try {
      const leader = await c.waitLeader(ids, 20_000);
      const survivors = ids.filter((id) => id !== leader);
      // The followers restart, one at a time as a rolling restart does, with an election
      // timeout this test never waits for. (Both down at once would leave the leader without a
      // quorum: it steps down and is elected again, which the unit tests cover.)
      for (const id of survivors) {
        assert.equal(await c.terminate(id), 0);
        c.start(id, ['--peers', c.peersFlag(ids), '--election-timeout', String(LONG_ELECTION_TIMEOUT_MS)]);
        await waitLeaderAmong(c, [leader, id], 20_000);
      }
      const client = new RaftKvClient({ targets: ids.map((id) => c.clientAddr(id)) });
      try {
        await client.set('before', '1').catch((e: unknown) => {
          throw new Error(`${String(e)}\n${c.dump()}`);
        });
        await c.waitConverged(ids, 20_000);
        assert.equal(await c.waitLeader(ids, 20_000), leader, 'the restarts did not move the leadership');

        c.kill9(leader);
        const next = await waitLeaderAmong(c, survivors, 20_000);
        assert.ok(survivors.includes(next));
        await client.set('after', '2').catch((e: unknown) => {
          throw new Error(`${String(e)}\n${c.dump()}`);
        });
        for (const id of survivors) {
          await c.waitConverged(survivors, 20_000);
          assert.deepEqual((await c.http(id, 'GET', '/v1/kv/after?stale=1')).json, { key: 'after', value: '2' });
          assert.deepEqual((await c.http(id, 'GET', '/v1/kv/before?stale=1')).json, { key: 'before', value: '1' });
        }
      } finally {
        client.close();
      }
    } finally {
      await c.destroy();
    }
  });
});
