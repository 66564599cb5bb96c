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

export function validateKey(key: string, maxKeyBytes: number): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'key must be a non-empty string';
  if (Buffer.byteLength(key) > maxKeyBytes) return `key is longer than ${maxKeyBytes} bytes`;
  return undefined;
}
