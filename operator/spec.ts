/**
 * The RaftCluster custom resource (raftkv.io/v1alpha1): its spec, validated with zod and
 * defaults filled. Shared by the operator and by `raftkv local`, which runs the same topology
 * as local processes.
 */
import { z } from 'zod';

const Quantity = z.string().regex(/^\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T|m)?$/, 'must be a Kubernetes quantity like 1Gi or 500m');

const Spread = z.enum(['required', 'preferred', 'none']);

const Toleration = z
  .object({
    key: z.string().optional(),
    operator: z.enum(['Exists', 'Equal']).optional(),
    value: z.string().optional(),
    effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
    tolerationSeconds: z.number().int().optional(),
  })
  .strict();

/** A pod's data: an emptyDir (it goes with the pod) or a PersistentVolumeClaim per pod. */
const Storage = z
  .object({
    ephemeral: z.boolean().describe('emptyDir (the data goes with the pod) or a PersistentVolumeClaim per pod.').default(true),
    size: Quantity.default('1Gi'),
    storageClassName: z.string().optional(),
  })
  .strict()
  .default({});

const Resources = z
  .object({
    requests: z.record(z.string(), Quantity).optional(),
    limits: z.record(z.string(), Quantity).optional(),
  })
  .strict()
  .default({});

/** The clusters' Raft timings (a kind adds its own fields), and the rule between them. */
const RAFT_TIMINGS = {
  electionTimeoutMs: z.number().int().min(2).default(1000),
  heartbeatMs: z.number().int().min(1).default(100),
};
const timingsAgree = (r: { electionTimeoutMs: number; heartbeatMs: number }) => r.electionTimeoutMs >= 2 * r.heartbeatMs;
const TIMINGS_RULE = 'electionTimeoutMs must be at least twice heartbeatMs';

export const LoadgenSpec = z
  .object({
    driver: z.enum(['protobuf', 'text', 'http']).describe('Client protocol of the generator.').default('protobuf'),
    clients: z.number().int().min(1).max(10_000).describe('Closed-loop clients per generator.').default(4),
    /** Seconds. */
    duration: z.number().positive().describe('Seconds to run.').default(10),
    keys: z.number().int().min(1).describe('Key space: keys 0..keys-1.').default(1000),
    valueSize: z.number().int().min(0).max(64 << 20).describe('Value size in bytes.').default(128),
    writeRatio: z.number().min(0).max(1).describe('Fraction of writes, 0..1.').default(0.5),
    thinkMs: z.number().min(0).describe('Think time after each answer (ms).').default(0),
    /** Generator processes (pods) run in parallel, results merged. */
    parallel: z.number().int().min(1).max(64).describe('Generator pods run in parallel, results merged.').default(1),
  })
  .strict();

export const RaftClusterSpec = z
  .object({
    app: z.enum(['kvstore', 'diskstorage', 'lmdb']).describe('The replicated application: kvstore (in memory), diskstorage (the seed\'s file of fixed-size values) or lmdb.').default('kvstore'),
    replicas: z.number().int().min(1).max(15).describe('Voting replicas (odd sizes tolerate the most failures per member).').default(3),
    loggers: z.number().int().min(0).max(7).describe('Decoupled non-voting loggers keeping the command log for recovery.').default(0),
    /** Every replica writes each applied command synchronously to an application log. */
    applog: z.boolean().describe('Every replica writes each applied command synchronously to its own application log.').default(false),
    valueSize: z.number().int().min(8).describe('diskstorage value size in bytes.').default(128),
    preload: z.number().int().min(0).describe('Keys written at start (the seed\'s preload).').default(0),
    /** diskstorage key space. */
    keys: z.number().int().min(1).describe('diskstorage key space.').default(1_000_000),
    fsync: z.enum(['batch', 'always', 'never', 'memory']).describe('Durability of the Raft log: batch (group commit), always, never (page cache), memory.').default('batch'),
    storage: Storage,
    image: z.string().describe('Container image of every pod.').default('raftkv:latest'),
    resources: Resources,
    raft: z
      .object({ ...RAFT_TIMINGS, snapshotEvery: z.number().int().min(10).default(100_000) })
      .strict()
      .refine(timingsAgree, TIMINGS_RULE)
      .default({}),
    placement: z
      .object({
        replicaSpread: Spread.describe('Replicas of this cluster on different nodes: required (a replica stays Pending rather than share a node), preferred, or none.').default('preferred'),
        loggersApart: Spread.describe('Loggers on nodes that run none of this cluster\'s replicas: required, preferred or none.').default('preferred'),
        nodeSelector: z.record(z.string(), z.string()).describe('Node labels every pod of the cluster must match.').optional(),
        tolerations: z.array(Toleration).describe('Tolerations of every pod of the cluster.').optional(),
      })
      .strict()
      .describe('Where pods run (the seed\'s rules: replicas apart, loggers apart from replicas).')
      .default({}),
    monitoring: z.object({ enabled: z.boolean().default(true), serviceMonitor: z.boolean().default(false) }).strict().default({}),
    loggerGroup: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label')
      .describe('A RaftLoggerGroup of this namespace whose loggers also keep this cluster\'s log (the seed\'s one logger for several clusters), besides spec.loggers.')
      .optional(),
    loadgen: LoadgenSpec.optional(),
  })
  .strict();

export const RaftCluster = z.object({
  apiVersion: z.literal('raftkv.io/v1alpha1'),
  kind: z.literal('RaftCluster'),
  metadata: z.object({ name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label'), namespace: z.string().optional() }).passthrough(),
  spec: RaftClusterSpec.default({}),
});

export type RaftClusterSpec = z.infer<typeof RaftClusterSpec>;

/**
 * A RaftLoggerGroup: logger processes shared by several RaftClusters (those whose
 * spec.loggerGroup names it). Each pod is one process with one non-voting member per cluster.
 */
export const RaftLoggerGroupSpec = z
  .object({
    loggers: z.number().int().min(1).max(7).describe('Logger processes (pods); each keeps the log of every cluster of the group.').default(1),
    image: z.string().describe('Container image of the logger pods.').default('raftkv:latest'),
    storage: Storage,
    resources: Resources,
    raft: z.object(RAFT_TIMINGS).strict().refine(timingsAgree, TIMINGS_RULE).default({}),
    placement: z
      .object({
        loggersApart: Spread.describe('Logger pods of the group on different nodes: required, preferred or none.').default('preferred'),
        nodeSelector: z.record(z.string(), z.string()).optional(),
        tolerations: z.array(Toleration).optional(),
      })
      .strict()
      .default({}),
    monitoring: z.object({ enabled: z.boolean().default(true) }).strict().default({}),
  })
  .strict();

export const RaftLoggerGroup = z.object({
  apiVersion: z.literal('raftkv.io/v1alpha1'),
  kind: z.literal('RaftLoggerGroup'),
  metadata: z.object({ name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label'), namespace: z.string().optional() }).passthrough(),
  spec: RaftLoggerGroupSpec.default({}),
});

export type RaftLoggerGroupSpec = z.infer<typeof RaftLoggerGroupSpec>;
export type RaftLoggerGroup = z.infer<typeof RaftLoggerGroup>;

export function parseRaftLoggerGroup(doc: unknown, source = 'manifest'): RaftLoggerGroup {
  const r = RaftLoggerGroup.safeParse(doc);
  if (!r.success) throw new Error(`${source}: invalid RaftLoggerGroup: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}
export type RaftCluster = z.infer<typeof RaftCluster>;

/** Parse and validate a RaftCluster, with every problem named by its path. */
export function parseRaftCluster(doc: unknown, source = 'manifest'): RaftCluster {
  const r = RaftCluster.safeParse(doc);
  if (!r.success) throw new Error(`${source}: invalid RaftCluster: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** Member names follow one convention everywhere: <cluster>-<ordinal>, loggers <cluster>-log-<ordinal>. */
export function replicaName(cluster: string, ordinal: number): string {
  return `${cluster}-${ordinal}`;
}

export function loggerName(cluster: string, ordinal: number): string {
  return `${cluster}-log-${ordinal}`;
}

/** A group's logger pods are <group>-<ordinal>; in each cluster the pod is member <group>-<ordinal>-<cluster>. */
export function groupLoggerName(group: string, ordinal: number): string {
  return `${group}-${ordinal}`;
}

export function groupMemberId(group: string, ordinal: number, cluster: string): string {
  return `${group}-${ordinal}-${cluster}`;
}
