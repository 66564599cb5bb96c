/** The embeddable API: run a replica in your process, or talk to a cluster. */
export { Replica } from './server.js';
export type { ReplicaOptions, ReplicaStatus, MemberStatus, AppName, FsyncSetting } from './server.js';
export { RaftKvClient, RaftKvError, Connection } from './client.js';
export type { ClientOptions } from './client.js';
export { parseReplicaArgs } from './cli.js';
export { Op, Status } from './proto.js';

import { REPLICA_DEFAULTS } from './defaults.js';
import { Replica, ReplicaOptions } from './server.js';

/** Defaults for an embedded replica: a single-node in-memory kvstore on ephemeral ports. */
export async function startReplica(opts: Partial<ReplicaOptions> & { id: string }): Promise<Replica> {
  return Replica.start({
    clientAddr: '127.0.0.1:0',
    raftAddr: '127.0.0.1:0',
    httpAddr: '127.0.0.1:0',
    dataDir: `./data/${opts.id}`,
    ...REPLICA_DEFAULTS,
    fsync: 'memory',
    log: () => undefined,
    ...opts,
  });
}
