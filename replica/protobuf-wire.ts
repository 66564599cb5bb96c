/**
 * Protobuf wire primitives for the hand-written codecs (client frames, KvCommand, peer
 * messages): varints, tagged fields written in protobuf's canonical form (zero, empty and false
 * left out), and a reader for the plain encoding that gives up (NOT_PLAIN) on anything else, so
 * the caller can hand those bytes to protobufjs and both always agree.
 */

/** Bytes of a varint (for a non-negative safe integer). */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

export function writeVarint(buf: Buffer, off: number, n: number): number {
  while (n >= 128) {
    buf[off++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[off++] = n;
  return off;
}

// Field sizes and writers: a tag byte (field numbers below 16), then the value.
export function numSize(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a non-negative integer: ${n}`);
  return n > 0 ? 1 + varintSize(n) : 0;
}
export const bytesSize = (len: number): number => (len > 0 ? 1 + varintSize(len) + len : 0);

export function putNum(buf: Buffer, off: number, field: number, n: number): number {
  if (n <= 0) return off;
  buf[off] = field << 3;
  return writeVarint(buf, off + 1, n);
}

export function putString(buf: Buffer, off: number, field: number, s: string, len: number): number {
  if (len === 0) return off;
  buf[off] = (field << 3) | 2;
  off = writeVarint(buf, off + 1, len);
  return off + buf.write(s, off, len, 'utf8');
}

export function putBytes(buf: Buffer, off: number, field: number, b: Uint8Array): number {
  if (b.length === 0) return off;
  buf[off] = (field << 3) | 2;
  off = writeVarint(buf, off + 1, b.length);
  buf.set(b, off);
  return off + b.length;
}

/** Thrown by the reader: the input is not the plain encoding, let protobufjs read it. */
export const NOT_PLAIN = new Error('not the plain encoding');

/**
 * Decode `buf` with the hand-written reader of its plain encoding, or, when it is not plain,
 * with protobufjs (`other`): one decoder's answer either way. A Uint8Array (an entry read back
 * from a log) is viewed as a Buffer over the same bytes, not copied.
 */
export function plainOr<T>(buf: Uint8Array, plain: (b: Buffer) => T, other: (b: Buffer) => T): T {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  try {
    return plain(b);
  } catch (e) {
    if (e !== NOT_PLAIN) throw e;
    return other(b);
  }
}

/**
 * The reader's cursor: one object for every hand decoder (they never interleave, each runs to
 * its end synchronously). A closure over a local would cost a context object per message.
 */
export const cursor = { pos: 0 };

/** A varint of at most `maxBytes` bytes (so its value is exact and below 2^(7 maxBytes)). */
export function readVarint(b: Buffer, end: number, maxBytes: number): number {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < maxBytes && cursor.pos < end; i++) {
    const byte = b[cursor.pos++];
    v += (byte & 0x7f) * mul;
    if (byte < 0x80) return v;
    mul *= 128;
  }
  throw NOT_PLAIN;
}

/** A length-delimited field's start (its length at most 4 varint bytes); the cursor moves past it. */
export function readSpan(b: Buffer, end: number): number {
  const len = readVarint(b, end, 4);
  if (cursor.pos + len > end) throw NOT_PLAIN;
  cursor.pos += len;
  return cursor.pos - len;
}
