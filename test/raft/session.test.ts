import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SessionTable } from '../../raft/index.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe('client sessions (dissertation §6.3)', () => {
  it('a retried command is not applied again and gets the original answer', () => {
    const t = new SessionTable();
    assert.equal(t.check('c1', 1, 0, 10).kind, 'new');
    t.record('c1', 1, enc('answer-1'), 10);
    const again = t.check('c1', 1, 0, 11);
    assert.equal(again.kind, 'duplicate');
    assert.equal(again.kind === 'duplicate' && dec(again.response), 'answer-1');
    assert.equal(t.check('c1', 2, 1, 12).kind, 'new');
  });

  it('answers the client acknowledged are forgotten; a retry of one is reported expired, not re-applied', () => {
    const t = new SessionTable();
    t.record('c1', 1, enc('a'), 1);
    t.record('c1', 2, enc('b'), 2);
    assert.equal(t.check('c1', 3, 2, 3).kind, 'new');
    assert.equal(t.check('c1', 1, 2, 4).kind, 'expired');
  });

  it('eviction is by least recent log index, so every replica evicts the same sessions', () => {
    const a = new SessionTable({ maxSessions: 2 });
    const b = new SessionTable({ maxSessions: 2 });
    for (const t of [a, b]) {
      t.record('x', 1, enc('1'), 1);
      t.record('y', 1, enc('1'), 2);
      t.check('x', 2, 1, 3);
      t.record('z', 1, enc('1'), 4);
    }
    assert.equal(a.size(), 2);
    assert.deepEqual(a.toJSON(), b.toJSON());
    assert.equal(a.check('y', 1, 0, 5).kind, 'new', 'y was evicted');
  });

  it('survives a snapshot round trip', () => {
    const t = new SessionTable();
    t.record('c1', 7, enc('seven'), 3);
    const back = SessionTable.fromJSON(JSON.parse(JSON.stringify(t.toJSON())));
    const r = back.check('c1', 7, 0, 4);
    assert.equal(r.kind === 'duplicate' && dec(r.response), 'seven');
  });
});
