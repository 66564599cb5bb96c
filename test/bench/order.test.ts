import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { measuredFirst, pairedMedianRatio, runOrders } from '../../bench/order.js';

describe('which system a bench point measures first', () => {
  it('each system goes first at one of the two workloads of every client count, and alternates along each workload', () => {
    const counts = [1, 8, 32, 128];
    const grid = [0, 1].map((w) => counts.map((_, c) => measuredFirst(w, c)));
    assert.deepEqual(grid, [
      [0, 1, 0, 1],
      [1, 0, 1, 0],
    ]);
    for (let c = 0; c < counts.length; c++) assert.notEqual(grid[0][c], grid[1][c], `client count ${counts[c]}: both workloads had the same system first`);
  });

  it('a point measured several times alternates which system goes first, starting with its own first', () => {
    assert.deepEqual(runOrders(0, 1), [[0, 1]]);
    assert.deepEqual(runOrders(1, 3), [[1, 0], [0, 1], [1, 0]]);
    const firsts = runOrders(0, 4).map((o) => o[0]);
    assert.equal(firsts.filter((f) => f === 0).length, 2, 'each system first in half of an even number of runs');
  });

  it("paired runs give the median of their ratios: a slow stretch on one run of a pair does not decide it", () => {
    // Pair 3: the machine slowed down during one system's run only.
    const { median, ratios } = pairedMedianRatio([2.0, 1.8, 5.1, 2.1, 1.9], [4.4, 4.0, 4.2, 4.5, 3.9]);
    assert.deepEqual(ratios.map((r) => r.toFixed(2)), ['0.45', '0.45', '1.21', '0.47', '0.49']);
    assert.equal(median.toFixed(2), '0.47');
    assert.equal(pairedMedianRatio([1, 3], [2, 2]).median, 1, 'an even count: the mean of the middle two');
    assert.throws(() => pairedMedianRatio([1, 2], [1]), /paired runs needed/);
    assert.throws(() => pairedMedianRatio([], []), /paired runs needed/);
  });
});
