/**
 * The truncation rule the logger process and the whole-replica simulator share: nothing is
 * dropped until a majority of the voters asked, and then only to the smallest index among that
 * majority; a base the log holds that covers the cut is kept, else one is fetched, askers first.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TruncationAsks } from '../../logger/truncation.js';

const voters = ['a', 'b', 'c'];

describe('truncation asks', () => {
  it('one voter of three cannot truncate; the second ask cuts to the smaller of the two', () => {
    const t = new TruncationAsks();
    assert.deepEqual(t.ask('a', 90, voters, { first: 1, last: 200 }), { truncate: false, reason: '1 of 3 voters asked; a majority (2) must ask before anything is dropped' });
    assert.deepEqual(t.ask('b', 50, voters, { first: 1, last: 200 }), { truncate: true, upTo: 50, heldBase: false, baseFrom: ['a', 'b', 'c'] });
  });

  it('never past the log end, never below its start, and a held base that covers the cut is kept', () => {
    const t = new TruncationAsks(new Map([['a', 300]]));
    assert.deepEqual(t.ask('b', 250, voters, { first: 1, last: 120 }), { truncate: true, upTo: 120, heldBase: false, baseFrom: ['a', 'b', 'c'] });
    assert.deepEqual(t.ask('b', 250, voters, { first: 300, last: 400 }), { truncate: false, reason: 'already truncated past 250' });
    assert.deepEqual(t.ask('c', 260, voters, { first: 200, last: 400, base: { index: 280 } }), { truncate: true, upTo: 260, heldBase: true, baseFrom: [] });
  });

  it("an ask never lowers a voter's earlier one, and asks of former voters are forgotten", () => {
    const t = new TruncationAsks();
    t.ask('a', 100, voters, { first: 1, last: 500 });
    t.ask('a', 40, voters, { first: 1, last: 500 });
    assert.deepEqual(t.toJSON(), { a: 100 });
    t.ask('d', 100, ['b', 'c', 'd'], { first: 1, last: 500 });
    assert.deepEqual(t.toJSON(), { d: 100 });
  });
});
