/**
 * Closed-loop load: each client sends its next request only after the previous answer (plus
 * optional think time). Latencies go into an HDR histogram (microseconds); every request is
 * counted as answered, failed (an error answer or a broken connection) or timed out, so
 * sent = answered + errors + timeouts always holds.
 */
import hdr from 'hdr-histogram-js';
import { Prng } from '../util/prng.js';
import { DriverName, Route, TimeoutError, makeDriver } from './drivers.js';

export interface LoadOptions {
  driver: DriverName;
  /** Where the protobuf driver sends writes (see Route; default leader). */
  route?: Route;
  targets: string[];
  clients: number;
  /** Stop after this many seconds (after the warm-up)... */
  durationS?: number;
  /**
   * Run the load this long first without measuring it (with a duration only): servers and
   * generator that compile their hot code as they run (V8) reach full speed in a few seconds
   * at a few hundred requests per second.
   */
  warmupS?: number;
  /** ...or after this many requests in total. */
  requests?: number;
  keys: number;
  valueSize: number;
  /** Fraction of requests that are writes (0..1). */
  writeRatio: number;
  thinkMs: number;
  timeoutMs: number;
  seed: number;
  /** Called once per second with that second's completed requests. */
  onSecond?: (second: number, answered: number, p99us: number) => void;
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface LoadResult {
  driver: DriverName;
  targets: string[];
  clients: number;
  procs: number;
  keys: number;
  valueSize: number;
  writeRatio: number;
  thinkMs: number;
  sent: number;
  answered: number;
  errors: number;
  timeouts: number;
  elapsedS: number;
  /** Answered requests per second over the measured run. */
  throughput: number;
  /** When the measured run began and ended (epoch ms): after the warm-up, if any. */
  window: { from: number; to: number };
  /**
   * The same window in ms on CLOCK_MONOTONIC (process.hrtime's clock), which every process on
   * the machine shares and no wall-clock step moves: for reading other processes' samples.
   */
  monoWindow: { from: number; to: number };
  /** Microseconds. */
  latencyUs: LatencySummary;
  /**
   * Reads and writes apart (a mixed workload's p99 is otherwise one blend of two paths:
   * a linearizable read's heartbeat round and a write's fdatasyncs).
   */
  byKind: Record<OpKind, KindLatency>;
  perSecond: number[];
  /** Load generator CPU time; percent is of one core. */
  cpu: { userS: number; systemS: number; percent: number };
  errorSamples: string[];
  /** HDR histogram, compressed base64, for merging results of several processes. */
  histogram: string;
}

export type OpKind = 'read' | 'write';

export interface KindLatency {
  answered: number;
  /** Microseconds (all 0 when none of this kind was answered). */
  latencyUs: LatencySummary;
  /** HDR histogram, compressed base64, as `LoadResult.histogram`. */
  histogram: string;
}

export function newHistogram() {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

/**
 * The latency at percentile `p`. The histogram answers the top of the bucket it falls in (10,007
 * for a 10,001 us request, at 3 significant digits), which can be above the slowest request
 * actually seen: no percentile is reported above that.
 */
export function percentile(h: ReturnType<typeof newHistogram>, p: number): number {
  return Math.min(h.getValueAtPercentile(p), h.maxValue);
}

export function summarize(h: ReturnType<typeof newHistogram>): LatencySummary {
  return {
    p50: percentile(h, 50),
    p90: percentile(h, 90),
    p99: percentile(h, 99),
    p999: percentile(h, 99.9),
    max: h.maxValue,
    mean: Math.round(h.mean),
  };
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  if (!o.durationS && !o.requests) throw new Error('give a duration or a request count');
  if (o.clients < 1) throw new Error('need at least one client');
  const warmupS = o.warmupS ?? 0;
  if (warmupS > 0 && !o.durationS) throw new Error('a warm-up needs a duration, not a request count');
  const hist = newHistogram();
  const kindHist: Record<OpKind, ReturnType<typeof newHistogram>> = { read: newHistogram(), write: newHistogram() };
  const rng = new Prng(o.seed);
  const value = new Uint8Array(o.valueSize).map((_, i) => 97 + (i % 26));
  const counts = { sent: 0, answered: 0, errors: 0, timeouts: 0 };
  const perSecond: number[] = [];
  const errorSamples = new Set<string>();
  const drivers = await Promise.all(Array.from({ length: o.clients }, (_, i) => makeDriver(o.driver, o.targets, i, o.timeoutMs, o.route)));
  let cpu0 = process.cpuUsage();
  // Measured from `start`; while warming up, `start` is in the future and nothing is counted.
  let start = performance.now() + warmupS * 1000;
  const deadline = o.durationS ? start + o.durationS * 1000 : Infinity;
  // A timer that fires late starts the window (and the CPU count) then. One may also fire
  // early (libuv times it by the loop's cached clock, which lags performance.now()), and the
  // window never opens before the warm-up is over.
  const warmupEnds = start;
  const warm = warmupS > 0 ? setTimeout(() => {
    cpu0 = process.cpuUsage();
    start = Math.max(performance.now(), warmupEnds);
  }, warmupS * 1000) : undefined;
  let secondHist = newHistogram();
  let lastSecond = 0;
  const ticker = setInterval(() => {
    if (performance.now() < start) return;
    const s = Math.floor((performance.now() - start) / 1000);
    while (lastSecond < s) {
      o.onSecond?.(lastSecond + 1, perSecond[lastSecond] ?? 0, percentile(secondHist, 99));
      secondHist = newHistogram();
      lastSecond++;
    }
  }, 200);
  const more = () => performance.now() < deadline && (o.requests === undefined || counts.sent < o.requests);

  await Promise.all(
    drivers.map(async (d) => {
      while (more()) {
        // A request counts (as sent, and as answered, failed or timed out) if it was sent
        // after the warm-up.
        const counted = performance.now() >= start;
        if (counted) counts.sent++;
        const key = String(rng.int(0, o.keys - 1));
        const write = rng.float() < o.writeRatio;
        const t0 = performance.now();
        try {
          if (write) await d.set(key, value);
          else await d.get(key);
          if (counted) {
            const us = Math.max(1, Math.round((performance.now() - t0) * 1000));
            hist.recordValue(us);
            kindHist[write ? 'write' : 'read'].recordValue(us);
            secondHist.recordValue(us);
            counts.answered++;
            const sec = Math.floor((performance.now() - start) / 1000);
            perSecond[sec] = (perSecond[sec] ?? 0) + 1;
          }
        } catch (e) {
          if (counted) {
            if (e instanceof TimeoutError || /within \d+ ms|timed? ?out/i.test((e as Error).message)) counts.timeouts++;
            else counts.errors++;
            if (errorSamples.size < 5) errorSamples.add((e as Error).message.slice(0, 200));
          }
          // Back off a little after a failure so a dead target is not hammered.
          await new Promise((r) => setTimeout(r, 20));
        }
        if (o.thinkMs > 0) await new Promise((r) => setTimeout(r, o.thinkMs));
      }
    }),
  );
  const end = performance.now();
  const monoOffset = monotonicMs() - performance.now();
  const elapsedS = (end - start) / 1000;
  clearInterval(ticker);
  clearTimeout(warm);
  const cpu = process.cpuUsage(cpu0);
  await Promise.all(drivers.map((d) => d.close()));
  const fullSeconds = Math.ceil(elapsedS);
  for (let i = 0; i < fullSeconds; i++) perSecond[i] ??= 0;
  return {
    driver: o.driver,
    targets: o.targets,
    clients: o.clients,
    procs: 1,
    keys: o.keys,
    valueSize: o.valueSize,
    writeRatio: o.writeRatio,
    thinkMs: o.thinkMs,
    ...counts,
    elapsedS,
    throughput: counts.answered / elapsedS,
    window: { from: performance.timeOrigin + start, to: performance.timeOrigin + end },
    // performance.now() runs on CLOCK_MONOTONIC too, from its own origin.
    monoWindow: { from: start + monoOffset, to: end + monoOffset },
    latencyUs: summarize(hist),
    byKind: { read: kindLatency(kindHist.read), write: kindLatency(kindHist.write) },
    perSecond: perSecond.slice(0, fullSeconds),
    cpu: { userS: cpu.user / 1e6, systemS: cpu.system / 1e6, percent: ((cpu.user + cpu.system) / 1e6 / elapsedS) * 100 },
    errorSamples: [...errorSamples],
    histogram: hdr.encodeIntoCompressedBase64(hist),
  };
}

/** Combine the results of several generator processes run side by side. */
export function mergeResults(results: LoadResult[]): LoadResult {
  if (results.length === 1) return results[0];
  const perSecond: number[] = [];
  for (const r of results) r.perSecond.forEach((n, i) => (perSecond[i] = (perSecond[i] ?? 0) + n));
  return combine(results, {
    clients: sumOf(results, (r) => r.clients),
    procs: sumOf(results, (r) => r.procs),
    elapsedS: Math.max(...results.map((r) => r.elapsedS)),
    perSecond,
    cpuPercent: sumOf(results, (r) => r.cpu.percent),
  });
}

/**
 * Pool the results of runs made one after the other with the same settings (a benchmark point
 * measured several times): every request of every run in one histogram, throughput over the
 * runs' measured seconds together, their per-second counts one after the other.
 */
export function poolRuns(results: LoadResult[]): LoadResult {
  if (results.length === 1) return results[0];
  const elapsedS = sumOf(results, (r) => r.elapsedS);
  const cpuS = sumOf(results, (r) => r.cpu.userS + r.cpu.systemS);
  return combine(results, {
    clients: results[0].clients,
    procs: results[0].procs,
    elapsedS,
    perSecond: results.flatMap((r) => r.perSecond),
    cpuPercent: (cpuS / elapsedS) * 100,
  });
}

/** What side-by-side and one-after-the-other results share: counts summed, histograms merged. */
function combine(results: LoadResult[], o: { clients: number; procs: number; elapsedS: number; perSecond: number[]; cpuPercent: number }): LoadResult {
  const hist = mergeHistograms(results.map((r) => r.histogram));
  const sum = (f: (r: LoadResult) => number) => sumOf(results, f);
  const answered = sum((r) => r.answered);
  const mergedKind = (k: OpKind) => kindLatency(mergeHistograms(results.map((r) => r.byKind[k].histogram)));
  return {
    ...results[0],
    clients: o.clients,
    procs: o.procs,
    sent: sum((r) => r.sent),
    answered,
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    elapsedS: o.elapsedS,
    throughput: answered / o.elapsedS,
    window: spanOf(results.map((r) => r.window)),
    monoWindow: spanOf(results.map((r) => r.monoWindow)),
    latencyUs: summarize(hist),
    byKind: { read: mergedKind('read'), write: mergedKind('write') },
    perSecond: o.perSecond,
    cpu: { userS: sum((r) => r.cpu.userS), systemS: sum((r) => r.cpu.systemS), percent: o.cpuPercent },
    errorSamples: [...new Set(results.flatMap((r) => r.errorSamples))].slice(0, 5),
    histogram: hdr.encodeIntoCompressedBase64(hist),
  };
}

function mergeHistograms(encoded: string[]): ReturnType<typeof newHistogram> {
  const h = newHistogram();
  for (const e of encoded) h.add(hdr.decodeFromCompressedBase64(e));
  return h;
}

function kindLatency(h: ReturnType<typeof newHistogram>): KindLatency {
  return { answered: h.totalCount, latencyUs: summarize(h), histogram: hdr.encodeIntoCompressedBase64(h) };
}

function sumOf(results: LoadResult[], f: (r: LoadResult) => number): number {
  return results.reduce((a, r) => a + f(r), 0);
}

/** From the earliest start to the latest end. */
function spanOf(windows: { from: number; to: number }[]): { from: number; to: number } {
  return { from: Math.min(...windows.map((w) => w.from)), to: Math.max(...windows.map((w) => w.to)) };
}

/** Milliseconds on CLOCK_MONOTONIC (process.hrtime's clock: the same in every process; monoWindow's). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
