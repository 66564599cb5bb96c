/** Prometheus metrics of one replica (its own registry, so several can share a process). */
import { readFileSync } from 'node:fs';
import client from 'prom-client';
import { HotCounter, HotHistogram } from './hot-metrics.js';

export class ReplicaMetrics {
  readonly registry = new client.Registry();
  readonly term = new client.Gauge({ name: 'raftkv_raft_term', help: 'Current Raft term', registers: [this.registry] });
  readonly commitIndex = new client.Gauge({ name: 'raftkv_raft_commit_index', help: 'Highest committed log index', registers: [this.registry] });
  readonly appliedIndex = new client.Gauge({ name: 'raftkv_raft_applied_index', help: 'Highest applied log index', registers: [this.registry] });
  readonly isLeader = new client.Gauge({ name: 'raftkv_raft_is_leader', help: '1 when this replica leads', registers: [this.registry] });
  readonly leaderChanges = new client.Counter({ name: 'raftkv_raft_leader_changes_total', help: 'Times the known leader changed', registers: [this.registry] });
  readonly proposals = new HotCounter(this.registry, { name: 'raftkv_raft_proposals_total', help: 'Commands proposed by this replica', labelNames: ['result'] });
  readonly appendFsync = new HotHistogram(this.registry, {
    name: 'raftkv_storage_append_seconds',
    help: 'Time to make one Raft batch durable (write + fdatasync)',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  });
  readonly batchEntries = new HotHistogram(this.registry, {
    name: 'raftkv_storage_batch_entries',
    help: 'Entries per durable batch (group commit size)',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096],
  });
  readonly walBytes = new HotCounter(this.registry, { name: 'raftkv_storage_written_bytes_total', help: 'Entry bytes written to the WAL' });
  readonly entriesReadBack = new HotCounter(this.registry, {
    name: 'raftkv_log_entries_read_back_total',
    help: 'Entries read back from the WAL (no longer held in memory) to send to a follower that fell behind',
  });
  readonly apply = new HotHistogram(this.registry, {
    name: 'raftkv_apply_seconds',
    help: 'Time to apply one batch of committed entries',
    buckets: [0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
  });
  readonly snapshots = new client.Counter({ name: 'raftkv_snapshots_total', help: 'Snapshots taken or installed', labelNames: ['kind'], registers: [this.registry] });
  readonly snapshotBytes = new client.Gauge({ name: 'raftkv_snapshot_bytes', help: 'Size of the latest snapshot', registers: [this.registry] });
  readonly peerRtt = new client.Histogram({
    name: 'raftkv_peer_rtt_seconds',
    help: 'Heartbeat round trip to each peer',
    labelNames: ['peer'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });
  readonly peerBytes = new HotCounter(this.registry, { name: 'raftkv_peer_bytes_total', help: 'Bytes on peer connections', labelNames: ['direction'] });
  readonly clientRequests = new HotHistogram(this.registry, {
    name: 'raftkv_client_request_seconds',
    help: 'Client request latency by operation and protocol',
    labelNames: ['op', 'protocol', 'status'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
  });
  readonly keys = new client.Gauge({ name: 'raftkv_keys', help: 'Keys in the state machine', registers: [this.registry] });

  readonly diskRead = new client.Gauge({
    name: 'raftkv_process_disk_read_bytes',
    help: 'Bytes this process caused to be read from storage (/proc/self/io read_bytes)',
    registers: [this.registry],
    collect: () => this.readProcIo(),
  });
  readonly diskWritten = new client.Gauge({
    name: 'raftkv_process_disk_written_bytes',
    help: 'Bytes this process caused to be written to storage (/proc/self/io write_bytes)',
    registers: [this.registry],
  });
  readonly syscallsWrite = new client.Gauge({ name: 'raftkv_process_write_syscalls', help: 'write-like syscalls (/proc/self/io syscw)', registers: [this.registry] });

  private readProcIo(): void {
    try {
      const io = readFileSync('/proc/self/io', 'utf8');
      const field = (k: string) => Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(io)?.[1] ?? 0);
      this.diskRead.set(field('read_bytes'));
      this.diskWritten.set(field('write_bytes'));
      this.syscallsWrite.set(field('syscw'));
    } catch {
      // Not Linux, or /proc unavailable: leave the gauges at zero.
    }
  }

  constructor(labels: Record<string, string>) {
    this.registry.setDefaultLabels(labels);
    // Process CPU, memory, event-loop lag, handles: what the seed's psutil monitor recorded.
    client.collectDefaultMetrics({ register: this.registry, prefix: 'raftkv_' });
  }
}
