/**
 * `raftkv replica`: run one replica. Flags keep the seed's names and accept its single-dash
 * style (`-id node0` = `--id node0`).
 */
import { keepHeapHeadroom } from './heap-headroom.js';
import { existsSync, readFileSync, readdirSync, writeFileSync, createWriteStream } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { z } from 'zod';
import { AddrFlag, IntFlag } from '../util/flags.js';
import { parseFlags, reportUsage, wantsHelp } from '../util/cli.js';
import { stopOnSignals } from '../util/signals.js';
import { dialHost, formatHostPort, parseHostPort } from './addr.js';
import { REPLICA_DEFAULTS as D } from './defaults.js';
import { Replica, ReplicaOptions } from './server.js';

export const REPLICA_HELP = `usage: raftkv replica [flags]

Cluster identity and addresses (seed flags):
  --id ID                 node id (default node0)
  --port ADDR             client TCP address, text and protobuf protocols (default :11000)
  --raft ADDR             Raft peer address (default :12000)
  --http ADDR             HTTP API address (default: raft port + 1000, e.g. :13000)
  --advertise-host HOST   host others use to reach this node (default 127.0.0.1 / the listen host)
  --advertise-raft ADDR   raft address to announce when peers reach this node through a proxy
Forming a cluster (only used when the data directory is empty):
  --peers ID=ADDR,...     static bootstrap: every initial member's raft address, same list on each
  --config FILE           static bootstrap from a seed KVStore cluster file:
                          {"object": {"total": N, "Servers": [{"mypid": 1, "url": "host:port"}]}}
  --hjoin ADDR            bootstrap alone and accept join requests here (the HTTP API on that port)
  --join ADDR,...         join an existing cluster through a member's --hjoin/--http address
  --discover kubernetes   in a pod: find the cluster through the Kubernetes API by its labels
                          (POD_NAME, POD_NAMESPACE, POD_IP from the downward API); with
  --initial-size N        bootstrap with the pods of ordinals 0..N-1, else join running members
  --restore-from ADDR     with an empty data directory: first rebuild the state from a logger's log
                          (raftkv restore) and start as the only member of a new cluster
  --restore-cluster NAME  which of that logger's logs (default: its only one)
  --nonvoter              join as a non-voter (default: voter, promoted once caught up)
  (no flag: a single-node cluster. A node with data always recovers its identity instead.)
State machine and storage:
  --app NAME              kvstore | diskstorage | lmdb (default kvstore)
  --data-dir DIR          data directory (default ./data/ID)
  --fsync MODE            batch (one fdatasync per Raft batch, default) | always (per entry) |
                          never (no fdatasync) | memory (nothing on disk: the seed's in-memory mode)
  --wal-segment MB        WAL segment size (default 64; fractions allowed, 0.0625 = 64 KB)
  --wal-preallocate MB    make each WAL segment this long before writing into it, by recycling a
                          covered segment or zero-filling, as etcd does (default: the segment size;
                          appends then sync data only); 0: segments grow as written
  --preload N             preload keys 0..N-1 (kvstore: like the seed's 1,000,000 keys)
  --value-size BYTES      preloaded value size; diskstorage record size (default 128)
  --keys N                diskstorage key space: integer keys in [0, N) (default 1000000)
  --max-value BYTES       largest accepted value (default 1048576)
  --snapshot-every N      snapshot after N applied entries or 64 MB of them (default 100000, as
                          etcd); a state over 8 MB also waits for its own size (at most 64 MB) in
                          log since the last snapshot
  --logfolder DIR         write every applied entry synchronously to the command log DIR/ID.applog/
                          (the seed's applog; the same format a logger keeps)
  --recov ADDR            serve the applog for state transfer (INFO, BASE, RECOVER i n; see raftkv recovery)
Decoupled logger:
  --logger ADDR           a logger's HTTP address (or recov://HOST:PORT): a replica that starts empty
                          or far behind takes the state from it instead of from the leader. Without
                          it, a new member (--join) asks the cluster for its loggers and uses one;
                          --logger off: always take the state from the leader
  --logger-catchup-min N  only when the logger is at least N entries ahead (default 1000; empty: any)
  --logger-truncate       after each snapshot, ask the cluster's loggers to drop the prefix it covers
                          (they do once a majority of voters asked; default: loggers keep everything)
Raft:
  --election-timeout MS   election timeout (default 1000; the seed used 200)
  --heartbeat MS          heartbeat interval and tick (default 100; the seed used 50)
  --read-mode MODE        safe (ReadIndex, default) | lease (leader lease reads); the same on
                          every member, and lease needs the same --election-timeout and
                          --heartbeat on every member too
  --replication MODE      thrifty (default): the leader sends each new entry at once to just enough
                          voters for a quorum and to the others in batches (every heartbeat, 64
                          entries, a read at them, or a write not committed within 1 ms); all:
                          to every voter at once (one more follower fdatasync per write)
  --max-sessions N        client sessions kept (default 10000); beyond, the least recently
                          active expires and its client registers a new one
  --session-ttl MS        a session unused this long expires (default 600000)
  --token TOKEN           shared cluster token: required on peer connections and on join, member
                          and transfer calls (x-raftkv-token header) (or RAFTKV_TOKEN)
  --tls-cert FILE         TLS: this node's certificate (PEM); with --tls-key and --tls-ca, peers use
  --tls-key FILE          mutual TLS (only certificates signed by the CA get in) and the client port
  --tls-ca FILE           and HTTP API serve TLS
  --client-token TOKEN    require 'Authorization: Bearer TOKEN' on the HTTP key and status API
                          (or RAFTKV_CLIENT_TOKEN)
Profiling (seed flags):
  --cpuprofile FILE       write a V8 CPU profile (.cpuprofile) on exit
  --heap-headroom MB      let the JS heap grow this much between full garbage collections (default
                          64; at most 4 times the live heap); 0: V8's own heuristics
  --memprofile FILE       write a V8 heap snapshot (.heapsnapshot) on exit

Example (a 3-node cluster; run each line in its own terminal, or with &):
  P=n1=127.0.0.1:12001,n2=127.0.0.1:12002,n3=127.0.0.1:12003
  raftkv replica --id n1 --port :11001 --raft :12001 --http :13001 --peers $P
  raftkv replica --id n2 --port :11002 --raft :12002 --http :13002 --peers $P
  raftkv replica --id n3 --port :11003 --raft :12003 --http :13003 --peers $P
`;

const Addr = AddrFlag;
const Int = IntFlag;

const Flags = z.object({
  id: z.string().default('node0'),
  port: Addr.default(':11000'),
  raft: Addr.default(':12000'),
  http: Addr.optional(),
  'advertise-host': z.string().optional(),
  'advertise-raft': Addr.optional(),
  peers: z.string().optional(),
  config: z.string().optional(),
  hjoin: Addr.optional(),
  join: z.string().optional(),
  discover: z.enum(['kubernetes']).optional(),
  'restore-from': z.string().optional(),
  'restore-cluster': z.string().optional(),
  'initial-size': Int(1).optional(),
  nonvoter: z.boolean().default(false),
  app: z.enum(['kvstore', 'diskstorage', 'lmdb']).default(D.app),
  'data-dir': z.string().optional(),
  fsync: z.enum(['always', 'batch', 'never', 'memory']).default(D.fsync),
  'wal-segment': z.coerce.number().min(1 / 1024).max(1024).default(64),
  'wal-preallocate': z.coerce.number().min(0).max(1024).optional(),
  preload: Int(0).default(D.preload),
  'value-size': Int(8).default(D.valueSize),
  keys: Int(1).default(D.keys),
  'max-value': Int(1).default(D.maxValueBytes),
  'snapshot-every': Int(10).default(D.snapshotEvery),
  logfolder: z.string().optional(),
  recov: Addr.optional(),
  logger: z.string().optional(),
  'logger-truncate': z.boolean().default(false),
  'logger-catchup-min': Int(1).default(1000),
  'election-timeout': Int(2).default(D.electionTimeoutMs),
  heartbeat: Int(1).default(D.heartbeatMs),
  'read-mode': z.enum(['safe', 'lease']).default(D.readMode),
  replication: z.enum(['thrifty', 'all']).default(D.replication),
  'max-sessions': Int(1).default(D.maxSessions),
  'session-ttl': Int(1000).default(D.sessionTtlMs),
  token: z.string().optional(),
  'client-token': z.string().optional(),
  'tls-cert': z.string().optional(),
  'tls-key': z.string().optional(),
  'tls-ca': z.string().optional(),
  cpuprofile: z.string().optional(),
  'heap-headroom': Int(0).default(64),
  memprofile: z.string().optional(),
});

const SeedClusterFile = z.object({
  object: z.object({
    total: z.number().int().positive(),
    Servers: z.array(z.object({ mypid: z.union([z.number(), z.string()]), url: z.string() })).min(1),
  }),
});

function tlsFiles(cert?: string, key?: string, ca?: string): { cert: string; key: string; ca: string } | undefined {
  if (!cert && !key && !ca) return undefined;
  if (!cert || !key || !ca) throw new Error('TLS needs all of --tls-cert, --tls-key and --tls-ca');
  return { cert, key, ca };
}

export function parseReplicaArgs(argv: string[]): ReplicaOptions & { cpuprofile?: string; memprofile?: string; heapHeadroomMB: number; discover?: 'kubernetes'; initialSize?: number; restoreFrom?: string; restoreCluster?: string } {
  const { values } = parseFlags(
    argv,
    Object.fromEntries(Object.keys(Flags.shape).map((k) => [k, { type: k === 'nonvoter' || k === 'logger-truncate' ? ('boolean' as const) : ('string' as const) }])),
    { singleDash: true },
  );
  const parsed = Flags.safeParse(values);
  if (!parsed.success) {
    throw new Error(parsed.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('\n'));
  }
  const f = parsed.data;
  let peers: { id: string; addr: string }[] | undefined;
  if (f.peers && f.config) throw new Error('--peers and --config both name the initial members; give one');
  if (f.peers) {
    peers = f.peers.split(',').map((p) => {
      const [id, addr] = p.split('=');
      if (!id || !addr) throw new Error(`--peers entry '${p}' is not ID=HOST:PORT`);
      return { id: id.trim(), addr: addr.trim() };
    });
  }
  if (f.config) {
    const raw = SeedClusterFile.safeParse(JSON.parse(readFileSync(f.config, 'utf8')));
    if (!raw.success) throw new Error(`--config ${f.config}: ${raw.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const servers = raw.data.object.Servers;
    if (raw.data.object.total !== servers.length) throw new Error(`--config ${f.config}: total is ${raw.data.object.total} but ${servers.length} servers are listed`);
    peers = servers.map((s) => ({ id: String(s.mypid), addr: s.url }));
  }
  const raftPort = parseHostPort(f.raft, '--raft');
  const http = f.http ?? (f.hjoin && !f.peers ? f.hjoin : `${raftPort.host ? raftPort.host : ''}:${raftPort.port + 1000}`);
  return {
    id: f.id,
    clientAddr: f.port,
    raftAddr: f.raft,
    httpAddr: http,
    advertiseHost: f['advertise-host'] ?? process.env.POD_IP,
    advertiseRaft: f['advertise-raft'],
    hjoin: f.hjoin,
    join: f.join ? f.join.split(',').map((s) => s.trim()) : undefined,
    voter: !f.nonvoter,
    peers,
    dataDir: f['data-dir'] ?? `./data/${f.id}`,
    app: f.app,
    fsync: f.fsync,
    walSegmentBytes: Math.round(f['wal-segment'] * (1 << 20)),
    walPreallocateBytes: f['wal-preallocate'] === undefined ? undefined : Math.round(f['wal-preallocate'] * (1 << 20)),
    logFolder: f.logfolder,
    recov: f.recov,
    logger: f.logger,
    loggerTruncate: f['logger-truncate'],
    loggerCatchupMin: f['logger-catchup-min'],
    electionTimeoutMs: f['election-timeout'],
    heartbeatMs: f.heartbeat,
    preload: f.preload,
    valueSize: f['value-size'],
    keys: f.keys,
    maxValueBytes: f['max-value'],
    snapshotEvery: f['snapshot-every'],
    readMode: f['read-mode'],
    replication: f.replication,
    maxSessions: f['max-sessions'],
    sessionTtlMs: f['session-ttl'],
    token: f.token ?? process.env.RAFTKV_TOKEN,
    clientToken: f['client-token'] ?? process.env.RAFTKV_CLIENT_TOKEN,
    tls: tlsFiles(f['tls-cert'], f['tls-key'], f['tls-ca']),
    cpuprofile: f.cpuprofile,
    heapHeadroomMB: f['heap-headroom'],
    memprofile: f.memprofile,
    discover: f.discover,
    initialSize: f['initial-size'],
    restoreFrom: f['restore-from'],
    restoreCluster: f['restore-cluster'],
  };
}

/** `extra` is for tests that run the real command with a different piece inside (a file system). */
export async function runReplica(argv: string[], extra: Partial<ReplicaOptions> = {}): Promise<void> {
  if (wantsHelp(argv)) {
    console.log(REPLICA_HELP.trimEnd());
    return;
  }
  let opts: ReturnType<typeof parseReplicaArgs>;
  try {
    opts = parseReplicaArgs(argv);
  } catch (e) {
    reportUsage('replica', (e as Error).message);
    return;
  }
  if (opts.heapHeadroomMB > 0) keepHeapHeadroom(opts.heapHeadroomMB << 20);
  const inspector = opts.cpuprofile || opts.memprofile ? new Session() : undefined;
  if (inspector) {
    inspector.connect();
    if (opts.cpuprofile) {
      await inspector.post('Profiler.enable');
      await inspector.post('Profiler.start');
    }
  }
  let replica: Replica;
  try {
    if (opts.restoreFrom && !(existsSync(opts.dataDir) && readdirSync(opts.dataDir).length > 0)) {
      const { restoreMember } = await import('../logger/recovery-cli.js');
      const raftHp = parseHostPort(opts.raftAddr, '--raft');
      const raft = opts.advertiseRaft ?? formatHostPort(opts.advertiseHost ?? dialHost(raftHp), raftHp.port);
      const r = await restoreMember({ fromLogger: opts.restoreFrom, cluster: opts.restoreCluster, dataDir: opts.dataDir, id: opts.id, raft, token: opts.token });
      console.log(`${opts.id}: restored from ${opts.restoreFrom}: ${r.keys} keys at index ${r.index} of cluster ${r.fromCluster || '?'}; new cluster id ${r.clusterId}, digest ${r.digest}`);
    }
    if (opts.discover === 'kubernetes') {
      if (opts.peers || opts.join) throw new Error('--discover finds the members itself: give neither --peers nor --join with it');
      // Loaded only here: the Kubernetes client costs a plain replica's start-up nothing.
      const { membershipFromKubernetes } = await import('../discovery/pod.js');
      const found = await membershipFromKubernetes({ dataDir: opts.dataDir, initialSize: opts.initialSize, raftPort: parseHostPort(opts.raftAddr, '--raft').port, httpPort: parseHostPort(opts.httpAddr, '--http').port, log: (l) => console.log(l) });
      opts.peers = found.peers;
      opts.join = found.join;
    } else if (opts.initialSize !== undefined) throw new Error('--initial-size goes with --discover kubernetes');
    replica = await Replica.start({ ...opts, ...extra });
  } catch (e) {
    console.error(`raftkv replica: ${(e as Error).message}`);
    process.exit(1);
  }
  stopOnSignals(opts.id, () => replica.stop(), replica.stopped, async () => {
    if (inspector && opts.cpuprofile) {
      const { profile } = await inspector.post('Profiler.stop');
      writeFileSync(opts.cpuprofile, JSON.stringify(profile));
      console.log(`${opts.id}: CPU profile written to ${opts.cpuprofile}`);
    }
    if (inspector && opts.memprofile) {
      const out = createWriteStream(opts.memprofile);
      inspector.on('HeapProfiler.addHeapSnapshotChunk', (m) => out.write(m.params.chunk));
      await inspector.post('HeapProfiler.takeHeapSnapshot');
      await new Promise<void>((r) => out.end(r));
      console.log(`${opts.id}: heap snapshot written to ${opts.memprofile}`);
    }
  });
}
