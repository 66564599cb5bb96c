/**
 * `npm run bench:wal`: what durability costs on this disk. Three measurements in one run, same
 * directory, same async I/O path:
 *   raw       4 KB writes, each followed by fdatasync (the disk's floor for durable writes)
 *   unbatched one 1 KB entry per WAL append, each made durable (fsync: batch, batch of one)
 *   batched   1 KB entries in batches (group commit: one write and one fdatasync per batch)
 * Ends with `raw fdatasync/s`, `unbatched appends/s` and `batched appends/s`.
 * Options: --seconds N per phase (default 3), --batch N entries (default 1000), --dir DIR.
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchFlags } from './flags.js';
import { Entry, EntryType, Wal, crc32cImplementation } from '../raft/index.js';

const values = benchFlags<{ seconds: string; batch: string; dir: string }>(
  'bench:wal',
  'usage: node dist/bench/wal.js [--seconds S] [--batch N] [--dir DIR]',
  {
    seconds: { type: 'string', default: '3' },
    batch: { type: 'string', default: '1000' },
    dir: { type: 'string', default: tmpdir() },
  },
);
const seconds = Number(values.seconds);
const batchSize = Number(values.batch);
if (!(seconds > 0) || !(batchSize > 0)) {
  console.error('--seconds and --batch must be positive');
  process.exit(2);
}

const base = await mkdtemp(join(values.dir!, 'raftkv-bench-wal-'));
const until = () => {
  const end = performance.now() + seconds * 1000;
  return () => performance.now() < end;
};

async function raw(): Promise<number> {
  const fh = await open(join(base, 'raw.dat'), 'w');
  const buf = Buffer.alloc(4096, 7);
  let n = 0;
  let pos = 0;
  const t0 = performance.now();
  for (const more = until(); more(); n++) {
    await fh.write(buf, 0, buf.length, pos);
    pos += buf.length;
    await fh.datasync();
  }
  const rate = n / ((performance.now() - t0) / 1000);
  await fh.close();
  return rate;
}

function makeEntries(from: number, count: number, payload: Uint8Array): Entry[] {
  const out: Entry[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = { index: from + i, term: 1, type: EntryType.Normal, data: payload };
  return out;
}

async function walRate(name: string, perAppend: number): Promise<{ entries: number; bytes: number; secs: number }> {
  const { wal } = await Wal.open(join(base, name), { fsync: 'batch' });
  const payload = new Uint8Array(1024).fill(42);
  let next = 1;
  const t0 = performance.now();
  for (const more = until(); more(); ) {
    await wal.append({ entries: makeEntries(next, perAppend, payload), hardState: perAppend > 1 ? { term: 1, vote: 'n1', commit: next - 1 } : undefined });
    next += perAppend;
  }
  const secs = (performance.now() - t0) / 1000;
  await wal.close();
  return { entries: next - 1, bytes: (next - 1) * 1024, secs };
}

try {
  console.log(`dir: ${base}; fsync: batch (fdatasync per append call); checksum: CRC-32C ${crc32cImplementation}`);
  const rawRate = await raw();
  console.log(`raw: 4 KB write + fdatasync: ${Math.round(rawRate)}/s`);
  const u = await walRate('unbatched', 1);
  const uRate = u.entries / u.secs;
  console.log(`unbatched: 1 entry of 1 KB per durable append: ${Math.round(uRate)} entries/s (${(uRate / rawRate * 100).toFixed(1)}% of raw)`);
  const b = await walRate('batched', batchSize);
  const bRate = b.entries / b.secs;
  console.log(`batched: ${batchSize} entries of 1 KB per durable append: ${Math.round(bRate)} entries/s, ${(b.bytes / b.secs / 1e6).toFixed(1)} MB/s`);
  console.log(`raw fdatasync/s: ${Math.round(rawRate)}`);
  console.log(`unbatched appends/s: ${Math.round(uRate)}`);
  console.log(`batched appends/s: ${Math.round(bRate)}`);
} finally {
  await rm(base, { recursive: true, force: true });
}
