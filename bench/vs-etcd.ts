/**
 * `npm run bench:etcd`: raftkv and etcd side by side on this machine, in one session: a 3-node
 * raftkv cluster (fsync batch, as durable as etcd) and a 3-member etcd 3.4, each measured by the
 * same closed-loop generator (2 processes, so the generator is not the bottleneck), same client
 * count, key space, value size and write ratio. Prints each result and the ratios.
 * Options: --clients N (default 32), --seconds S (default 8), --write-ratio R (default 1).
 */
import { parseArgs } from 'node:util';
import type { LoadResult } from '../loadgen/run.js';
import { table } from '../loadgen/report.js';
import { TestCluster } from '../test/helpers/cluster.js';
import { runLoadgen } from './run-load.js';
import { EtcdCluster } from '../test/helpers/etcd.js';

const { values } = parseArgs({
  options: { clients: { type: 'string', default: '32' }, seconds: { type: 'string', default: '8' }, 'write-ratio': { type: 'string', default: '1' } },
});

function load(driver: string, targets: string[]): Promise<LoadResult> {
  return runLoadgen(['--driver', driver, '--targets', targets.join(','), '--clients', values.clients!, '--procs', '2', '--duration', values.seconds!,
    '--keys', '10000', '--value-size', '128', '--write-ratio', values['write-ratio']!]);
}

if (!EtcdCluster.available()) {
  console.error('bench:etcd needs etcd: apt-get install etcd-server');
  process.exit(2);
}
const rk = await TestCluster.create('bench');
const ids = ['b1', 'b2', 'b3'];
let etcd: EtcdCluster | undefined;
try {
  for (const id of ids) await rk.define(id, ['--election-timeout', '1000', '--heartbeat', '100']);
  for (const id of ids) rk.start(id, ['--peers', rk.peersFlag(ids)]);
  await rk.waitLeader(ids);
  const ours = await load('protobuf', ids.map((id) => rk.clientAddr(id)));
  await rk.destroy();
  etcd = await EtcdCluster.start(3);
  const theirs = await load('etcd', etcd.clientAddrs);
  console.log(`3 nodes each on this machine; raftkv fsync: batch (every write durable, like etcd); ${values.clients} clients, ${Number(values['write-ratio']) * 100}% writes, 128 B values`);
  console.log(table([ours, theirs]));
  console.log(`throughput raftkv/etcd: ${(ours.throughput / theirs.throughput).toFixed(2)}x`);
  console.log(`p50 latency raftkv/etcd: ${(ours.latencyUs.p50 / theirs.latencyUs.p50).toFixed(2)}x`);
  console.log(`p99 latency raftkv/etcd: ${(ours.latencyUs.p99 / theirs.latencyUs.p99).toFixed(2)}x`);
} finally {
  await rk.destroy();
  await etcd?.stop();
}
