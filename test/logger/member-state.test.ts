/**
 * A logger's own Raft state: synced like any member's (a logger that lost entries it had
 * acknowledged waited behind its leader for ever), and expendable when damaged: discarded, so
 * the logger joins again with its command log intact.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openLoggerRaftState } from '../../logger/member.js';
import { Snapshot } from '../../raft/index.js';
import { entries, tempDir } from '../storage/helpers.js';

const membership = { voters: ['n1'], learners: ['log1'], addrs: { n1: 'a', log1: 'b' }, loggers: ['log1'] };
const marker = (index: number): Snapshot => ({ meta: { index, term: 1, membership }, data: Buffer.from(`RKVLOGR1{"index":${index}}`) });

describe("a logger's Raft state", () => {
  it('survives a reopen with what it acknowledged', async () => {
    const { dir, cleanup } = await tempDir('raftkv-logger-state-');
    try {
      const s = await openLoggerRaftState(join(dir, 'raft'), () => undefined);
      await s.save({ entries: entries(1, 20, 1), hardState: { term: 1, vote: '', commit: 20 } });
      await s.close();
      const again = (await openLoggerRaftState(join(dir, 'raft'), () => undefined)).initialState();
      assert.deepEqual(again.entries!.map((e) => e.index), entries(1, 20, 1).map((e) => e.index));
      assert.equal(again.hardState?.commit, 20);
    } finally {
      await cleanup();
    }
  });

  it('a state that does not open is discarded and the logger starts fresh, saying why', async () => {
    const { dir, cleanup } = await tempDir('raftkv-logger-state-');
    try {
      const raft = join(dir, 'raft');
      // Small segments, so the compaction behind the snapshot drops the first ones.
      const s = await openLoggerRaftState(raft, () => undefined, { segmentBytes: 1024 });
      for (let i = 1; i <= 30; i++) await s.save({ entries: entries(i, i, 1, 200), hardState: { term: 1, vote: '', commit: i } });
      await s.saveSnapshot(marker(25), 25);
      await s.close();
      // The snapshot gone, the WAL now starts past entry 1 with nothing covering what is before.
      await rm(join(raft, 'snap'), { recursive: true, force: true });
      const lines: string[] = [];
      const fresh = (await openLoggerRaftState(raft, (l) => lines.push(l), { segmentBytes: 1024 })).initialState();
      assert.equal(fresh.entries?.length ?? 0, 0);
      assert.equal(fresh.snapshot, undefined);
      assert.equal(fresh.hardState?.term ?? 0, 0);
      assert.match(lines.join('\n'), /did not survive.*discarded; it joins again/);
    } finally {
      await cleanup();
    }
  });
});
