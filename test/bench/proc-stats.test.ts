import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CpuTimeline, totalCpuSeconds } from '../../bench/proc-stats.js';

describe('CpuTimeline', () => {
  it('reads the CPU used between two moments from samples, interpolating between them', () => {
    const readings = [0, 1, 3, 3.5];
    const times = [1000, 1100, 1200, 1300];
    let i = 0;
    let j = 0;
    const t = new CpuTimeline([], 3_600_000, () => readings[i++], () => times[j++]);
    t.sample();
    t.sample();
    t.stop();
    assert.equal(t.between(1000, 1300), 3.5);
    assert.equal(t.between(1050, 1150), 1.5, 'half of 0..1 to half of 1..3');
    assert.equal(t.between(1100, 1100), 0);
    assert.equal(t.between(0, 1000), 0, 'nothing before the first sample');
    assert.equal(t.between(1250, 9999), 0.25, 'nothing after the last');
  });

  it('samples real processes from /proc', () => {
    const t = new CpuTimeline([process.pid], 3_600_000);
    const until = Date.now() + 50;
    while (Date.now() < until); // spend some CPU
    t.stop();
    assert.ok(t.between(0, Date.now() + 1000) >= 0);
    assert.ok(totalCpuSeconds([process.pid]) > 0);
  });
});
