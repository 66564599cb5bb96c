/**
 * Wire schemas (protobufjs, built at load time from the schema text below; no codegen step).
 * 64-bit fields decode as JS numbers: indexes and terms stay far below 2^53.
 */
import protobuf from 'protobufjs';
import { Entry, Message, MessageType, SnapshotChunk } from '../raft/index.js';
import { NOT_PLAIN, bytesSize, cursor, numSize, plainOr, putBytes, putNum, putString, readSpan, readVarint } from './protobuf-wire.js';

protobuf.util.Long = undefined as never;
protobuf.configure();

const SCHEMA = `
syntax = "proto3";
package raftkv;

message Entry { uint64 index = 1; uint64 term = 2; uint32 type = 3; bytes data = 4; }
message Member { string id = 1; string addr = 2; }
message Membership { repeated string voters = 1; repeated string learners = 2; repeated Member addrs = 3; repeated string loggers = 4; repeated Member incarnations = 5; }
message SnapshotMeta { uint64 index = 1; uint64 term = 2; Membership membership = 3; }
message SnapshotChunk { SnapshotMeta meta = 1; uint64 offset = 2; uint64 total_size = 3; bytes data = 4; bool done = 5; }
message RaftMessage {
  uint32 type = 1; string from = 2; string to = 3; uint64 term = 4; uint64 log_term = 5; uint64 index = 6;
  repeated Entry entries = 7; uint64 commit = 8; bool reject = 9; uint64 reject_hint = 10; uint64 seq = 11;
  string context = 12; bool transfer = 13; SnapshotChunk snapshot = 14;
  uint64 snapshot_index = 15; uint64 snapshot_offset = 16; string incarnation = 17;
}
// First frame on a peer connection: who is calling, and where its clients reach it.
message Hello { string from = 1; string token = 2; string client_addr = 3; string http_addr = 4; string raft_addr = 5; string cluster_id = 6; string role = 7; uint64 commit = 8; }

// REGISTER opens a client session through the log; the answer's value is the session id.
enum Op { SET = 0; GET = 1; DELETE = 2; REGISTER = 3; }
// The seed's client message, plus an optional session (client, seq, acked) for exactly-once retries.
message Command {
  uint64 id = 1; string ip = 2; Op op = 3; string key = 4; bytes value = 5;
  string client = 6; uint64 seq = 7; uint64 acked = 8; bool stale = 9;
  // Set by a follower passing the command to the leader: never forwarded twice.
  bool forwarded = 10;
}
// UNAVAILABLE: not applied, safe to retry. UNKNOWN: the write may or may not have been applied
// (retry with the same session to find out). SESSION_EXPIRED: the session is gone; not applied.
enum Status { OK = 0; NOT_FOUND = 1; ERROR = 2; NOT_LEADER = 3; UNAVAILABLE = 4; UNKNOWN = 5; SESSION_EXPIRED = 6; }
message Response { uint64 id = 1; Status status = 2; bytes value = 3; string leader = 4; string error = 5; }

// What a KV command looks like inside a Raft log entry.
// time: the proposing leader's clock (ms), the state machine's deterministic notion of time.
message KvCommand { Op op = 1; string key = 2; bytes value = 3; string client = 4; uint64 seq = 5; uint64 acked = 6; uint64 time = 7; }
`;

const root = protobuf.parse(SCHEMA, { keepCase: false }).root;
const T = (name: string) => root.lookupType(`raftkv.${name}`);
export const RaftMessagePb = T('RaftMessage');
export const HelloPb = T('Hello');
export const CommandPb = T('Command');
export const ResponsePb = T('Response');
export const KvCommandPb = T('KvCommand');

export enum Op {
  SET = 0,
  GET = 1,
  DELETE = 2,
  REGISTER = 3,
}
export enum Status {
  OK = 0,
  NOT_FOUND = 1,
  ERROR = 2,
  NOT_LEADER = 3,
  /** Not applied: safe to retry. */
  UNAVAILABLE = 4,
  /** The write may or may not have been applied; retry with the same session to find out. */
  UNKNOWN = 5,
  /** The session expired (or never existed); the command was not applied. */
  SESSION_EXPIRED = 6,
}

export interface Command {
  id: number;
  ip: string;
  op: Op;
  key: string;
  value: Uint8Array;
  client: string;
  seq: number;
  acked: number;
  stale: boolean;
  forwarded: boolean;
}
/** A command with every field present (defaults for what the caller leaves out). */
export function newCommand(fields: Partial<Command> & Pick<Command, 'op' | 'key'>): Command {
  return { id: 0, ip: '', value: new Uint8Array(0), client: '', seq: 0, acked: 0, stale: false, forwarded: false, ...fields };
}

export interface Response {
  id: number;
  status: Status;
  value: Uint8Array;
  leader: string;
  error: string;
}
export interface KvCommand {
  op: Op;
  key: string;
  value: Uint8Array;
  client: string;
  seq: number;
  acked: number;
  /** The proposing leader's clock, in ms (0: not stamped). */
  time: number;
}
export interface Hello {
  from: string;
  token: string;
  clientAddr: string;
  httpAddr: string;
  raftAddr: string;
  /** Identity of the cluster the sender belongs to ('' for a new node that has not joined yet). */
  clusterId: string;
  /** 'logger' for a logger (never to be promoted to voter); '' for a replica. */
  role?: string;
  /** The sender's commit index: a peer behind on the configuration admits one that is ahead. */
  commit?: number;
}

const EMPTY = new Uint8Array(0);
const asBytes = (v: unknown): Uint8Array => (v instanceof Uint8Array ? v : EMPTY);
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** RaftMessage through protobufjs: messages with a snapshot chunk, and the reference the hand codec is tested against. */
export function encodeRaftMessagePb(m: Message): Uint8Array {
  return RaftMessagePb.encode({
    type: m.type,
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries,
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    seq: m.seq,
    context: m.context,
    transfer: m.transfer,
    snapshotIndex: m.snapshotIndex,
    snapshotOffset: m.snapshotOffset,
    incarnation: m.incarnation ?? '',
    snapshot: m.snapshot && {
      meta: {
        index: m.snapshot.meta.index,
        term: m.snapshot.meta.term,
        membership: {
          voters: m.snapshot.meta.membership.voters,
          learners: m.snapshot.meta.membership.learners,
          addrs: Object.entries(m.snapshot.meta.membership.addrs).map(([id, addr]) => ({ id, addr })),
          loggers: m.snapshot.meta.membership.loggers ?? [],
          incarnations: Object.entries(m.snapshot.meta.membership.incarnations ?? {}).map(([id, addr]) => ({ id, addr })),
        },
      },
      offset: m.snapshot.offset,
      totalSize: m.snapshot.totalSize,
      data: m.snapshot.data,
      done: m.snapshot.done,
    },
  }).finish();
}

/** RaftMessage decoded by protobufjs (see encodeRaftMessagePb). */
export function decodeRaftMessagePb(buf: Uint8Array): Message {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const d = RaftMessagePb.decode(buf) as any;
  const entries: Entry[] = (d.entries ?? []).map((e: { index: unknown; term: unknown; type: unknown; data: unknown }) => ({
    index: num(e.index),
    term: num(e.term),
    type: num(e.type),
    data: asBytes(e.data),
  }));
  let snapshot: SnapshotChunk | undefined;
  if (d.snapshot) {
    const s = d.snapshot;
    const mem = s.meta?.membership ?? {};
    snapshot = {
      meta: {
        index: num(s.meta?.index),
        term: num(s.meta?.term),
        membership: {
          voters: mem.voters ?? [],
          learners: mem.learners ?? [],
          addrs: Object.fromEntries((mem.addrs ?? []).map((a: { id: string; addr: string }) => [a.id, a.addr])),
          ...(mem.loggers?.length ? { loggers: mem.loggers } : {}),
          ...(mem.incarnations?.length ? { incarnations: Object.fromEntries(mem.incarnations.map((a: { id: string; addr: string }) => [a.id, a.addr])) } : {}),
        },
      },
      offset: num(s.offset),
      totalSize: num(s.totalSize),
      data: asBytes(s.data),
      done: Boolean(s.done),
    };
  }
  return {
    type: num(d.type) as MessageType,
    from: str(d.from),
    to: str(d.to),
    term: num(d.term),
    logTerm: num(d.logTerm),
    index: num(d.index),
    entries,
    commit: num(d.commit),
    reject: Boolean(d.reject),
    rejectHint: num(d.rejectHint),
    seq: num(d.seq),
    context: str(d.context),
    transfer: Boolean(d.transfer),
    snapshot,
    snapshotIndex: num(d.snapshotIndex),
    snapshotOffset: num(d.snapshotOffset),
    ...(d.incarnation ? { incarnation: str(d.incarnation) } : {}),
  };
}

export function encodeHello(h: Hello): Uint8Array {
  return HelloPb.encode(h).finish();
}
export function decodeHello(buf: Uint8Array): Hello {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const d = HelloPb.decode(buf) as any;
  return { from: str(d.from), token: str(d.token), clientAddr: str(d.clientAddr), httpAddr: str(d.httpAddr), raftAddr: str(d.raftAddr), clusterId: str(d.clusterId), role: str(d.role), commit: num(d.commit) };
}

export function encodeCommand(c: Partial<Command>): Uint8Array {
  return CommandPb.encode(c).finish();
}
/**
 * A client's Command (every request a replica serves): read by hand when it is the plain
 * encoding, by protobufjs otherwise (see plainOr), then checked.
 */
export function decodeCommand(buf: Uint8Array): Command {
  const c = plainOr(buf, decodePlainCommand, decodeCommandPb);
  if (!(c.op in Op)) throw new Error(`unknown op ${c.op}`);
  return c;
}

/** Command through protobufjs, unchecked: the reference the hand decoder is tested against. */
export function decodeCommandPb(buf: Uint8Array): Command {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const d = CommandPb.decode(buf) as any;
  return {
    id: num(d.id),
    ip: str(d.ip),
    op: num(d.op),
    key: str(d.key),
    value: asBytes(d.value),
    client: str(d.client),
    seq: num(d.seq),
    acked: num(d.acked),
    stale: Boolean(d.stale),
    forwarded: Boolean(d.forwarded),
  };
}

function decodePlainCommand(b: Buffer): Command {
  const c: Command = { id: 0, ip: '', op: Op.SET, key: '', value: EMPTY, client: '', seq: 0, acked: 0, stale: false, forwarded: false };
  const end = b.length;
  cursor.pos = 0;
  // A field seen twice: the last one counts (protobuf's rule for scalars and strings).
  while (cursor.pos < end) {
    switch (b[cursor.pos++]) {
      case 0x08: // 1 id, uint64 (below 2^49 here: exact)
        c.id = readVarint(b, end, 7);
        break;
      case 0x12: // 2 ip
        c.ip = b.toString('utf8', readSpan(b, end), cursor.pos);
        break;
      case 0x18: // 3 op, enum (int32: below 2^28 reads the same either way)
        c.op = readVarint(b, end, 4);
        break;
      case 0x22: // 4 key
        c.key = b.toString('utf8', readSpan(b, end), cursor.pos);
        break;
      case 0x2a: // 5 value, a view (as protobufjs gives for a Buffer)
        c.value = b.subarray(readSpan(b, end), cursor.pos);
        break;
      case 0x32: // 6 client
        c.client = b.toString('utf8', readSpan(b, end), cursor.pos);
        break;
      case 0x38: // 7 seq
        c.seq = readVarint(b, end, 7);
        break;
      case 0x40: // 8 acked
        c.acked = readVarint(b, end, 7);
        break;
      case 0x48: // 9 stale, bool
        c.stale = readVarint(b, end, 1) !== 0;
        break;
      case 0x50: // 10 forwarded, bool
        c.forwarded = readVarint(b, end, 1) !== 0;
        break;
      default:
        throw NOT_PLAIN;
    }
  }
  return c;
}

export function encodeResponse(r: Partial<Response>): Uint8Array {
  return ResponsePb.encode(r).finish();
}
/** A replica's Response (every answer a client reads): by hand when plain, else protobufjs. */
export function decodeResponse(buf: Uint8Array): Response {
  return plainOr(buf, decodePlainResponse, decodeResponsePb);
}

/** Response through protobufjs: the reference the hand decoder is tested against. */
export function decodeResponsePb(buf: Uint8Array): Response {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const d = ResponsePb.decode(buf) as any;
  return { id: num(d.id), status: num(d.status), value: asBytes(d.value), leader: str(d.leader), error: str(d.error) };
}

function decodePlainResponse(b: Buffer): Response {
  const r: Response = { id: 0, status: Status.OK, value: EMPTY, leader: '', error: '' };
  const end = b.length;
  cursor.pos = 0;
  while (cursor.pos < end) {
    switch (b[cursor.pos++]) {
      case 0x08: // 1 id
        r.id = readVarint(b, end, 7);
        break;
      case 0x10: // 2 status, enum
        r.status = readVarint(b, end, 4);
        break;
      case 0x1a: // 3 value, a view
        r.value = b.subarray(readSpan(b, end), cursor.pos);
        break;
      case 0x22: // 4 leader
        r.leader = b.toString('utf8', readSpan(b, end), cursor.pos);
        break;
      case 0x2a: // 5 error
        r.error = b.toString('utf8', readSpan(b, end), cursor.pos);
        break;
      default:
        throw NOT_PLAIN;
    }
  }
  return r;
}

/**
 * KvCommand as it goes into a log entry, encoded by hand in protobuf's canonical form (zero and
 * empty fields left out): one allocation of the exact size, where protobufjs's writer built a
 * list of operations first (a leader encodes one per write).
 */
export function encodeKvCommand(c: KvCommand): Uint8Array {
  const keyLen = Buffer.byteLength(c.key);
  const clientLen = Buffer.byteLength(c.client);
  const buf = Buffer.allocUnsafe(
    numSize(c.op) + bytesSize(keyLen) + bytesSize(c.value.length) + bytesSize(clientLen) + numSize(c.seq) + numSize(c.acked) + numSize(c.time),
  );
  let off = putNum(buf, 0, 1, c.op);
  off = putString(buf, off, 2, c.key, keyLen);
  off = putBytes(buf, off, 3, c.value);
  off = putString(buf, off, 4, c.client, clientLen);
  off = putNum(buf, off, 5, c.seq);
  off = putNum(buf, off, 6, c.acked);
  putNum(buf, off, 7, c.time);
  return buf;
}
/** KvCommand through protobufjs: the reference the hand encoder is tested against. */
export function encodeKvCommandPb(c: KvCommand): Uint8Array {
  return KvCommandPb.encode(c).finish();
}
/** KvCommand through protobufjs: the reference the hand decoder below is tested against. */
export function decodeKvCommandPb(buf: Uint8Array): KvCommand {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const d = KvCommandPb.decode(buf) as any;
  return { op: num(d.op), key: str(d.key), value: asBytes(d.value), client: str(d.client), seq: num(d.seq), acked: num(d.acked), time: num(d.time) };
}

/**
 * KvCommand decoded by hand: the apply path's hottest call (a million per recovery), without
 * protobufjs's intermediate message object. Only the plain encoding (what encodeKvCommand and
 * every protobuf encoder write: known fields with their wire types, short varints, lengths in
 * bounds) is read here; anything else goes to protobufjs, so the two always agree (the fuzz
 * test compares them on valid and arbitrary bytes).
 */
export function decodeKvCommand(buf: Uint8Array): KvCommand {
  return plainOr(buf, decodePlainKvCommand, decodeKvCommandPb);
}

function decodePlainKvCommand(b: Buffer): KvCommand {
  const f = scanPlain(b, 0, b.length, SCRATCH);
  return {
    op: f.op,
    key: f.keyStart >= 0 ? b.toString('utf8', f.keyStart, f.keyEnd) : '',
    // A view, as protobufjs gives for a Buffer.
    value: f.valueStart >= 0 ? b.subarray(f.valueStart, f.valueEnd) : EMPTY,
    client: f.clientStart >= 0 ? b.toString('utf8', f.clientStart, f.clientEnd) : '',
    seq: f.seq,
    acked: f.acked,
    time: f.time,
  };
}

/** Where a KvCommand's fields lie in its bytes (a string or bytes field absent: start = end = -1). */
export interface KvSpans {
  op: number;
  keyStart: number;
  keyEnd: number;
  valueStart: number;
  valueEnd: number;
  clientStart: number;
  clientEnd: number;
  seq: number;
  acked: number;
  time: number;
}

export function newKvSpans(): KvSpans {
  return { op: 0, keyStart: -1, keyEnd: -1, valueStart: -1, valueEnd: -1, clientStart: -1, clientEnd: -1, seq: 0, acked: 0, time: 0 };
}

const SCRATCH = newKvSpans();

/**
 * The KvCommand in b[start, end) as spans, filled into `out`, without making a string or a
 * view: for a reader that copies the value somewhere and decodes the key elsewhere (a recovery
 * prepares commands on its receiving thread). False when the bytes are not the plain encoding;
 * decodeKvCommand reads those (or rejects them).
 */
export function scanKvCommand(b: Buffer, start: number, end: number, out: KvSpans): boolean {
  try {
    scanPlain(b, start, end, out);
    return true;
  } catch (e) {
    if (e !== NOT_PLAIN) throw e;
    return false;
  }
}

function scanPlain(b: Buffer, start: number, end: number, f: KvSpans): KvSpans {
  cursor.pos = start;
  f.op = 0;
  f.keyStart = f.keyEnd = f.valueStart = f.valueEnd = f.clientStart = f.clientEnd = -1;
  f.seq = f.acked = f.time = 0;
  // A field seen twice: the last one counts (protobuf's rule for scalars and strings).
  while (cursor.pos < end) {
    switch (b[cursor.pos++]) {
      case 0x08: // 1 op, varint (int32: below 2^31 reads the same either way)
        f.op = readVarint(b, end, 4);
        break;
      case 0x12: // 2 key, string
        f.keyStart = readSpan(b, end);
        f.keyEnd = cursor.pos;
        break;
      case 0x1a: // 3 value, bytes
        f.valueStart = readSpan(b, end);
        f.valueEnd = cursor.pos;
        break;
      case 0x22: // 4 client, string
        f.clientStart = readSpan(b, end);
        f.clientEnd = cursor.pos;
        break;
      case 0x28: // 5 seq, uint64 (below 2^49 here: exact)
        f.seq = readVarint(b, end, 7);
        break;
      case 0x30: // 6 acked
        f.acked = readVarint(b, end, 7);
        break;
      case 0x38: // 7 time
        f.time = readVarint(b, end, 7);
        break;
      default:
        throw NOT_PLAIN;
    }
  }
  return f;
}
