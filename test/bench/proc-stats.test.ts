import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CpuTimeline, totalCpuSeconds } from '../../bench/proc-stats.js';
import { monotonicMs } from '../../loadgen/run.js';

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
    // A window the samples do not cover is refused: a 10 s window reported on a clock 10 s
    // apart from the samples' read as 0.06 s of CPU (2026-12-07 12:55, 50/50 at 8 clients).
    assert.throws(() => t.between(0, 1000), /not covered by the samples/);
    assert.throws(() => t.between(1250, 9999), /not covered by the samples/);
  });

  it("samples on CLOCK_MONOTONIC, the clock a generator's monoWindow is reported on in any process", () => {
    const t = new CpuTimeline([process.pid], 3_600_000);
    // Read after the first sample and before the last: inside them only if they share its clock.
    const from = monotonicMs();
    const to = monotonicMs();
    t.stop();
    assert.equal(t.between(from, to) >= 0, true, 'a window inside the samples');
    assert.throws(() => t.between(Date.now() - 1000, Date.now()), /not covered by the samples/, 'epoch ms are not its clock');
  });

  it('samples real processes from /proc', () => {
    const t = new CpuTimeline([process.pid], 3_600_000);
    const until = Date.now() + 50;
    while (Date.now() < until); // spend some CPU
    t.stop();
    const mono = monotonicMs();
    assert.throws(() => t.between(0, mono + 1000));
    assert.ok(totalCpuSeconds([process.pid]) > 0);
  });
});
