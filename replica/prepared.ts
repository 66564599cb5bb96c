/**
 * Log entries prepared for the KV state machine on another thread. A recovery installs a
 * million commands; decoding each one and copying its value took about as much of the
 * installing thread as the map and the sessions. The receiving thread (logger/range-worker.ts)
 * has time to spare, so it does both: it finds every command's fields, copies keys into a small
 * text buffer and values straight into slabs laid out as the kvstore engine keeps them, and
 * hands over a batch of plain numbers, bytes and slabs (moved, not copied). The installing
 * thread then makes one string per key and adopts the slabs (`KvStateMachine.applyPrepared`).
 */
import { Entry, EntryType } from '../raft/types.js';
import { forEachRecord } from '../logger/command-log.js';
import { KvSpans, Op, newKvSpans, scanKvCommand } from './proto.js';
import { SLAB_VALUE_HEADER } from './engines/memory.js';

/** Numbers per entry in `fields`, at these offsets. */
export const FIELDS = 14;
export const F_INDEX = 0;
export const F_TERM = 1;
export const F_TYPE = 2;
/** 1: a plain KvCommand, its fields below; 0: anything else, its whole data at text[F_KEY_START, F_KEY_END). */
export const F_PLAIN = 3;
export const F_OP = 4;
/** The key's bytes in `text` (start -1: no key field). */
export const F_KEY_START = 5;
export const F_KEY_END = 6;
/** Index into `clients`, or -1 (no client). */
export const F_CLIENT = 7;
export const F_SEQ = 8;
export const F_ACKED = 9;
export const F_TIME = 10;
/** Index into `slabs` and offset of the value there (length header first), or -1 (no value kept). */
export const F_SLAB = 11;
export const F_AT = 12;
/** The value's length (so the installing thread need not read it from the slab). */
export const F_LENGTH = 13;

export interface PreparedKvBatch {
  count: number;
  fields: Float64Array;
  text: Uint8Array;
  /** Values as `SLAB_VALUE_HEADER` bytes of length then the bytes; each at most slabBytes long, or one value alone. */
  slabs: ArrayBuffer[];
  slabBytes: number;
  clients: string[];
}

/** Entries per batch (a batch also ends when its slab is full). */
const MAX_ENTRIES = 4096;

/**
 * Turns checked records (the command log's format) into prepared batches, in order. Values
 * are appended to the current slab; a batch is handed over when its slab cannot take the next
 * value, so adopted slabs come nearly full.
 */
export class PreparedBatchBuilder {
  private readonly spans: KvSpans = newKvSpans();
  // The batch being gathered (see startBatch).
  private fields!: Float64Array;
  private text!: Buffer;
  private textUsed!: number;
  private count!: number;
  private slabs!: ArrayBuffer[];
  /** The slab values are appended to, and its index in `slabs`. */
  private slab: Buffer | undefined;
  private slabIndex!: number;
  private slabUsed!: number;
  private clients!: string[];
  private clientIds!: Map<string, number>;

  constructor(
    readonly slabBytes: number,
    private readonly emit: (batch: PreparedKvBatch, transfer: ArrayBuffer[]) => void,
  ) {
    if (!Number.isInteger(slabBytes) || slabBytes < 64) throw new Error(`slab size ${slabBytes} is too small`);
    this.startBatch();
  }

  /** Whole records, already checked (lengths and checksums). */
  add(records: Buffer): void {
    forEachRecord(records, (buf, index, term, type, start, end) => this.addEntry(buf, index, term, type, start, end));
  }

  /** Hand over what is gathered. */
  flush(): void {
    if (this.count === 0) return;
    const batch: PreparedKvBatch = {
      count: this.count,
      fields: this.fields,
      text: new Uint8Array(this.text.buffer, this.text.byteOffset, this.textUsed),
      slabs: this.slabs,
      slabBytes: this.slabBytes,
      clients: this.clients,
    };
    this.emit(batch, [this.fields.buffer as ArrayBuffer, this.text.buffer as ArrayBuffer, ...this.slabs]);
    this.startBatch();
  }

  private startBatch(): void {
    this.fields = new Float64Array(MAX_ENTRIES * FIELDS);
    this.text = Buffer.allocUnsafeSlow(64 << 10);
    this.textUsed = 0;
    this.count = 0;
    this.slabs = [];
    this.slab = undefined;
    this.slabIndex = -1;
    this.slabUsed = 0;
    this.clients = [];
    this.clientIds = new Map();
  }

  private addEntry(buf: Buffer, index: number, term: number, type: number, start: number, end: number): void {
    const s = this.spans;
    const plain = type === EntryType.Normal && scanKvCommand(buf, start, end, s);
    // Room for the value first: a full slab ends the batch before this entry.
    let slab = -1;
    let at = -1;
    let length = 0;
    if (plain && s.op === Op.SET) {
      length = s.valueStart >= 0 ? s.valueEnd - s.valueStart : 0;
      this.storeValue(buf, s.valueStart, length);
      slab = this.storedSlab;
      at = this.storedAt;
    }
    const o = this.count * FIELDS;
    const f = this.fields;
    f[o + F_INDEX] = index;
    f[o + F_TERM] = term;
    f[o + F_TYPE] = type;
    f[o + F_SLAB] = slab;
    f[o + F_AT] = at;
    f[o + F_LENGTH] = length;
    if (plain) {
      f[o + F_PLAIN] = 1;
      f[o + F_OP] = s.op;
      if (s.keyStart >= 0) this.copyText(buf, s.keyStart, s.keyEnd, o);
      else f[o + F_KEY_START] = f[o + F_KEY_END] = -1;
      f[o + F_CLIENT] = s.clientEnd > s.clientStart ? this.clientId(buf.toString('utf8', s.clientStart, s.clientEnd)) : -1;
      f[o + F_SEQ] = s.seq;
      f[o + F_ACKED] = s.acked;
      f[o + F_TIME] = s.time;
    } else {
      f[o + F_PLAIN] = 0;
      this.copyText(buf, start, end, o);
    }
    if (++this.count === MAX_ENTRIES) this.flush();
  }

  /** Where the last stored value went: its slab's index in this batch and offset. */
  private storedSlab = -1;
  private storedAt = -1;

  /** Append a value (length, then bytes from buf[start..]) to a slab (see storedSlab, storedAt). */
  private storeValue(buf: Buffer, start: number, length: number): void {
    const need = SLAB_VALUE_HEADER + length;
    let target: Buffer;
    if (need > this.slabBytes) {
      // Alone in a slab of its own size, as the engine stores such a value.
      target = Buffer.from(new ArrayBuffer(need));
      this.slabs.push(target.buffer as ArrayBuffer);
      this.storedSlab = this.slabs.length - 1;
      this.storedAt = 0;
    } else {
      if (this.slab && this.slabUsed + need > this.slabBytes) this.flush();
      if (!this.slab) {
        this.slab = Buffer.from(new ArrayBuffer(this.slabBytes));
        this.slabs.push(this.slab.buffer as ArrayBuffer);
        this.slabIndex = this.slabs.length - 1;
      }
      target = this.slab;
      this.storedSlab = this.slabIndex;
      this.storedAt = this.slabUsed;
      this.slabUsed += need;
    }
    target.writeUInt32LE(length, this.storedAt);
    if (length > 0) buf.copy(target, this.storedAt + SLAB_VALUE_HEADER, start, start + length);
  }

  private copyText(buf: Buffer, start: number, end: number, o: number): void {
    const length = end - start;
    if (this.textUsed + length > this.text.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(2 * this.text.length, this.textUsed + length));
      this.text.copy(bigger, 0, 0, this.textUsed);
      this.text = bigger;
    }
    buf.copy(this.text, this.textUsed, start, end);
    this.fields[o + F_KEY_START] = this.textUsed;
    this.fields[o + F_KEY_END] = this.textUsed + length;
    this.textUsed += length;
  }

  private clientId(client: string): number {
    let id = this.clientIds.get(client);
    if (id === undefined) {
      id = this.clients.length;
      this.clients.push(client);
      this.clientIds.set(client, id);
    }
    return id;
  }
}

/** Entry i of a batch, when it was not prepared as a plain command (a membership change, say). */
export function unpreparedEntry(b: PreparedKvBatch, i: number): Entry {
  const o = i * FIELDS;
  const f = b.fields;
  if (f[o + F_PLAIN]) throw new Error(`entry ${f[o + F_INDEX]} was prepared as a command: its bytes are not kept`);
  return { index: f[o + F_INDEX], term: f[o + F_TERM], type: f[o + F_TYPE] as EntryType, data: b.text.slice(f[o + F_KEY_START], f[o + F_KEY_END]) };
}
