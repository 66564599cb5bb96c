/**
 * WAL record framing. Every record is
 *
 *   u32 LE  body length (type byte + payload)
 *   u32 LE  CRC-32C of the length field and the body
 *   u8      record type
 *   ...     payload
 *
 * so a torn write, a flipped bit or a garbage length is always caught by the checksum.
 * Integers in payloads are unsigned 48-bit little endian (indexes and terms stay far below 2^48).
 *
 * Version 2 segments seed every record's CRC with the segment's own number (`segmentSeed`), so
 * records a file held in an earlier life (a recycled segment) fail their checksum like any
 * garbage, and end each write with TERMINATOR_BYTES zeros (a zero length: "no write here yet"),
 * which the next write overwrites. Version 1 segments use no seed and no terminator.
 */
import { Entry, EntryType, HardState } from '../types.js';
import { crc32c } from './crc32c.js';

export const HEADER_BYTES = 9;
/** A body longer than this is taken for a corrupted length field. */
export const MAX_RECORD_BYTES = 256 << 20;

export enum RecordType {
  /** First record of every segment: format version. */
  SegmentHeader = 1,
  Entry = 2,
  HardState = 3,
  /** A durable snapshot covers the log up to here; earlier entries may be deleted. */
  SnapshotMarker = 4,
  /** An installed snapshot replaced the whole log: forget every entry before this record. */
  LogReset = 5,
  /**
   * Starts every write (one write, one fsync): `bytes` of records follow that belong to it.
   * Recovery applies a batch only once it has read all of it, and knows where the last batch
   * began, so a power cut that tore the last write anywhere inside it (a zeroed sector in the
   * middle, say) is told apart from damage to data that was already synced.
   */
  BatchHeader = 6,
}

export const WAL_VERSION = 2;
/** Zeros after each version 2 write: where the data ends until the next write. */
export const TERMINATOR_BYTES = HEADER_BYTES;

/** The CRC seed of the records of segment `seq` (version 2). */
export function segmentSeed(seq: number): number {
  const b = Buffer.from('raftkv-wal2-seq:000000', 'latin1');
  b.writeUIntLE(seq, b.length - 6, 6);
  return crc32c(b);
}

export type WalRecord =
  | { type: RecordType.SegmentHeader; version: number }
  | { type: RecordType.Entry; entry: Entry }
  | { type: RecordType.HardState; hardState: HardState }
  | { type: RecordType.SnapshotMarker | RecordType.LogReset; index: number; term: number }
  | { type: RecordType.BatchHeader; bytes: number };

const fromUtf8 = new TextDecoder();

function payloadSize(r: WalRecord): number {
  switch (r.type) {
    case RecordType.SegmentHeader:
      return 2;
    case RecordType.Entry:
      return 13 + r.entry.data.length;
    case RecordType.HardState:
      return 14 + Buffer.byteLength(r.hardState.vote);
    case RecordType.SnapshotMarker:
    case RecordType.LogReset:
      return 12;
    case RecordType.BatchHeader:
      return 4;
  }
}

export function encodedSize(r: WalRecord): number {
  return HEADER_BYTES + payloadSize(r);
}

/**
 * Encode one write: a batch header, then the records, back to back in one buffer. `into`, when
 * given and large enough, is where (a view of it is returned): a writer that reuses one buffer
 * spares a fresh allocation per write, which V8 counts as external memory and answers with full
 * garbage collections.
 */
export function encodeBatch(records: WalRecord[], into?: (bytes: number) => Buffer | undefined, seed = 0, terminator = 0): Buffer {
  let bytes = 0;
  for (const r of records) bytes += encodedSize(r);
  const header: WalRecord = { type: RecordType.BatchHeader, bytes };
  const total = bytes + encodedSize(header) + terminator;
  const buf = into?.(total)?.subarray(0, total) ?? Buffer.allocUnsafe(total);
  let off = encodeInto(buf, 0, header, seed);
  for (const r of records) off = encodeInto(buf, off, r, seed);
  buf.fill(0, off);
  return buf;
}

function encodeInto(buf: Buffer, off: number, r: WalRecord, seed: number): number {
  const start = off;
  const bodyLen = 1 + payloadSize(r);
  buf.writeUInt32LE(bodyLen, off);
  off += 8; // crc filled in below
  buf[off++] = r.type;
  switch (r.type) {
    case RecordType.SegmentHeader:
      buf.writeUInt16LE(r.version, off);
      off += 2;
      break;
    case RecordType.Entry: {
      const e = r.entry;
      buf.writeUIntLE(e.index, off, 6);
      buf.writeUIntLE(e.term, off + 6, 6);
      buf[off + 12] = e.type;
      buf.set(e.data, off + 13);
      off += 13 + e.data.length;
      break;
    }
    case RecordType.HardState: {
      const h = r.hardState;
      buf.writeUIntLE(h.term, off, 6);
      buf.writeUIntLE(h.commit, off + 6, 6);
      const n = buf.write(h.vote, off + 14, 'utf8');
      buf.writeUInt16LE(n, off + 12);
      off += 14 + n;
      break;
    }
    case RecordType.SnapshotMarker:
    case RecordType.LogReset:
      buf.writeUIntLE(r.index, off, 6);
      buf.writeUIntLE(r.term, off + 6, 6);
      off += 12;
      break;
    case RecordType.BatchHeader:
      buf.writeUInt32LE(r.bytes, off);
      off += 4;
      break;
  }
  // CRC over the length field and the body.
  const crc = crc32c(buf.subarray(start + 8, off), crc32c(buf.subarray(start, start + 4), seed));
  buf.writeUInt32LE(crc, start + 4);
  return off;
}

export type DecodeResult =
  | { kind: 'record'; record: WalRecord; next: number }
  /** Fewer bytes than the record needs: a write cut short, or the zeroed end of the file. */
  | { kind: 'truncated' }
  | { kind: 'corrupt'; reason: string };

/** Decode the record at `off` (of a segment whose records are seeded with `seed`). */
export function decodeRecord(buf: Buffer, off: number, seed = 0): DecodeResult {
  if (buf.length - off < HEADER_BYTES) return { kind: 'truncated' };
  const bodyLen = buf.readUInt32LE(off);
  if (bodyLen === 0) return { kind: 'truncated' };
  if (bodyLen > MAX_RECORD_BYTES) return { kind: 'corrupt', reason: `record length ${bodyLen} is implausible` };
  if (off + 8 + bodyLen > buf.length) return { kind: 'truncated' };
  const want = buf.readUInt32LE(off + 4);
  const got = crc32c(buf.subarray(off + 8, off + 8 + bodyLen), crc32c(buf.subarray(off, off + 4), seed));
  if (want !== got) return { kind: 'corrupt', reason: `checksum mismatch (stored ${hex(want)}, computed ${hex(got)})` };
  const p = off + 9;
  const end = off + 8 + bodyLen;
  const type = buf[off + 8] as RecordType;
  const need = (n: number) => end - p >= n;
  switch (type) {
    case RecordType.SegmentHeader:
      if (!need(2)) break;
      return { kind: 'record', record: { type, version: buf.readUInt16LE(p) }, next: end };
    case RecordType.Entry: {
      if (!need(13)) break;
      const etype = buf[p + 12];
      if (etype > EntryType.Noop) return { kind: 'corrupt', reason: `unknown entry type ${etype}` };
      // Copy the payload out: the segment buffer is dropped after replay.
      const data = new Uint8Array(end - (p + 13));
      data.set(buf.subarray(p + 13, end));
      const entry: Entry = { index: buf.readUIntLE(p, 6), term: buf.readUIntLE(p + 6, 6), type: etype, data };
      return { kind: 'record', record: { type, entry }, next: end };
    }
    case RecordType.HardState: {
      if (!need(14)) break;
      const n = buf.readUInt16LE(p + 12);
      if (!need(14 + n)) break;
      const hardState: HardState = {
        term: buf.readUIntLE(p, 6),
        commit: buf.readUIntLE(p + 6, 6),
        vote: fromUtf8.decode(buf.subarray(p + 14, p + 14 + n)),
      };
      return { kind: 'record', record: { type, hardState }, next: end };
    }
    case RecordType.SnapshotMarker:
    case RecordType.LogReset:
      if (!need(12)) break;
      return { kind: 'record', record: { type, index: buf.readUIntLE(p, 6), term: buf.readUIntLE(p + 6, 6) }, next: end };
    case RecordType.BatchHeader:
      if (!need(4)) break;
      return { kind: 'record', record: { type, bytes: buf.readUInt32LE(p) }, next: end };
    default:
      return { kind: 'corrupt', reason: `unknown record type ${String(type)}` };
  }
  return { kind: 'corrupt', reason: `record of type ${RecordType[type]} is too short` };
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

