/** A storage engine under the KV state machine. All three snapshot and restore the same way. */
import { createHash } from 'node:crypto';
export interface KvEngine {
  readonly name: 'kvstore' | 'diskstorage' | 'lmdb';
  /** Why this key, with a value of this many bytes, can never be stored here (checked before proposing), or undefined. */
  validate(key: string, valueLength?: number): string | undefined;
  get(key: string): Uint8Array | undefined;
  put(key: string, value: Uint8Array): void;
  delete(key: string): void;
  size(): number;
  /** Every key and value, in a stable order. */
  entries(): Iterable<[string, Uint8Array]>;
  /**
   * Optional: every key and value as of now, in any order, in O(references) time; later writes
   * do not change it (values are never modified in place). Lets a snapshot be serialized while
   * writes go on. Engines whose data lives on disk do not have it.
   */
  capture?(): CapturedEntries;
  /** Drop everything (before a restore). */
  clear(): void;
  /** Group the writes of one batch (one transaction where the engine has them). */
  batch<T>(fn: () => T): T;
  /** Like batch, for bulk loads (a snapshot restore): durability once at the end. */
  bulk<T>(fn: () => T): T;
  close(): void | Promise<void>;
}

/** Keys and their values as of one moment; value i belongs to keys[i]. */
export interface CapturedEntries {
  keys: string[];
  value(i: number): Uint8Array;
  valueLength(i: number): number;
}

/**
 * The one key limit, for every engine and every protocol (text, protobuf, HTTP), in UTF-8 bytes.
 * LMDB's own ceiling is 1978 bytes; 1 KiB leaves room and keeps a percent-encoded key inside
 * any HTTP server's URL limits.
 */
export const MAX_KEY_BYTES = 1024;

export function validateKey(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'key must be a non-empty string';
  // A UTF-16 code unit is at most 3 bytes of UTF-8: short keys need no count.
  if (key.length <= MAX_KEY_BYTES / 3) return undefined;
  const bytes = Buffer.byteLength(key);
  if (bytes > MAX_KEY_BYTES) return `key of ${bytes} bytes is over the ${MAX_KEY_BYTES}-byte limit`;
  return undefined;
}

/** A key as it may appear in a message: never more than a short prefix of it. */
export function quoteKey(key: string): string {
  return key.length <= 64 ? `'${key}'` : `'${key.slice(0, 64)}...' (${Buffer.byteLength(key)} bytes)`;
}

/**
 * A digest of an engine's content (keys in sorted order with their values): two replicas, or a
 * replica and a state rebuilt from a logger, hold the same data exactly when their digests match.
 */
export function stateDigest(engine: Pick<KvEngine, 'entries'>): string {
  const pairs = [...engine.entries()];
  // Engines list in their own stable order; the digest needs one order for all (most already are).
  if (!sortedByKey(pairs)) pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const h = createHash('sha256');
  const len = Buffer.allocUnsafe(4);
  for (const [k, v] of pairs) {
    const kb = Buffer.from(k);
    len.writeUInt32LE(kb.length);
    h.update(len).update(kb);
    len.writeUInt32LE(v.length);
    h.update(len).update(v);
  }
  return h.digest('hex');
}

function sortedByKey(pairs: [string, unknown][]): boolean {
  for (let i = 1; i < pairs.length; i++) if (pairs[i - 1][0] > pairs[i][0]) return false;
  return true;
}
