import { closeSync, fdatasyncSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { KvEngine, quoteKey, validateKey } from './engine.js';

/**
 * The seed's diskstorage: a preallocated state file; the record for integer key k lives at
 * offset k * valueSize and every write is synced. A record is `u32 (length + 1) | value`, so
 * a value holds at most valueSize - 4 bytes and length 0 means "absent".
 */
export class DiskStorageEngine implements KvEngine {
  readonly name = 'diskstorage';
  private fd: number;
  private count = 0;
  private readonly buf: Buffer;
  private deferSync = false;

  constructor(
    file: string,
    private readonly keys: number,
    private readonly valueSize: number,
    private readonly sync = true,
  ) {
    if (!Number.isSafeInteger(keys) || keys <= 0) throw new Error('diskstorage: --keys must be a positive integer');
    if (!Number.isSafeInteger(valueSize) || valueSize < 8) throw new Error('diskstorage: --value-size must be at least 8 bytes');
    mkdirSync(dirname(file), { recursive: true });
    this.fd = openSync(file, 'w+');
    ftruncateSync(this.fd, keys * valueSize); // preallocated (sparse) state file
    this.buf = Buffer.alloc(valueSize);
  }

  validate(key: string, valueLength?: number): string | undefined {
    const bad = validateKey(key);
    if (bad) return bad;
    if (!/^\d+$/.test(key) || Number(key) >= this.keys) return `diskstorage keys are integers in [0, ${this.keys}), not ${quoteKey(key)}`;
    if (valueLength !== undefined && valueLength > this.valueSize - 4) return `diskstorage values hold at most ${this.valueSize - 4} bytes (value size ${this.valueSize})`;
    return undefined;
  }

  private offset(key: string): number {
    return Number(key) * this.valueSize;
  }

  get(key: string): Uint8Array | undefined {
    if (this.validate(key)) return undefined;
    readSync(this.fd, this.buf, 0, this.valueSize, this.offset(key));
    const len = this.buf.readUInt32LE(0);
    if (len === 0) return undefined;
    return new Uint8Array(this.buf.subarray(4, 4 + len - 1));
  }

  put(key: string, value: Uint8Array): void {
    const had = this.get(key) !== undefined;
    const rec = Buffer.alloc(this.valueSize);
    rec.writeUInt32LE(value.length + 1, 0);
    rec.set(value, 4);
    writeSync(this.fd, rec, 0, this.valueSize, this.offset(key));
    if (this.sync && !this.deferSync) fdatasyncSync(this.fd);
    if (!had) this.count++;
  }

  delete(key: string): void {
    if (this.get(key) === undefined) return;
    writeSync(this.fd, Buffer.alloc(4), 0, 4, this.offset(key));
    if (this.sync && !this.deferSync) fdatasyncSync(this.fd);
    this.count--;
  }

  size(): number {
    return this.count;
  }

  *entries(): Iterable<[string, Uint8Array]> {
    const chunkRecords = Math.max(1, Math.floor((4 << 20) / this.valueSize));
    const chunk = Buffer.alloc(chunkRecords * this.valueSize);
    for (let k = 0; k < this.keys; k += chunkRecords) {
      const n = Math.min(chunkRecords, this.keys - k);
      readSync(this.fd, chunk, 0, n * this.valueSize, k * this.valueSize);
      for (let i = 0; i < n; i++) {
        const len = chunk.readUInt32LE(i * this.valueSize);
        if (len > 0) yield [String(k + i), new Uint8Array(chunk.subarray(i * this.valueSize + 4, i * this.valueSize + 4 + len - 1))];
      }
    }
  }

  clear(): void {
    ftruncateSync(this.fd, 0);
    ftruncateSync(this.fd, this.keys * this.valueSize);
    if (this.sync) fdatasyncSync(this.fd);
    this.count = 0;
  }

  batch<T>(fn: () => T): T {
    return fn();
  }

  bulk<T>(fn: () => T): T {
    this.deferSync = true;
    try {
      return fn();
    } finally {
      this.deferSync = false;
      if (this.sync) fdatasyncSync(this.fd);
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}
