/**
 * The seed's experiments (its thesis: hashicorp/raft with kvstore and diskstorage, logging none,
 * synchronously to an application log, or through the decoupled logger), each a function from
 * parameters to a result table, a figure and correctness checks. Run on local processes; the
 * parameters scale with --scale (1 = the seed's 1,000,000 keys and its client steps) and
 * --duration (seconds per measured point).
 */
import { RaftKvClient } from '../replica/client.js';
import type { LoadResult } from '../loadgen/run.js';
import type { ChartOptions, Series } from './chart.js';
import { ClusterPlan, RunningCluster, RunningLogger, Topology } from './topology.js';

export interface Params {
  scale: number;
  /** Seconds of load per measured point. */
  duration: number;
  progress: (line: string) => void;
}

export interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

export type Row = Record<string, string | number>;

export interface ExperimentResult {
  name: string;
  title: string;
  /** What the seed reported for the same experiment. */
  seed: string;
  columns: string[];
  rows: Row[];
  figure: { series: Series[]; options: ChartOptions };
  checks: Check[];
  params: { scale: number; duration: number; keys: number; valueSize: number };
}

export interface Experiment {
  name: string;
  summary: string;
  run(topo: Topology, p: Params): Promise<ExperimentResult>;
}

const VALUE = 1024;

export const keysFor = (scale: number) => Math.max(1000, Math.round(1_000_000 * scale));

/** The seed's closed-loop client counts, fewer of them for a short run. */
export function clientSteps(scale: number): number[] {
  if (scale >= 1) return [1, 2, 4, 8, 16, 32, 64, 128];
  if (scale >= 0.05) return [1, 4, 16, 64];
  return [2, 16];
}

const round = (v: number, d = 2) => Number(v.toFixed(d));
const paramsOf = (p: Params, keys = keysFor(p.scale)) => ({ scale: p.scale, duration: p.duration, keys, valueSize: VALUE });
const ms = (us: number) => round(us / 1000);

/** Keys above the load's key space, for the canary writes (numeric: diskstorage keys are slots). */
const CANARY_KEYS = 100_000;

/** The load's key space of a cluster (the canary's keys come after it). */
const loadKeys = (c: RunningCluster) => c.plan.keys - CANARY_KEYS;

/**
 * A cluster of 3 replicas whose commands carry 1 KB values: diskstorage's fixed slots are 4
 * bytes longer (a length prefix) so the value is the same 1 KB.
 */
function plan(name: string, app: 'kvstore' | 'diskstorage', p: Params, o: Partial<ClusterPlan> & { loadKeys?: number } = {}): ClusterPlan {
  const { loadKeys: k, ...rest } = o;
  return { name, app, replicas: 3, applog: false, valueSize: app === 'diskstorage' ? VALUE + 4 : VALUE, ...rest, keys: (k ?? keysFor(p.scale)) + CANARY_KEYS };
}

/**
 * Writes of unique keys, one at a time, alongside the load: after it, every acknowledged one must
 * be on every replica (no acknowledged write lost), read locally from each.
 */
class Canary {
  private readonly client: RaftKvClient;
  private readonly acked = new Set<string>();
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(private readonly c: RunningCluster) {
    this.client = new RaftKvClient({ targets: c.targets });
    this.done = this.write();
  }

  private async write(): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      const key = String(loadKeys(this.c) + (i % CANARY_KEYS));
      try {
        await this.client.set(key, `v${i}`);
        this.acked.add(key);
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Stop writing (before measuring something the writes would move). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    this.client.close();
  }

  async check(topo: Topology): Promise<Check> {
    await this.stop();
    await topo.converged(this.c);
    const missing: string[] = [];
    for (const r of this.c.replicas) {
      for (const key of this.acked) {
        const res = await fetch(`http://${r.host}:${r.http}/v1/kv/${key}?stale=1`).catch(() => undefined);
        if (!res || res.status !== 200) missing.push(`${key}@${r.id}`);
        else await res.arrayBuffer();
      }
    }
    return { what: `${this.c.plan.name}: no acknowledged write lost`, ok: this.acked.size > 0 && missing.length === 0, detail: `${this.acked.size} acknowledged canary writes during the load, ${missing.length} missing on some replica${missing.length ? ` (${missing.slice(0, 5).join(', ')})` : ''}` };
  }
}

/** The logger's log of a cluster equals the committed sequence: it holds 1..commit and the state rebuilt from it is the replicas'. */
async function loggerChecks(topo: Topology, l: RunningLogger): Promise<Check[]> {
  const out: Check[] = [];
  for (const [i, c] of l.clusters.entries()) {
    const { index, digest } = await topo.converged(c);
    const id = l.ids[i];
    const deadline = Date.now() + 60_000;
    let log = (await topo.loggerLogs(l)).find((x) => x.name === id);
    while ((log?.last ?? 0) < index && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      log = (await topo.loggerLogs(l)).find((x) => x.name === id);
    }
    const rebuilt = await topo.recovery(l.recovAddr, id, c.plan.app, c.plan.valueSize, c.plan.keys);
    const ok = log !== undefined && log.first === 1 && log.last >= index && rebuilt.index >= index && (rebuilt.index !== index || rebuilt.digest === digest);
    out.push({ what: `${c.plan.name}: the logger's log equals the committed sequence`, ok, detail: `log ${log?.first}..${log?.last}, cluster applied ${index}; state rebuilt from the log at ${rebuilt.index}: digest ${rebuilt.digest === digest ? 'equal to' : 'DIFFERENT from'} the replicas'` });
  }
  return out;
}

function loadRow(r: LoadResult): Row {
  return { throughput: round(r.throughput, 1), p50_ms: ms(r.latencyUs.p50), p90_ms: ms(r.latencyUs.p90), p99_ms: ms(r.latencyUs.p99), errors: r.errors + r.timeouts };
}

// ---- saturation: Figures 7 and 8

function saturation(app: 'kvstore' | 'diskstorage', name: string, seedFigure: string): Experiment {
  const short = app === 'kvstore' ? 'kvstore' : 'diskstorage';
  return {
    name,
    summary: `${short} throughput and latency against clients, with no log, an application log, and the decoupled logger (the seed's ${seedFigure})`,
    async run(topo, p) {
      const rows: Row[] = [];
      const checks: Check[] = [];
      const series: Series[] = [];
      for (const logging of ['notlog', 'applog', 'logger'] as const) {
        p.progress(`${name}: ${logging}: starting 3 replicas${logging === 'logger' ? ' and a logger' : ''}`);
        const c = await topo.startCluster(plan(`${app === 'kvstore' ? 'kv' : 'disk'}-${logging}`, app, p, { applog: logging === 'applog' }));
        const l = logging === 'logger' ? await topo.startLogger(`lg-${c.plan.name}`, [c]) : undefined;
        const canary = new Canary(c);
        const points: { x: number; y: number }[] = [];
        for (const clients of clientSteps(p.scale)) {
          p.progress(`${name}: ${logging}: ${clients} clients for ${p.duration} s`);
          const r = await topo.load(c, { clients, seconds: p.duration, keys: loadKeys(c), valueSize: VALUE });
          rows.push({ logging, clients, ...loadRow(r) });
          points.push({ x: round(r.throughput, 1), y: ms(r.latencyUs.p90) });
        }
        series.push({ name: logging, points });
        checks.push(await canary.check(topo));
        if (l) checks.push(...(await loggerChecks(topo, l)));
        await topo.stop();
      }
      return {
        name,
        title: `${short} at saturation: no log, application log, decoupled logger`,
        seed: app === 'kvstore' ? 'about 2,500 commands/s at saturation (Figure 7)' : 'about 280 commands/s at saturation (Figure 8)',
        columns: ['logging', 'clients', 'throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'errors'],
        rows,
        figure: { series, options: { title: `${short}: throughput against p90 latency, one point per client count`, xLabel: 'throughput (commands/s)', yLabel: 'p90 latency (ms)' } },
        checks,
        params: paramsOf(p),
      };
    },
  };
}

// ---- several applications on the same nodes: Figures 9 and 10

function shared(app: 'kvstore' | 'diskstorage', name: string): Experiment {
  const appCounts = (scale: number) => (scale >= 0.05 ? [1, 3, 6] : [1, 2]);
  const clients = 8;
  return {
    name,
    summary: `1, 3 and 6 ${app} applications (3 replicas each) sharing this machine, each under its own load (the seed's Figures 9 and 10)`,
    async run(topo, p) {
      const rows: Row[] = [];
      const checks: Check[] = [];
      const total: { x: number; y: number }[] = [];
      const perApp: { x: number; y: number }[] = [];
      for (const n of appCounts(p.scale)) {
        p.progress(`${name}: ${n} applications: starting ${3 * n} replicas`);
        const clusters: RunningCluster[] = [];
        for (let i = 0; i < n; i++) clusters.push(await topo.startCluster(plan(`app${n}-${i}`, app, p, { loadKeys: Math.max(1000, Math.round(keysFor(p.scale) / n)) })));
        const canaries = clusters.map((c) => new Canary(c));
        p.progress(`${name}: ${n} applications under load for ${p.duration} s`);
        const rs = await Promise.all(clusters.map((c) => topo.load(c, { clients, seconds: p.duration, keys: loadKeys(c), valueSize: VALUE })));
        rs.forEach((r, i) => rows.push({ applications: n, app: clusters[i].plan.name, clients, ...loadRow(r) }));
        const sum = rs.reduce((a, r) => a + r.throughput, 0);
        total.push({ x: n, y: round(sum, 1) });
        perApp.push({ x: n, y: round(sum / n, 1) });
        for (const c of canaries) checks.push(await c.check(topo));
        await topo.stop();
      }
      return {
        name,
        title: `${app}: applications sharing the same nodes`,
        seed: app === 'kvstore' ? 'Figure 9: kvstore applications sharing nodes' : 'Figure 10: diskstorage applications sharing nodes',
        columns: ['applications', 'app', 'clients', 'throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'errors'],
        rows,
        figure: { series: [{ name: 'all applications', points: total }, { name: 'per application', points: perApp }], options: { title: `${app}: throughput as applications share the nodes (${clients} clients each)`, xLabel: 'applications', yLabel: 'throughput (commands/s)' } },
        checks,
        params: paramsOf(p),
      };
    },
  };
}

// ---- one logger for many applications: Figure 11

const loggerScale: Experiment = {
  name: 'logger-scale',
  summary: "one logger process serving 1 to 9 kvstore clusters at saturation: its durable rate against theirs (the seed's Figure 11)",
  async run(topo, p) {
    const counts = p.scale >= 1 ? [1, 3, 5, 7, 9] : p.scale >= 0.05 ? [1, 3, 6, 9] : [1, 2];
    const rows: Row[] = [];
    const checks: Check[] = [];
    const worst: { x: number; y: number }[] = [];
    for (const n of counts) {
      p.progress(`logger-scale: ${n} clusters and one logger`);
      const clusters: RunningCluster[] = [];
      for (let i = 0; i < n; i++) clusters.push(await topo.startCluster(plan(`ls${n}-${i}`, 'kvstore', p)));
      const l = await topo.startLogger(`logger${n}`, clusters);
      const commit = async () => Promise.all(clusters.map(async (c) => (await topo.status(await topo.leaderOf(c)))?.commitIndex ?? 0));
      const logged = async () => {
        const logs = await topo.loggerLogs(l);
        return l.ids.map((id) => logs.find((x) => x.name === id)?.last ?? 0);
      };
      // The window: from a second into the load to its end, before the logger may catch up.
      const loads = Promise.all(clusters.map((c) => topo.load(c, { clients: 16, seconds: p.duration + 1, keys: loadKeys(c), valueSize: VALUE })));
      await new Promise((r) => setTimeout(r, 1000));
      const [c0, l0] = [await commit(), await logged()];
      await new Promise((r) => setTimeout(r, p.duration * 1000 - 200));
      const [c1, l1] = [await commit(), await logged()];
      await loads;
      const ratios = clusters.map((c, i) => {
        const committed = c1[i] - c0[i];
        const durable = l1[i] - l0[i];
        const ratio = committed > 0 ? Math.min(1, durable / committed) : 1;
        rows.push({ clusters: n, cluster: c.plan.name, committed_per_s: round(committed / p.duration, 1), logged_per_s: round(durable / p.duration, 1), ratio: round(ratio, 4) });
        return ratio;
      });
      worst.push({ x: n, y: round(Math.min(...ratios), 4) });
      checks.push(...(await loggerChecks(topo, l)));
      await topo.stop();
    }
    return {
      name: 'logger-scale',
      title: 'One logger serving several applications',
      seed: 'the logger within 0.91% of the applications\' throughput with 9 applications (Figure 11)',
      columns: ['clusters', 'cluster', 'committed_per_s', 'logged_per_s', 'ratio'],
      rows,
      figure: { series: [{ name: 'smallest logged/committed ratio', points: worst }], options: { title: 'One logger process for N clusters at saturation', xLabel: 'clusters served by one logger', yLabel: 'logged / committed (smallest cluster)', yMin: Math.min(0.9, ...worst.map((w) => w.y)), reference: { y: 0.9909, label: 'the seed: 0.9909' } } },
      checks,
      params: paramsOf(p),
    };
  },
};

// ---- consensus alone: Figure 12

const consensusOnly: Experiment = {
  name: 'consensus-only',
  summary: "Raft's own throughput: 1 KB commands on one key of the in-memory map, so applying costs nearly nothing (the seed's Figure 12)",
  async run(topo, p) {
    p.progress('consensus-only: starting 3 replicas');
    const c = await topo.startCluster(plan('consensus', 'kvstore', p, { loadKeys: 1 }));
    const canary = new Canary(c);
    const rows: Row[] = [];
    const points: { x: number; y: number }[] = [];
    for (const clients of clientSteps(p.scale)) {
      p.progress(`consensus-only: ${clients} clients for ${p.duration} s`);
      const r = await topo.load(c, { clients, seconds: p.duration, keys: 1, valueSize: VALUE });
      rows.push({ clients, ...loadRow(r) });
      points.push({ x: clients, y: round(r.throughput, 1) });
    }
    const checks = [await canary.check(topo)];
    await topo.stop();
    return {
      name: 'consensus-only',
      title: 'The throughput of consensus alone',
      seed: 'about 3,200 commands/s (Figure 12)',
      columns: ['clients', 'throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'errors'],
      rows,
      figure: { series: [{ name: 'raftkv', points }], options: { title: 'Consensus alone: committed commands per second against clients', xLabel: 'closed-loop clients', yLabel: 'throughput (commands/s)', reference: { y: 3200, label: 'the seed: ~3,200/s' } } },
      checks,
      params: paramsOf(p, 1),
    };
  },
};

// ---- state transfer: Tables 2 and 3

function recovery(source: 'applog' | 'logger'): Experiment {
  const name = `recovery-${source}`;
  return {
    name,
    summary: `state transfer from ${source === 'applog' ? "a replica's application log" : 'the decoupled logger'} after 1..9 periods of load: transfer and install time, state size, commands (the seed's Table ${source === 'applog' ? 2 : 3})`,
    async run(topo, p) {
      const stages = p.scale >= 1 ? 9 : p.scale >= 0.05 ? 3 : 2;
      p.progress(`${name}: starting 3 replicas${source === 'logger' ? ' and a logger' : ' with application logs'}`);
      const c = await topo.startCluster(plan(`rec-${source}`, 'kvstore', p, { applog: source === 'applog' }));
      const l = source === 'logger' ? await topo.startLogger('lg-rec', [c]) : undefined;
      const rows: Row[] = [];
      const checks: Check[] = [];
      const total: { x: number; y: number }[] = [];
      const transfer: { x: number; y: number }[] = [];
      for (let stage = 1; stage <= stages; stage++) {
        p.progress(`${name}: load period ${stage} of ${stages} (${p.duration} s)`);
        const canary = new Canary(c);
        await topo.load(c, { clients: 32, seconds: p.duration, keys: loadKeys(c), valueSize: VALUE });
        await canary.stop();
        const { index, digest } = await topo.converged(c);
        const leader = await topo.leaderOf(c);
        const follower = c.replicas.find((r) => r.id !== leader.id)!;
        const addr = source === 'applog' ? `${follower.host}:${follower.recov}` : l!.recovAddr;
        if (l) {
          const deadline = Date.now() + 60_000;
          while (((await topo.loggerLogs(l))[0]?.last ?? 0) < index && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
        }
        p.progress(`${name}: recovering ${index} entries from ${source === 'applog' ? follower.id : 'the logger'}`);
        const r = await topo.recovery(addr, l?.ids[0], c.plan.app, c.plan.valueSize, c.plan.keys);
        rows.push({ period: stage, load_seconds: stage * p.duration, commands: r.commands, transfer_s: round(r.transferSeconds, 3), install_s: round(r.installSeconds, 3), total_s: round(r.transferSeconds + r.installSeconds, 3), state_mb: round(r.stateBytes / 1e6, 2), keys: r.keys });
        total.push({ x: r.commands, y: round(r.transferSeconds + r.installSeconds, 3) });
        transfer.push({ x: r.commands, y: round(r.transferSeconds, 3) });
        checks.push(await canary.check(topo));
        checks.push({ what: `period ${stage}: recovered state equals the source state`, ok: r.index === index && r.digest === digest, detail: `recovered to ${r.index} (cluster at ${index}); digest ${r.digest === digest ? 'equal' : `DIFFERENT (${r.digest} vs ${digest})`}` });
      }
      await topo.stop();
      return {
        name,
        title: `State transfer from ${source === 'applog' ? 'the application log' : 'the decoupled logger'}`,
        seed: source === 'applog' ? 'Table 2: state transfer by the application log' : 'Table 3: 1.04 million commands, 533 MB, in 12.2 s (7.9 s transfer + 4.3 s install)',
        columns: ['period', 'load_seconds', 'commands', 'transfer_s', 'install_s', 'total_s', 'state_mb', 'keys'],
        rows,
        figure: { series: [{ name: 'transfer + install', points: total }, { name: 'transfer', points: transfer }], options: { title: `Recovery from the ${source === 'applog' ? 'application log' : 'logger'}: time against commands`, xLabel: 'commands recovered', yLabel: 'seconds' } },
        checks,
        params: paramsOf(p),
      };
    },
  };
}

export const EXPERIMENTS: Experiment[] = [
  saturation('kvstore', 'saturation-kv', 'Figure 7'),
  saturation('diskstorage', 'saturation-disk', 'Figure 8'),
  shared('kvstore', 'shared-kv'),
  shared('diskstorage', 'shared-disk'),
  loggerScale,
  consensusOnly,
  recovery('applog'),
  recovery('logger'),
];
