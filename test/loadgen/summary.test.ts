import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import hdr from 'hdr-histogram-js';
import { LoadResult, mergeResults, newHistogram, poolRuns, summarize } from '../../loadgen/run.js';

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

/** A run's result with `latencies` (us) answered over `elapsedS` seconds: writes, and `reads` (us) besides. */
function run(latencies: number[], elapsedS: number, cpuS: number, perSecond: number[], reads: number[] = []): LoadResult {
  const histogramOf = (values: number[]) => {
    const h = newHistogram();
    for (const v of values) h.recordValue(v);
    return h;
  };
  const all = [...latencies, ...reads];
  const h = histogramOf(all);
  const kind = (values: number[]) => {
    const k = histogramOf(values);
    return { answered: k.totalCount, latencyUs: summarize(k), histogram: hdr.encodeIntoCompressedBase64(k) };
  };
  return {
    driver: 'protobuf', targets: ['127.0.0.1:1'], clients: 1, procs: 1, keys: 10, valueSize: 8, writeRatio: 1, thinkMs: 0,
    sent: all.length, answered: all.length, errors: 0, timeouts: 0, elapsedS,
    throughput: all.length / elapsedS, window: { from: 0, to: elapsedS * 1000 }, monoWindow: { from: 0, to: elapsedS * 1000 }, latencyUs: summarize(h), byKind: { read: kind(reads), write: kind(latencies) }, perSecond,
    cpu: { userS: cpuS, systemS: 0, percent: (cpuS / elapsedS) * 100 }, errorSamples: [], histogram: hdr.encodeIntoCompressedBase64(h),
  };
}

describe('pooling runs', () => {
  it('runs one after the other pool into one histogram over their seconds together', () => {
    // Two 10 s runs of 100 answers: the first all fast, the second with 4 slow ones. Alone, the
    // first's p99 is 0.1 ms and the second's 1.9 ms; pooled, 4 of 200 are slow: the p99 is 1.9
    // ms and the p98 0.1 ms. Throughput is over 20 s, not 10. (Values below 2,048 us are exact
    // in the histogram at 3 significant digits.)
    const a = run(Array(100).fill(100), 10, 1, Array(10).fill(10));
    const b = run([...Array(96).fill(100), ...Array(4).fill(1900)], 10, 3, Array(10).fill(10));
    const p = poolRuns([a, b]);
    assert.equal(p.answered, 200);
    assert.equal(p.elapsedS, 20);
    assert.equal(p.throughput, 10);
    assert.equal(p.latencyUs.p99, 1900);
    assert.equal(hdr.decodeFromCompressedBase64(p.histogram).getValueAtPercentile(98), 100);
    assert.equal(p.perSecond.length, 20);
    assert.equal(p.cpu.percent, 20, 'generator CPU over the pooled seconds: 4 s of 20');
    assert.equal(p.clients, 1, 'the same clients ran twice, not twice as many');
    // Side by side (mergeResults), the same two are two processes over the same 10 s.
    const m = mergeResults([a, b]);
    assert.equal(m.throughput, 20);
    assert.equal(m.clients, 2);
    assert.equal(m.perSecond.length, 10);
    assert.equal(m.latencyUs.p99, p.latencyUs.p99);
  });
});

describe('reads and writes apart', () => {
  it('pooled and merged results keep each kind\'s own histogram', () => {
    // Run a: 100 writes of 1,000 us and 100 reads of 200 us; run b: 97 writes of 1,000 us, 3 of
    // 1,900 us, no reads. Blended, the 99th percentile of a+b's 300 answers is 1,000 us; the
    // writes' own (3 of 200 slow) is 1,900 us, the reads' 200 us.
    const a = run(Array(100).fill(1000), 10, 1, Array(10).fill(20), Array(100).fill(200));
    const b = run([...Array(97).fill(1000), 1900, 1900, 1900], 10, 1, Array(10).fill(10));
    assert.equal(a.byKind.read.answered, 100);
    assert.equal(b.byKind.read.answered, 0);
    assert.equal(b.byKind.read.latencyUs.p99, 0, 'no reads: zeros, not NaN');
    for (const r of [poolRuns([a, b]), mergeResults([a, b])]) {
      assert.equal(r.latencyUs.p99, 1000);
      assert.equal(r.byKind.write.answered, 200);
      assert.equal(r.byKind.write.latencyUs.p99, 1900);
      assert.equal(r.byKind.read.answered, 100);
      assert.equal(r.byKind.read.latencyUs.p99, 200);
    }
  });
});
