import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { StorageError, Wal } from '../../raft/index.js';
import { entries } from './helpers.js';

/**
 * A real ENOSPC from the kernel: a 512 KiB tmpfs filled by the WAL. Needs root (CI runs as
 * root); where mounting is not allowed the same path is covered by the injected-error tests.
 */
function mountTinyTmpfs(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', dir], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

describe('a full disk', () => {
  // Also with preallocation: zero-filling the first segment meets the full disk first, and the
  // log goes on with a segment that grows as it is written (preallocation is best effort).
  for (const preallocateBytes of [0, 4 << 20])
  it(`stops the log with "disk full", and everything acknowledged before is intact after restart (preallocate ${preallocateBytes} bytes)`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-full-'));
    const mounted = mountTinyTmpfs(dir);
    if (!mounted) t.diagnostic('mount not permitted here: using the injected ENOSPC instead');
    const open: Wal[] = [];
    try {
      let injected = 0;
      const { wal } = await Wal.open(join(dir, 'wal'), {
        segmentBytes: 1 << 30,
        preallocateBytes,
        faults: mounted
          ? {}
          : { write: () => (++injected > 120 ? Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }) : undefined) },
      });
      open.push(wal);
      let acked = 0;
      let error: unknown;
      for (let i = 0; i < 10_000; i++) {
        try {
          await wal.append({ entries: entries(acked + 1, acked + 5, 1, 1024), hardState: { term: 1, vote: '', commit: acked } });
          acked += 5;
        } catch (e) {
          error = e;
          break;
        }
      }
      assert.ok(error instanceof StorageError, 'the append failed with a StorageError');
      assert.match((error as Error).message, /disk full/);
      assert.equal((error as StorageError).code, 'ENOSPC');
      assert.ok(acked > 0);
      await wal.close();
      const { state, wal: again } = await Wal.open(join(dir, 'wal'));
      open.push(again);
      // Complete records of the failed batch may survive (they were never acknowledged, which
      // Raft allows); the cut record after them is repaired.
      assert.ok(state.entries.length >= acked, 'every acknowledged entry is present');
      assert.ok(state.entries.length <= acked + 5, 'nothing beyond the failed batch');
      state.entries.forEach((e, i) => assert.equal(e.index, i + 1));
      await again.close();
    } finally {
      for (const w of open) await w.close().catch(() => undefined);
      if (mounted) execFileSync('umount', ['-l', dir]);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
