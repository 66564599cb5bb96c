import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Wal } from '../../raft/index.js';
import { entries, inTempDir } from '../storage/helpers.js';
import { PowerCutFs } from './powercut-fs.js';

describe('the power-cut file system of the fault suite', () => {
  it('keeps writes in memory until fsync, and may leave a later sector on disk before an earlier one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-powercut-'));
    try {
      const fs = new PowerCutFs(undefined, 1, () => 0.6);
      const f = join(dir, 'f');
      const h = await fs.open(f, 'wx');
      await h.write(Buffer.alloc(100, 1), 0, 100, 0);
      assert.equal((await readFile(f)).length, 0, 'not on disk before the fsync');
      await h.datasync();
      assert.equal((await readFile(f)).length, 100);
      await h.write(Buffer.alloc(3 * 4096, 2), 0, 3 * 4096, 100);
      const disk = await readFile(f); // the process dies here: this is what the disk has
      assert.ok(disk.length > 100 + 4096, 'a later sector reached the disk early');
      assert.ok(disk.subarray(100, 100 + 4096).every((b) => b === 0), 'with a hole before it');
      await h.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an fsync on the calling thread makes the pending writes durable too, as the pooled one does', () =>
    inTempDir('powercut', async (dir) => {
      const fs = new PowerCutFs(undefined, 0, () => 0.6);
      const f = join(dir, 'f');
      const h = await fs.open(f, 'wx');
      await h.write(Buffer.alloc(100, 1), 0, 100, 0);
      await h.write(Buffer.alloc(50, 2), 0, 50, 100);
      assert.equal((await readFile(f)).length, 0, 'not on disk before the fsync');
      h.datasyncSync!();
      assert.deepEqual(await readFile(f), Buffer.concat([Buffer.alloc(100, 1), Buffer.alloc(50, 2)]));
      await h.close();
    }));

  it('a WAL over it that dies mid-write recovers every synced entry and drops the torn write', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-powercut-'));
    try {
      const fs = new PowerCutFs(undefined, 1, () => 0.6);
      const { wal } = await Wal.open(dir, { fs, fsync: 'never' });
      await wal.append({ entries: entries(1, 5, 1) });
      await wal.close(); // 'never' does not sync: all of it was still in memory
      const { wal: w2, state } = await Wal.open(dir, { fs });
      assert.equal(state.entries.length, 0, 'nothing was synced, nothing survives');
      await w2.append({ entries: entries(1, 5, 1) });
      // The next write dies before its fsync with one of its sectors on disk.
      const dying = await Wal.open(dir, { fs: new PowerCutFs(undefined, 1, () => 0.6), fsync: 'never' });
      await dying.wal.append({ entries: entries(6, 60, 1, 300) });
      await w2.close();
      const { wal: w3, state: after } = await Wal.open(dir);
      assert.deepEqual(after.entries.map((e) => e.index), [1, 2, 3, 4, 5]);
      // Its early sector lies past the end marker of the last synced write: never read as a
      // write, not even after a shorter write lands before it.
      await w3.append({ entries: entries(6, 7, 2) });
      await w3.close();
      const { wal: w4, state: last } = await Wal.open(dir);
      await w4.close();
      assert.deepEqual(last.entries.map((e) => `${e.index}:${e.term}`), ['1:1', '2:1', '3:1', '4:1', '5:1', '6:2', '7:2']);
      await dying.wal.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
