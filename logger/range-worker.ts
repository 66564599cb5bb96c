/** The worker thread of range-thread.ts: receive a range, check its records, pass them on in batches. */
import { parentPort, workerData } from 'node:worker_threads';
import { PreparedBatchBuilder } from '../replica/prepared.js';
import { RecordSplitter } from './command-log.js';
import { rawSource } from './client.js';
import { BATCH_BYTES, RangeJob, RangeMessage, TAKEN, WINDOW } from './range-thread.js';

const job = workerData as RangeJob;
const port = parentPort!;
const send = (m: RangeMessage, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);

let inFlight = 0;
let wake: (() => void) | undefined;
port.on('message', (m) => {
  if (m !== TAKEN) return;
  inFlight--;
  if (wake && inFlight < WINDOW) {
    wake();
    wake = undefined;
  }
});

const splitter = new RecordSplitter();
let pending: Buffer[] = [];
let pendingBytes = 0;
/** Copy the checked records gathered so far into one buffer of their own, and move it over. */
const post = () => {
  if (pendingBytes === 0) return;
  const out = Buffer.allocUnsafeSlow(pendingBytes);
  let off = 0;
  for (const b of pending) off += b.copy(out, off);
  pending = [];
  pendingBytes = 0;
  inFlight++;
  send(out.buffer as ArrayBuffer, [out.buffer as ArrayBuffer]);
};
const builder =
  job.prepareSlabBytes !== undefined
    ? new PreparedBatchBuilder(job.prepareSlabBytes, (batch, transfer) => {
        inFlight++;
        send(batch, transfer);
      })
    : undefined;

try {
  const src = rawSource(job.addr, { token: job.token, ca: job.ca ? Buffer.from(job.ca) : undefined });
  const { bytes } = await src.rawRange(job.cluster, job.from, job.to, (chunk) => {
    for (const r of splitter.pushRaw(chunk)) {
      if (builder) builder.add(r);
      else {
        pending.push(r);
        pendingBytes += r.length;
      }
    }
    if (pendingBytes >= BATCH_BYTES) post();
    if (inFlight >= WINDOW) return new Promise<void>((r) => (wake = r));
  });
  if (splitter.pending() > 0) throw new Error(`the stream ended inside a record (${splitter.pending()} bytes of it)`);
  builder?.flush();
  post();
  send({ done: true, bytes });
} catch (e) {
  send({ error: (e as Error).message });
}
