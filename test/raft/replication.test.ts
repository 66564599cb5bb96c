import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EntryType, MessageType, RaftError } from '../../raft/index.js';
import { Net, text } from './harness.js';

describe('log replication (Raft §5.3, §5.4.2)', () => {
  it('a proposal is committed and applied on every node in the same order', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    for (const v of ['x', 'y', 'z']) net.propose('a', v);
    for (const id of ['a', 'b', 'c']) assert.deepEqual(net.appliedData(id), ['x', 'y', 'z']);
  });

  it('only the leader accepts proposals, and says who leads', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    assert.throws(
      () => net.node('b').propose(text('x')),
      (e: unknown) => e instanceof RaftError && e.code === 'not-leader' && e.leader === 'a',
    );
  });

  it('batching: many proposals between two ready() calls become one append per follower', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    const before = net.count(MessageType.App, 'a');
    const a = net.node('a');
    for (let i = 0; i < 100; i++) a.propose(text(`v${i}`));
    const rd = a.ready()!;
    assert.equal(rd.entries.length, 100);
    const apps = rd.messages.filter((m) => m.type === MessageType.App);
    assert.equal(apps.length, 2);
    assert.equal(apps[0].entries.length, 100);
    net.deliver(rd.messages);
    a.advance();
    net.settle();
    net.heartbeat('a');
    assert.equal(net.appliedData('c').length, 100);
    assert.ok(net.count(MessageType.App, 'a') - before < 10);
    assert.equal(net.count(MessageType.App, 'a') - before, 2, 'no extra append per commit: followers learn it from heartbeats');
  });

  it('pipelining: appends are sent without waiting for answers, up to maxInflight per follower', () => {
    const net = new Net(['a', 'b', 'c'], { maxInflight: 4 });
    net.elect('a');
    const a = net.node('a');
    // Hold every answer back: the leader may only have 4 appends in flight to each follower.
    net.filter = (m) => m.type !== MessageType.AppResp;
    for (let i = 0; i < 10; i++) {
      a.propose(text(`v${i}`));
      net.settle();
    }
    const toB = net.sent.filter((m) => m.type === MessageType.App && m.to === 'b' && m.entries.length > 0);
    const afterElection = toB.filter((m) => m.entries.some((e) => e.data.length > 0));
    assert.equal(afterElection.length, 4);
    net.filter = () => true;
    net.tickAll(10); // the leader notices the stalled pipeline and probes again
    assert.equal(net.appliedData('b').length, 10);
  });

  it('fast backtracking: a follower with a long divergent log is repaired in a few round trips', () => {
    const net = new Net(['a', 'b', 'c'], { preVote: false, checkQuorum: false });
    net.elect('b');
    net.isolate('b');
    // b keeps appending 50 entries in its term that will never commit.
    for (let i = 0; i < 50; i++) net.node('b').propose(text(`stale${i}`));
    net.settle();
    net.elect('a');
    for (let i = 0; i < 50; i++) net.node('a').propose(text(`fresh${i}`));
    net.settle();
    net.heal();
    const rejectsBefore = net.sent.filter((m) => m.type === MessageType.AppResp && m.reject && m.from === 'b').length;
    net.tickAll(2);
    const rejects = net.sent.filter((m) => m.type === MessageType.AppResp && m.reject && m.from === 'b').length - rejectsBefore;
    assert.ok(rejects <= 3, `needed ${rejects} rejected round trips (one per conflicting term expected)`);
    assert.deepEqual(net.appliedData('b'), net.appliedData('a'));
    assert.ok(!net.appliedData('b').some((d) => d.startsWith('stale')));
  });

  it('a leader never commits an entry of an earlier term by counting replicas (Figure 8)', () => {
    const net = new Net(['a', 'b', 'c'], { preVote: false, maxAppendBytes: 1 });
    // a holds an entry from term 2 that no one else has; everyone is at term 3.
    const a = net.stored.get('a')!;
    a.entries.push({ term: 2, index: 4, type: EntryType.Normal, data: text('old') });
    for (const id of ['a', 'b', 'c']) net.stored.get(id)!.hardState.term = 3;
    for (const id of ['a', 'b', 'c']) net.boot(id);
    // Let through only appends that carry nothing of the new term: the old entry reaches a
    // majority (a and b), the new leader's no-op does not.
    let firstProbe = true;
    net.filter = (m) => {
      if (m.to === 'c') return false;
      if (m.type !== MessageType.App || !m.entries.some((e) => e.term === 4)) return true;
      // The first probe carries the no-op and is rejected by b, which lacks index 4.
      const pass = firstProbe;
      firstProbe = false;
      return pass;
    };
    net.elect('a');
    assert.ok(net.node('a').isLeader());
    assert.equal(net.node('a').term, 4);
    assert.equal(net.node('a').progressOf('b')?.match, 4, 'the old entry is on a majority');
    assert.equal(net.node('a').log.committed, 3, 'but it is not committed by counting');
    net.filter = () => true;
    net.tickAll(10);
    assert.equal(net.node('a').log.committed, 5, 'committed together with the current-term no-op');
    assert.deepEqual(net.appliedData('b'), ['old']);
  });

  it('a follower truncates an uncommitted conflicting suffix', () => {
    const net = new Net(['a', 'b', 'c'], { preVote: false, checkQuorum: false });
    net.elect('a');
    net.isolate('a');
    net.node('a').propose(text('lost'));
    net.settle();
    net.heal();
    net.isolate('a');
    net.elect('b');
    net.propose('b', 'kept');
    net.heal();
    net.tickAll(3);
    assert.deepEqual(net.appliedData('a'), ['kept']);
    const stored = net.stored.get('a')!.entries.map((e) => new TextDecoder().decode(e.data));
    assert.ok(!stored.includes('lost'), 'the conflicting entry is gone from storage too');
  });

  it('a restarted node recovers its term, vote and log from storage', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    const before = net.node('b').hardState();
    net.boot('b');
    const b = net.node('b');
    assert.deepEqual(b.hardState(), before);
    net.tickAll(3);
    net.propose('a', 'y');
    assert.deepEqual(net.appliedData('b'), ['x', 'y']);
  });
});

describe('asynchronous storage writes (accept, then persisted)', () => {
  it('a leader hands its entries out once, replicates more while they are synced, and counts itself only once they are durable', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    const a = net.node('a');
    const b = net.node('b');
    const x = a.propose(text('x'));
    const rd = a.ready()!;
    assert.deepEqual(rd.entries.map((e) => e.index), [x.index]);
    a.accept();
    // Driven again while x is synced: a new proposal is handed out alone.
    const y = a.propose(text('y'));
    const rd2 = a.ready()!;
    assert.deepEqual(rd2.entries.map((e) => e.index), [y.index]);
    a.accept();
    for (const m of [...rd.messages, ...rd2.messages]) if (m.to === 'b') b.step(m);
    while (net.drain('b'));
    for (const m of net.discardQueued()) if (m.to === 'a') a.step(m);
    // b holds x and y durably, c is cut off, a has not said x is durable: not a quorum yet.
    const rd3 = a.ready();
    assert.deepEqual(rd3?.committed ?? [], []);
    if (rd3) a.accept();
    a.persisted(x);
    const rd4 = a.ready()!;
    assert.deepEqual(rd4.committed.map((e) => e.index), [x.index]);
    a.accept();
    a.persisted(y);
    assert.deepEqual(a.ready()!.committed.map((e) => e.index), [y.index]);
  });

  it('accept without a ready() is refused', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    assert.throws(() => net.node('a').accept(), /without a ready/);
  });
});
