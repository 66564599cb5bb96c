/** A storage engine under the KV state machine. All three snapshot and restore the same way. */
export interface KvEngine {
  readonly name: 'kvstore' | 'diskstorage' | 'lmdb';
  /** Why this key/value can never be stored here (checked before proposing), or undefined. */
  validate(key: string, value?: Uint8Array): string | undefined;
  get(key: string): Uint8Array | undefined;
  put(key: string, value: Uint8Array): void;
  delete(key: string): void;
  size(): number;
  /** Every key and value, in a stable order. */
  entries(): Iterable<[string, Uint8Array]>;
  /** Drop everything (before a restore). */
  clear(): void;
  /** Group the writes of one batch (one transaction where the engine has them). */
  batch<T>(fn: () => T): T;
  /** Like batch, for bulk loads (a snapshot restore): durability once at the end. */
  bulk<T>(fn: () => T): T;
  close(): void | Promise<void>;
}

/**
 * The one key limit, for every engine and every protocol (text, protobuf, HTTP), in UTF-8 bytes.
 * LMDB's own ceiling is 1978 bytes; 1 KiB leaves room and keeps a percent-encoded key inside
 * any HTTP server's URL limits.
 */
export const MAX_KEY_BYTES = 1024;

export function validateKey(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'key must be a non-empty string';
  const bytes = Buffer.byteLength(key);
  if (bytes > MAX_KEY_BYTES) return `key of ${bytes} bytes is over the ${MAX_KEY_BYTES}-byte limit`;
  return undefined;
}

/** A key as it may appear in a message: never more than a short prefix of it. */
export function quoteKey(key: string): string {
  return key.length <= 64 ? `'${key}'` : `'${key.slice(0, 64)}...' (${Buffer.byteLength(key)} bytes)`;
}
