/** `raftkv logger`: the seed's ./logger flags, several clusters per process. */
import { join } from 'node:path';
import { z } from 'zod';
import { AddrFlag, IntFlag } from '../util/flags.js';
import { REPLICA_DEFAULTS as D } from '../replica/defaults.js';
import { commandLine, reportUsage } from '../util/cli.js';
import { stopOnSignals } from '../util/signals.js';
import { Logger, LoggerOptions } from './logger.js';

export const LOGGER_HELP = `usage: raftkv logger --id ID[,ID...] --raft ADDR[,ADDR...] --join ADDR[,ADDR...] [flags]

Joins one or more clusters as a non-voter (never promoted, never a candidate, never counted in a
quorum) and keeps each cluster's committed commands, with index and term, in its own durable log
(fdatasync'd in groups). It applies nothing: it stores, streams (recover i..n) and truncates.

Membership (the seed's syntax: the i-th entry of each list belongs to the i-th cluster):
  --id LIST             this logger's member id in each cluster, e.g. 'log0,log1'
  --raft LIST           raft address per cluster, e.g. ':12003,:12004'
  --join LIST           HTTP/join address of a member of each cluster, e.g. ':13000,:13001'
                        (several for one cluster: ':13000|:13001|:13002,:13010')
  --discover kubernetes in a pod: join through the running replica pods of each cluster, found
                        through the Kubernetes API: the pod's raftkv.io/cluster, or --clusters
  --clusters LIST       with --discover kubernetes: the RaftCluster of each --id (a logger group's
                        pod serves several), e.g. 'kv,disk'
Serving:
  --logfolder DIR       where the logs live: DIR/<id>/log (commands), DIR/<id>/raft (default ./data/logger)
  --recov ADDR          state-transfer port: INFO, BASE, RECOVER <cluster> <from> <to> (default :14000)
  --http ADDR           HTTP API: GET /v1/log, GET /v1/log/<cluster>?from=&to=&wait=, POST
                        /v1/log/<cluster>/truncate, /metrics, /healthz, /readyz (default :14001)
  --advertise-host H    host peers use to reach this logger (default: the listen host, or $POD_IP)
  --advertise-raft LIST raft address per cluster to announce when peers reach this logger through
                        a proxy or a Service (default: advertise host + the --raft port)
  --token T             cluster token (or $RAFTKV_TOKEN): needed to join and on every API call
  --tls-cert F --tls-key F --tls-ca F   mutual TLS with the replicas, TLS on the API
  --election-timeout MS, --heartbeat MS   the clusters' Raft timings (default ${D.electionTimeoutMs}, ${D.heartbeatMs})

Example (the seed's: one logger for two clusters):
  raftkv logger --id 'log0,log1' --raft ':12003,:12004' --join ':13000,:13001' --logfolder /var/lib/raftkv-logger
  curl -s localhost:14001/v1/log
  curl -s 'localhost:14001/v1/log/log0?from=1&to=100'
`;

const Addr = AddrFlag;
const Int = IntFlag;
const Flags = z.object({
  id: z.string({ required_error: 'is required' }),
  raft: z.string({ required_error: 'is required' }),
  join: z.string().default(''),
  discover: z.enum(['kubernetes']).optional(),
  clusters: z.string().optional(),
  logfolder: z.string().default('./data/logger'),
  recov: Addr.default(':14000'),
  http: Addr.default(':14001'),
  'advertise-host': z.string().optional(),
  'advertise-raft': z.string().optional(),
  token: z.string().optional(),
  'tls-cert': z.string().optional(),
  'tls-key': z.string().optional(),
  'tls-ca': z.string().optional(),
  'election-timeout': Int(2).default(D.electionTimeoutMs),
  heartbeat: Int(1).default(D.heartbeatMs),
});

export function parseLoggerArgs(values: Record<string, unknown>): LoggerOptions {
  const parsed = Flags.safeParse(values);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('\n'));
  const f = parsed.data;
  const list = (s: string) => s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  const ids = list(f.id);
  const rafts = list(f.raft);
  const joins = f.join === '' ? [] : f.join.split(',').map((x) => x.trim());
  if (rafts.length !== ids.length) throw new Error(`--raft lists ${rafts.length} addresses for ${ids.length} ids: give one per cluster`);
  if (joins.length !== 0 && joins.length !== ids.length) throw new Error(`--join lists ${joins.length} entries for ${ids.length} ids: give one per cluster`);
  const advertised = f['advertise-raft'] === undefined ? [] : list(f['advertise-raft']);
  if (f['advertise-raft'] !== undefined && advertised.length !== ids.length) throw new Error(`--advertise-raft lists ${advertised.length} addresses for ${ids.length} ids: give one per cluster`);
  for (const a of advertised) if (!Addr.safeParse(a).success) throw new Error(`--advertise-raft: ${JSON.stringify(a)} must be host:port`);
  const clusterNames = f.clusters === undefined ? undefined : list(f.clusters);
  if (clusterNames !== undefined) {
    if (f.discover !== 'kubernetes') throw new Error('--clusters names the RaftClusters to find with --discover kubernetes; without it, give --join');
    if (clusterNames.length !== ids.length) throw new Error(`--clusters lists ${clusterNames.length} clusters for ${ids.length} ids: give one per id`);
  }
  const tls = f['tls-cert'] || f['tls-key'] || f['tls-ca'] ? { cert: f['tls-cert'] ?? '', key: f['tls-key'] ?? '', ca: f['tls-ca'] ?? '' } : undefined;
  if (tls && (!tls.cert || !tls.key || !tls.ca)) throw new Error('TLS needs all of --tls-cert, --tls-key and --tls-ca');
  return {
    clusters: ids.map((id, i) => ({ id, raft: rafts[i], advertiseRaft: advertised[i], join: joins.length > 0 ? joins[i].split('|').map((x) => x.trim()).filter(Boolean) : [], cluster: clusterNames?.[i] })),
    logFolder: f.logfolder,
    recov: f.recov,
    http: f.http,
    advertiseHost: f['advertise-host'] ?? process.env.POD_IP,
    token: f.token ?? process.env.RAFTKV_TOKEN,
    tls,
    electionTimeoutMs: f['election-timeout'],
    heartbeatMs: f.heartbeat,
    crashAt: process.env.RAFTKV_TEST_CRASH_AT,
    discover: f.discover,
  };
}

export async function runLogger(argv: string[]): Promise<void> {
  const cl = commandLine('logger', LOGGER_HELP, argv, Object.fromEntries(Object.keys(Flags.shape).map((k) => [k, { type: 'string' as const }])), { singleDash: true });
  if (!cl) return;
  let opts: LoggerOptions;
  try {
    opts = parseLoggerArgs(cl.values);
  } catch (e) {
    return reportUsage('logger', (e as Error).message);
  }
  let logger: Logger;
  try {
    if (opts.discover === 'kubernetes') {
      if (opts.clusters.some((c) => c.join.length > 0)) throw new Error('--discover kubernetes finds the members itself: no --join');
      if (opts.clusters.length > 1 && opts.clusters.some((c) => !c.cluster)) throw new Error('--discover kubernetes with several --id needs --clusters (the RaftCluster of each)');
      const { membershipFromKubernetes } = await import('../discovery/pod.js');
      // Each cluster is looked for at the same time: one slow to come up delays only itself in the log.
      await Promise.all(
        opts.clusters.map(async (c) => {
          const found = await membershipFromKubernetes({ dataDir: join(opts.logFolder, c.id), raftPort: 12000, httpPort: 13000, log: (l) => console.log(l), cluster: c.cluster });
          c.join = found.join ?? [];
        }),
      );
    }
    logger = await Logger.start(opts);
  } catch (e) {
    console.error(`raftkv logger: ${(e as Error).message}`);
    process.exit(1);
  }
  stopOnSignals('logger', () => logger.stop(), logger.stopped);
}
