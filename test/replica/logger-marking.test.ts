/**
 * A logger that joined before the configuration marked loggers (an unmarked non-voter) is
 * marked by the leader as soon as the leader hears its hello: from then on every leader refuses
 * to promote it, including one that has never heard from it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { peerFrame } from '../../replica/framing.js';
import { encodeHello } from '../../replica/proto.js';
import { TestCluster, sleep } from '../helpers/cluster.js';
import { freePorts } from '../helpers/ports.js';

/** Say hello to a replica's raft port as `from`, announcing itself a logger; resolves once sent. */
function helloAsLogger(raftPort: number, from: string, raftAddr: string, clusterId: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(raftPort, '127.0.0.1', () => {
      s.write(peerFrame(1, encodeHello({ from, token: '', clientAddr: '', httpAddr: '', raftAddr, clusterId, role: 'logger' })), () => resolve(s));
    });
    s.on('error', reject);
  });
}

describe('loggers that joined before loggers were marked', () => {
  it('are marked by the leader that hears them, and never promoted by a later leader', async () => {
    const c = await TestCluster.create('logger-marking');
    const ids = ['n1', 'n2', 'n3'];
    let socket: net.Socket | undefined;
    try {
      for (const id of ids) await c.define(id);
      for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
      const leader = await c.waitLeader(ids);
      const [port] = await freePorts(1);
      const addr = `127.0.0.1:${port}`;
      // What an older version's join left: a plain non-voter (the configuration has no mark).
      const add = await c.http(leader, 'POST', '/v1/members', { id: 'old-log', addr, voter: false });
      assert.equal(add.status, 200, JSON.stringify(add.json));
      const follower = ids.find((id) => id !== leader)!;
      const roleAt = async (id: string) => (await c.status(id))?.members.find((m) => m.id === 'old-log')?.role;
      await c.waitConverged(ids);
      assert.equal(await roleAt(follower), 'non-voter');

      const st = (await c.status(leader))!;
      socket = await helloAsLogger(c.nodes.get(leader)!.raft, 'old-log', addr, st.clusterId);
      // A follower never heard the hello: it says 'logger' only once the configuration does.
      const deadline = performance.now() + 15_000;
      while (performance.now() < deadline && (await roleAt(follower)) !== 'logger') await sleep(100);
      assert.equal(await roleAt(follower), 'logger', 'the leader marked the logger in the configuration');
      socket.destroy();

      // Every replica restarted: nobody has heard the hello, the configuration alone knows.
      for (const id of ids) {
        await c.terminate(id);
        c.start(id);
      }
      const next = await c.waitLeader(ids);
      assert.equal(await roleAt(next), 'logger');
      const promote = await c.http(next, 'POST', '/v1/members', { id: 'old-log', addr, voter: true });
      assert.equal(promote.status, 409, JSON.stringify(promote.json));
      assert.match(JSON.stringify(promote.json), /never promoted/);
    } finally {
      socket?.destroy();
      await c.destroy();
    }
  });
});
