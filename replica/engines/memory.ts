import { CapturedEntries, KvEngine, validateKey } from './engine.js';

/** Bytes per slab (the default); a value too large for one gets a slab of its own. */
export const DEFAULT_SLAB_BYTES = 1 << 20;
/** Each value is stored after its length (32 bits, little-endian). */
export const SLAB_VALUE_HEADER = 4;
const HEADER = SLAB_VALUE_HEADER;
/** Entries the incremental compaction looks at per write while it is needed. */
const SWEEP_PER_WRITE = 4;

/**
 * The seed's kvstore: an in-memory map. Values are copied into large append-only slabs and the
 * map holds only a small integer locating each one (slab * slab size + offset): a million
 * values cost a million map entries, not also a million buffer objects, and a value no longer
 * keeps the network frame it arrived in alive. Bytes in a slab are never written twice, so a
 * value handed out (or captured for a snapshot) stays valid whatever is written later.
 * Overwrites and deletes leave garbage; once the slabs hold more than about twice the live
 * bytes, each write also moves a few values out of slabs that are mostly garbage (an
 * incremental sweep), and a slab with nothing live left is dropped.
 */
export class MemoryEngine implements KvEngine {
  readonly name = 'kvstore';
  private index = new Map<string, number>();
  private slabs: (Buffer | undefined)[] = [];
  /** Live bytes (headers included) per slab. */
  private live: number[] = [];
  private freeIds: number[] = [];
  private current = -1;
  private offset = 0;
  private allocatedBytes = 0;
  private liveBytes = 0;
  private sweep: Iterator<[string, number]> | undefined;
  /** Adopted slabs still being filled in: not dropped while empty (see adopt). */
  private pinned: boolean[] = [];

  /** Slab size; locations are slab * slabBytes + offset. Tests use small slabs to reach every path. */
  private readonly slabBytes: number;
  /** The sweep runs while the slabs hold more than sweepAbove times the live bytes plus sweepSlack slabs. */
  private readonly sweepAbove: number;
  private readonly sweepSlack: number;

  constructor(
    private readonly maxValueBytes: number,
    opts: { slabBytes?: number; sweepAbove?: number; sweepSlackSlabs?: number } = {},
  ) {
    this.slabBytes = opts.slabBytes ?? DEFAULT_SLAB_BYTES;
    this.sweepAbove = opts.sweepAbove ?? 2;
    this.sweepSlack = (opts.sweepSlackSlabs ?? 4) * this.slabBytes;
  }

  validate(key: string, valueLength?: number): string | undefined {
    return validateKey(key) ?? (valueLength !== undefined && valueLength > this.maxValueBytes ? `value of ${valueLength} bytes is over the ${this.maxValueBytes}-byte limit` : undefined);
  }

  get(key: string): Uint8Array | undefined {
    const loc = this.index.get(key);
    return loc === undefined ? undefined : this.view(this.slabs, loc);
  }

  put(key: string, value: Uint8Array): void {
    this.place(key, this.store(value));
  }

  /** Slab size: adopted slabs are at most this long, or hold one value. */
  get slabSize(): number {
    return this.slabBytes;
  }

  /**
   * Take a slab whose values were written elsewhere in this engine's layout (a length, then
   * the bytes; a recovery's receiving thread prepares them) and return its id. Its values
   * become live one by one through putStored; until `settle(id)` it is kept even while
   * nothing in it is live.
   */
  adopt(slab: Buffer): number {
    const id = this.freeIds.pop() ?? this.slabs.length;
    this.slabs[id] = slab;
    this.live[id] = 0;
    this.allocatedBytes += slab.length;
    this.pinned[id] = true;
    return id;
  }

  /** Set `key` to the value already at `offset` of adopted slab `id`. */
  putStored(key: string, id: number, offset: number): void {
    if (!this.pinned[id]) throw new Error(`slab ${id} is not an adopted slab`);
    const slab = this.slabs[id]!;
    const need = HEADER + slab.readUInt32LE(offset);
    if (offset + need > slab.length || (offset > 0 && offset + need > this.slabBytes)) throw new Error(`a value at ${offset} of ${need} bytes does not fit in slab ${id}`);
    this.live[id] += need;
    this.liveBytes += need;
    this.place(key, id * this.slabBytes + offset);
  }

  /** Done with an adopted slab: dropped now if nothing in it is live. */
  settle(id: number): void {
    this.pinned[id] = false;
    this.dropIfEmpty(id);
  }

  /** Point `key` at a value already stored and counted live at `loc`, releasing its old one. */
  private place(key: string, loc: number): void {
    const old = this.index.get(key);
    this.index.set(key, loc);
    if (old !== undefined) this.release(old);
    this.compactSome();
  }

  delete(key: string): void {
    const old = this.index.get(key);
    if (old === undefined) return;
    this.index.delete(key);
    this.release(old);
    this.compactSome();
  }

  size(): number {
    return this.index.size;
  }

  entries(): Iterable<[string, Uint8Array]> {
    // Sorting the keys alone uses the built-in string order (the same as `<`), several times
    // faster than sorting pairs with a comparator function (a million keys: seconds less).
    const keys = [...this.index.keys()].sort();
    return keys.map((k): [string, Uint8Array] => [k, this.view(this.slabs, this.index.get(k)!)]);
  }

  capture(): CapturedEntries {
    const keys = Array.from(this.index.keys());
    const locs = Array.from(this.index.values());
    // The slabs as of now: one dropped later stays reachable from here until the capture goes.
    const slabs = this.slabs.slice();
    return {
      keys,
      value: (i) => this.view(slabs, locs[i]),
      valueLength: (i) => slabs[Math.floor(locs[i] / this.slabBytes)]!.readUInt32LE(locs[i] % this.slabBytes),
    };
  }

  clear(): void {
    this.index.clear();
    this.slabs = [];
    this.live = [];
    this.freeIds = [];
    this.current = -1;
    this.offset = 0;
    this.allocatedBytes = 0;
    this.liveBytes = 0;
    this.sweep = undefined;
    this.pinned = [];
  }

  batch<T>(fn: () => T): T {
    return fn();
  }

  bulk<T>(fn: () => T): T {
    return fn();
  }

  close(): void {}

  /** Bytes held in slabs and bytes of them still live (for tests and metrics). */
  memory(): { allocated: number; live: number; slabs: number } {
    return { allocated: this.allocatedBytes, live: this.liveBytes, slabs: this.slabs.length - this.freeIds.length };
  }

  private view(slabs: (Buffer | undefined)[], loc: number): Uint8Array {
    const slab = slabs[Math.floor(loc / this.slabBytes)]!;
    const at = loc % this.slabBytes;
    return slab.subarray(at + HEADER, at + HEADER + slab.readUInt32LE(at));
  }

  private store(value: Uint8Array): number {
    const need = HEADER + value.length;
    let id: number;
    let at: number;
    if (need > this.slabBytes) {
      // A slab of its own, exactly its size.
      id = this.newSlab(need);
      at = 0;
    } else {
      if (this.current < 0 || this.offset + need > this.slabBytes) {
        const full = this.current;
        this.current = this.newSlab(this.slabBytes);
        this.offset = 0;
        // Everything in it may have been overwritten while it was being filled.
        if (full >= 0) this.dropIfEmpty(full);
      }
      id = this.current;
      at = this.offset;
      this.offset += need;
    }
    const slab = this.slabs[id]!;
    slab.writeUInt32LE(value.length, at);
    slab.set(value, at + HEADER);
    this.live[id] += need;
    this.liveBytes += need;
    return id * this.slabBytes + at;
  }

  private newSlab(bytes: number): number {
    const id = this.freeIds.pop() ?? this.slabs.length;
    this.slabs[id] = Buffer.allocUnsafeSlow(bytes);
    this.live[id] = 0;
    this.allocatedBytes += bytes;
    return id;
  }

  private release(loc: number): void {
    const id = Math.floor(loc / this.slabBytes);
    const slab = this.slabs[id]!;
    const bytes = HEADER + slab.readUInt32LE(loc % this.slabBytes);
    this.live[id] -= bytes;
    this.liveBytes -= bytes;
    this.dropIfEmpty(id);
  }

  /** Drop a slab with nothing live in it, unless values are still being written or adopted into it. */
  private dropIfEmpty(id: number): void {
    if (this.slabs[id] && this.live[id] === 0 && id !== this.current && !this.pinned[id]) this.drop(id);
  }

  /**
   * Forget a slab nothing in the index points into (views handed out and captures keep the
   * buffer itself alive for as long as they need it); its id is used again.
   */
  private drop(id: number): void {
    this.allocatedBytes -= this.slabs[id]!.length;
    this.slabs[id] = undefined;
    this.freeIds.push(id);
  }

  /** While the slabs hold over twice the live bytes, move a few values out of sparse slabs. */
  private compactSome(): void {
    if (this.allocatedBytes <= this.sweepAbove * this.liveBytes + this.sweepSlack) {
      this.sweep = undefined;
      return;
    }
    this.sweep ??= this.index.entries();
    for (let n = 0; n < SWEEP_PER_WRITE; n++) {
      const next = this.sweep.next();
      if (next.done) {
        this.sweep = undefined;
        return;
      }
      const [key, loc] = next.value;
      const id = Math.floor(loc / this.slabBytes);
      if (id === this.current || this.live[id] * 2 >= this.slabs[id]!.length) continue;
      // Setting an existing key while iterating keeps the iteration's order and coverage.
      this.index.set(key, this.store(this.view(this.slabs, loc)));
      this.release(loc);
    }
  }
}
