import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageType } from '../../raft/index.js';
import { Net } from './harness.js';

describe('linearizable reads (dissertation §6.4: ReadIndex and leases)', () => {
  it('ReadIndex on the leader: the read point is the commit index, confirmed by a heartbeat round', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    const hbBefore = net.count(MessageType.Heartbeat, 'a');
    net.node('a').readIndex('r1');
    net.settle();
    assert.deepEqual(net.reads.get('a'), [{ index: net.node('a').log.committed, context: 'r1' }]);
    assert.ok(net.count(MessageType.Heartbeat, 'a') > hbBefore, 'a round of heartbeats confirmed leadership');
  });

  it('many reads queued together share one heartbeat round', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    const hbBefore = net.count(MessageType.Heartbeat, 'a');
    for (let i = 0; i < 50; i++) net.node('a').readIndex(`r${i}`);
    net.settle();
    assert.equal(net.reads.get('a')!.length, 50);
    assert.equal(net.count(MessageType.Heartbeat, 'a') - hbBefore, 2, 'one heartbeat per follower');
  });

  it('a leader cut off from the majority serves no read (it cannot prove it still leads)', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a');
    net.node('a').readIndex('r1');
    net.settle();
    assert.deepEqual(net.reads.get('a'), []);
  });

  /** b reads through leader a: its read state, a's commit index, and the heartbeats a sent for it. */
  const followerRead = (ids: string[]) => {
    const net = new Net(ids);
    net.elect('a');
    net.propose('a', 'x');
    const hbBefore = net.count(MessageType.Heartbeat, 'a');
    net.node('b').readIndex('rb');
    net.settle();
    return { reads: net.reads.get('b'), committed: net.node('a').log.committed, heartbeats: net.count(MessageType.Heartbeat, 'a') - hbBefore };
  };

  it('a follower read goes through the leader and comes back with the leader commit index', () => {
    const r = followerRead(['a', 'b', 'c']);
    assert.deepEqual(r.reads, [{ index: r.committed, context: 'rb' }]);
  });

  it('in a cluster of three, a follower\'s request is itself the confirming quorum: answered with no heartbeat round', () => {
    const r = followerRead(['a', 'b', 'c']);
    assert.deepEqual(r.reads, [{ index: r.committed, context: 'rb' }]);
    assert.equal(r.heartbeats, 0, 'no heartbeat was needed');
  });

  it('in a cluster of five, a follower\'s request still takes a heartbeat round (with the leader it is two of five)', () => {
    const r = followerRead(['a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(r.reads, [{ index: r.committed, context: 'rb' }]);
    assert.ok(r.heartbeats > 0);
  });

  it('a deposed leader answers no read of its own, and a follower of the new leader asks only it', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.isolate('a');
    for (let i = 0; i < 60 && !['b', 'c'].some((id) => net.node(id).isLeader()); i++) {
      net.time++;
      net.node('b').tick();
      net.node('c').tick();
      net.settle();
    }
    const next = ['b', 'c'].find((id) => net.node(id).isLeader())!;
    const other = next === 'b' ? 'c' : 'b';
    assert.ok(next, 'b and c elect a new leader');
    net.propose(next, 'y');
    // a still thinks it leads the old term; the others are in the new one and have y.
    assert.ok(net.node('a').isLeader());
    net.node('a').readIndex('ra');
    net.node(other).readIndex('ro');
    net.settle();
    assert.deepEqual(net.reads.get('a'), [], 'a cannot confirm its leadership');
    assert.ok(net.sent.filter((m) => m.type === MessageType.ReadIndex && m.from === other).every((m) => m.to === next));
    assert.deepEqual(net.reads.get(other), [{ index: net.node(next).log.committed, context: 'ro' }], 'the read point covers y');
  });

  it('a new leader answers reads only after an entry of its own term commits', () => {
    const net = new Net(['a', 'b', 'c'], { preVote: false, checkQuorum: false });
    net.elect('a');
    net.filter = (m) => m.type !== MessageType.AppResp;
    net.tickAll(1);
    net.elect('b');
    assert.ok(net.node('b').isLeader());
    net.node('b').readIndex('early');
    net.settle();
    assert.deepEqual(net.reads.get('b'), []);
    net.filter = () => true;
    net.tickAll(2);
    assert.equal(net.reads.get('b')!.length, 1);
    assert.equal(net.node('b').log.term(net.reads.get('b')![0].index), net.node('b').term);
  });

  it('lease reads: answered without a new round while the lease holds, not after it lapses', () => {
    const net = new Net(['a', 'b', 'c'], { readMode: 'lease' });
    net.elect('a');
    net.tickAll(2); // a heartbeat round acknowledged: lease established
    const hbBefore = net.count(MessageType.Heartbeat, 'a');
    net.node('a').readIndex('lease1');
    net.settle();
    assert.equal(net.reads.get('a')!.length, 1);
    assert.equal(net.count(MessageType.Heartbeat, 'a'), hbBefore, 'no extra round for a lease read');
    net.isolate('a');
    net.tick('a', 9);
    net.node('a').readIndex('lease2');
    net.settle();
    assert.equal(net.reads.get('a')!.length, 1, 'lease expired: read must wait for a quorum');
  });
});
