/**
 * A member that slept through a membership change must still follow the leader that came
 * after it: a peer it does not know yet is admitted when it has committed more.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RaftKvClient } from '../../replica/client.js';
import { TestCluster, sleep } from '../helpers/cluster.js';

describe('a member behind on the configuration', () => {
  it('follows a leader that joined while it was down (seen in the fault suite, seed 602)', async () => {
    const c = await TestCluster.create('stale-member');
    const ids = ['n1', 'n2', 'n3'];
    try {
      for (const id of [...ids, 'n4']) await c.define(id);
      for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
      const leader = await c.waitLeader(ids);
      const stale = ids.find((id) => id !== leader)!;
      const client = new RaftKvClient({ targets: ids.map((id) => c.clientAddr(id)) });
      try {
        await client.set('before', '1');
        // It misses n4's join and promotion, and then n4 takes over: nobody but n4 will send it
        // the entries that say n4 is a member.
        await c.terminate(stale);
        c.start('n4', ['--join', ids.filter((id) => id !== stale).map((id) => `127.0.0.1:${c.nodes.get(id)!.http}`).join(',')]);
        const deadline = performance.now() + 20_000;
        while (performance.now() < deadline) {
          const st = await c.status(leader);
          if (st?.members.some((m) => m.id === 'n4' && m.role === 'voter')) break;
          await sleep(100);
        }
        const transfer = await c.http(leader, 'POST', '/v1/leader/transfer', { to: 'n4' });
        assert.equal(transfer.status, 200, JSON.stringify(transfer.json));
        await c.waitLeader(ids.filter((id) => id !== stale).concat('n4'));
        await client.set('after', '2');
      } finally {
        client.close();
      }
      c.start(stale);
      // Back, it must hear n4, learn the configuration and catch up.
      await c.waitLeader([...ids, 'n4'], 20_000);
      await c.waitConverged([...ids, 'n4'], 20_000);
      const st = (await c.status(stale))!;
      assert.equal(st.leader, 'n4');
      assert.ok(st.members.some((m) => m.id === 'n4'), `${stale} learned that n4 is a member: ${JSON.stringify(st.members)}`);
    } finally {
      await c.destroy();
    }
  });
});
