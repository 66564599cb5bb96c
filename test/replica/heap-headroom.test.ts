import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { growingPercentFor } from '../../replica/heap-headroom.js';

const MB = 1 << 20;

describe('old-generation headroom', () => {
  it('a small live heap may grow by the headroom before its next full collection, at most 4 times over', () => {
    assert.equal(growingPercentFor(32 * MB, 64 * MB), 200, '32 MB live: limit 96 MB');
    assert.equal(growingPercentFor(16 * MB, 64 * MB), 300, "capped at V8's own ceiling, a factor of 4");
    assert.equal(growingPercentFor(0, 64 * MB), 300);
  });

  it("a large heap is left to V8's own heuristics", () => {
    assert.equal(growingPercentFor(100 * MB, 64 * MB), 64);
    assert.equal(growingPercentFor(200 * MB, 64 * MB), 0, 'the headroom is under half the heap: nothing to add');
  });
});
