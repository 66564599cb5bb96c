/**
 * Regression tests for the lease and read-index holes found by review (issue 10): each builds
 * the exact schedule in which an old leader would serve a stale read, or a follower would
 * accept an answer that is not its own.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfChangeType, EntryType, Message, MessageType, RaftNode, bootstrapEntries, message } from '../../raft/index.js';
import { Net } from './harness.js';

/** Reads `id` was handed at an index older than `committed`: each one a stale read. */
function staleReads(net: Net, id: string, committed: number): number[] {
  return net.reads.get(id)!.filter((r) => r.index < committed).map((r) => r.index);
}

/** Tick only `ids` (the others are stalled or cut off), delivering messages after each tick. */
function tickOnly(net: Net, ids: string[], n: number): void {
  for (let i = 0; i < n; i++) {
    net.time++;
    for (const id of ids) net.node(id).tick();
    net.settle();
  }
}

describe('lease reads stay safe (dissertation §6.4)', () => {
  it('an old leader cut off right after sending TimeoutNow serves no lease read', () => {
    const net = new Net(['a', 'b', 'c'], { readMode: 'lease' });
    net.elect('a');
    net.tickAll(2); // a quorum acknowledged a round: a holds the lease
    net.node('a').transferLeadership('b'); // b is caught up: TimeoutNow goes out at once
    net.filter = (m) => m.to !== 'a'; // a hears nothing from now on
    net.settle();
    assert.deepEqual(net.leaders().sort(), ['a', 'b'], 'b won the transfer campaign; a does not know yet');
    const { index } = net.propose('b', 'new');
    net.node('a').readIndex('old-leader-read');
    net.settle();
    assert.deepEqual(staleReads(net, 'a', index), [], 'a must not answer from its lease once it sent TimeoutNow');
  });

  it('a TimeoutNow of an abandoned transfer that arrives late does not leave a stale lease behind', () => {
    const net = new Net(['a', 'b', 'c'], { readMode: 'lease' });
    net.elect('a');
    const held: Message[] = [];
    net.filter = (m) => (m.type === MessageType.TimeoutNow ? (held.push(m), false) : true);
    net.node('a').transferLeadership('b');
    net.settle();
    assert.equal(held.length, 1);
    net.tickAll(12); // the transfer is abandoned; a goes on leading and renews its lease
    assert.deepEqual(net.leaders(), ['a']);
    net.filter = (m) => m.to !== 'a';
    net.deliver(held); // the old TimeoutNow finally arrives
    net.settle();
    assert.ok(net.node('b').isLeader(), 'the late TimeoutNow made b campaign and win');
    const { index } = net.propose('b', 'new');
    net.node('a').readIndex('late');
    net.settle();
    assert.deepEqual(staleReads(net, 'a', index), []);
  });

  it('a restarted voter refuses votes for an election timeout, so it cannot help depose a leader inside its lease', () => {
    const net = new Net(['a', 'b', 'c'], { readMode: 'lease' });
    net.elect('a');
    net.tickAll(2); // lease held
    net.isolate('a'); // a still believes it leads, and its lease is valid for a while
    net.boot('c'); // c restarts: it no longer knows it heard from a
    net.elect('b'); // b (cut off from a) campaigns at once
    assert.ok(!net.node('b').isLeader(), 'c must refuse: a may still hold a lease');
    net.node('a').readIndex('in-lease');
    net.settle();
    assert.equal(net.reads.get('a')!.length, 1, 'a may serve from its lease: nobody else can lead yet');
    // Once the lease is certainly over, the cluster elects a new leader as usual.
    tickOnly(net, ['b', 'c'], 40);
    assert.ok(net.leaders().some((l) => l !== 'a'), 'a new leader after the guard');
  });

  it('the lease is measured in time: ticks lost to a stalled event loop do not stretch it', () => {
    const net = new Net(['a', 'b', 'c'], { readMode: 'lease' });
    net.elect('a');
    net.tickAll(2); // lease held
    net.isolate('a');
    // a's process stalls: its timer fires no ticks while time goes on and b and c elect.
    tickOnly(net, ['b', 'c'], 40);
    const leader = net.leaders().find((l) => l !== 'a');
    assert.ok(leader, 'b or c leads');
    const { index } = net.propose(leader, 'new');
    net.node('a').readIndex('after-stall'); // the first thing a does when it wakes up
    net.settle();
    assert.deepEqual(staleReads(net, 'a', index), [], 'a stalled past its lease: no lease read');
  });
});

describe('read-index answers and snapshot acknowledgements are matched to their request', () => {
  it('a follower accepts a ReadIndex answer only for its own request, from the leader it asked, in that term', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    const b = net.node('b');
    const term = b.term;
    const answer = (from: string, context: string, t = term): Message =>
      message({ type: MessageType.ReadIndexResp, from, to: 'b', term: t, index: 1, context, commit: 0 });
    // An answer to a request b never made (say, one of a previous process with the same context).
    b.step(answer('a', 'r5'));
    net.settle();
    assert.deepEqual(net.reads.get('b'), [], 'unsolicited answer ignored');
    // b asks; an answer claiming to come from another node is not the one it waits for.
    net.filter = (m) => m.type !== MessageType.ReadIndex;
    b.readIndex('r6');
    net.settle();
    b.step(answer('c', 'r6'));
    net.settle();
    assert.deepEqual(net.reads.get('b'), [], 'answer from a node b did not ask ignored');
    b.step(answer('a', 'r6'));
    net.settle();
    assert.deepEqual(net.reads.get('b'), [{ index: 1, context: 'r6' }]);
    b.step(answer('a', 'r6'));
    net.settle();
    assert.equal(net.reads.get('b')!.length, 1, 'a duplicate answer is not a second read');
  });

  it('a follower that already has the snapshot entry acknowledges the snapshot index, not its unverified suffix', () => {
    const boot = bootstrapEntries(['a', 'b', 'c'].map((id) => ({ id, addr: id })));
    const extra = [4, 5, 6, 7, 8].map((index) => ({ index, term: index <= 5 ? 1 : 2, type: EntryType.Normal, data: new Uint8Array([index]) }));
    const b = new RaftNode({ id: 'b' }, { hardState: { term: 3, vote: '', commit: 3 }, entries: [...boot, ...extra] });
    const meta = { index: 5, term: 1, membership: { voters: ['a', 'b', 'c'], learners: [], addrs: { a: 'a', b: 'b', c: 'c' } } };
    b.step(message({ type: MessageType.Snap, from: 'a', to: 'b', term: 3, snapshot: { meta, offset: 0, totalSize: 1, data: new Uint8Array([1]), done: true } }));
    const rd = b.ready()!;
    const appResp = rd.messages.find((m) => m.type === MessageType.AppResp)!;
    assert.equal(appResp.index, 5, 'entries 6-8 (term 2) were never checked against the leader');
    const snapResp = rd.messages.find((m) => m.type === MessageType.SnapResp)!;
    assert.equal(snapResp.snapshotIndex, 5);
    assert.equal(snapResp.snapshotOffset, 1);
    b.advance();
  });

  it('an append answer from the earlier life of a member removed and added back (wiped) does not count for the new one', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.addBlank('d');
    net.node('a').proposeConfChange({ type: ConfChangeType.AddLearner, node: 'd', addr: 'mem:d' });
    net.settle();
    for (let i = 0; i < 5; i++) net.propose('a', `x${i}`);
    const oldMatch = net.node('a').progressOf('d')!.match;
    assert.ok(oldMatch > 5);
    net.node('a').proposeConfChange({ type: ConfChangeType.RemoveNode, node: 'd' });
    net.settle();
    net.heartbeat('a');
    net.addBlank('d'); // a new machine, empty disk, same id
    net.filter = (m) => m.to !== 'd' && m.from !== 'd'; // hold the new d back for a moment
    net.node('a').proposeConfChange({ type: ConfChangeType.AddLearner, node: 'd', addr: 'mem:d' });
    net.settle();
    // An answer the old d sent before it was removed arrives only now.
    net.node('a').step(message({ type: MessageType.AppResp, from: 'd', to: 'a', term: net.node('a').term, index: oldMatch }));
    assert.equal(net.node('a').progressOf('d')!.match, 0, 'the new d has nothing yet');
    net.filter = () => true;
    net.heartbeat('a');
    net.settle();
    assert.equal(net.node('d').log.lastIndex(), net.node('a').log.lastIndex(), 'the new d catches up');
  });

  it('hasReady() only looks: it sends nothing itself', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    const a = net.node('a');
    a.propose(new Uint8Array([1]));
    const before = net.sent.length;
    assert.equal(a.hasReady(), true);
    assert.equal((a as unknown as { msgs: Message[] }).msgs.length, 0, 'no message built by hasReady()');
    assert.equal(net.sent.length, before);
    net.settle();
  });
});
