/**
 * A joiner the cluster refuses for good (HTTP 409: here its raft address belongs to another
 * member) stops with the reason and a non-zero exit, instead of staying up unadmitted.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestCluster } from '../helpers/cluster.js';

describe('a join refused for good', () => {
  it('stops the joiner with the reason (exit 1), and the cluster is unchanged', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const c = await TestCluster.startStatic('join-refused', ids);
    try {
      const leader = await c.waitLeader(ids);
      const gone = ids.find((id) => id !== leader)!;
      // n3's process is gone but it is still a member, at its address; n4 comes up there.
      c.kill9(gone);
      const n4 = await c.define('n4');
      n4.raft = c.nodes.get(gone)!.raft;
      const p = c.start('n4', ['--join', `127.0.0.1:${c.nodes.get(leader)!.http}`]);
      const code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`n4 still running after 30 s; its log:\n${c.logs.get('n4')}`)), 30_000);
        p.once('exit', (exitCode) => {
          clearTimeout(timer);
          resolve(exitCode);
        });
      });
      c.procs.delete('n4');
      const log = c.logs.get('n4') ?? '';
      assert.equal(code, 1, `n4 exits 1; its log:\n${log}`);
      assert.match(log, /join refused by 127\.0\.0\.1:\d+: .*already belongs to another member/);
      assert.match(log, /FATAL .*refused/);
      const st = (await c.status(leader))!;
      assert.deepEqual(st.members.map((m) => m.id).sort(), ids, 'the configuration is unchanged');
    } finally {
      await c.destroy();
    }
  });
});
