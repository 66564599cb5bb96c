import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newHistogram, summarize } from '../../loadgen/run.js';

describe('latency summary', () => {
  it('a percentile is never above the slowest request (the histogram reports its bucket top)', () => {
    // 3 of 200 requests took 10,001 us: the 99th percentile is one of them. With 3 significant
    // digits that value's bucket is 10,000-10,007, and the histogram answers its top, 10,007.
    const h = newHistogram();
    for (let i = 0; i < 197; i++) h.recordValue(1000);
    for (let i = 0; i < 3; i++) h.recordValue(10_001);
    const s = summarize(h);
    assert.equal(s.max, 10_001);
    assert.equal(s.p99, 10_001);
    assert.ok(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max);
  });
});
