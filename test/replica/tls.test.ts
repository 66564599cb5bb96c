import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { RaftKvClient } from '../../replica/client.js';
import { requestJson } from '../../replica/tls.js';
import { makePki } from '../helpers/certs.js';
import { TestCluster } from '../helpers/cluster.js';

describe('TLS (optional): mutual TLS between peers, TLS on the client port and the HTTP API', () => {
  it('a cluster runs over TLS; plaintext and foreign certificates are refused', async () => {
    const c = await TestCluster.create('tls');
    const ids = ['t1', 't2', 't3'];
    try {
      const pki = makePki(c.dir, 'good');
      const rogue = makePki(c.dir, 'rogue');
      const flags = ['--tls-cert', pki.cert, '--tls-key', pki.key, '--tls-ca', pki.ca];
      for (const id of ids) await c.define(id, flags);
      for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
      c.ca = readFileSync(pki.ca);
      const leader = await c.waitLeader(ids);
      const follower = ids.find((id) => id !== leader)!;
      const client = new RaftKvClient({ targets: [c.clientAddr(follower)], tls: { ca: c.ca } });
      await client.set('secret', 'over tls');
      assert.equal(await client.getString('secret'), 'over tls');
      // Appends over 4 KB leave as gathered writes (frame header, then the encoded message).
      const big = (i: number) => `${i}:`.padEnd(20_000, String.fromCharCode(97 + i));
      await Promise.all(Array.from({ length: 12 }, (_, i) => client.set(`big${i}`, big(i))));
      client.close();
      for (const id of ids) {
        // A read at each member is served from that member's own state (after a ReadIndex).
        const local: RaftKvClient = new RaftKvClient({ targets: [c.clientAddr(id)], tls: { ca: c.ca } });
        for (const i of [0, 5, 11]) assert.equal(await local.getString(`big${i}`), big(i), `${id} has big${i}`);
        local.close();
      }
      const res = await requestJson(c.httpUrl(follower, '/v1/kv/secret'), { method: 'GET', timeoutMs: 3000, ca: c.ca });
      assert.deepEqual(res.json, { key: 'secret', value: 'over tls' });
      // Plaintext on the client port gets nowhere.
      const plain = new RaftKvClient({ targets: [c.clientAddr(follower)], timeoutMs: 500, deadlineMs: 1500 });
      await assert.rejects(plain.getString('secret'));
      plain.close();
      // A peer with a certificate from another CA cannot open a raft connection.
      const refused = await new Promise<boolean>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port: c.nodes.get(follower)!.raft, cert: readFileSync(rogue.cert), key: readFileSync(rogue.key), ca: c.ca });
        s.on('secureConnect', () => {
          // TLS 1.3 reports the client certificate rejection after the handshake: wait for it.
          s.on('close', () => resolve(true));
          s.write('x');
          setTimeout(() => resolve(s.destroyed), 1000);
        });
        s.on('error', () => resolve(true));
      });
      assert.equal(refused, true);
    } finally {
      await c.destroy();
    }
  });
});
