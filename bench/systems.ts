/**
 * The systems the benchmarks compare, started fresh for each measurement: a 3-node raftkv
 * cluster (durable: fsync batch, every acknowledged write on disk, like etcd; or in memory) and a
 * 3-member etcd 3.4 from Debian. Both get etcd's default timings (heartbeat 100 ms, election
 * 1000 ms) and run on this machine beside the load generator.
 */
import { spawnSync } from 'node:child_process';
import { TestCluster } from '../test/helpers/cluster.js';
import { EtcdCluster } from '../test/helpers/etcd.js';
import type { DriverName } from '../loadgen/drivers.js';

export const ELECTION_TIMEOUT_MS = 1000;
export const HEARTBEAT_MS = 100;

export interface RunningSystem {
  name: 'raftkv' | 'etcd';
  /** The generator driver with the lowest CPU per request for this system. */
  driver: DriverName;
  targets: string[];
  pids(): number[];
  stop(): Promise<void>;
}

export async function startRaftkv(o: { fsync?: 'batch' | 'memory'; prefix?: string; args?: string[] } = {}): Promise<RunningSystem & { cluster: TestCluster; ids: string[] }> {
  const ids = ['b1', 'b2', 'b3'];
  const c = await TestCluster.create(o.prefix ?? 'bench');
  for (const id of ids) await c.define(id, ['--election-timeout', String(ELECTION_TIMEOUT_MS), '--heartbeat', String(HEARTBEAT_MS), '--fsync', o.fsync ?? 'batch', ...(o.args ?? [])]);
  for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
  try {
    await c.waitLeader(ids, 30_000);
  } catch (e) {
    await c.destroy();
    throw e;
  }
  return {
    name: 'raftkv',
    driver: 'protobuf',
    targets: ids.map((id) => c.clientAddr(id)),
    pids: () => ids.map((id) => c.procs.get(id)?.pid).filter((p): p is number => p !== undefined),
    stop: () => c.destroy(),
    cluster: c,
    ids,
  };
}

export async function startEtcd(): Promise<RunningSystem> {
  const e = await EtcdCluster.start(3);
  return { name: 'etcd', driver: 'etcd', targets: e.clientAddrs, pids: () => e.pids(), stop: () => e.stop() };
}

/** etcd from Debian, installed when absent (the benchmark's peer); false if that is not possible. */
export function ensureEtcd(): boolean {
  if (EtcdCluster.available()) return true;
  console.log('etcd is not installed: apt-get install -y etcd-server etcd-client ...');
  const r = spawnSync('sh', ['-c', 'apt-get install -y -q etcd-server etcd-client >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q etcd-server etcd-client >/dev/null 2>&1)'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return r.status === 0 && EtcdCluster.available();
}
