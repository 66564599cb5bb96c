import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EntryType, Message, MessageType, RaftError, message } from '../../raft/index.js';
import { Net } from './harness.js';

describe('bad input is never trusted', () => {
  const bad: [string, Partial<Message>][] = [
    ['unknown type', { type: 99 as MessageType }],
    ['negative term', { term: -1 }],
    ['fractional index', { index: 1.5 }],
    ['from itself', { from: 'b' }],
    ['to someone else', { to: 'z' }],
    ['entries on a heartbeat', { type: MessageType.Heartbeat, entries: [{ term: 1, index: 1, type: EntryType.Normal, data: new Uint8Array() }] }],
    ['non-consecutive entries', { index: 3, entries: [{ term: 1, index: 5, type: EntryType.Normal, data: new Uint8Array() }] }],
    ['entry term above message term', { term: 2, index: 3, logTerm: 1, entries: [{ term: 3, index: 4, type: EntryType.Normal, data: new Uint8Array() }] }],
    ['entry without a buffer', { index: 3, entries: [{ term: 1, index: 4, type: EntryType.Normal, data: 'x' as unknown as Uint8Array }] }],
    ['snapshot chunk without snapshot', { type: MessageType.Snap }],
  ];
  for (const [name, patch] of bad) {
    it(`rejects a message with ${name} and changes nothing`, () => {
      const net = new Net(['a', 'b', 'c']);
      net.elect('a');
      const b = net.node('b');
      const before = JSON.stringify({ hs: b.hardState(), last: b.log.lastIndex(), role: b.role });
      const m = { ...message({ type: MessageType.App, from: 'a', to: 'b', term: b.term }), ...patch } as Message;
      assert.throws(() => b.step(m), (e: unknown) => e instanceof RaftError && e.code === 'invalid-message' && e.message.length > 0);
      assert.equal(JSON.stringify({ hs: b.hardState(), last: b.log.lastIndex(), role: b.role }), before);
    });
  }

  it('an out-of-date message is dropped with a reason', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.elect('b');
    const c = net.node('c');
    const reason = c.step(message({ type: MessageType.App, from: 'a', to: 'c', term: 1, index: 3, logTerm: 1 }));
    assert.match(reason ?? '', /stale term/);
  });

  it('a node refuses to be driven again before advance()', () => {
    const net = new Net(['a', 'b', 'c']);
    const a = net.node('a');
    a.campaign();
    a.ready();
    assert.throws(() => a.tick(), /advance/);
  });
});
