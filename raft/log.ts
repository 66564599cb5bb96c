import { Entry, EMPTY_ENTRIES } from './types.js';

/**
 * The node's view of its log: a compacted prefix (described by the snapshot's index and term)
 * followed by the entries kept in memory. `stable` is the last index known to be on stable
 * storage; entries after it are handed to the driver to persist.
 */
export class RaftLog {
  /** entries[i] has index offset + i + 1 where offset is the snapshot index. */
  private entries: Entry[] = [];
  snapshotIndex = 0;
  snapshotTerm = 0;
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

  constructor(snapshotIndex = 0, snapshotTerm = 0, entries: Entry[] = []) {
    this.snapshotIndex = snapshotIndex;
    this.snapshotTerm = snapshotTerm;
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
    return this.snapshotIndex + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** Term of the entry at `index`, or -1 if it is compacted away or beyond the end. */
  term(index: number): number {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return -1;
    return this.entries[index - this.snapshotIndex - 1].term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.snapshotIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapshotIndex - 1];
  }

  /** Entries in [lo, hi) limited to about `maxBytes` (always at least one entry). */
  slice(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    if (lo < this.firstIndex()) throw new Error(`slice(${lo}) below first index ${this.firstIndex()}`);
    hi = Math.min(hi, this.lastIndex() + 1);
    if (lo >= hi) return EMPTY_ENTRIES;
    const base = this.snapshotIndex + 1;
    if (maxBytes === Infinity) return this.entries.slice(lo - base, hi - base);
    let size = 0;
    let end = lo;
    while (end < hi) {
      size += this.entries[end - base].data.length + 24;
      if (size > maxBytes && end > lo) break;
      end++;
    }
    return this.entries.slice(lo - base, end - base);
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
    const keep = Math.max(0, index - this.snapshotIndex - 1);
    this.entries.length = keep;
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
    const drop = index - this.snapshotIndex;
    this.entries = this.entries.slice(drop);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
  }

  /** Replace the whole log with a snapshot's position (InstallSnapshot on a follower). */
  restore(index: number, term: number): void {
    this.entries = [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.committed = index;
    this.applied = index;
    this.stable = index;
    this.inProgress = index;
  }
}
