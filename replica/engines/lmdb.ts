import { rmSync } from 'node:fs';
import { open, RootDatabase } from 'lmdb';
import { KvEngine, validateKey } from './engine.js';

/**
 * A persistent embedded engine (LMDB), standing in for the seed's badger store: the data lives
 * in a memory-mapped B+tree on disk, not in the JS heap. Each Raft batch is one LMDB write
 * transaction; LMDB's own sync is off because the Raft WAL already made the batch durable and
 * the state is rebuilt from the latest snapshot and the log on restart.
 */
export class LmdbEngine implements KvEngine {
  readonly name = 'lmdb';
  private db: RootDatabase<Uint8Array, string>;

  constructor(
    path: string,
    private readonly maxValueBytes: number,
  ) {
    rmSync(path, { recursive: true, force: true });
    this.db = open<Uint8Array, string>({ path, encoding: 'binary', noSync: true, compression: false });
  }

  validate(key: string, valueLength?: number): string | undefined {
    return validateKey(key) ?? (valueLength !== undefined && valueLength > this.maxValueBytes ? `value of ${valueLength} bytes is over the ${this.maxValueBytes}-byte limit` : undefined);
  }
  get(key: string): Uint8Array | undefined {
    const v = this.db.get(key);
    return v === undefined ? undefined : new Uint8Array(v);
  }
  put(key: string, value: Uint8Array): void {
    this.db.putSync(key, Buffer.from(value.buffer, value.byteOffset, value.length));
  }
  delete(key: string): void {
    this.db.removeSync(key);
  }
  size(): number {
    return this.db.getCount();
  }
  *entries(): Iterable<[string, Uint8Array]> {
    for (const { key, value } of this.db.getRange()) yield [key, new Uint8Array(value)];
  }
  clear(): void {
    this.db.clearSync();
  }
  batch<T>(fn: () => T): T {
    return this.db.transactionSync(fn);
  }
  bulk<T>(fn: () => T): T {
    return this.db.transactionSync(fn);
  }
  async close(): Promise<void> {
    await this.db.close();
  }
}
