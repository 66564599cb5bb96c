import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DiskStorage, MemoryStorage, Snapshot, SnapshotStore, Storage } from '../../raft/index.js';
import { entries, inTempDir, tempDir } from './helpers.js';
import fc from 'fast-check';
import { decodeSnapshot, encodeSnapshot, verifySnapshotFile } from '../../raft/storage/snapshots.js';
import { nodeFs } from '../../raft/index.js';

const membership = { voters: ['n1', 'n2', 'n3'], learners: [], addrs: { n1: 'a', n2: 'b', n3: 'c' } };
const snap = (index: number, term: number, fill = index): Snapshot => ({
  meta: { index, term, membership },
  data: new Uint8Array(1000).fill(fill & 0xff),
});

/** The contract both implementations keep; DiskStorage additionally survives a reopen. */
function contract(name: string, make: () => Promise<{ storage: Storage; reopen: () => Promise<Storage>; cleanup: () => Promise<void> }>) {
  describe(`${name}: storage contract`, () => {
    it('keeps entries, hard state, truncation and compaction', async () => {
      const { storage, reopen, cleanup } = await make();
      try {
        await storage.save({ entries: entries(1, 10, 1), hardState: { term: 1, vote: 'n1', commit: 3 } });
        await storage.save({ entries: entries(9, 11, 2), hardState: { term: 2, vote: 'n2', commit: 8 } });
        await storage.saveSnapshot(snap(6, 1), 4);
        const st = (await reopen()).initialState();
        assert.deepEqual(st.hardState, { term: 2, vote: 'n2', commit: 8 });
        assert.equal(st.snapshot?.meta.index, 6);
        assert.deepEqual(st.entries!.map((e) => `${e.index}:${e.term}`).filter((s) => Number(s.split(':')[0]) > 6), ['7:1', '8:1', '9:2', '10:2', '11:2']);
      } finally {
        await cleanup();
      }
    });

    it('an installed snapshot replaces the whole log', async () => {
      const { storage, reopen, cleanup } = await make();
      try {
        await storage.save({ entries: entries(1, 10, 1), hardState: { term: 1, vote: '', commit: 2 } });
        await storage.save({ snapshot: snap(50, 4), entries: entries(51, 52, 4), hardState: { term: 4, vote: '', commit: 50 } });
        const st = (await reopen()).initialState();
        assert.equal(st.snapshot?.meta.index, 50);
        assert.deepEqual(st.entries!.map((e) => e.index), [51, 52]);
        assert.equal(st.applied, 50);
      } finally {
        await cleanup();
      }
    });
  });
}

contract('MemoryStorage', async () => {
  const storage = new MemoryStorage();
  return { storage, reopen: async () => storage, cleanup: async () => {} };
});

contract('DiskStorage', async () => {
  const { dir, cleanup } = await tempDir('storage');
  const storage = await DiskStorage.open(dir);
  const reopened: Storage[] = [];
  return {
    storage,
    reopen: async () => {
      await storage.close();
      const again = await DiskStorage.open(dir);
      reopened.push(again);
      return again;
    },
    cleanup: async () => {
      for (const s of [storage, ...reopened]) await s.close();
      await cleanup();
    },
  };
});

describe('snapshot files', () => {
  it('keeps the last N, ignores a half-written temp file, and falls back past a damaged one', async () => {
    const { dir, cleanup } = await tempDir('snap');
    try {
      const store = new SnapshotStore(dir, 2);
      await store.save(snap(10, 1));
      await store.save(snap(20, 1));
      await store.save(snap(30, 2));
      const names = (await readdir(dir)).sort();
      assert.equal(names.length, 2, `kept ${names}`);
      await writeFile(join(dir, 'snap-00000000000000ff-0000000000000009.snap.tmp'), 'half written');
      const newest = join(dir, names[1]);
      const bytes = await readFile(newest);
      bytes[bytes.length - 100] ^= 1;
      await writeFile(newest, bytes);
      const loaded = await store.loadLatest();
      assert.equal(loaded.snapshot?.meta.index, 20, 'fell back to the older intact snapshot');
      assert.ok(loaded.skipped.some((s) => s.file === newest && /checksum/.test(s.reason)));
      assert.ok(loaded.skipped.some((s) => /unfinished write/.test(s.reason)));
      assert.ok(!(await readdir(dir)).some((n) => n.endsWith('.tmp')));
    } finally {
      await cleanup();
    }
  });

  it('a crash between writing an installed snapshot and the log reset does not resurrect the old history', async () => {
    const { dir, cleanup } = await tempDir('storage');
    try {
      const storage = await DiskStorage.open(dir);
      await storage.save({ entries: entries(1, 20, 1), hardState: { term: 1, vote: '', commit: 5 } });
      await storage.close();
      // The snapshot file made it, the WAL reset did not. It conflicts with our entry 12.
      await new SnapshotStore(join(dir, 'snap')).save(snap(12, 3));
      const again = await DiskStorage.open(dir);
      const st = again.initialState();
      await again.close();
      assert.equal(st.snapshot?.meta.index, 12);
      assert.deepEqual(st.entries, []);
    } finally {
      await cleanup();
    }
  });

  it('a crash between an installed snapshot ahead of the log and its reset: appends after it replay without a gap', async () => {
    const { dir, cleanup } = await tempDir('storage');
    try {
      const first = await DiskStorage.open(dir);
      await first.save({ entries: entries(1, 20, 1), hardState: { term: 1, vote: '', commit: 20 } });
      await first.close();
      // The leader's snapshot at 30 made it to disk; the WAL's reset did not.
      await new SnapshotStore(join(dir, 'snap')).save(snap(30, 2));
      const second = await DiskStorage.open(dir);
      assert.equal(second.initialState().snapshot?.meta.index, 30);
      assert.deepEqual(second.initialState().entries, []);
      await second.save({ entries: entries(31, 33, 2), hardState: { term: 2, vote: '', commit: 33 } });
      await second.close();
      const third = await DiskStorage.open(dir);
      const st = third.initialState();
      await third.close();
      assert.equal(st.snapshot?.meta.index, 30);
      assert.deepEqual(st.entries!.map((e) => e.index), [31, 32, 33]);
    } finally {
      await cleanup();
    }
  });

  it('a file is checked a piece at a time exactly as decoding it whole checks it (seeded; RAFTKV_SEED replays)', () =>
    inTempDir('snapverify', async (dir) => {
      const membership = { voters: ['a', 'b'], learners: [], addrs: { a: 'x:1', b: 'y:1' } };
      const file = join(dir, 'f.snap');
      const outcome = async (f: () => Promise<{ index: number; size: number }>) => f().then((r) => JSON.stringify(r), (e: Error) => e.message);
      const same = async (bytes: Buffer) => {
        await writeFile(file, bytes);
        const whole = await outcome(async () => {
          const s = decodeSnapshot(await readFile(file));
          return { index: s.meta.index, size: s.data.length };
        });
        const pieces = await outcome(async () => {
          const v = await verifySnapshotFile(nodeFs, file);
          return { index: v.meta.index, size: v.size };
        });
        assert.equal(pieces, whole, `${bytes.length} bytes`);
      };
      // Across the 4 MB read piece, and at its edges.
      for (const size of [0, 1, (4 << 20) - 30, (4 << 20) + 5, (9 << 20) + 3]) {
        const good = encodeSnapshot({ meta: { index: 7, term: 2, membership }, data: Buffer.alloc(size, 5) });
        await same(good);
        const flipped = Buffer.from(good);
        flipped[Math.floor(flipped.length / 2)] ^= 1;
        await same(flipped);
        await same(good.subarray(0, good.length - 1));
      }
      const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean(), async (data, at, byte, damage) => {
          const b = encodeSnapshot({ meta: { index: 3, term: 1, membership }, data });
          if (damage) b[at % b.length] = byte;
          await same(b);
        }),
        { seed, numRuns: 150 },
      );
      await same(Buffer.from('not a snapshot at all, just text'));
    }));

  it('reports fsync mode and recovery details', async () => {
    const { dir, cleanup } = await tempDir('storage');
    try {
      const s = await DiskStorage.open(dir, { fsync: 'never' });
      assert.equal(s.fsync, 'never');
      assert.equal(s.recovery.tornBytesRepaired, 0);
      await s.close();
      assert.equal(new MemoryStorage().fsync, 'memory');
    } finally {
      await cleanup();
    }
  });
});
