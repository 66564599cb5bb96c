import { Entry, EMPTY_ENTRIES } from './types.js';

/**
 * Entries the log no longer holds in memory, read back from stable storage (hashicorp/raft's
 * LogStore behind its cache). Entries [lo, hi) up to about `maxBytes` of data (at least one when
 * any is there), in order from `lo`; fewer, or none, when storage no longer has them (a
 * segment deleted behind a snapshot, a failed read): the caller then does without this time.
 */
export interface EntryReader {
  readEntries(lo: number, hi: number, maxBytes: number): Entry[];
}

/** Bytes an entry counts for against a size limit (its data and a little framing). */
export const entryBytes = (e: Entry): number => e.data.length + 24;

/**
 * The node's view of its log: a compacted prefix (described by the snapshot's index and term)
 * followed by the entries. `stable` is the last index known to be on stable storage; entries
 * after it are handed to the driver to persist.
 *
 * With a reader, entries up to `released` (durable and applied, see release) are not held in
 * memory: only their terms are, as runs. An entry held from its proposal to the next snapshot
 * outlived every young-generation collection and was copied into the old generation (0.45 MB
 * per scavenge on a leader at one client, about 730 bytes per write); released within a few
 * entries, it dies young.
 */
export class RaftLog {
  /** entries[head + i] has index released + 1 + i; slots before head are cleared. */
  private entries: Entry[] = [];
  private head = 0;
  /** Terms of (snapshotIndex, released]: run k covers [runStart[k], runStart[k + 1]). */
  private runStart: number[] = [];
  private runTerm: number[] = [];
  snapshotIndex = 0;
  snapshotTerm = 0;
  /** Entries up to here (at least snapshotIndex) are read back through the reader. */
  released = 0;
  committed = 0;
  /** Highest index handed to the driver to apply. */
  applied = 0;
  /** Highest index the driver has confirmed durable. */
  stable = 0;
  /**
   * Highest index handed to a driver that persists in the background (RaftNode.accept): not
   * durable yet, but not to be handed out again.
   */
  inProgress = 0;

  constructor(
    snapshotIndex = 0,
    snapshotTerm = 0,
    entries: Entry[] = [],
    /** Without one, every entry stays in memory until compacted. */
    readonly reader?: EntryReader,
  ) {
    this.snapshotIndex = snapshotIndex;
    this.snapshotTerm = snapshotTerm;
    this.released = snapshotIndex;
    this.entries = entries.slice();
    this.stable = this.lastIndex();
    this.inProgress = this.stable;
    this.applied = snapshotIndex;
    this.committed = snapshotIndex;
  }

  firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  lastIndex(): number {
    return this.released + this.entries.length - this.head;
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** Term of the entry at `index`, or -1 if it is compacted away or beyond the end. */
  term(index: number): number {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return -1;
    if (index > this.released) return this.entries[this.head + index - this.released - 1].term;
    // The last run starting at or before index.
    let lo = 0;
    let hi = this.runStart.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.runStart[mid] <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.runTerm[lo];
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.snapshotIndex || index > this.lastIndex()) return undefined;
    if (index <= this.released) return this.readBack(index, index + 1, 0)[0];
    return this.entries[this.head + index - this.released - 1];
  }

  /**
   * Entries in [lo, hi) limited to about `maxBytes` (always at least one entry). Entries up to
   * `released` come from the reader, and may come short or not at all (see EntryReader).
   */
  slice(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    if (lo < this.firstIndex()) throw new Error(`slice(${lo}) below first index ${this.firstIndex()}`);
    hi = Math.min(hi, this.lastIndex() + 1);
    if (lo >= hi) return EMPTY_ENTRIES;
    if (lo <= this.released) return this.readBack(lo, Math.min(hi, this.released + 1), maxBytes);
    const base = this.released + 1 - this.head;
    if (maxBytes === Infinity) return this.entries.slice(lo - base, hi - base);
    let size = 0;
    let end = lo;
    while (end < hi) {
      size += entryBytes(this.entries[end - base]);
      if (size > maxBytes && end > lo) break;
      end++;
    }
    return this.entries.slice(lo - base, end - base);
  }

  /** Released entries from the reader, cut at the first that is not this log's. */
  private readBack(lo: number, hi: number, maxBytes: number): Entry[] {
    const got = this.reader?.readEntries(lo, hi, maxBytes) ?? EMPTY_ENTRIES;
    let n = 0;
    while (n < got.length && n < hi - lo && got[n].index === lo + n && got[n].term === this.term(lo + n)) n++;
    return n === got.length ? got : got.slice(0, n);
  }

  /**
   * Stop holding entries up to `index` in memory (kept: their terms). Only durable, applied
   * entries go (the caller's choice of how far; clamped here), and only with a reader.
   */
  release(index: number): void {
    if (!this.reader) return;
    index = Math.min(index, this.applied, this.stable, this.lastIndex());
    for (let i = this.released + 1; i <= index; i++) {
      const term = this.entries[this.head].term;
      if (this.runStart.length === 0 || this.runTerm[this.runTerm.length - 1] !== term) {
        this.runStart.push(i);
        this.runTerm.push(term);
      }
      this.entries[this.head++] = undefined as unknown as Entry;
      this.released = i;
    }
    this.shrink();
  }

  /** Give back the cleared slots once they are most of the array. */
  private shrink(): void {
    if (this.head >= 1024 && this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  /** Whether a log ending at (index, term) is at least as up to date as ours (Raft §5.4.1). */
  isUpToDate(index: number, term: number): boolean {
    const lastTerm = this.lastTerm();
    return term > lastTerm || (term === lastTerm && index >= this.lastIndex());
  }

  /** Leader-side append of fresh entries at the end. */
  append(entries: Entry[]): void {
    for (const e of entries) this.entries.push(e);
  }

  /**
   * Follower-side append of the leader's entries after (prevIndex, prevTerm), assuming the caller
   * checked that entry matches. Truncates a conflicting suffix (never a committed one) and
   * returns the new last index covered by the message.
   */
  maybeAppend(prevIndex: number, entries: Entry[]): number {
    const lastNew = prevIndex + entries.length;
    let conflictAt = -1;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (e.index <= this.snapshotIndex) continue;
      if (e.index > this.lastIndex() || this.term(e.index) !== e.term) {
        conflictAt = i;
        break;
      }
    }
    if (conflictAt >= 0) {
      const first = entries[conflictAt].index;
      if (first <= this.committed) {
        throw new Error(`entry ${first} conflicts with committed entry (committed ${this.committed})`);
      }
      this.truncateFrom(first);
      for (let i = conflictAt; i < entries.length; i++) this.entries.push(entries[i]);
    }
    return lastNew;
  }

  /** Drop every entry with index >= `index`. */
  truncateFrom(index: number): void {
    // Released entries are applied, so committed: never overwritten.
    if (index <= this.released) throw new Error(`cannot truncate from ${index}: entries up to ${this.released} are applied`);
    this.entries.length = Math.min(this.entries.length, this.head + index - this.released - 1);
    if (this.stable >= index) this.stable = index - 1;
    if (this.inProgress >= index) this.inProgress = index - 1;
  }

  /**
   * The largest index <= `index` whose term is <= `term` (used to skip a whole conflicting term
   * at once when backtracking, instead of one entry per round trip).
   */
  findConflictByTerm(index: number, term: number): number {
    if (index > this.lastIndex()) return index;
    for (;;) {
      const t = this.term(index);
      if (t <= term || t === -1) return index;
      index--;
    }
  }

  commitTo(index: number): boolean {
    if (index > this.committed) {
      if (index > this.lastIndex()) throw new Error(`commit ${index} beyond last index ${this.lastIndex()}`);
      this.committed = index;
      return true;
    }
    return false;
  }

  /**
   * Committed entries not yet handed out for applying. Some may still be unstable locally: the
   * driver persists a batch before applying it, and a committed entry is durable on a quorum.
   */
  nextToApply(): Entry[] {
    if (this.committed <= this.applied) return EMPTY_ENTRIES;
    return this.slice(this.applied + 1, this.committed + 1);
  }

  /** The last index handed to the driver to persist (durable or on its way). */
  handedOut(): number {
    return Math.max(this.stable, this.inProgress);
  }

  unstable(): Entry[] {
    const from = this.handedOut() + 1;
    if (from > this.lastIndex()) return EMPTY_ENTRIES;
    return this.slice(Math.max(from, this.firstIndex()), this.lastIndex() + 1);
  }

  /** Drop the prefix up to `index` (covered by a snapshot the driver made durable). */
  compact(index: number, term: number): void {
    if (index <= this.snapshotIndex) return;
    if (index > this.applied) throw new Error(`cannot compact to ${index}: applied only ${this.applied}`);
    if (index >= this.released) {
      this.entries = this.entries.slice(this.head + index - this.released);
      this.head = 0;
      this.released = index;
      this.runStart = [];
      this.runTerm = [];
    } else {
      // Runs now cover (index, released]: drop those that end at or before index.
      let k = 0;
      while (k + 1 < this.runStart.length && this.runStart[k + 1] <= index + 1) k++;
      this.runStart.splice(0, k);
      this.runTerm.splice(0, k);
      this.runStart[0] = index + 1;
    }
    this.snapshotIndex = index;
    this.snapshotTerm = term;
  }

  /** Replace the whole log with a snapshot's position (InstallSnapshot on a follower). */
  restore(index: number, term: number): void {
    this.entries = [];
    this.head = 0;
    this.released = index;
    this.runStart = [];
    this.runTerm = [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.committed = index;
    this.applied = index;
    this.stable = index;
    this.inProgress = index;
  }
}
