/**
 * The peer transport on real sockets: what it tells its node when a peer's process goes away.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Message, MessageType } from '../../raft/index.js';
import { message } from '../../raft/types.js';
import { PeerTransport, TransportOptions } from '../../replica/transport.js';
import { sleep } from '../helpers/cluster.js';

function transport(id: string, addrs: Map<string, string>, over: Partial<TransportOptions> = {}): PeerTransport {
  return new PeerTransport({
    id,
    listen: { host: '127.0.0.1', port: 0 },
    advertise: { raftAddr: '', clientAddr: '', httpAddr: '' },
    clusterId: () => 'c1',
    resolve: (peer) => addrs.get(peer),
    onMessage: () => undefined,
    onUnreachable: () => undefined,
    ...over,
  });
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('PeerTransport', () => {
  it('reports a peer whose process is gone (connection closed, redial refused) with onRefused, without anything to send', async () => {
    const addrs = new Map<string, string>();
    const got: Message[] = [];
    const refused: string[] = [];
    const b = transport('b', addrs, { onMessage: (m) => got.push(m) });
    addrs.set('b', `127.0.0.1:${await b.start()}`);
    const a = transport('a', addrs, { onRefused: (id) => refused.push(id) });
    await a.start();
    try {
      a.send([message({ type: MessageType.Heartbeat, from: 'a', to: 'b', term: 1 })]);
      await until('b to hear a', () => got.length === 1);
      assert.deepEqual(refused, []);
      await b.stop(); // nothing listens at b's address now
      await until('a to find b gone', () => refused.length > 0);
      assert.deepEqual(refused, ['b']);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
