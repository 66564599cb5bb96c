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
import { Entry, Message, MessageType, message } from '../raft/index.js';
import { decodeRaftMessagePb, encodeRaftMessagePb } from './proto.js';
import { NOT_PLAIN, bytesSize, cursor, plainOr, numSize, putBytes, putNum, putString, readSpan, readVarint, varintSize, writeVarint } from './protobuf-wire.js';

export function encodeRaftMessage(m: Message): Uint8Array {
  if (m.snapshot || !plainNumbers(m)) return encodeRaftMessagePb(m);
  const fromLen = Buffer.byteLength(m.from);
  const toLen = Buffer.byteLength(m.to);
  const ctxLen = Buffer.byteLength(m.context);
  // Field 17 (a two-byte tag): only from a member that joined with no state.
  const incLen = m.incarnation ? Buffer.byteLength(m.incarnation) : 0;
  let size =
    numSize(m.type) + bytesSize(fromLen) + bytesSize(toLen) + numSize(m.term) + numSize(m.logTerm) + numSize(m.index) +
    numSize(m.commit) + (m.reject ? 2 : 0) + numSize(m.rejectHint) + numSize(m.seq) + bytesSize(ctxLen) + (m.transfer ? 2 : 0) +
    numSize(m.snapshotIndex) + (m.snapshotOffset ? 2 + varintSize(m.snapshotOffset) : 0) + (incLen ? 2 + varintSize(incLen) + incLen : 0);
  for (const e of m.entries) size += bytesSize(entrySize(e));
  const b = Buffer.allocUnsafe(size);
  let p = putNum(b, 0, 1, m.type);
  p = putString(b, p, 2, m.from, fromLen);
  p = putString(b, p, 3, m.to, toLen);
  p = putNum(b, p, 4, m.term);
  p = putNum(b, p, 5, m.logTerm);
  p = putNum(b, p, 6, m.index);
  for (const e of m.entries) {
    b[p++] = 0x3a; // 7 entries, length-delimited
    p = writeVarint(b, p, entrySize(e));
    p = putNum(b, p, 1, e.index);
    p = putNum(b, p, 2, e.term);
    p = putNum(b, p, 3, e.type);
    p = putBytes(b, p, 4, e.data);
  }
  p = putNum(b, p, 8, m.commit);
  p = putNum(b, p, 9, m.reject ? 1 : 0);
  p = putNum(b, p, 10, m.rejectHint);
  p = putNum(b, p, 11, m.seq);
  p = putString(b, p, 12, m.context, ctxLen);
  p = putNum(b, p, 13, m.transfer ? 1 : 0);
  p = putNum(b, p, 15, m.snapshotIndex);
  if (m.snapshotOffset) {
    // Field 16: its tag is two bytes.
    b[p++] = 0x80;
    b[p++] = 0x01;
    p = writeVarint(b, p, m.snapshotOffset);
  }
  if (incLen) {
    b[p++] = 0x8a;
    b[p++] = 0x01;
    p = writeVarint(b, p, incLen);
    p += b.write(m.incarnation!, p, 'utf8');
  }
  if (p !== size) throw new Error(`raft message encoder wrote ${p} of ${size} bytes`);
  return b;
}

/** Decode a peer's message; throws on bytes that are not one. The core validates the rest. */
export function decodeRaftMessage(buf: Uint8Array): Message {
  return plainOr(buf, decodePlain, decodeRaftMessagePb);
}

const MAX_SAFE_BYTES = 7; // varints of at most 7 bytes are below 2^49: exact as numbers
const MAX_U32_BYTES = 4; // below 2^28: what a uint32 field reads the same in every decoder

function plainNumbers(m: Message): boolean {
  const ok = (v: number) => Number.isSafeInteger(v) && v >= 0 && v < 2 ** 49;
  if (!(Number.isInteger(m.type) && m.type >= 0 && m.type < 2 ** 28)) return false;
  if (!ok(m.term) || !ok(m.logTerm) || !ok(m.index) || !ok(m.commit) || !ok(m.rejectHint) || !ok(m.seq) || !ok(m.snapshotIndex) || !ok(m.snapshotOffset)) return false;
  for (const e of m.entries) if (!ok(e.index) || !ok(e.term) || !(Number.isInteger(e.type) && e.type >= 0 && e.type < 2 ** 28)) return false;
  return true;
}

function entrySize(e: Entry): number {
  return numSize(e.index) + numSize(e.term) + numSize(e.type) + bytesSize(e.data.length);
}

function decodePlain(b: Buffer): Message {
  cursor.pos = 0;
  const end = b.length;
  const m = message({ type: 0 as MessageType, from: '', to: '', term: 0, entries: [] });
  // A field seen twice: the last one counts (protobuf's rule for scalars and strings).
  while (cursor.pos < end) {
    let start: number;
    switch (b[cursor.pos++]) {
      case 0x08:
        m.type = readVarint(b, end, MAX_U32_BYTES) as MessageType;
        break;
      case 0x12:
        start = readSpan(b, end);
        m.from = b.toString('utf8', start, cursor.pos);
        break;
      case 0x1a:
        start = readSpan(b, end);
        m.to = b.toString('utf8', start, cursor.pos);
        break;
      case 0x20:
        m.term = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x28:
        m.logTerm = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x30:
        m.index = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x3a: {
        start = readSpan(b, end);
        const stop = cursor.pos;
        cursor.pos = start;
        m.entries.push(decodeEntry(b, stop));
        break;
      }
      case 0x40:
        m.commit = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x48:
        m.reject = readVarint(b, end, MAX_U32_BYTES) !== 0;
        break;
      case 0x50:
        m.rejectHint = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x58:
        m.seq = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x62:
        start = readSpan(b, end);
        m.context = b.toString('utf8', start, cursor.pos);
        break;
      case 0x68:
        m.transfer = readVarint(b, end, MAX_U32_BYTES) !== 0;
        break;
      case 0x78:
        m.snapshotIndex = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x80:
        if (b[cursor.pos++] !== 0x01) throw NOT_PLAIN;
        m.snapshotOffset = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x8a:
        if (b[cursor.pos++] !== 0x01) throw NOT_PLAIN;
        start = readSpan(b, end);
        // Empty is none, as protobufjs's reading has it (its encoder writes '' for none).
        if (cursor.pos > start) m.incarnation = b.toString('utf8', start, cursor.pos);
        else if (m.incarnation !== undefined) m.incarnation = undefined;
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
  while (cursor.pos < end) {
    switch (b[cursor.pos++]) {
      case 0x08:
        e.index = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x10:
        e.term = readVarint(b, end, MAX_SAFE_BYTES);
        break;
      case 0x18:
        e.type = readVarint(b, end, MAX_U32_BYTES);
        break;
      case 0x22: {
        const start = readSpan(b, end);
        // A view, as protobufjs gives for a Buffer.
        e.data = b.subarray(start, cursor.pos);
        break;
      }
      default:
        throw NOT_PLAIN;
    }
  }
  if (cursor.pos !== end) throw NOT_PLAIN;
  return e;
}

const EMPTY = new Uint8Array(0);
