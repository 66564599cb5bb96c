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

  it('a follower read goes through the leader and comes back with the leader commit index', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.node('b').readIndex('rb');
    net.settle();
    assert.deepEqual(net.reads.get('b'), [{ index: net.node('a').log.committed, context: 'rb' }]);
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
