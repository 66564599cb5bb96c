import assert from 'node:assert/strict';
import { readdir, readFile, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CorruptionError, FileSystem, StorageError, Wal, crc32c, crc32cPortable, nodeFs } from '../../raft/index.js';
import { CALLER_SYNC_MAX_MS } from '../../raft/storage/wal.js';
import { TERMINATOR_BYTES } from '../../raft/storage/records.js';
import { entries, entryData, replayed, tempDir } from './helpers.js';

async function segments(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort();
}

describe('CRC-32C', () => {
  it('matches the standard check value and the portable implementation', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32cPortable(Buffer.from('123456789')), 0xe3069283);
    for (let n = 0; n < 300; n += 7) {
      const b = Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + n) & 0xff));
      assert.equal(crc32c(b), crc32cPortable(b), `length ${n}`);
      assert.equal(crc32c(b.subarray(n >> 1), crc32c(b.subarray(0, n >> 1))), crc32c(b), 'streaming');
    }
  });
});

describe('write-ahead log', () => {
  it('replays entries and the latest hard state after a reopen', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      const { wal } = await Wal.open(dir);
      await wal.append({ entries: entries(1, 10, 1), hardState: { term: 1, vote: 'n1', commit: 5 } });
      await wal.append({ entries: entries(11, 20, 2), hardState: { term: 2, vote: 'n2', commit: 15 } });
      await wal.close();
      const { wal: again, state } = await Wal.open(dir);
      assert.equal(state.entries.length, 20);
      assert.deepEqual(state.entries[19].data, entryData(20, 2));
      assert.deepEqual(state.hardState, { term: 2, vote: 'n2', commit: 15 });
      assert.equal(state.tornBytesRepaired, 0);
      await again.close();
    } finally {
      await cleanup();
    }
  });

  it('a rewrite of an uncommitted suffix supersedes it on replay', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      const { wal } = await Wal.open(dir);
      await wal.append({ entries: entries(1, 10, 1) });
      await wal.append({ entries: entries(7, 8, 3) });
      await wal.close();
      const { wal: reopened, state } = await Wal.open(dir);
      await reopened.close();
      assert.deepEqual(state.entries.map((e) => `${e.index}:${e.term}`), ['1:1', '2:1', '3:1', '4:1', '5:1', '6:1', '7:3', '8:3']);
    } finally {
      await cleanup();
    }
  });

  it('rolls segments at the size limit and deletes old ones only up to the snapshot', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      const { wal } = await Wal.open(dir, { segmentBytes: 4096 });
      for (let i = 0; i < 20; i++) await wal.append({ entries: entries(i * 10 + 1, i * 10 + 10, 1), hardState: { term: 1, vote: '', commit: i * 10 } });
      const before = await segments(dir);
      assert.ok(before.length >= 3, `expected several segments, got ${before.length}`);
      await wal.markSnapshot(150, 1, 150);
      const after = await segments(dir);
      assert.ok(after.length < before.length, 'old segments deleted');
      await wal.close();
      const { wal: reopened, state } = await Wal.open(dir);
      await reopened.close();
      assert.ok(state.entries[0].index <= 151, 'everything after the snapshot is still there');
      assert.equal(state.entries[state.entries.length - 1].index, 200);
      assert.deepEqual(state.hardState, { term: 1, vote: '', commit: 190 }, 'hard state survives losing the segment that held it');
      assert.deepEqual(state.snapshot, { index: 150, term: 1 });
    } finally {
      await cleanup();
    }
  });

  it('repairs a torn tail: a record cut short by a crash is dropped and appends continue', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      const { wal } = await Wal.open(dir);
      await wal.append({ entries: entries(1, 5, 1) });
      await wal.append({ entries: entries(6, 6, 1, 500) });
      await wal.close();
      const [seg] = await segments(dir);
      const file = join(dir, seg);
      const size = (await stat(file)).size;
      await truncate(file, size - 200); // the crash cut the last write
      const { wal: w2, state } = await Wal.open(dir);
      assert.equal(state.entries.length, 5);
      assert.ok(state.tornBytesRepaired > 0);
      await w2.append({ entries: entries(6, 7, 2) });
      await w2.close();
      const { wal: w3, state: s3 } = await Wal.open(dir);
      await w3.close();
      assert.deepEqual(s3.entries.map((e) => e.index), [1, 2, 3, 4, 5, 6, 7]);
      assert.equal(s3.tornBytesRepaired, 0);
    } finally {
      await cleanup();
    }
  });

  it('repairs garbage where the next write would begin; past the end marker, garbage or zeros are ignored', async () => {
    const garbage = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 97 + 13) & 0xff));
    // Appended after the file's end: after the terminator that ends the last write, where a
    // recycled segment keeps its old bytes. Written over the terminator: a torn next write.
    for (const [junk, over, torn] of [
      [Buffer.alloc(300), false, 0],
      [garbage, false, 0],
      [garbage, true, 300],
    ] as const) {
      const { dir, cleanup } = await tempDir('wal');
      try {
        const { wal } = await Wal.open(dir);
        await wal.append({ entries: entries(1, 3, 1) });
        await wal.close();
        const [seg] = await segments(dir);
        const file = join(dir, seg);
        if (over) {
          const bytes = await readFile(file);
          await writeFile(file, Buffer.concat([bytes.subarray(0, bytes.length - TERMINATOR_BYTES), junk]));
        } else {
          await appendFile(file, junk);
        }
        const { wal: reopened, state } = await Wal.open(dir);
        assert.equal(state.entries.length, 3);
        assert.equal(state.tornBytesRepaired, torn);
        // The next write goes where the data ended.
        await reopened.append({ entries: entries(4, 5, 1) });
        await reopened.close();
        const { wal: third, state: after } = await Wal.open(dir);
        await third.close();
        assert.deepEqual(after.entries.map((e) => e.index), [1, 2, 3, 4, 5]);
        assert.equal(after.tornBytesRepaired, 0);
      } finally {
        await cleanup();
      }
    }
  });

  it('a power cut that zeroed a sector inside the last, unsynced write is a torn write: that write goes, the rest stays', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      const { wal } = await Wal.open(dir);
      for (let i = 0; i < 4; i++) await wal.append({ entries: entries(i * 10 + 1, i * 10 + 10, 1, 200) });
      const syncedBytes = (await stat(join(dir, (await segments(dir))[0]))).size;
      await wal.append({ entries: entries(41, 80, 1, 400) }); // ~17 KB in one write
      await wal.close();
      const file = join(dir, (await segments(dir))[0]);
      const bytes = await readFile(file);
      // The disk wrote the write's sectors out of order: one in its middle never made it.
      const hole = Math.ceil((syncedBytes + 4096) / 4096) * 4096;
      assert.ok(hole + 4096 < bytes.length - 200, 'the hole lies inside the last write, intact records after it');
      bytes.fill(0, hole, hole + 4096);
      await writeFile(file, bytes);
      const { wal: again, state } = await Wal.open(dir);
      assert.deepEqual(state.entries.map((e) => e.index), Array.from({ length: 40 }, (_, i) => i + 1));
      assert.equal(state.tornBytesRepaired, bytes.length - syncedBytes);
      await again.append({ entries: entries(41, 42, 2) });
      await again.close();
      const { wal: third, state: after } = await Wal.open(dir);
      await third.close();
      assert.equal(after.entries.length, 42);
      assert.equal(after.tornBytesRepaired, 0);
    } finally {
      await cleanup();
    }
  });

  it('the same hole in a write that a later write follows is corruption of synced data: refused, nothing changed', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      const { wal } = await Wal.open(dir);
      await wal.append({ entries: entries(1, 10, 1, 200) });
      await wal.append({ entries: entries(11, 50, 1, 400) });
      await wal.append({ entries: entries(51, 52, 1, 200) });
      await wal.close();
      const file = join(dir, (await segments(dir))[0]);
      const bytes = await readFile(file);
      bytes.fill(0, 4096, 8192);
      await writeFile(file, bytes);
      await assert.rejects(Wal.open(dir), (e: unknown) => e instanceof CorruptionError && e.file === file && /later write follows/.test(e.message));
      assert.deepEqual(await readFile(file), bytes, 'nothing on disk changed');
    } finally {
      await cleanup();
    }
  });

  it('refuses to start on a flipped byte in the middle of the log, naming file and offset, changing nothing', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      const { wal } = await Wal.open(dir);
      for (let i = 0; i < 10; i++) await wal.append({ entries: entries(i * 5 + 1, i * 5 + 5, 1) });
      await wal.close();
      const [seg] = await segments(dir);
      const file = join(dir, seg);
      const bytes = await readFile(file);
      const pos = Math.floor(bytes.length / 2);
      bytes[pos] ^= 0x40;
      await writeFile(file, bytes);
      await assert.rejects(Wal.open(dir), (e: unknown) => {
        assert.ok(e instanceof CorruptionError);
        assert.equal(e.file, file);
        assert.ok(e.offset <= pos && e.offset > 0, `offset ${e.offset} should point at the damaged record before ${pos}`);
        assert.match(e.message, /refusing to start/);
        return true;
      });
      assert.deepEqual(await readFile(file), bytes, 'recovery did not touch the damaged file');
    } finally {
      await cleanup();
    }
  });

  it('a damaged sealed segment is corruption even at its end', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      const { wal } = await Wal.open(dir, { segmentBytes: 2048 });
      for (let i = 0; i < 10; i++) await wal.append({ entries: entries(i * 5 + 1, i * 5 + 5, 1) });
      await wal.close();
      const [first] = await segments(dir);
      const file = join(dir, first);
      // Past its terminator, into its last write.
      await truncate(file, (await stat(file)).size - TERMINATOR_BYTES - 3);
      await assert.rejects(Wal.open(dir), /sealed segment/);
    } finally {
      await cleanup();
    }
  });

  it('an injected write error stops the log with a clear error; everything acknowledged before survives', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      let failNext = false;
      const { wal } = await Wal.open(dir, {
        faults: { write: () => (failNext ? Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }) : undefined) },
      });
      await wal.append({ entries: entries(1, 10, 1) });
      failNext = true;
      await assert.rejects(wal.append({ entries: entries(11, 12, 1) }), (e: unknown) => e instanceof StorageError && /I\/O error/.test(e.message));
      failNext = false;
      await assert.rejects(wal.append({ entries: entries(11, 12, 1) }), StorageError, 'no appends after a failure');
      await wal.close();
      const { wal: reopened, state } = await Wal.open(dir);
      await reopened.close();
      assert.equal(state.entries.length, 10);
    } finally {
      await cleanup();
    }
  });

  it('a short write is detected and the partial record is repaired on restart', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      let limit: number | undefined;
      const { wal } = await Wal.open(dir, { faults: { write: () => limit } });
      await wal.append({ entries: entries(1, 4, 1) });
      limit = 30; // less than one record
      await assert.rejects(wal.append({ entries: entries(5, 8, 1) }), /short write/);
      await wal.close();
      const { wal: reopened, state } = await Wal.open(dir);
      await reopened.close();
      assert.deepEqual(state.entries.map((e) => e.index), [1, 2, 3, 4]);
      assert.ok(state.tornBytesRepaired > 0);
    } finally {
      await cleanup();
    }
  });

  it('a failed fsync is fatal (the kernel may have dropped the pages; retrying is not safe)', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      let fail = false;
      const { wal } = await Wal.open(dir, { faults: { sync: () => (fail ? Object.assign(new Error('EIO'), { code: 'EIO' }) : undefined) } });
      await wal.append({ entries: entries(1, 2, 1) });
      fail = true;
      await assert.rejects(wal.append({ entries: entries(3, 3, 1) }), /syncing/);
      fail = false;
      await assert.rejects(wal.append({ entries: entries(3, 3, 1) }), StorageError);
      await wal.close();
    } finally {
      await cleanup();
    }
  });

  it('syncs entries, resets, terms and votes before they count; a commit index alone is not written until the next write', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      let syncs = 0;
      let writes = 0;
      const { wal } = await Wal.open(dir, { faults: { sync: () => void syncs++, write: () => void writes++ } });
      const cost = async (f: () => Promise<unknown>) => {
        const before = { syncs, writes };
        await f();
        return { syncs: syncs - before.syncs, writes: writes - before.writes };
      };
      assert.deepEqual(await cost(() => wal.append({ entries: entries(1, 2, 1), hardState: { term: 1, vote: 'n1', commit: 0 } })), { syncs: 1, writes: 1 });
      // Written on its own and unsynced, a later synced write could survive a power cut while it
      // did not: a hole before synced data, which recovery must refuse as corruption.
      assert.deepEqual(await cost(() => wal.append({ entries: [], hardState: { term: 1, vote: 'n1', commit: 2 } })), { syncs: 0, writes: 0 }, 'a commit index alone');
      assert.deepEqual(await cost(() => wal.append({ entries: [], hardState: { term: 2, vote: '', commit: 2 } })), { syncs: 1, writes: 1 }, 'a new term');
      assert.deepEqual(await cost(() => wal.append({ entries: [], hardState: { term: 2, vote: 'n3', commit: 2 } })), { syncs: 1, writes: 1 }, 'a vote');
      await wal.append({ entries: [], hardState: { term: 2, vote: 'n3', commit: 3 } });
      await wal.append({ entries: entries(3, 3, 2) }); // carries commit 3 with it
      await wal.append({ entries: [], hardState: { term: 2, vote: 'n3', commit: 4 } }); // not written: a crash now...
      const { wal: crashed, state: afterCrash } = await Wal.open(dir); // ...replays commit 3
      assert.deepEqual(afterCrash.hardState, { term: 2, vote: 'n3', commit: 3 });
      await crashed.close();
      await wal.close(); // a clean close writes it
      const { wal: again, state } = await Wal.open(dir);
      assert.deepEqual(state.hardState, { term: 2, vote: 'n3', commit: 4 });
      assert.equal(state.entries.length, 3);
      await again.close();
    } finally {
      await cleanup();
    }
  });

  it('syncs on the calling thread when the caller asks, in the thread pool otherwise; after a slow one, in the pool until one is quick', async () => {
    const { dir, cleanup } = await tempDir('wal');
    try {
      // node:fs with its two fdatasyncs counted, and a clock the caller's sync can move.
      let now = 0;
      let callerSyncTakes = 0;
      let callerFails = false;
      const count = { caller: 0, pool: 0 };
      const fs: FileSystem = {
        ...nodeFs,
        open: async (path, flags) => {
          const fh = await nodeFs.open(path, flags);
          const datasync = fh.datasync.bind(fh);
          const datasyncSync = fh.datasyncSync!.bind(fh);
          return Object.assign(fh, {
            datasync: async () => {
              count.pool++;
              await datasync();
            },
            datasyncSync: () => {
              if (callerFails) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
              count.caller++;
              datasyncSync();
              now += callerSyncTakes;
            },
          });
        },
      };
      const { wal } = await Wal.open(dir, { fs, clock: () => now });
      const cost = async (f: () => Promise<unknown>) => {
        const before = { ...count };
        await f();
        return { caller: count.caller - before.caller, pool: count.pool - before.pool };
      };
      assert.deepEqual(await cost(() => wal.append({ entries: entries(1, 2, 1), syncOnCaller: true })), { caller: 1, pool: 0 });
      assert.deepEqual(await cost(() => wal.append({ entries: entries(3, 3, 1) })), { caller: 0, pool: 1 }, 'not asked: the pool');
      callerSyncTakes = CALLER_SYNC_MAX_MS + 1;
      assert.deepEqual(await cost(() => wal.append({ entries: entries(4, 4, 1), syncOnCaller: true })), { caller: 1, pool: 0 });
      callerSyncTakes = 0;
      assert.deepEqual(await cost(() => wal.append({ entries: entries(5, 5, 1), syncOnCaller: true })), { caller: 0, pool: 1 }, 'the last sync was slow: the pool');
      assert.deepEqual(await cost(() => wal.append({ entries: entries(6, 6, 1), syncOnCaller: true })), { caller: 1, pool: 0 }, 'quick again: the caller');
      callerFails = true;
      await assert.rejects(wal.append({ entries: entries(7, 7, 1), syncOnCaller: true }), /syncing/, 'a failed sync on the caller fails the append');
      callerFails = false;
      await assert.rejects(wal.append({ entries: entries(7, 7, 1), syncOnCaller: true }), StorageError, 'and stops the log, as in the pool');
      await wal.close();
      const state = await replayed(dir);
      // 7 was written before its sync failed: never acknowledged, it may or may not replay.
      assert.deepEqual(state.entries.slice(0, 6).map((e) => e.index), [1, 2, 3, 4, 5, 6], 'every synced append replays');
    } finally {
      await cleanup();
    }
  });

  it('rejects an unknown fsync mode', async () => {
    await assert.rejects(Wal.open('/nonexistent-never-created', { fsync: 'sometimes' as never }), /always, batch or never/);
  });
});
