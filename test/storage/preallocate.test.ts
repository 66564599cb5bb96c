import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DiskStorage, Wal } from '../../raft/index.js';
import { encodeBatch, RecordType, segmentSeed, TERMINATOR_BYTES, WAL_VERSION } from '../../raft/storage/records.js';
import { entries, inTempDir, replayed, tempDir, writeVersionOneSegment } from './helpers.js';

const SEGMENT = 16 << 10;

async function segments(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort();
}

const isZero = (b: Buffer) => b.every((x) => x === 0);

describe('preallocated WAL segments', () => {
  it('are zero-filled to their size before use while writes are small, roll, and replay whole', async () => {
    await inTempDir('prealloc', async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: SEGMENT, preallocateBytes: SEGMENT });
      for (let i = 0; i < 30; i++) await wal.append({ entries: entries(i * 10 + 1, i * 10 + 10, 1, 100), hardState: { term: 1, vote: '', commit: i * 10 } });
      const names = await segments(dir);
      assert.ok(names.length >= 3, `several segments (${names.length})`);
      for (const name of names) assert.ok((await stat(join(dir, name))).size >= SEGMENT, `${name} was preallocated`);
      const last = names[names.length - 1];
      assert.equal((await stat(join(dir, last))).size, SEGMENT, 'the open segment keeps its preallocated size');
      const tail = await readFile(join(dir, last));
      assert.ok(!isZero(tail.subarray(0, 64)), 'data at its start');
      assert.ok(isZero(tail.subarray(tail.length - 64)), 'zeros at its end');
      await wal.close();
      const { wal: again, state } = await Wal.open(dir, { segmentBytes: SEGMENT, preallocateBytes: SEGMENT });
      assert.deepEqual(state.entries.map((e) => e.index), Array.from({ length: 300 }, (_, i) => i + 1));
      assert.equal(state.tornBytesRepaired, 0);
      assert.deepEqual(state.hardState, { term: 1, vote: '', commit: 290 });
      // Appends after a reopen go where the data ended, not at the end of the file.
      await again.append({ entries: entries(301, 305, 2, 100) });
      await again.close();
      const after = await replayed(dir);
      assert.equal(after.entries.length, 305);
      assert.equal(after.entries[304].term, 2);
    });
  });

  it('a torn write inside the zeros is cut at its start, so a shorter later write cannot run into its leftovers', async () => {
    await inTempDir('prealloc', async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: SEGMENT, preallocateBytes: SEGMENT });
      await wal.append({ entries: entries(1, 5, 1, 100) });
      await wal.close();
      const [seg] = await segments(dir);
      const file = join(dir, seg);
      const bytes = await readFile(file);
      // Where the data ends: the segment's preamble, then the one write of entries 1..5.
      const seed = segmentSeed(0);
      const preamble = encodeBatch([
        { type: RecordType.SegmentHeader, version: WAL_VERSION },
        { type: RecordType.HardState, hardState: { term: 0, vote: '', commit: 0 } },
        { type: RecordType.SnapshotMarker, index: 0, term: 0 },
      ], undefined, seed);
      const dataEnd = preamble.length + encodeBatch(entries(1, 5, 1, 100).map((entry) => ({ type: RecordType.Entry, entry })), undefined, seed).length;
      assert.ok(isZero(bytes.subarray(dataEnd)) && !isZero(bytes.subarray(dataEnd - 8, dataEnd)));
      // An unsynced write of entries 6..30 torn by a power cut: its middle never reached the disk.
      const torn = encodeBatch(entries(6, 30, 1, 100).map((entry) => ({ type: RecordType.Entry, entry })), undefined, seed, TERMINATOR_BYTES);
      torn.fill(0, 1000, 1500);
      torn.copy(bytes, dataEnd);
      await writeFile(file, bytes);
      const { wal: reopened, state } = await Wal.open(dir, { segmentBytes: SEGMENT, preallocateBytes: SEGMENT });
      assert.deepEqual(state.entries.map((e) => e.index), [1, 2, 3, 4, 5], 'the torn write is gone');
      assert.equal(state.tornBytesRepaired, torn.length - TERMINATOR_BYTES);
      const repaired = await readFile(file);
      assert.equal(repaired.length, SEGMENT, 'still preallocated');
      assert.ok(isZero(repaired.subarray(dataEnd, dataEnd + TERMINATOR_BYTES)), 'a terminator where the torn write began');
      // A short write where the torn one began, then a reopen: no leftovers, no corruption.
      await reopened.append({ entries: entries(6, 6, 2, 100) });
      await reopened.close();
      const after = await replayed(dir);
      assert.deepEqual(after.entries.map((e) => `${e.index}:${e.term}`), ['1:1', '2:1', '3:1', '4:1', '5:1', '6:2']);
      assert.equal(after.tornBytesRepaired, 0);
    });
  });

  it('after the first segment, large writes (group commit under load) make the next segments grow as written instead', async () => {
    await inTempDir('prealloc', async (dir) => {
      const segment = 256 << 10;
      const { wal } = await Wal.open(dir, { segmentBytes: segment, preallocateBytes: segment });
      // 40 entries of 1 KB per write: about 41 KB per fdatasync.
      for (let i = 0; i < 20; i++) await wal.append({ entries: entries(i * 40 + 1, i * 40 + 40, 1, 1024) });
      await wal.close();
      const names = await segments(dir);
      assert.ok(names.length >= 3, `several segments (${names.length})`);
      assert.ok((await stat(join(dir, names[0]))).size >= segment, 'the first one preallocated');
      const last = names[names.length - 1];
      const bytes = (await stat(join(dir, last))).size;
      assert.ok(bytes < segment, `the open one grows as written (${bytes} bytes)`);
      assert.ok(!(await readdir(dir)).includes('next.wal.tmp'), 'no spare is zero-filled');
      const state = await replayed(dir);
      assert.equal(state.entries.length, 800);
    });
  });

  it('a sealed segment that ends in zeros (the segment size was lowered between runs) replays whole', async () => {
    await inTempDir('prealloc', async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 64 << 10, preallocateBytes: 64 << 10 });
      await wal.append({ entries: entries(1, 10, 1, 100) });
      await wal.close();
      const { wal: smaller } = await Wal.open(dir, { segmentBytes: 2048, preallocateBytes: 2048 });
      for (let i = 1; i < 6; i++) await smaller.append({ entries: entries(i * 10 + 1, i * 10 + 10, 1, 100) });
      await smaller.close();
      const names = await segments(dir);
      assert.ok(names.length >= 3);
      assert.equal((await stat(join(dir, names[0]))).size, 64 << 10, 'the first segment, sealed, still has its zeros');
      const state = await replayed(dir);
      assert.deepEqual(state.entries.map((e) => e.index), Array.from({ length: 60 }, (_, i) => i + 1));
    });
  });

  it('a spare left by a crash is discarded at open; a segment file that is all zeros (created, never written) gets its header', async () => {
    await inTempDir('prealloc', async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: SEGMENT, preallocateBytes: SEGMENT });
      await wal.append({ entries: entries(1, 3, 1, 100) });
      await wal.close();
      // A crash while the spare was half written, right after a new segment was named.
      await writeFile(join(dir, 'next.wal.tmp'), Buffer.from('half written'));
      const names = await segments(dir);
      assert.equal(names.length, 1);
      await writeFile(join(dir, `${'1'.padStart(16, '0')}-${'4'.padStart(16, '0')}.v2.wal`), Buffer.alloc(SEGMENT));
      const { wal: again, state } = await Wal.open(dir, { segmentBytes: SEGMENT, preallocateBytes: SEGMENT });
      assert.deepEqual(state.entries.map((e) => e.index), [1, 2, 3]);
      assert.ok(!(await readdir(dir)).includes('next.wal.tmp'), 'the leftover spare is gone');
      // Enough to roll (into a spare zero-filled once the segment is half full) and past it.
      for (let i = 4; i < 304; i++) await again.append({ entries: entries(i, i, 1, 100) });
      await again.close();
      const after3 = await segments(dir);
      assert.ok(after3.length >= 3);
      assert.ok((await stat(join(dir, after3[2]))).size >= SEGMENT, 'made from a zero-filled spare');
      const after = await replayed(dir);
      assert.deepEqual(after.entries.map((e) => e.index), Array.from({ length: 303 }, (_, i) => i + 1));
    });
  });

  it('a segment a snapshot covers becomes the next segment, old writes and all, and they never read as its own', async () => {
    await inTempDir('prealloc', async (dir) => {
      // Large writes: no zero-filled spare after the first, so the next ones come from recycling.
      const segment = 64 << 10;
      const { wal } = await Wal.open(dir, { segmentBytes: segment, preallocateBytes: segment });
      let next = 1;
      const write = async (n: number) => {
        await wal.append({ entries: entries(next, next + n - 1, 1, 1024), hardState: { term: 1, vote: '', commit: next - 1 } });
        next += n;
      };
      while ((await segments(dir)).length < 4) await write(30);
      const before = await segments(dir);
      const oldest = await readFile(join(dir, before[0]));
      await wal.markSnapshot(next - 1, 1, before.length > 2 ? parseInt(before[2].split('-')[1], 16) - 1 : 0);
      const spare = await readFile(join(dir, 'next.wal.tmp'));
      assert.ok(spare.equals(oldest), 'the covered segment was renamed to be the next one, not deleted');
      const recycledAs = `${(parseInt(before[before.length - 1].slice(0, 16), 16) + 1).toString(16).padStart(16, '0')}`;
      // Roll into it with a few small writes, then crash-reopen: its old writes stay out.
      while (!(await segments(dir)).some((n) => n.startsWith(recycledAs))) await write(30);
      await write(1);
      await write(1);
      await wal.close();
      const name = (await segments(dir)).find((n) => n.startsWith(recycledAs))!;
      const reused = await readFile(join(dir, name));
      assert.ok(reused.length >= oldest.length && !reused.subarray(reused.length - 1024).every((b) => b === 0), 'it still holds old bytes past its data');
      const { wal: again, state } = await Wal.open(dir);
      assert.equal(state.tornBytesRepaired, 0);
      assert.equal(state.entries[state.entries.length - 1].index, next - 1);
      state.entries.forEach((e, i) => i > 0 && assert.equal(e.index, state.entries[i - 1].index + 1));
      await again.append({ entries: entries(next, next, 2, 1024) });
      await again.close();
      const after = await replayed(dir);
      assert.equal(after.entries[after.entries.length - 1].index, next);
      assert.equal(after.entries[after.entries.length - 1].term, 2);
    });
  });

  it('a log written by version 1 (.wal segments) replays, and the log goes on in version 2 segments', async () => {
    await inTempDir('prealloc', async (dir) => {
      await writeVersionOneSegment(dir, [
        entries(1, 4, 1, 100).map((entry) => ({ type: RecordType.Entry, entry })),
        [{ type: RecordType.HardState, hardState: { term: 1, vote: 'a', commit: 4 } }],
      ]);
      const { wal, state } = await Wal.open(dir, { segmentBytes: SEGMENT, preallocateBytes: SEGMENT });
      assert.deepEqual(state.entries.map((e) => e.index), [1, 2, 3, 4]);
      assert.deepEqual(state.hardState, { term: 1, vote: 'a', commit: 4 });
      await wal.append({ entries: entries(5, 6, 1, 100) });
      await wal.close();
      assert.deepEqual(await segments(dir), [`${'0'.padStart(16, '0')}-${'1'.padStart(16, '0')}.wal`, `${'1'.padStart(16, '0')}-${'5'.padStart(16, '0')}.v2.wal`]);
      const after = await replayed(dir);
      assert.deepEqual(after.entries.map((e) => e.index), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(after.hardState, { term: 1, vote: 'a', commit: 4 });
    });
  });

  it('DiskStorage preallocates whole segments by default, and not at all when told 0 or when it never syncs', async () => {
    for (const [preallocateBytes, fsync, size] of [
      [undefined, 'batch', SEGMENT],
      [0, 'batch', undefined],
      [undefined, 'never', undefined],
    ] as const) {
      const { dir, cleanup } = await tempDir('prealloc');
      try {
        const storage = await DiskStorage.open(dir, { segmentBytes: SEGMENT, preallocateBytes, fsync });
        await storage.save({ entries: entries(1, 3, 1, 100), hardState: { term: 1, vote: '', commit: 0 } });
        await storage.close();
        const [seg] = await segments(join(dir, 'wal'));
        const bytes = (await stat(join(dir, 'wal', seg))).size;
        if (size) assert.equal(bytes, size);
        else assert.ok(bytes < 1024, `grows as written (${bytes} bytes)`);
      } finally {
        await cleanup();
      }
    }
  });
});
