/** Replica defaults, shared by the `raftkv replica` flags and the embedded `startReplica()`. */
export const REPLICA_DEFAULTS = {
  app: 'kvstore',
  fsync: 'batch',
  electionTimeoutMs: 1000,
  heartbeatMs: 100,
  preload: 0,
  valueSize: 128,
  keys: 1_000_000,
  maxValueBytes: 1 << 20,
  snapshotEvery: 100_000,
  readMode: 'safe',
  replication: 'thrifty',
  maxSessions: 10_000,
  sessionTtlMs: 600_000,
} as const;
