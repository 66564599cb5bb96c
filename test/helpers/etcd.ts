/** A real 3-member etcd (Debian's etcd-server) on 127.0.0.1 ports of its own, for side-by-side runs. */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from './ports.js';

export class EtcdCluster {
  private procs: ChildProcess[] = [];
  clientAddrs: string[] = [];
  private constructor(private readonly dir: string) {}

  static available(): boolean {
    return spawnSync('etcd', ['--version']).status === 0;
  }

  static async start(members = 3): Promise<EtcdCluster> {
    if (!EtcdCluster.available()) throw new Error('etcd is not installed: apt-get install etcd-server (.ci/run does this)');
    const c = new EtcdCluster(await mkdtemp(join(tmpdir(), 'raftkv-etcd-')));
    const ports = await freePorts(members * 2);
    const names = Array.from({ length: members }, (_, i) => `e${i}`);
    const initial = names.map((n, i) => `${n}=http://127.0.0.1:${ports[i * 2]}`).join(',');
    names.forEach((n, i) => {
      const peer = `http://127.0.0.1:${ports[i * 2]}`;
      const client = `http://127.0.0.1:${ports[i * 2 + 1]}`;
      c.clientAddrs.push(`127.0.0.1:${ports[i * 2 + 1]}`);
      c.procs.push(
        spawn('etcd', ['--name', n, '--data-dir', join(c.dir, n), '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--listen-client-urls', client,
          '--advertise-client-urls', client, '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', `raftkv-test-${ports[0]}`], { stdio: 'ignore' }),
      );
    });
    // Ready when a linearizable write and read go through.
    const { Etcd3 } = await import('etcd3');
    const client = new Etcd3({ hosts: c.clientAddrs.map((a) => `http://${a}`), dialTimeout: 1000 });
    const deadline = performance.now() + 30_000;
    for (;;) {
      try {
        await client.put('ready').value('1');
        if ((await client.get('ready').string()) === '1') break;
      } catch (e) {
        if (performance.now() > deadline) {
          client.close();
          await c.stop();
          throw new Error(`etcd did not become ready: ${(e as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    client.close();
    return c;
  }

  /** The members' process ids (for CPU and memory readings from /proc). */
  pids(): number[] {
    return this.procs.map((p) => p.pid!).filter((p) => p !== undefined);
  }

  async stop(): Promise<void> {
    for (const p of this.procs) p.kill('SIGKILL');
    this.procs = [];
    await rm(this.dir, { recursive: true, force: true });
  }
}
