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
  /** The client address of the member leading now (undefined: none found). */
  leaderTarget(): Promise<string | undefined>;
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
    leaderTarget: async () => {
      const leader = await c.waitLeader(ids, 10_000).catch(() => undefined);
      return leader && c.clientAddr(leader);
    },
    pids: () => ids.map((id) => c.procs.get(id)?.pid).filter((p): p is number => p !== undefined),
    stop: () => c.destroy(),
    cluster: c,
    ids,
  };
}

/**
 * The targets with the leader last: clients are spread over targets in order, so the first
 * (the only one at 1 client) connects to a follower on both systems, whichever member the
 * election made leader. Otherwise one client's figure depended on it by ~15% (raftkv: 677-712
 * writes/s through a follower, 823 on the leader). From there raftkv's client sends its writes
 * to the leader the follower names (leader discovery; `--route member` keeps them on the
 * follower), etcd's to the follower, which passes them on.
 */
export async function followersFirst(s: RunningSystem): Promise<string[]> {
  const leader = await s.leaderTarget();
  return leader ? [...s.targets.filter((t) => t !== leader), leader] : s.targets;
}

export async function startEtcd(): Promise<RunningSystem> {
  const e = await EtcdCluster.start(3);
  return {
    name: 'etcd',
    driver: 'etcd',
    targets: e.clientAddrs,
    leaderTarget: async () => {
      // The gRPC gateway's status call: a member leads when its own id is the leader's.
      for (const addr of e.clientAddrs) {
        try {
          const res = await fetch(`http://${addr}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) });
          const st = (await res.json()) as { header?: { member_id?: string }; leader?: string };
          if (st.leader && st.header?.member_id === st.leader) return addr;
        } catch {
          // Not answering: not the leader we can use.
        }
      }
      return undefined;
    },
    pids: () => e.pids(),
    stop: () => e.stop(),
  };
}

/** etcd from Debian, installed when absent (the benchmark's peer); false if that is not possible. */
export function ensureEtcd(): boolean {
  if (EtcdCluster.available()) return true;
  console.log('etcd is not installed: apt-get install -y etcd-server etcd-client ...');
  const r = spawnSync('sh', ['-c', 'apt-get install -y -q etcd-server etcd-client >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q etcd-server etcd-client >/dev/null 2>&1)'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return r.status === 0 && EtcdCluster.available();
}
