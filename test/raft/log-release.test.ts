/**
 * The log's memory floor: entries durable and applied are released from memory and read back
 * through the storage's reader, while their terms stay answerable (elections, log matching and
 * backtracking all ask for terms of old entries).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Entry, EntryReader, EntryType, RaftLog } from '../../raft/index.js';

const terms = [1, 1, 1, 2, 2, 3, 3, 3, 3, 5, 5, 6];
const log12 = (): Entry[] => terms.map((term, i) => ({ index: i + 1, term, type: EntryType.Normal, data: new Uint8Array([i + 1]) }));

/** A reader over `stored`, counting what it was asked and able to fail. */
function reader(stored: Entry[]): EntryReader & { asked: number; fail: boolean } {
  return {
    asked: 0,
    fail: false,
    readEntries(lo, hi, maxBytes) {
      this.asked++;
      if (this.fail) return [];
      const out: Entry[] = [];
      let bytes = 0;
      for (const e of stored) {
        if (e.index < lo || e.index >= hi) continue;
        if (out.length > 0 && bytes + e.data.length + 24 > maxBytes) break;
        out.push(e);
        bytes += e.data.length + 24;
      }
      return out;
    },
  };
}

function logWith(r?: EntryReader): RaftLog {
  const log = new RaftLog(0, 0, log12(), r);
  log.committed = 12;
  log.applied = 10;
  return log;
}

test('released entries keep their terms and are read back through the reader', () => {
  const r = reader(log12());
  const log = logWith(r);
  log.release(9);
  assert.equal(log.released, 9);
  for (let i = 1; i <= 12; i++) assert.equal(log.term(i), terms[i - 1], `term of ${i}`);
  assert.equal(log.term(13), -1);
  assert.equal(log.lastIndex(), 12);
  assert.equal(log.lastTerm(), 6);
  assert.equal(log.findConflictByTerm(9, 2), 5);
  assert.ok(log.isUpToDate(12, 6) && !log.isUpToDate(11, 6));
  // Below the floor: from the reader, only up to the floor; above it: from memory.
  assert.deepEqual(log.slice(4, 13).map((e) => e.index), [4, 5, 6, 7, 8, 9]);
  assert.equal(r.asked, 1);
  assert.deepEqual(log.slice(10, 13).map((e) => e.index), [10, 11, 12]);
  assert.equal(r.asked, 1);
  assert.equal(log.entry(2)?.data[0], 2);
  assert.deepEqual(log.nextToApply().map((e) => e.index), [11, 12]);
});

test('release never goes past what is applied and durable, nor does anything without a reader', () => {
  const log = logWith(reader(log12()));
  log.stable = 7;
  log.release(12);
  assert.equal(log.released, 7);
  const plain = logWith();
  plain.release(9);
  assert.equal(plain.released, 0);
  assert.equal(plain.slice(1, 3).length, 2);
});

test('a reader that fails or disagrees gives nothing, not another history', () => {
  const r = reader(log12());
  const log = logWith(r);
  log.release(9);
  r.fail = true;
  assert.deepEqual(log.slice(3, 8), []);
  assert.equal(log.entry(3), undefined);
  // A stored entry of another term (a log that is not this one) is cut off where it differs.
  const other = log12().map((e) => (e.index === 6 ? { ...e, term: 4 } : e));
  const log2 = logWith(reader(other));
  log2.release(9);
  assert.deepEqual(log2.slice(3, 10).map((e) => e.index), [3, 4, 5]);
});

test('compaction inside and past the released prefix keeps every remaining term', () => {
  const log = logWith(reader(log12()));
  log.release(9);
  log.compact(4, 2);
  assert.equal(log.firstIndex(), 5);
  assert.equal(log.term(4), 2);
  assert.equal(log.term(3), -1);
  for (let i = 5; i <= 12; i++) assert.equal(log.term(i), terms[i - 1], `term of ${i}`);
  assert.throws(() => log.slice(4, 6), /below first index/);
  log.compact(10, 5);
  assert.equal(log.released, 10);
  assert.equal(log.term(11), 5);
  assert.equal(log.term(12), 6);
  assert.deepEqual(log.slice(11, 13).map((e) => e.index), [11, 12]);
  // Entries appended after it go on from there.
  log.append([{ index: 13, term: 6, type: EntryType.Normal, data: new Uint8Array(0) }]);
  assert.equal(log.lastIndex(), 13);
});

test('a conflicting suffix is truncated above the floor; at or below it the log refuses', () => {
  const log = logWith(reader(log12()));
  log.release(9);
  assert.throws(() => log.truncateFrom(9), /applied/);
  log.committed = 10;
  log.maybeAppend(10, [{ index: 11, term: 7, type: EntryType.Normal, data: new Uint8Array(0) }]);
  assert.equal(log.lastIndex(), 11);
  assert.equal(log.term(11), 7);
  assert.equal(log.term(10), 5);
});

test('restore after a release starts a log at the snapshot', () => {
  const log = logWith(reader(log12()));
  log.release(9);
  log.restore(20, 7);
  assert.equal(log.released, 20);
  assert.equal(log.lastIndex(), 20);
  assert.equal(log.term(20), 7);
  assert.equal(log.term(9), -1);
});

test('a long log released a little at a time gives its slots back and keeps its terms', () => {
  const n = 10_000;
  const all: Entry[] = [];
  for (let i = 1; i <= n; i++) all.push({ index: i, term: 1 + Math.floor(i / 777), type: EntryType.Normal, data: new Uint8Array(1) });
  const log = new RaftLog(0, 0, [], reader(all));
  for (let i = 0; i < n; i += 100) {
    log.append(all.slice(i, i + 100));
    log.stable = log.committed = log.applied = i + 100;
    log.release(i + 100 - 64);
  }
  assert.equal(log.released, n - 64);
  for (const i of [1, 776, 777, 778, 5000, n - 64, n - 63, n]) assert.equal(log.term(i), 1 + Math.floor(i / 777), `term of ${i}`);
  assert.deepEqual(log.slice(n - 70, n + 1, 1 << 20).map((e) => e.index), [n - 70, n - 69, n - 68, n - 67, n - 66, n - 65, n - 64]);
});
