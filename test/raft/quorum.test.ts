/** The quorum value a leader commits by (and confirms reads by): the quorum-th largest of the voters' values. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { quorum, quorumValue } from '../../raft/confchange.js';

describe('quorumValue', () => {
  it('is the highest value a majority has reached', () => {
    assert.equal(quorumValue([5, 9, 7]), 7, 'two of three have 7');
    assert.equal(quorumValue([9, 1, 1, 9, 9]), 9, 'three of five have 9');
    assert.equal(quorumValue([9, 1, 1, 9]), 1, 'two of four is not a majority');
    assert.equal(quorumValue([4]), 4);
    assert.equal(quorumValue([]), 0, 'no voters: nothing is reached');
  });

  it('agrees with sorting on any set of values', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(1_000_000), { maxLength: 9 }), (values) => {
        const sorted = [...values].sort((a, b) => b - a);
        const expected = sorted.length > 0 ? sorted[quorum(sorted.length) - 1] : 0;
        return quorumValue([...values]) === expected;
      }),
      { seed: Number(process.env.RAFTKV_SEED ?? 4242), numRuns: 500 },
    );
  });
});
