/**
 * The experiments' local topology: clusters of replica processes, logger processes (one may serve
 * several clusters, as the seed's did) on 127.0.0.1, each on free ports, all stopped (SIGTERM,
 * then SIGKILL) by `stop()` and when this process exits.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../util/ports.js';
import { CLI, ClusterPlan, Replica, RunningCluster, RunningLogger, Topology, sleep } from './topology.js';

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

  /** Start a cluster's replicas (bootstrapped together with --peers) and wait until they all follow one leader. */
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
      this.spawn(args, r.id);
    }
    const c: RunningCluster = { plan, replicas, targets: replicas.map((r) => `127.0.0.1:${r.client}`) };
    await this.formed(c, 60_000);
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
