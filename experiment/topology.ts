/**
 * Where an experiment's clusters, loggers and loads run, as one interface: local processes
 * (local-topology.ts) or RaftClusters on Kubernetes (kube-topology.ts). The measurements and
 * checks talk to the members over HTTP, and the generator and recovery client run here, either way.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { LoadResult } from '../loadgen/run.js';

export const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

export interface ClusterPlan {
  name: string;
  app: 'kvstore' | 'diskstorage' | 'lmdb';
  replicas: number;
  /** Every replica writes each applied command synchronously to its application log (and serves it). */
  applog: boolean;
  valueSize: number;
  keys: number;
  fsync?: 'batch' | 'always' | 'never' | 'memory';
  electionTimeoutMs?: number;
  heartbeatMs?: number;
}

export interface Replica {
  id: string;
  /** Where it is reached: 127.0.0.1 locally, its pod IP on Kubernetes. */
  host: string;
  client: number;
  raft: number;
  http: number;
  /** The applog's state-transfer port (applog clusters). */
  recov?: number;
}

export interface RunningCluster {
  plan: ClusterPlan;
  replicas: Replica[];
  targets: string[];
}

export interface RunningLogger {
  /** Its member id in each cluster, in the order of `clusters`. */
  ids: string[];
  clusters: RunningCluster[];
  /** host:port of its HTTP API and of its state-transfer port. */
  httpAddr: string;
  recovAddr: string;
}


export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function getJson<T>(url: string, timeoutMs = 2000): Promise<T | undefined> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return r.ok ? ((await r.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

export type ReplicaStatus = { id: string; role: string; leader: string; commitIndex: number; appliedIndex: number };

/**
 * Where an experiment's clusters, loggers and loads run: local processes (LocalTopology) or
 * RaftCluster resources on Kubernetes (KubeTopology, experiment/kube-topology.ts). The
 * measurements and checks talk to the members over HTTP either way.
 */
export abstract class Topology {
  abstract startCluster(plan: ClusterPlan): Promise<RunningCluster>;
  /** One logger process with a non-voting member in each of `clusters`, joined to each. */
  abstract startLogger(name: string, clusters: RunningCluster[]): Promise<RunningLogger>;
  /** Remove everything started so far (the topology can be used again after). */
  abstract stop(): Promise<void>;

  async status(r: Replica): Promise<ReplicaStatus | undefined> {
    return getJson<ReplicaStatus>(`http://${r.host}:${r.http}/v1/status`, 1500);
  }

  async leaderOf(c: RunningCluster, timeoutMs = 30_000): Promise<Replica> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const r of c.replicas) if ((await this.status(r))?.role === 'leader') return r;
      await sleep(100);
    }
    throw new Error(`no leader in ${c.plan.name} within ${timeoutMs / 1000} s`);
  }

  /**
   * Wait until one replica leads and every other one answers and follows it: a majority elects
   * while a replica slow to start is still loading, and an experiment's loads and checks talk to
   * each replica.
   */
  async formed(c: RunningCluster, timeoutMs = 60_000): Promise<Replica> {
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    while (Date.now() < deadline) {
      const st = await Promise.all(c.replicas.map((r) => this.status(r)));
      const leader = st.find((s) => s?.role === 'leader')?.leader;
      if (leader && st.every((s) => s?.leader === leader)) return c.replicas.find((r) => r.id === leader) ?? (await this.leaderOf(c, timeoutMs));
      seen = st.map((s, i) => `${c.replicas[i].id}: ${s ? `${s.role}, leader '${s.leader}'` : 'no answer'}`).join('; ');
      await sleep(100);
    }
    throw new Error(`${c.plan.name} did not form within ${timeoutMs / 1000} s (${seen})`);
  }

  async loggerLogs(l: RunningLogger): Promise<{ name: string; first: number; last: number; commitIndex: number }[]> {
    return (await getJson<{ clusters: { name: string; first: number; last: number; commitIndex: number }[] }>(`http://${l.httpAddr}/v1/log`))?.clusters ?? [];
  }

  /** Wait until every replica applied the same index, and return that index and the digest every one of them has. */
  async converged(c: RunningCluster, timeoutMs = 60_000): Promise<{ index: number; digest: string }> {
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    while (Date.now() < deadline) {
      const ds = await Promise.all(c.replicas.map((r) => getJson<{ index: number; digest: string }>(`http://${r.host}:${r.http}/v1/digest`)));
      seen = JSON.stringify(ds);
      if (ds.every((d) => d && d.index === ds[0]!.index && d.digest === ds[0]!.digest)) return { index: ds[0]!.index, digest: ds[0]!.digest };
      await sleep(200);
    }
    throw new Error(`${c.plan.name}: the replicas did not converge to one digest within ${timeoutMs / 1000} s: ${seen}`);
  }

  /** A closed-loop load generator process against a cluster; its JSON result. */
  async load(c: RunningCluster, o: { clients: number; seconds?: number; requests?: number; keys: number; valueSize: number; writeRatio?: number; procs?: number; seed?: number }): Promise<LoadResult> {
    const args = [
      'loadgen', '--targets', c.targets.join(','), '--clients', String(o.clients), '--keys', String(o.keys), '--value-size', String(o.valueSize),
      '--write-ratio', String(o.writeRatio ?? 1), '--procs', String(o.procs ?? 1), '--timeout', '10000',
      ...(o.requests !== undefined ? ['--requests', String(o.requests)] : ['--duration', String(o.seconds ?? 10)]),
      ...(o.seed !== undefined ? ['--seed', String(o.seed)] : []),
      '--json', '-', '--quiet',
    ];
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 });
    return JSON.parse(stdout.slice(stdout.indexOf('{'))) as LoadResult;
  }

  /** `raftkv recovery` against a state-transfer port: the seed's measurements and the recovered digest. */
  async recovery(recov: string, cluster: string | undefined, app: string, valueSize: number, keys: number): Promise<RecoveryResult> {
    const args = ['recovery', '--recov', recov, '--app', app, '--value-size', String(valueSize), '--keys', String(keys), ...(cluster ? ['--cluster', cluster] : []), '--json'];
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 });
    return JSON.parse(stdout.trim().split('\n').pop()!) as RecoveryResult;
  }
}

export interface RecoveryResult {
  source: string;
  cluster: string;
  index: number;
  commands: number;
  transferSeconds: number;
  installSeconds: number;
  bytesTransferred: number;
  stateBytes: number;
  keys: number;
  digest: string;
}
