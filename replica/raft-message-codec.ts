/**
 * Peer messages as protobuf bytes (the RaftMessage of proto.ts), by hand for the messages that
 * make up nearly all of a replica's traffic: appends, their answers, heartbeats, votes.
 * protobufjs's writer allocates an operation object per field and per entry, and its reader a
 * message object and a LongBits per 64-bit field: after the values themselves, the largest
 * source of a replica's short-lived garbage. A message with a snapshot chunk, and any bytes that
 * are not the plain encoding (unknown fields, long varints, other wire types), go through
 * protobufjs, so the two always agree; the fuzz test compares them both ways and on arbitrary
 * bytes.
 */
import type { Entry, Message, MessageType } from '../raft/index.js';
import { decodeRaftMessagePb, encodeRaftMessagePb } from './proto.js';

export function encodeRaftMessage(m: Message): Uint8Array {
  if (m.snapshot || !plainNumbers(m)) return encodeRaftMessagePb(m);
  const fromLen = Buffer.byteLength(m.from);
  const toLen = Buffer.byteLength(m.to);
  const ctxLen = m.context ? Buffer.byteLength(m.context) : 0;
  let size =
    scalarSize(m.type) + bytesSize(fromLen) + bytesSize(toLen) + scalarSize(m.term) + scalarSize(m.logTerm) + scalarSize(m.index) +
    scalarSize(m.commit) + (m.reject ? 2 : 0) + scalarSize(m.rejectHint) + scalarSize(m.seq) + bytesSize(ctxLen) + (m.transfer ? 2 : 0) +
    scalarSize(m.snapshotIndex) + (m.snapshotOffset ? 2 + varintSize(m.snapshotOffset) : 0);
  for (const e of m.entries) size += 1 + varintSize(entrySize(e)) + entrySize(e);
  const b = Buffer.allocUnsafe(size);
  let p = 0;
  p = putScalar(b, p, 0x08, m.type);
  p = putString(b, p, 0x12, m.from, fromLen);
  p = putString(b, p, 0x1a, m.to, toLen);
  p = putScalar(b, p, 0x20, m.term);
  p = putScalar(b, p, 0x28, m.logTerm);
  p = putScalar(b, p, 0x30, m.index);
  for (const e of m.entries) {
    b[p++] = 0x3a;
    p = putVarint(b, p, entrySize(e));
    p = putScalar(b, p, 0x08, e.index);
    p = putScalar(b, p, 0x10, e.term);
    p = putScalar(b, p, 0x18, e.type);
    if (e.data.length > 0) {
      b[p++] = 0x22;
      p = putVarint(b, p, e.data.length);
      b.set(e.data, p);
      p += e.data.length;
    }
  }
  p = putScalar(b, p, 0x40, m.commit);
  if (m.reject) p = putScalar(b, p, 0x48, 1);
  p = putScalar(b, p, 0x50, m.rejectHint);
  p = putScalar(b, p, 0x58, m.seq);
  if (ctxLen) p = putString(b, p, 0x62, m.context, ctxLen);
  if (m.transfer) p = putScalar(b, p, 0x68, 1);
  p = putScalar(b, p, 0x78, m.snapshotIndex);
  if (m.snapshotOffset) {
    // Field 16: its tag is two bytes.
    b[p++] = 0x80;
    b[p++] = 0x01;
    p = putVarint(b, p, m.snapshotOffset);
  }
  if (p !== size) throw new Error(`raft message encoder wrote ${p} of ${size} bytes`);
  return b;
}

/** Decode a peer's message; throws on bytes that are not one. The core validates the rest. */
export function decodeRaftMessage(buf: Uint8Array): Message {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  try {
    return decodePlain(b);
  } catch (e) {
    if (e !== NOT_PLAIN) throw e;
    return decodeRaftMessagePb(b);
  }
}

const NOT_PLAIN = new Error('not the plain encoding');
const MAX_SAFE_BYTES = 7; // varints of at most 7 bytes are below 2^49: exact as numbers
const MAX_U32_BYTES = 4; // below 2^28: what a uint32 field reads the same in every decoder

function plainNumbers(m: Message): boolean {
  const ok = (v: number) => Number.isSafeInteger(v) && v >= 0 && v < 2 ** 49;
  if (!(Number.isInteger(m.type) && m.type >= 0 && m.type < 2 ** 28)) return false;
  if (!ok(m.term) || !ok(m.logTerm) || !ok(m.index) || !ok(m.commit) || !ok(m.rejectHint) || !ok(m.seq) || !ok(m.snapshotIndex) || !ok(m.snapshotOffset)) return false;
  for (const e of m.entries) if (!ok(e.index) || !ok(e.term) || !(Number.isInteger(e.type) && e.type >= 0 && e.type < 2 ** 28)) return false;
  return true;
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** A varint field with its one-byte tag, left out when zero (proto3's default). */
function scalarSize(v: number): number {
  return v === 0 ? 0 : 1 + varintSize(v);
}

function bytesSize(len: number): number {
  return len === 0 ? 0 : 1 + varintSize(len) + len;
}

function entrySize(e: Entry): number {
  return scalarSize(e.index) + scalarSize(e.term) + scalarSize(e.type) + bytesSize(e.data.length);
}

function putVarint(b: Buffer, p: number, v: number): number {
  while (v >= 128) {
    b[p++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  b[p++] = v;
  return p;
}

function putScalar(b: Buffer, p: number, tag: number, v: number): number {
  if (v === 0) return p;
  b[p++] = tag;
  return putVarint(b, p, v);
}

function putString(b: Buffer, p: number, tag: number, s: string, len: number): number {
  if (len === 0) return p;
  b[p++] = tag;
  p = putVarint(b, p, len);
  return p + b.write(s, p, len, 'utf8');
}

/** The reader's cursor (module state: a closure over a local costs a context per message). */
let pos = 0;

function varint(b: Buffer, end: number, maxBytes: number): number {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < maxBytes && pos < end; i++) {
    const byte = b[pos++];
    v += (byte & 0x7f) * mul;
    if (byte < 0x80) return v;
    mul *= 128;
  }
  throw NOT_PLAIN;
}

/** A length-delimited field's start; the cursor moves past it. */
function span(b: Buffer, end: number): number {
  const len = varint(b, end, MAX_U32_BYTES);
  if (pos + len > end) throw NOT_PLAIN;
  pos += len;
  return pos - len;
}

function decodePlain(b: Buffer): Message {
  pos = 0;
  const end = b.length;
  const m: Message = {
    type: 0 as MessageType,
    from: '',
    to: '',
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    seq: 0,
    context: '',
    transfer: false,
    snapshot: undefined,
    snapshotIndex: 0,
    snapshotOffset: 0,
  };
  // A field seen twice: the last one counts (protobuf's rule for scalars and strings).
  while (pos < end) {
    let start: number;
    switch (b[pos++]) {
      case 0x08:
        m.type = varint(b, end, MAX_U32_BYTES) as MessageType;
        break;
      case 0x12:
        start = span(b, end);
        m.from = b.toString('utf8', start, pos);
        break;
      case 0x1a:
        start = span(b, end);
        m.to = b.toString('utf8', start, pos);
        break;
      case 0x20:
        m.term = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x28:
        m.logTerm = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x30:
        m.index = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x3a: {
        start = span(b, end);
        const stop = pos;
        pos = start;
        m.entries.push(decodeEntry(b, stop));
        break;
      }
      case 0x40:
        m.commit = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x48:
        m.reject = varint(b, end, MAX_U32_BYTES) !== 0;
        break;
      case 0x50:
        m.rejectHint = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x58:
        m.seq = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x62:
        start = span(b, end);
        m.context = b.toString('utf8', start, pos);
        break;
      case 0x68:
        m.transfer = varint(b, end, MAX_U32_BYTES) !== 0;
        break;
      case 0x78:
        m.snapshotIndex = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x80:
        if (b[pos++] !== 0x01) throw NOT_PLAIN;
        m.snapshotOffset = varint(b, end, MAX_SAFE_BYTES);
        break;
      default:
        // A snapshot chunk (field 14), an unknown field or another wire type.
        throw NOT_PLAIN;
    }
  }
  return m;
}

function decodeEntry(b: Buffer, end: number): Entry {
  const e: Entry = { index: 0, term: 0, type: 0, data: EMPTY };
  while (pos < end) {
    switch (b[pos++]) {
      case 0x08:
        e.index = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x10:
        e.term = varint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x18:
        e.type = varint(b, end, MAX_U32_BYTES);
        break;
      case 0x22: {
        const start = span(b, end);
        // A view, as protobufjs gives for a Buffer.
        e.data = b.subarray(start, pos);
        break;
      }
      default:
        throw NOT_PLAIN;
    }
  }
  if (pos !== end) throw NOT_PLAIN;
  return e;
}

const EMPTY = new Uint8Array(0);
