import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { peerFrame } from '../../replica/framing.js';
import { encodeHello } from '../../replica/proto.js';
import { TestCluster } from '../helpers/cluster.js';

/** Open a raft connection, introduce ourselves, and see whether the node keeps it open. */
function helloAccepted(port: number, from: string, token: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(peerFrame(1, encodeHello({ from, token, clientAddr: '', httpAddr: '', raftAddr: '', clusterId: '' }))));
    const timer = setTimeout(() => {
      s.destroy();
      resolve(true);
    }, 700);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(false);
    });
    s.on('error', () => undefined);
  });
}

describe('security: cluster token, members-only raft port, client token', () => {
  it('refuses membership calls and peer connections without the cluster token, and non-members on the raft port', async () => {
    const c = await TestCluster.create('secure');
    const ids = ['s1', 's2', 's3'];
    try {
      for (const id of ids) await c.define(id, ['--token', 's3cret', '--client-token', 'reader']);
      await c.define('s4', ['--token', 's3cret']);
      for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
      c.clientToken = 'reader';
      const leader = await c.waitLeader(ids);
      c.clientToken = undefined;
      const raftPort = c.nodes.get('s2')!.raft;
      assert.equal(await helloAccepted(raftPort, 's1', 'wrong'), false, 'wrong token refused');
      assert.equal(await helloAccepted(raftPort, 'intruder', 's3cret'), false, 'a non-member is refused even with the token');
      assert.equal(await helloAccepted(raftPort, 's1', 's3cret'), true, 'a member with the token is accepted');
      const body = { id: 's4', addr: `127.0.0.1:${c.nodes.get('s4')!.raft}` };
      assert.equal((await c.http(leader, 'POST', '/v1/members', body)).status, 401);
      assert.equal((await c.http(leader, 'POST', '/v1/leader/transfer', { to: 's2' })).status, 401);
      // The client token guards keys and status; probes and metrics stay open.
      assert.equal((await c.http('s1', 'GET', '/v1/kv/x')).status, 401);
      assert.equal((await c.http('s1', 'GET', '/v1/status')).status, 401);
      assert.equal((await c.http('s1', 'GET', '/healthz')).status, 200);
      const authed = await fetch(c.httpUrl('s1', '/v1/kv/x'), { headers: { authorization: 'Bearer reader' } });
      assert.equal(authed.status, 404);
      // A joiner with the token gets in.
      c.start('s4', ['--join', `127.0.0.1:${c.nodes.get('s1')!.http}`]);
      const deadline = performance.now() + 20_000;
      let members = 0;
      while (performance.now() < deadline && members < 4) {
        const r = await fetch(c.httpUrl('s1', '/v1/status'), { headers: { authorization: 'Bearer reader' } });
        members = ((await r.json()) as { members: unknown[] }).members.length;
        await new Promise((r2) => setTimeout(r2, 100));
      }
      assert.equal(members, 4);
    } finally {
      await c.destroy();
    }
  });
});
