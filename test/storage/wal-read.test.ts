/**
 * Reading entries back from the WAL's segments (Wal.readEntries): what the core asks for once
 * it stops holding durable, applied entries in memory. Real files, real segments.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { Entry, Wal } from '../../raft/index.js';
import { RecordType } from '../../raft/storage/records.js';
import { entries, entryData, inTempDir, writeVersionOneSegment } from './helpers.js';

const ids = (es: Entry[]) => es.map((e) => `${e.index}:${e.term}`);

describe('reading entries back from the WAL', () => {
  it('gives back what was appended, across segments and after a reopen', () =>
    inTempDir('walread', async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 4096 });
      for (let i = 1; i <= 200; i += 10) await wal.append({ entries: entries(i, i + 9, 1 + Math.floor(i / 50), 100) });
      assert.ok((await readdir(dir)).filter((n) => n.endsWith('.wal')).length > 3, 'several segments');
      const got = wal.readEntries(1, 201, Infinity);
      assert.equal(got.length, 200);
      for (const e of got) assert.deepEqual(e.data, entryData(e.index, e.term, 100), `entry ${e.index}`);
      await wal.close();
      const { wal: again, state } = await Wal.open(dir, { segmentBytes: 4096 });
      assert.equal(state.entries.length, 200);
      assert.deepEqual(ids(again.readEntries(37, 45, Infinity)), ids(state.entries.slice(36, 44)));
      await again.append({ entries: entries(201, 205, 9, 100) });
      assert.deepEqual(ids(again.readEntries(199, 210, Infinity)), ['199:4', '200:4', '201:9', '202:9', '203:9', '204:9', '205:9']);
      await again.close();
    }));

  it('stops at about maxBytes, always giving at least one entry', () =>
    inTempDir('walread', async (dir) => {
      const { wal } = await Wal.open(dir);
      await wal.append({ entries: entries(1, 50, 1, 1000) });
      const some = wal.readEntries(1, 51, 5000);
      assert.ok(some.length >= 4 && some.length <= 5, `${some.length} entries`);
      assert.equal(some[0].index, 1);
      assert.equal(wal.readEntries(7, 51, 0).length, 1);
      await wal.close();
    }));

  it('follows an overwritten suffix and a reset, before and after a reopen', () =>
    inTempDir('walread', async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 2048 });
      await wal.append({ entries: entries(1, 30, 1, 100) });
      await wal.append({ entries: entries(25, 27, 2, 100) });
      const expect = [...entries(20, 24, 1, 100), ...entries(25, 27, 2, 100)];
      assert.deepEqual(ids(wal.readEntries(20, 40, Infinity)), ids(expect));
      assert.deepEqual(wal.readEntries(28, 30, Infinity), [], 'overwritten entries past the new end are gone');
      await wal.close();
      const { wal: w2 } = await Wal.open(dir, { segmentBytes: 2048 });
      assert.deepEqual(ids(w2.readEntries(20, 40, Infinity)), ids(expect));
      // An installed snapshot resets the log: nothing before it can be read any more.
      await w2.append({ reset: { index: 100, term: 3 }, entries: entries(101, 103, 3, 100) });
      assert.deepEqual(w2.readEntries(20, 30, Infinity), []);
      assert.deepEqual(ids(w2.readEntries(101, 104, Infinity)), ['101:3', '102:3', '103:3']);
      await w2.close();
      const { wal: w3 } = await Wal.open(dir, { segmentBytes: 2048 });
      assert.deepEqual(w3.readEntries(20, 30, Infinity), []);
      assert.deepEqual(ids(w3.readEntries(101, 104, Infinity)), ['101:3', '102:3', '103:3']);
      await w3.close();
    }));

  it('gives nothing for entries whose segments a snapshot let go, even when the file was recycled', () =>
    inTempDir('walread', async (dir) => {
      // Preallocated segments: a deleted one is recycled as the next, so its old records are
      // still in the file under a new name, and must not be read as the entries asked for.
      const { wal } = await Wal.open(dir, { segmentBytes: 8192, preallocateBytes: 8192 });
      for (let i = 1; i <= 300; i += 10) await wal.append({ entries: entries(i, i + 9, 1, 200) });
      await wal.markSnapshot(250, 1, 250);
      assert.deepEqual(wal.readEntries(1, 10, Infinity), []);
      const kept = wal.readEntries(251, 301, Infinity);
      assert.deepEqual(ids(kept), ids(entries(251, 300, 1, 200)));
      for (let i = 301; i <= 600; i += 10) await wal.append({ entries: entries(i, i + 9, 2, 200) });
      assert.deepEqual(wal.readEntries(1, 10, Infinity), []);
      assert.deepEqual(ids(wal.readEntries(301, 311, Infinity)), ids(entries(301, 310, 2, 200)));
      for (const e of wal.readEntries(251, 601, Infinity)) assert.deepEqual(e.data, entryData(e.index, e.term, 200));
      await wal.close();
    }));

  it('reads entries of a version 1 segment (unseeded checksums) and of one write per entry (fsync always)', () =>
    inTempDir('walread', async (dir) => {
      await writeVersionOneSegment(dir, [entries(1, 4, 1, 100).map((entry) => ({ type: RecordType.Entry, entry }))]);
      const { wal } = await Wal.open(dir, { fsync: 'always' });
      await wal.append({ entries: entries(5, 7, 2, 100), hardState: { term: 2, vote: 'a', commit: 5 } });
      const got = wal.readEntries(1, 8, Infinity);
      assert.deepEqual(ids(got), ['1:1', '2:1', '3:1', '4:1', '5:2', '6:2', '7:2']);
      for (const e of got) assert.deepEqual(e.data, entryData(e.index, e.term, 100));
      await wal.close();
    }));

  it('reads nothing once closed', () =>
    inTempDir('walread', async (dir) => {
      const { wal } = await Wal.open(dir);
      await wal.append({ entries: entries(1, 3, 1) });
      await wal.close();
      assert.deepEqual(wal.readEntries(1, 4, Infinity), []);
    }));
});
