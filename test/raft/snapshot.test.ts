import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageType, Snapshot } from '../../raft/index.js';
import { Net } from './harness.js';

function snapshotOf(net: Net, id: string, payload: Uint8Array): Snapshot {
  const n = net.node(id);
  const index = n.log.applied;
  return { meta: { index, term: n.log.term(index), membership: n.membershipAt(index) }, data: payload };
}

describe('snapshots and log compaction (Raft §7, dissertation §5)', () => {
  it('compaction drops the log prefix a durable snapshot covers', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    for (let i = 0; i < 20; i++) net.propose('a', `v${i}`);
    const a = net.node('a');
    a.compact(snapshotOf(net, 'a', new Uint8Array(10)), 5);
    assert.equal(a.log.firstIndex(), a.log.applied - 5 + 1);
    const tooFar = snapshotOf(net, 'a', new Uint8Array(1));
    tooFar.meta.index = a.log.applied + 1;
    assert.throws(() => a.compact(tooFar, 0), /past applied index/);
  });

  it('a lagging follower is caught up with InstallSnapshot sent in chunks, then by appends', () => {
    const net = new Net(['a', 'b', 'c'], { snapshotChunkBytes: 100 });
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 30; i++) net.propose('a', `v${i}`);
    const payload = new Uint8Array(1050).map((_, i) => i % 251);
    net.node('a').compact(snapshotOf(net, 'a', payload), 0);
    net.heal();
    net.tickAll(10);
    const chunks = net.sent.filter((m) => m.type === MessageType.Snap && m.to === 'c');
    assert.equal(chunks.length, 11, 'ceil(1050 / 100) chunks');
    assert.ok(chunks.every((m) => m.snapshot!.data.length <= 100));
    const stored = net.stored.get('c')!.snapshot!;
    assert.deepEqual(stored.data, payload, 'the follower reassembled the exact snapshot');
    assert.deepEqual(stored.meta.membership.voters.sort(), ['a', 'b', 'c']);
    net.propose('a', 'after');
    assert.deepEqual(net.appliedData('c'), ['after']);
    assert.equal(net.node('c').log.committed, net.node('a').log.committed);
  });

  it('a lost chunk is resent and the transfer completes', () => {
    const net = new Net(['a', 'b', 'c'], { snapshotChunkBytes: 64 });
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 10; i++) net.propose('a', `v${i}`);
    net.node('a').compact(snapshotOf(net, 'a', new Uint8Array(300).fill(7)), 0);
    net.heal();
    let dropped = 0;
    net.filter = (m) => !(m.type === MessageType.Snap && m.snapshot!.offset === 128 && dropped++ === 0);
    net.tickAll(30);
    assert.equal(dropped > 0, true);
    assert.deepEqual(net.stored.get('c')!.snapshot?.data, new Uint8Array(300).fill(7));
  });

  it('a restarted follower resumes from its snapshot and log', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    for (let i = 0; i < 10; i++) net.propose('a', `v${i}`);
    const b = net.node('b');
    const snap = snapshotOf(net, 'b', new Uint8Array([1, 2, 3]));
    net.stored.get('b')!.snapshot = snap;
    b.compact(snap, 2);
    net.boot('b');
    assert.equal(net.node('b').log.snapshotIndex, snap.meta.index);
    net.propose('a', 'later');
    assert.deepEqual(net.appliedData('b'), ['later']);
  });
});
