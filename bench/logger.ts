/**
 * `npm run bench:logger`: the seed's logger measurements on this machine, with real processes.
 *
 * 1. logger/cluster throughput: a 3-replica kvstore cluster at saturation (closed-loop clients,
 *    100% writes of 512 B) with one logger; over the same window, the rate at which the logger
 *    made entries durable divided by the rate the cluster committed them (the seed measured 0.9909).
 * 2. clusters per logger: one logger process serving N clusters (default 9, the seed's Figure 11),
 *    all at saturation at once; the smallest of the per-cluster ratios.
 * 3. recovery: the cluster of part 1 is driven to 1,000,000 commands of 512 B, then `raftkv
 *    recovery` streams them from the logger and installs them into a fresh state machine (the
 *    seed: 12.2 s = 7.9 s transfer + 4.3 s install).
 *
 * Options: --seconds S (measure window, default 30: the logger's lag moves by tens of entries
 * between samples, and over 10 s that alone moved the ratio by a few percent), --clusters N (default 9), --replicas R
 * (default 3), --commands N (default 1000000), --clients C per cluster (default 32), --skip LIST
 * (parts to skip: throughput,clusters,recovery), --profile DIR (a V8 CPU profile of the recovery),
 * --logger-profile DIR (V8 CPU profiles of the logger processes, written when they stop),
 * --repeat N (recoveries of the same log, default 3: the median is reported, they vary run to run).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { benchFlags } from './flags.js';
import { TestCluster, sleep } from '../test/helpers/cluster.js';
import { LoggerProc, defineLogger, logsOf, startLogger, waitLogged } from '../test/helpers/logger.js';
import { CLI } from '../test/helpers/cluster.js';
import { runLoadgen } from './run-load.js';
import { cpuSeconds, totalCpuSeconds, waitQuiet } from './proc-stats.js';

const USAGE =
  'usage: node dist/bench/logger.js [--seconds S] [--clusters N] [--replicas R] [--commands N] [--clients C]\n' +
  '  [--skip throughput,clusters,recovery] [--profile DIR] [--logger-profile DIR] [--repeat N]';
const values = benchFlags<{ seconds: string; clusters: string; replicas: string; commands: string; clients: string; skip: string; profile?: string; 'logger-profile'?: string; repeat: string }>(
  'bench:logger',
  USAGE,
  {
    seconds: { type: 'string', default: '30' },
    clusters: { type: 'string', default: '9' },
    replicas: { type: 'string', default: '3' },
    commands: { type: 'string', default: '1000000' },
    clients: { type: 'string', default: '32' },
    skip: { type: 'string', default: '' },
    profile: { type: 'string' },
    'logger-profile': { type: 'string' },
    repeat: { type: 'string', default: '3' },
  },
);
const seconds = Number(values.seconds);
const nClusters = Number(values.clusters);
const nReplicas = Number(values.replicas);
const commands = Number(values.commands);
const clients = Number(values.clients);
const skip = new Set(values.skip!.split(',').filter(Boolean));
if (!(seconds >= 4) || !(nClusters >= 1) || !(nReplicas >= 1) || !(commands >= 1) || !(clients >= 1)) {
  console.error(`--seconds must be at least 4 and the counts positive\n${USAGE}`);
  process.exit(2);
}
const VALUE = 512;

interface Served {
  cluster: TestCluster;
  ids: string[];
  /** The logger's member id in this cluster (its log's name). */
  logName: string;
}

async function startCluster(prefix: string): Promise<{ c: TestCluster; ids: string[] }> {
  const ids = Array.from({ length: nReplicas }, (_, i) => `${prefix}r${i + 1}`);
  const c = await TestCluster.create(`bench-logger-${prefix}`);
  for (const id of ids) await c.define(id, ['--election-timeout', '1000', '--heartbeat', '100', '--snapshot-every', '1000000000']);
  for (const id of ids) c.start(id, ids.length > 1 ? ['--peers', c.peersFlag(ids)] : []);
  await c.waitLeader(ids, 30_000);
  return { c, ids };
}

function joinFlag(s: Served): string {
  return s.ids.map((id) => `127.0.0.1:${s.cluster.nodes.get(id)!.http}`).join('|');
}

async function startLoggerFor(dir: string, served: Served[]): Promise<LoggerProc> {
  const l = await defineLogger(dir, served.map((s) => s.logName), served.map(joinFlag).join(','), ['--election-timeout', '1000', '--heartbeat', '100']);
  if (values['logger-profile']) l.nodeArgs = ['--cpu-prof', '--cpu-prof-dir', values['logger-profile']];
  startLogger(l);
  for (const s of served) {
    const st = await s.cluster.status(await s.cluster.waitLeader(s.ids));
    await waitLogged(l, s.logName, st!.commitIndex, 30_000);
  }
  return l;
}

async function commitIndex(s: Served): Promise<number> {
  const st = await Promise.all(s.ids.map((id) => s.cluster.status(id)));
  return Math.max(...st.map((x) => x?.commitIndex ?? 0));
}

/**
 * Saturate every cluster at once and compare, over the same window, how fast each cluster
 * committed with how fast the logger made its entries durable. Both sides are sampled together
 * every half second and each rate is the least-squares slope of its samples: the logger is
 * always a little behind (entries committed since the leader last told it the commit index, plus
 * its group commit), and that lag moves by tens of entries from one sample to the next, so two
 * end points alone would measure the lag's noise as much as the throughput. The window opens
 * only once the load flows: a first sample taken while the generators still start finds the
 * logger with no lag at all and charges the window with its whole steady-state lag.
 */
async function ratios(l: LoggerProc, served: Served[]): Promise<{ committed: number; logged: number; ratio: number; perSecond: number }[]> {
  const warmupLimitS = 30;
  const stop = new AbortController();
  const loads = served.map((s) =>
    runLoadgen(['--targets', s.ids.map((id) => s.cluster.clientAddr(id)).join(','), '--clients', String(clients), '--duration', String(seconds + warmupLimitS + 5), '--keys', '1000000', '--value-size', String(VALUE), '--write-ratio', '1'], stop.signal).catch((e: Error) => {
      if (!stop.signal.aborted) throw e;
    }),
  );
  // Both sides at once, so the window is the same for the cluster and the logger.
  const sample = async () => {
    const [logs, committed] = await Promise.all([logsOf(l), Promise.all(served.map(commitIndex))]);
    const logged = served.map((s) => logs.find((x) => x.name === s.logName)?.last ?? 0);
    const seen = served.map((s) => logs.find((x) => x.name === s.logName)?.commitIndex ?? 0);
    return { logged, seen, committed, at: performance.now() / 1000 };
  };
  // Warm-up: every cluster commits at least 50 entries in a second, then one more second.
  const t0 = performance.now();
  let prev = await sample();
  for (;;) {
    await sleep(1000);
    const now = await sample();
    if (now.committed.every((c, i) => c - prev.committed[i] >= 50)) break;
    if (performance.now() - t0 > warmupLimitS * 1000) throw new Error(`the clusters did not reach 50 commits/s within ${warmupLimitS} s: ${now.committed.map((c, i) => c - prev.committed[i]).join(', ')}`);
    prev = now;
  }
  await sleep(1000);
  const samples = [await sample()];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await sleep(500);
    samples.push(await sample());
  }
  stop.abort();
  await Promise.all(loads);
  const a = samples[0];
  const b = samples[samples.length - 1];
  // Where a shortfall comes from: entries the logger had not yet heard were committed (delivery)
  // or had heard of but not yet made durable (its own log).
  const lagOf = (i: number, f: (x: (typeof samples)[number]) => number) => {
    const lags = samples.map((x) => x.committed[i] - f(x));
    return `${(lags.reduce((p, q) => p + q, 0) / lags.length).toFixed(0)}/${Math.max(...lags)}`;
  };
  console.log(`  entries behind the cluster's commit index over the window (mean/max): ${served.map((s, i) => `${s.logName} not heard ${lagOf(i, (x) => x.seen[i])}, not durable ${lagOf(i, (x) => x.logged[i])}`).join('; ')}`);
  return served.map((_, i) => {
    const committed = b.committed[i] - a.committed[i];
    const logged = b.logged[i] - a.logged[i];
    const cluster = slope(samples.map((x) => [x.at, x.committed[i]]));
    const logger = slope(samples.map((x) => [x.at, x.logged[i]]));
    return { committed, logged, ratio: logger / cluster, perSecond: cluster };
  });
}

/** Least-squares slope of y against x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return num / den;
}

const started: { c: TestCluster[]; loggers: LoggerProc[] } = { c: [], loggers: [] };
async function teardown(): Promise<void> {
  // SIGTERM when profiling: a profile is written only by a process that exits.
  for (const l of started.loggers) l.proc?.kill(values['logger-profile'] ? 'SIGTERM' : 'SIGKILL');
  if (values['logger-profile']) await sleep(3000);
  started.loggers = [];
  for (const c of started.c) await c.destroy();
  started.c = [];
}

try {
  const lines: string[] = [];
  if (!skip.has('throughput') || !skip.has('recovery')) {
    const { c, ids } = await startCluster('a');
    started.c.push(c);
    const served: Served = { cluster: c, ids, logName: 'log0' };
    const l = await startLoggerFor(join(c.dir, 'logger'), [served]);
    started.loggers.push(l);
    if (!skip.has('throughput')) {
      const [r] = await ratios(l, [served]);
      console.log(`one cluster (${nReplicas} replicas, ${clients} clients, ${VALUE} B writes): committed ${r.committed} in the window (${r.perSecond.toFixed(0)}/s), the logger made ${r.logged} durable`);
      lines.push(`logger/cluster throughput: ${r.ratio.toFixed(4)}`);
    }
    if (!skip.has('recovery')) {
      // Drive the cluster to `commands` entries, then recover exactly entries 1..commands.
      const have = await commitIndex(served);
      if (have < commands) {
        console.log(`filling the log to ${commands} commands (${commands - have} more writes of ${VALUE} B)...`);
        const t = performance.now();
        await runLoadgen(['--targets', ids.map((id) => c.clientAddr(id)).join(','), '--clients', '64', '--procs', '2', '--requests', String(commands - have), '--keys', '1000000', '--value-size', String(VALUE), '--write-ratio', '1', '--timeout', '10000']);
        console.log(`  filled in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      }
      await waitLogged(l, 'log0', commands, 120_000);
      type Recovered = { cpuUserSeconds: number; cpuSystemSeconds: number; minorFaults: number; commands: number; transferSeconds: number; installSeconds: number; bytesTransferred: number; stateBytes: number; keys: number };
      const runs: Recovered[] = [];
      for (let i = 0; i < Math.max(1, Number(values.repeat)); i++) {
        // The replicas snapshot what the fill wrote, and a finished recovery's memory is still
        // being given back: each recovery starts on a quiet machine, as the seed's had a node each.
        const waited = await waitQuiet();
        if (waited > 1.5) console.log(`  (waited ${waited.toFixed(0)} s for the machine to be quiet)`);
        const replicaPids = [...c.procs.values()].map((p) => p.pid!);
        const before = { logger: cpuSeconds(l.proc!.pid!), replicas: totalCpuSeconds(replicaPids) };
        const { stdout } = await promisify(execFile)(process.execPath, [...(values.profile && i === 0 ? ['--cpu-prof', '--cpu-prof-dir', values.profile] : []), CLI, 'recovery', '--recov', `recov://127.0.0.1:${l.recov}`, '--cluster', 'log0', '--from', '1', '--to', String(commands), '--json'], { maxBuffer: 16 << 20 });
        const one = JSON.parse(stdout.trim().split('\n').pop()!) as Recovered;
        runs.push(one);
        // Where the CPU went: the recovering process, the logger sending, and anything else.
        const sender = cpuSeconds(l.proc!.pid!) - before.logger;
        const replicas = totalCpuSeconds(replicaPids) - before.replicas;
        console.log(
          `  recovery ${i + 1}: ${(one.transferSeconds + one.installSeconds).toFixed(2)} s (transfer ${one.transferSeconds.toFixed(2)} s, install ${one.installSeconds.toFixed(2)} s;` +
            ` CPU: recovery ${one.cpuUserSeconds} s user + ${one.cpuSystemSeconds} s system for ${one.minorFaults} page faults, logger ${sender.toFixed(2)} s, replicas ${replicas.toFixed(2)} s)`,
        );
      }
      const r = [...runs].sort((a, b) => a.transferSeconds + a.installSeconds - (b.transferSeconds + b.installSeconds))[Math.floor(runs.length / 2)];
      const total = r.transferSeconds + r.installSeconds;
      console.log(`recovered ${r.commands} entries: ${r.keys} keys, state ${(r.stateBytes / 1e6).toFixed(1)} MB (the seed: 1.04 million commands, 533 MB, 12.2 s = 7.9 s transfer + 4.3 s install); the median of ${runs.length} recoveries below`);
      lines.push(`recovery of ${commands} commands: ${total.toFixed(2)} s (transfer ${r.transferSeconds.toFixed(2)} s, install ${r.installSeconds.toFixed(2)} s, ${r.bytesTransferred} bytes)`);
    }
    await teardown();
  }
  if (!skip.has('clusters')) {
    const served: Served[] = [];
    for (let i = 0; i < nClusters; i++) {
      const { c, ids } = await startCluster(`c${i}`);
      started.c.push(c);
      served.push({ cluster: c, ids, logName: `log${i}` });
    }
    const l = await startLoggerFor(join(served[0].cluster.dir, 'logger'), served);
    started.loggers.push(l);
    const rs = await ratios(l, served);
    const worst = Math.min(...rs.map((r) => r.ratio));
    console.log(`${nClusters} clusters (${nReplicas} replicas each, ${clients} clients each) and one logger process: ${rs.map((r, i) => `log${i} ${r.perSecond.toFixed(0)}/s ratio ${r.ratio.toFixed(4)}`).join(', ')}`);
    console.log(`  all clusters together committed ${rs.reduce((a, r) => a + r.perSecond, 0).toFixed(0)} entries/s`);
    lines.push(`clusters per logger: ${nClusters} at ${worst.toFixed(4)}`);
    await teardown();
  }
  for (const l of lines) console.log(l);
} finally {
  await teardown();
}
