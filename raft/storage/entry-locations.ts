/**
 * Where each entry of the log lies in the WAL's segments (segment number, byte offset and length
 * of its record), so the core can read an entry back once it stops holding it in memory. Kept in
 * typed arrays: one slot per entry, a few bytes each, none of it on the garbage collector's heap.
 *
 * The slots follow the log's own rules: an entry at or below the last one replaces it and
 * everything after it (a leader overwrote an uncommitted suffix), a reset forgets everything,
 * and entries covered by a snapshot are dropped from the front.
 */
export interface EntryLocation {
  seq: number;
  offset: number;
  length: number;
}

export class EntryLocations {
  /** Slot s holds the entry with index base + s; slots [start, end) are in use. */
  private base = 0;
  private start = 0;
  private end = 0;
  private seq = new Uint32Array(1024);
  private offset = new Float64Array(1024);
  private length = new Uint32Array(1024);

  /** Index of the first entry located (meaningless when empty). */
  first(): number {
    return this.base + this.start;
  }

  /** Index of the last entry located, or first() - 1 when empty. */
  last(): number {
    return this.base + this.end - 1;
  }

  add(index: number, seq: number, offset: number, length: number): void {
    if (this.start === this.end || index < this.first() || index > this.last() + 1) {
      // Empty, before the first one, or after a gap (the WAL refuses gaps; this only restarts).
      this.base = index;
      this.start = 0;
      this.end = 0;
    } else {
      this.end = index - this.base; // an overwrite drops the suffix from index on
    }
    if (this.end === this.seq.length) this.makeRoom();
    this.seq[this.end] = seq;
    this.offset[this.end] = offset;
    this.length[this.end] = length;
    this.end++;
  }

  get(index: number): EntryLocation | undefined {
    if (index < this.first() || index > this.last()) return undefined;
    const s = index - this.base;
    return { seq: this.seq[s], offset: this.offset[s], length: this.length[s] };
  }

  /** Forget every entry (an installed snapshot replaced the log). */
  reset(): void {
    this.start = 0;
    this.end = 0;
  }

  /** Forget the entries before `index` (a snapshot covers them). */
  dropBefore(index: number): void {
    this.start = Math.min(this.end, Math.max(this.start, index - this.base));
  }

  /** Reuse the slots dropped from the front, or double. */
  private makeRoom(): void {
    const used = this.end - this.start;
    const size = used * 2 > this.seq.length ? this.seq.length * 2 : this.seq.length;
    const move = <T extends Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      if (size === a.length) {
        a.copyWithin(0, this.start, this.end);
        return a;
      }
      const b = make(size);
      b.set(a.subarray(this.start, this.end));
      return b;
    };
    this.seq = move(this.seq, (n) => new Uint32Array(n));
    this.offset = move(this.offset, (n) => new Float64Array(n));
    this.length = move(this.length, (n) => new Uint32Array(n));
    this.base += this.start;
    this.start = 0;
    this.end = used;
  }
}
