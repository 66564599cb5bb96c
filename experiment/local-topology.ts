/**
 * The experiments' local topology: clusters of replica processes, logger processes (one may serve
 * several clusters, as the seed's did) and load generator processes on 127.0.0.1, each on free
 * ports, all stopped (SIGTERM, then SIGKILL) by `stop()` and when this process exits.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { LoadResult } from '../loadgen/run.js';
import { freePort } from '../util/ports.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

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
  proc?: ChildProcess;
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


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

export class LocalTopology extends Topology {
  private readonly children = new Set<ChildProcess>();
  private readonly onExit = () => {
    for (const p of this.children) p.kill('SIGKILL');
  };

  constructor(readonly root: string) {
    super();
    mkdirSync(root, { recursive: true });
    process.on('exit', this.onExit);
  }

  private spawn(args: string[], label: string): ChildProcess {
    // stdin stays open as a lifeline: a child exits when this process goes away, even by SIGKILL.
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, RAFTKV_EXIT_WITH_PARENT: '1' } });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    p.on('exit', (code, signal) => {
      this.children.delete(p);
      if (code !== 0 && signal === null && code !== null) process.stderr.write(`[${label}] exited ${code}: ${err.trim().split('\n').slice(-3).join(' / ')}\n`);
    });
    this.children.add(p);
    return p;
  }

  /** Start a cluster's replicas (bootstrapped together with --peers) and wait for its leader. */
  async startCluster(plan: ClusterPlan): Promise<RunningCluster> {
    const replicas: Replica[] = [];
    for (let i = 0; i < plan.replicas; i++) {
      replicas.push({ id: `${plan.name}-${i}`, host: '127.0.0.1', client: await freePort(), raft: await freePort(), http: await freePort(), recov: plan.applog ? await freePort() : undefined });
    }
    const peers = replicas.map((r) => `${r.id}=127.0.0.1:${r.raft}`).join(',');
    for (const r of replicas) {
      const dir = join(this.root, plan.name, r.id);
      const args = [
        'replica', '--id', r.id, '--port', `127.0.0.1:${r.client}`, '--raft', `127.0.0.1:${r.raft}`, '--http', `127.0.0.1:${r.http}`, '--peers', peers,
        '--app', plan.app, '--data-dir', dir, '--fsync', plan.fsync ?? 'batch', '--value-size', String(plan.valueSize), '--keys', String(plan.keys),
        '--election-timeout', String(plan.electionTimeoutMs ?? 1000), '--heartbeat', String(plan.heartbeatMs ?? 100),
        ...(plan.applog ? ['--logfolder', join(dir, 'applog'), '--recov', `127.0.0.1:${r.recov}`] : []),
      ];
      r.proc = this.spawn(args, r.id);
    }
    const c: RunningCluster = { plan, replicas, targets: replicas.map((r) => `127.0.0.1:${r.client}`) };
    await this.leaderOf(c, 60_000);
    return c;
  }

  /** One logger process with a non-voting member in each of `clusters`, joined and known to each leader. */
  async startLogger(name: string, clusters: RunningCluster[]): Promise<RunningLogger> {
    const ids = clusters.map((c) => `${name}-${c.plan.name}`);
    const rafts: number[] = [];
    for (let i = 0; i < clusters.length; i++) rafts.push(await freePort());
    const http = await freePort();
    const recov = await freePort();
    const args = [
      'logger', '--id', ids.join(','), '--raft', rafts.map((p) => `127.0.0.1:${p}`).join(','),
      '--join', clusters.map((c) => c.replicas.map((r) => `127.0.0.1:${r.http}`).join('|')).join(','),
      '--logfolder', join(this.root, name), '--http', `127.0.0.1:${http}`, '--recov', `127.0.0.1:${recov}`,
    ];
    this.spawn(args, name);
    const l: RunningLogger = { ids, clusters, httpAddr: `127.0.0.1:${http}`, recovAddr: `127.0.0.1:${recov}` };
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const ready = await fetch(`http://127.0.0.1:${http}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
      if (ready) return l;
      await sleep(100);
    }
    throw new Error(`logger ${name} did not join ${clusters.map((c) => c.plan.name).join(', ')} within 60 s`);
  }

  async stop(): Promise<void> {
    const exits = [...this.children].map((p) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r()))));
    for (const p of this.children) p.kill('SIGTERM');
    const killer = setTimeout(() => {
      for (const p of this.children) p.kill('SIGKILL');
    }, 5000);
    await Promise.all(exits);
    clearTimeout(killer);
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
