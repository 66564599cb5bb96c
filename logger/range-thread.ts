/**
 * A log range received on a worker thread. Receiving ~560 MB and checking a million checksums
 * took about as long as installing the entries; on one thread the two add up, on two they
 * overlap. The worker (range-worker.ts) reads the stream, checks every record, and hands over
 * whole checked records in batches of a few MB (moved, not copied); this thread decodes them
 * (no checksums again), checks their order and hands them on. At most WINDOW batches are in
 * flight, so memory stays bounded when this thread installs slower than the worker receives.
 *
 * With `prepare`, the worker also decodes the KV commands and copies their values into slabs
 * (replica/prepared.ts), so this thread is left with the map and the sessions.
 */
import { Worker } from 'node:worker_threads';
import { Entry } from '../raft/types.js';
import { PreparedKvBatch } from '../replica/prepared.js';
import { decodeRecords } from './command-log.js';
import { RangeCheck } from './recov.js';

export interface RangeJob {
  addr: string;
  token?: string;
  ca?: Buffer;
  cluster: string;
  from: number;
  to: number;
  /** Hand over prepared KV batches with slabs of this size instead of records. */
  prepareSlabBytes?: number;
}

/** Worker -> this thread: a batch of checked records (its ArrayBuffer), a prepared batch, the end, or a failure. */
export type RangeMessage = ArrayBuffer | PreparedKvBatch | { done: true; bytes: number } | { error: string };
/** This thread -> worker: one batch taken. */
export const TAKEN = 'taken';
export const BATCH_BYTES = 2 << 20;
export const WINDOW = 8;

type Src = { addr: string; token?: string; ca?: Buffer };

export function rangeOffThread(src: Src, cluster: string, from: number, to: number, onEntries: (batch: Entry[]) => void): Promise<{ count: number; bytes: number }> {
  return runRangeWorker({ ...src, cluster, from, to }, (m, check) => {
    if (!(m instanceof ArrayBuffer)) throw new Error('the range reader thread sent a prepared batch unasked');
    const batch = decodeRecords(Buffer.from(m), true);
    check.follow(batch);
    onEntries(batch);
  });
}

/** The range as prepared KV batches (replica/prepared.ts) with slabs of `slabBytes`. */
export function preparedRangeOffThread(src: Src, cluster: string, from: number, to: number, slabBytes: number, onBatch: (batch: PreparedKvBatch) => void): Promise<{ count: number; bytes: number }> {
  return runRangeWorker({ ...src, cluster, from, to, prepareSlabBytes: slabBytes }, (m, check) => {
    if (m instanceof ArrayBuffer) throw new Error('the range reader thread sent records, not a prepared batch');
    check.followPrepared(m);
    onBatch(m);
  });
}

function runRangeWorker(job: RangeJob, take: (m: ArrayBuffer | PreparedKvBatch, check: RangeCheck) => void): Promise<{ count: number; bytes: number }> {
  const worker = new Worker(new URL('./range-worker.js', import.meta.url), { workerData: job });
  const check = new RangeCheck(job.from);
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (e: Error | undefined, bytes = 0) => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      if (e) reject(e);
      else resolve({ count: job.to - job.from + 1, bytes });
    };
    worker.on('message', (m: RangeMessage) => {
      if (settled) return;
      try {
        if (m instanceof ArrayBuffer || 'fields' in m) {
          take(m, check);
          worker.postMessage(TAKEN);
        } else if ('error' in m) settle(new Error(m.error));
        else {
          check.end(job.to, `got ${check.next - job.from} of ${job.to - job.from + 1} entries`);
          settle(undefined, m.bytes);
        }
      } catch (e) {
        settle(e as Error);
      }
    });
    worker.on('error', (e) => settle(e));
    worker.on('exit', (code) => settle(new Error(`the range reader thread exited (code ${code}) before the range was whole`)));
  });
}
