import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Entry, EntryType, Wal, WalState } from '../../raft/index.js';
import { RecordType, WalRecord, encodeBatch } from '../../raft/storage/records.js';

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `raftkv-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Deterministic content, so a recovered entry can be checked byte for byte. */
export function entryData(index: number, term: number, size = 64): Uint8Array {
  const b = Buffer.alloc(size);
  b.write(`e${index}t${term}:`);
  for (let i = 12; i < size; i++) b[i] = (index * 31 + term * 7 + i) & 0xff;
  return new Uint8Array(b);
}

export function entries(from: number, to: number, term: number, size = 64): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: EntryType.Normal, data: entryData(i, term, size) });
  return out;
}

/** Run `fn` in a fresh temporary directory, removed afterwards whatever happens. */
export async function inTempDir(prefix: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir(prefix);
  try {
    await fn(dir);
  } finally {
    await cleanup();
  }
}

/** What a restart would replay from the log in `dir` (opened and closed again). */
export async function replayed(dir: string): Promise<WalState> {
  const { wal, state } = await Wal.open(dir);
  await wal.close();
  return state;
}

/**
 * Write the version 1 segment a log began with before segments were recycled (`.wal`: no
 * checksum seed, no terminators): its preamble, then `writes`, one batch each.
 */
export async function writeVersionOneSegment(dir: string, writes: WalRecord[][]): Promise<void> {
  const preamble: WalRecord[] = [
    { type: RecordType.SegmentHeader, version: 1 },
    { type: RecordType.HardState, hardState: { term: 0, vote: '', commit: 0 } },
    { type: RecordType.SnapshotMarker, index: 0, term: 0 },
  ];
  const name = `${'0'.padStart(16, '0')}-${'1'.padStart(16, '0')}.wal`;
  await writeFile(join(dir, name), Buffer.concat([preamble, ...writes].map((records) => encodeBatch(records))));
}
