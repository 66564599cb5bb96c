/**
 * raftkv against etcd on this machine, in one session (`npm run bench` runs it last; alone:
 * `npm run bench:etcd`). Every configuration gets fresh 3-node clusters of both systems, one
 * after the other (which goes first alternates over workloads and client counts, see
 * measuredFirst; the disk is flushed with sync(1) after each: a run second in line was
 * measurably slower at 8 clients, on the first one's leftovers), measured by the same
 * closed-loop generator (`raftkv loadgen`, in child processes so its CPU is not the
 * servers'), each system with its cheapest driver (raftkv: protobuf; etcd: gRPC), same
 * clients, keys, value size and write ratio. Each system's client does what it does for its
 * users: raftkv's sends writes to the leader a follower names (leader discovery, as
 * RaftKvClient does), etcd's clientv3 sends everything to its endpoint, which passes writes
 * on. `--route member` measures raftkv's followers passing writes on too.
 *
 * Parts (--skip any of them):
 *   matrix    100% writes and 50/50 linearizable reads and writes at 1, 8, 32, 128 clients:
 *             throughput, p50/p99/p99.9/max, server CPU per operation (from /proc), generator CPU
 *   failover  kill -9 of the leader, time to the first acknowledged write, over --kills kills
 *   memory    raftkv with --fsync memory (the seed's kvstore) at 32 clients
 *   rss       a replica's resident memory with --rss-keys preloaded values
 * Writes DIR/bench.json (everything) and DIR/bench.svg (throughput and p99 against clients).
 * The summary lines come last: `ratio writes c=32: R` (raftkv ops/s over etcd's), `p99 ratio
 * writes c=32: R` (raftkv p99 over etcd's), `cpu ratio writes c=32: R` (raftkv operations per
 * server-core-second over etcd's), and the single figures of the other parts. One client's
 * points are measured --one-client-runs times per system (default 5), in pairs one right after
 * the other; their ratios are the median of the pairs' ratios (each pair's and the pooled ratio
 * are printed above the summary and kept in the JSON's pairedRatios).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { LoadResult, poolRuns } from '../loadgen/run.js';
import { table } from '../loadgen/report.js';
import { Connection } from '../replica/client.js';
import { Op, Status } from '../replica/proto.js';
import { lineChart } from '../experiment/chart.js';
import { VS_ETCD_FLAGS, VS_ETCD_USAGE, VsEtcdFlags, benchFlags } from './flags.js';
import { measuredFirst, pairedMedianRatio, runOrders } from './order.js';
import { runLoadgen } from './run-load.js';
import { CpuTimeline, rssBytes } from './proc-stats.js';
import { ELECTION_TIMEOUT_MS, RunningSystem, ensureEtcd, followersFirst, startEtcd, startRaftkv } from './systems.js';

const values = benchFlags<VsEtcdFlags>('bench:etcd', VS_ETCD_USAGE, VS_ETCD_FLAGS);
const quick = values.quick!;
const clientCounts = (values.clients ?? (quick ? '1,32' : '1,8,32,128')).split(',').map(Number);
const seconds = Number(values.seconds ?? (quick ? 5 : 10));
// Unmeasured load before each point, the same for both systems: raftkv's replicas and
// generator compile their hot code as they run (V8) and at one client take about 5 s to reach
// full speed; etcd's code is compiled ahead of time.
const warmup = Number(values.warmup ?? (quick ? 2 : 5));
// One client's tail takes longer to settle than its throughput: V8's optimizing compiler is
// still busy 5-15 s into a replica's life (10-70 ms of helper-thread CPU per second per
// replica at 5-10 s, next to nothing after 15 s), and its jobs hold the replicas' main threads
// off the CPU for milliseconds at a time (perf sched: a woken main thread waiting 1-4.5 ms behind
// one while the other CPU idled). After a 30 s warm-up raftkv's one-client p99 was 1.42-1.99 ms
// whatever was done about those threads; with 5 s, 2-3 ms. Both systems get the same warm-up.
const oneClientWarmup = Number(values['one-client-warmup'] ?? (quick ? warmup : 15));
// One client makes the fewest requests of any point and is the most sensitive to the VM's
// scheduling, which changes from minute to minute: its points are measured several times per
// system on fresh clusters, in pairs (alternating which goes first), so that the two systems'
// figures come from the same stretch of minutes rather than from one run each; the runs are
// pooled for the table and the ratios are the median of the pairs' (pairedMedianRatio).
const oneClientRuns = Number(values['one-client-runs'] ?? (quick ? 1 : 5));
const valueSize = Number(values['value-size']);
const keys = Number(values.keys);
const kills = Number(values.kills ?? (quick ? 5 : 20));
const rssKeys = Number(values['rss-keys'] ?? (quick ? 100_000 : 1_000_000));
const skip = new Set(values.skip!.split(',').filter(Boolean));
const route = values.route!;
if (route !== 'leader' && route !== 'member') {
  console.error(`--route: '${route}' is not leader or member\n${VS_ETCD_USAGE}`);
  process.exit(2);
}
for (const part of skip) {
  if (!['matrix', 'failover', 'memory', 'rss'].includes(part)) {
    console.error(`--skip: no part '${part}' (parts: matrix, failover, memory, rss)\n${VS_ETCD_USAGE}`);
    process.exit(2);
  }
}
for (const [name, v] of Object.entries({ warmup, 'one-client-warmup': oneClientWarmup })) {
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${name} must be a whole number of seconds\n${VS_ETCD_USAGE}`);
    process.exit(2);
  }
}
for (const [name, v] of Object.entries({ seconds, 'value-size': valueSize, keys, kills, 'rss-keys': rssKeys, 'one-client-runs': oneClientRuns })) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`--${name} must be a positive integer\n${VS_ETCD_USAGE}`);
    process.exit(2);
  }
}
if (clientCounts.some((c) => !Number.isInteger(c) || c < 1)) {
  console.error(`--clients must list positive integers\n${VS_ETCD_USAGE}`);
  process.exit(2);
}

const WORKLOADS = [
  { name: 'writes', writeRatio: 1 },
  { name: 'mixed', writeRatio: 0.5 },
] as const;
type Workload = (typeof WORKLOADS)[number]['name'];

interface Point {
  system: 'raftkv' | 'etcd';
  workload: Workload;
  clients: number;
  throughput: number;
  latencyMs: { p50: number; p99: number; p999: number; max: number };
  /** A mixed workload's p99 of its reads and of its writes apart. */
  p99ByKindMs?: { read: number; write: number };
  /** Lowest and highest per-second throughput within the run (stalls show here). */
  perSecond: { min: number; max: number };
  errors: number;
  timeouts: number;
  /** Server CPU: all members together, and operations per server-core-second. */
  serverCpuSeconds: number;
  opsPerServerCoreSecond: number;
  /** Generator CPU (all its processes), in percent of one core and per operation. */
  generatorCpuPercent: number;
  generatorCpuUsPerOp: number;
  serverRssMB: number;
  /** 1: measured first at its point, 2: second (the order alternates from point to point); of the first run if several. */
  order: 1 | 2;
  /** Each run's own figures, when the point was measured more than once (--one-client-runs). */
  runs?: { throughput: number; p99: number; opsPerServerCoreSecond: number; order: 1 | 2 }[];
}

/** One measured run of one system at one point: the generator's result and the servers' CPU and memory. */
interface Run {
  system: 'raftkv' | 'etcd';
  result: LoadResult;
  serverCpuSeconds: number;
  serverRssMB: number;
  order: 1 | 2;
}

async function measureOnce(start: () => Promise<RunningSystem>, workload: (typeof WORKLOADS)[number], clients: number, order: 1 | 2 = 1): Promise<Run> {
  const s = await start();
  try {
    const pids = s.pids();
    const targets = await followersFirst(s);
    // The servers' CPU over the generator's measured window (after its warm-up), from samples.
    const cpu = new CpuTimeline(pids);
    let result: LoadResult;
    try {
      result = await runLoadgen(['--driver', s.driver, ...(s.driver === 'protobuf' ? ['--route', route] : []), '--targets', targets.join(','), '--clients', String(clients), '--procs', String(Math.min(2, clients)),
        '--duration', String(seconds), '--warmup', String(clients === 1 ? oneClientWarmup : warmup), '--keys', String(keys), '--value-size', String(valueSize), '--write-ratio', String(workload.writeRatio), '--timeout', '10000']);
    } finally {
      cpu.stop();
    }
    return { system: s.name, result, serverCpuSeconds: cpu.between(result.monoWindow.from, result.monoWindow.to), serverRssMB: Math.round(Math.max(...pids.map(rssBytes)) / 1e6), order };
  } finally {
    await stopAndFlush(s);
  }
}

/** Operations per server-core-second (a CPU time of nothing counted as 10 ms). */
function opsPerCoreSecond(answered: number, cpuSeconds: number): number {
  return Math.round(answered / Math.max(0.01, cpuSeconds));
}

/** A point from one or more runs of one system, pooled (poolRuns): every request of every run counts once. */
function toPoint(runs: Run[], workload: Workload, clients: number): { point: Point; result: LoadResult } {
  const r = poolRuns(runs.map((x) => x.result));
  const kinds = kindP99Ms(r);
  const serverCpuSeconds = runs.reduce((a, x) => a + x.serverCpuSeconds, 0);
  // Whole seconds only: a run's last, partial second would look like a stall.
  const full = runs.flatMap((x) => x.result.perSecond.slice(0, Math.floor(x.result.elapsedS)));
  const point: Point = {
    system: runs[0].system,
    workload,
    clients,
    throughput: Math.round(r.throughput),
    latencyMs: { p50: ms(r.latencyUs.p50), p99: ms(r.latencyUs.p99), p999: ms(r.latencyUs.p999), max: ms(r.latencyUs.max) },
    ...(kinds ? { p99ByKindMs: kinds } : {}),
    perSecond: { min: Math.min(...full), max: Math.max(...full) },
    errors: r.errors,
    timeouts: r.timeouts,
    serverCpuSeconds: Number(serverCpuSeconds.toFixed(2)),
    opsPerServerCoreSecond: opsPerCoreSecond(r.answered, serverCpuSeconds),
    generatorCpuPercent: Math.round(r.cpu.percent),
    generatorCpuUsPerOp: Math.round(((r.cpu.userS + r.cpu.systemS) * 1e6) / Math.max(1, r.answered)),
    serverRssMB: Math.max(...runs.map((x) => x.serverRssMB)),
    order: runs[0].order,
    ...(runs.length > 1
      ? { runs: runs.map((x) => ({ throughput: Math.round(x.result.throughput), p99: ms(x.result.latencyUs.p99), opsPerServerCoreSecond: opsPerCoreSecond(x.result.answered, x.serverCpuSeconds), order: x.order })) }
      : {}),
  };
  return { point, result: r };
}

/** Microseconds as milliseconds to two decimals, as the report gives them. */
function ms(us: number): number {
  return Number((us / 1000).toFixed(2));
}

/** A mixed run's p99 of its reads and of its writes (ms); undefined for a run of one kind. */
function kindP99Ms(r: LoadResult): { read: number; write: number } | undefined {
  const { read, write } = r.byKind;
  if (read.answered === 0 || write.answered === 0) return undefined;
  return { read: ms(read.latencyUs.p99), write: ms(write.latencyUs.p99) };
}

/** ` (reads R, writes W)` for a mixed run's printed line; '' otherwise. */
function kindsNote(r: LoadResult): string {
  const k = kindP99Ms(r);
  return k ? ` (reads ${k.read.toFixed(2)}, writes ${k.write.toFixed(2)})` : '';
}

async function measure(start: () => Promise<RunningSystem>, workload: (typeof WORKLOADS)[number], clients: number): Promise<{ point: Point; result: LoadResult }> {
  return toPoint([await measureOnce(start, workload, clients)], workload.name, clients);
}

/** Stop a system, then flush the disk: the next measurement inherits no dirty pages of this one. */
async function stopAndFlush(s: RunningSystem): Promise<void> {
  await s.stop();
  spawnSync('sync');
}

/** One write through any of `targets` (no session: one log entry), retried until acknowledged. */
async function firstAcknowledgedWrite(targets: string[], key: string, deadlineMs: number): Promise<number> {
  const t0 = performance.now();
  let done = false;
  const attempt = async (target: string) => {
    while (!done && performance.now() - t0 < deadlineMs) {
      const conn = new Connection(target, 100);
      try {
        const r = await conn.request({ op: Op.SET, key, value: Buffer.from('x') });
        if (r.status === Status.OK) {
          done = true;
          return;
        }
      } catch {
        // not yet: no leader, or a connection to a dead one
      } finally {
        conn.close();
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  await Promise.all(targets.map(attempt));
  if (!done) throw new Error(`no write was acknowledged within ${deadlineMs} ms`);
  return performance.now() - t0;
}

async function failover(): Promise<{ kills: number; electionTimeoutMs: number; ms: number[]; p50: number; p99: number; max: number }> {
  const s = await startRaftkv({ prefix: 'bench-failover' });
  const { cluster: c, ids } = s;
  const times: number[] = [];
  try {
    for (let i = 0; i < kills; i++) {
      const leader = await c.waitLeader(ids, 30_000);
      await firstAcknowledgedWrite([c.clientAddr(leader)], `warm-${i}`, 10_000);
      c.kill9(leader);
      const t = await firstAcknowledgedWrite(ids.filter((id) => id !== leader).map((id) => c.clientAddr(id)), `failover-${i}`, 30_000);
      times.push(Math.round(t));
      c.start(leader, ['--peers', c.peersFlag(ids)]);
      await c.waitConverged(ids, 30_000);
      process.stdout.write(`\r  failover ${i + 1}/${kills}: ${Math.round(t)} ms   `);
    }
    process.stdout.write('\n');
  } finally {
    await stopAndFlush(s);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
  return { kills, electionTimeoutMs: ELECTION_TIMEOUT_MS, ms: times, p50: pct(50), p99: pct(99), max: sorted[sorted.length - 1] };
}

/** Write keys 0..n-1 once each with `parallel` connections; returns the seconds it took. */
async function preload(targets: string[], n: number, parallel: number): Promise<number> {
  const value = Buffer.alloc(valueSize, 'v');
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, async (_, i) => {
      const conn = new Connection(targets[i % targets.length], 30_000);
      try {
        for (let k = next++; k < n; k = next++) {
          const r = await conn.request({ op: Op.SET, key: String(k), value });
          if (r.status !== Status.OK) throw new Error(`preload of key ${k}: ${r.error || Status[r.status]}`);
          if (k % 10_000 === 0) process.stdout.write(`\r  preloading ${k}/${n}   `);
        }
      } finally {
        conn.close();
      }
    }),
  );
  process.stdout.write('\n');
  return (performance.now() - t0) / 1000;
}

async function rss(): Promise<{ keys: number; valueSize: number; rssMB: number[]; preloadSeconds: number }> {
  const s = await startRaftkv({ prefix: 'bench-rss' });
  try {
    // Writes go to the leader directly: followers would forward them, costing CPU, not memory.
    const leader = await s.cluster.waitLeader(s.ids, 30_000);
    const preloadSeconds = await preload([s.cluster.clientAddr(leader)], rssKeys, 128);
    await s.cluster.waitConverged(s.ids, 120_000);
    return { keys: rssKeys, valueSize, rssMB: s.pids().map((p) => Math.round(rssBytes(p) / 1e6)), preloadSeconds: Number(preloadSeconds.toFixed(1)) };
  } finally {
    await stopAndFlush(s);
  }
}

const lines: string[] = [];
const report: Record<string, unknown> = {
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, kernel: os.release() },
  params: { clients: clientCounts, seconds, warmup, oneClientWarmup, oneClientRuns, valueSize, keys, quick, raftkv: 'fsync batch, 3 nodes', etcd: 'Debian etcd 3.4 defaults, 3 members', electionTimeoutMs: ELECTION_TIMEOUT_MS },
};
const outDir = resolve(values.out!);

if (!skip.has('matrix')) {
  if (!ensureEtcd()) {
    console.error('the comparison needs etcd (apt-get install etcd-server) and it could not be installed; --skip matrix runs the rest');
    process.exit(2);
  }
  const points: Point[] = [];
  const results: LoadResult[] = [];
  for (const [wi, w] of WORKLOADS.entries()) {
    for (const [ci, clients] of clientCounts.entries()) {
      const starts = [() => startRaftkv(), startEtcd];
      const runs: Run[][] = [[], []];
      const orders = runOrders(measuredFirst(wi, ci), clients === 1 ? oneClientRuns : 1);
      for (const [k, order] of orders.entries()) {
        for (const [place, i] of order.entries()) {
          const run = await measureOnce(starts[i], w, clients, place === 0 ? 1 : 2);
          runs[i].push(run);
          if (orders.length > 1) console.log(`  ${run.system.padEnd(6)} ${w.name.padEnd(6)} c=${clients} run ${k + 1}/${orders.length}: ${Math.round(run.result.throughput)} ops/s  p99 ${ms(run.result.latencyUs.p99).toFixed(2)} ms${kindsNote(run.result)}`);
        }
      }
      for (const { point, result } of runs.map((r) => toPoint(r, w.name, clients))) {
        points.push(point);
        results.push(result);
        console.log(`${point.system.padEnd(6)} ${w.name.padEnd(6)} c=${String(clients).padEnd(3)} ${String(point.throughput).padStart(6)} ops/s  p99 ${point.latencyMs.p99} ms${kindsNote(result)}  p99.9 ${point.latencyMs.p999} ms  ` +
          `server ${point.opsPerServerCoreSecond} ops/core-s  generator ${point.generatorCpuPercent}% (${point.generatorCpuUsPerOp} us/op)  per-second ${point.perSecond.min}..${point.perSecond.max}`);
      }
    }
  }
  report.points = points;
  console.log(`\n3 nodes each on this machine (${os.cpus().length} cores); raftkv fsync batch (every acknowledged write on disk, like etcd), writes routed to ${route === 'leader' ? 'the leader (leader discovery)' : 'each client\'s member'}; ${valueSize} B values, ${keys} keys, ${seconds} s per point`);
  console.log(table(results));
  // A point measured several times (one client) gives the median of its paired runs' ratios
  // (pairedMedianRatio), the pooled ratio and each pair's printed beside it; others the ratio
  // of their one run.
  const paired: Record<string, { median: number; pairs: number[]; pooled: number }> = {};
  type RunFigures = NonNullable<Point['runs']>[number];
  const ratio = (label: string, f: (p: Point) => number, perRun: (r: RunFigures) => number) => {
    for (const w of WORKLOADS) {
      for (const clients of clientCounts) {
        const [ours, theirs] = (['raftkv', 'etcd'] as const).map((system) => points.find((p) => p.system === system && p.workload === w.name && p.clients === clients)!);
        const name = `${label} ${w.name} c=${clients}`;
        const pooled = f(ours) / f(theirs);
        if (ours.runs && theirs.runs) {
          const { median, ratios } = pairedMedianRatio(ours.runs.map(perRun), theirs.runs.map(perRun));
          paired[name] = { median: Number(median.toFixed(3)), pairs: ratios.map((r) => Number(r.toFixed(3))), pooled: Number(pooled.toFixed(3)) };
          console.log(`  ${name}: median ${median.toFixed(2)} of the pairs ${ratios.map((r) => r.toFixed(2)).join(' ')} (pooled ${pooled.toFixed(2)})`);
          lines.push(`${name}: ${median.toFixed(2)}`);
        } else lines.push(`${name}: ${pooled.toFixed(2)}`);
      }
    }
  };
  ratio('ratio', (p) => p.throughput, (r) => r.throughput); // at least 3 at 32 and 128 clients, 1.5 at 1 (issue 16)
  ratio('p99 ratio', (p) => p.latencyMs.p99, (r) => r.p99); // at most 0.5 everywhere
  ratio('cpu ratio', (p) => p.opsPerServerCoreSecond, (r) => r.opsPerServerCoreSecond); // at least 2
  report.pairedRatios = paired;
  mkdirSync(outDir, { recursive: true });
  const series = (metric: (p: Point) => number) =>
    (['raftkv', 'etcd'] as const).flatMap((system) =>
      WORKLOADS.map((w) => ({ name: `${system} ${w.name}`, points: points.filter((p) => p.system === system && p.workload === w.name).map((p) => ({ x: p.clients, y: metric(p) })) })),
    );
  const subtitle = `3 nodes each, ${os.cpus().length} cores, ${valueSize} B values; mixed = 50% linearizable reads`;
  const charts = [
    lineChart(series((p) => p.throughput), { title: 'raftkv and etcd: throughput', subtitle, xLabel: 'clients', yLabel: 'operations/s' }),
    lineChart(series((p) => p.latencyMs.p99), { title: 'raftkv and etcd: p99 latency', subtitle, xLabel: 'clients', yLabel: 'p99 latency (ms)' }),
  ];
  // Both charts in one file, one above the other.
  const svg = [
    '<svg xmlns="http://www.w3.org/2000/svg" width="800" height="1000" viewBox="0 0 800 1000">',
    ...charts.map((c, i) => c.replace('<svg xmlns="http://www.w3.org/2000/svg"', `<svg xmlns="http://www.w3.org/2000/svg" x="0" y="${i * 500}"`)),
    '</svg>',
    '',
  ].join('\n');
  writeFileSync(join(outDir, 'bench.svg'), svg);
}

if (!skip.has('failover')) {
  console.log(`failover: kill -9 of the leader, ${kills} times, time to the first acknowledged write`);
  const f = await failover();
  report.failover = f;
  lines.push(`failover p99: ${f.p99} ms over ${f.kills} kills (p50 ${f.p50} ms; election timeout ${f.electionTimeoutMs} ms)`);
}

if (!skip.has('memory')) {
  const { point } = await measure(() => startRaftkv({ fsync: 'memory', prefix: 'bench-memory' }), WORKLOADS[0], 32);
  report.memory = point;
  lines.push(`memory kvstore writes c=32: ${point.throughput} ops/s (the seed's kvstore: ~2,500 commands/s)`);
}

if (!skip.has('rss')) {
  console.log(`rss: ${rssKeys} values of ${valueSize} B written once each`);
  const r = await rss();
  report.rss = r;
  lines.push(`replica rss with ${r.keys} values of ${r.valueSize} B: ${Math.max(...r.rssMB)} MB (largest of ${r.rssMB.join(', ')} MB)`);
}

report.lines = lines;
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'bench.json'), `${JSON.stringify(report, null, 2)}\n`);
console.log(`\nwrote ${join(outDir, 'bench.json')}${skip.has('matrix') ? '' : ` and ${join(outDir, 'bench.svg')}`}`);
for (const l of lines) console.log(l);
