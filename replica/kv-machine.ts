/**
 * The replicated key-value state machine: decodes KvCommands from the log, deduplicates them by
 * client session, applies them to an engine, and optionally writes every applied entry
 * synchronously to an application log (the seed's --logfolder "applog" variant). The applog is
 * a command log, the same format a logger keeps, so either serves recover(i, n).
 */
import { CapturedSnapshot, Entry, EntryType, SessionOptions, SessionTable, Snapshot, StateMachine } from '../raft/index.js';
import type { CommandLog } from '../logger/command-log.js';
import { CapturedEntries, KvEngine } from './engines/engine.js';
import { KvCommand, Op, decodeKvCommand } from './proto.js';
import { DEFAULT_SLAB_BYTES, MemoryEngine, SLAB_VALUE_HEADER } from './engines/memory.js';
import { F_ACKED, F_AT, F_CLIENT, F_INDEX, F_KEY_END, F_KEY_START, F_LENGTH, F_OP, F_PLAIN, F_SEQ, F_SLAB, F_TIME, F_TYPE, FIELDS, PreparedKvBatch, unpreparedEntry } from './prepared.js';

/** First byte of an apply result. */
export enum ApplyStatus {
  Ok = 0,
  /** A retry of a command whose answer was already forgotten: it was not applied again. */
  Expired = 1,
  /** The command could not be applied (it failed validation); nothing changed. */
  Rejected = 2,
  /** Its session is unknown (expired, or never registered): not applied. */
  SessionExpired = 3,
}

const MAGIC = Buffer.from('RKVKV001');
const EMPTY = new Uint8Array(0);

export interface KvMachineOptions {
  /** The application log: every applied entry is written and synced before it is answered. */
  applog?: CommandLog;
  nodeId: string;
  sessions?: SessionOptions;
  /** Entries a background snapshot serializes between pauses (default 4096; the simulator uses few). */
  snapshotSlice?: number;
}

export class KvStateMachine implements StateMachine {
  sessions: SessionTable;
  appliedIndex = 0;
  readonly applog: CommandLog | undefined;
  private readonly sessionOptions: SessionOptions;
  private readonly snapshotSlice: number;

  constructor(
    readonly engine: KvEngine,
    opts: KvMachineOptions,
  ) {
    this.sessionOptions = opts.sessions ?? {};
    this.sessions = new SessionTable(this.sessionOptions);
    this.applog = opts.applog;
    this.snapshotSlice = Math.max(1, opts.snapshotSlice ?? 4096);
  }

  apply(e: Entry): Uint8Array {
    return this.applyToEngine([e])[0];
  }

  applyBatch(entries: Entry[]): Uint8Array[] | Promise<Uint8Array[]> {
    const results = this.applyToEngine(entries);
    if (!this.applog) return results;
    this.applog.append(entries);
    return this.applog.flush().then(() => results);
  }

  /** Apply to the engine only (not to the applog): for rebuilding state from elsewhere. */
  applyToEngine(entries: Entry[]): Uint8Array[] {
    return this.engine.batch(() =>
      entries.map((e) => {
        this.appliedIndex = e.index;
        return e.type === EntryType.Normal ? this.applyCommand(e) : EMPTY;
      }),
    );
  }

  private applyCommand(e: Entry): Uint8Array {
    let cmd: KvCommand;
    try {
      cmd = decodeKvCommand(e.data);
    } catch {
      return result(ApplyStatus.Rejected, 'undecodable command');
    }
    return this.applyFields(e.index, cmd.op, cmd.key, cmd.client, cmd.seq, cmd.acked, cmd.time, cmd.value, cmd.value.length, -1, 0);
  }

  /**
   * One command, decoded. Its value is either `value`, or (when `slab` >= 0) already in the
   * kvstore engine's adopted slab `slab` at `at` (see applyPrepared).
   */
  private applyFields(index: number, op: Op, key: string, client: string, seq: number, acked: number, time: number, value: Uint8Array | undefined, valueLength: number, slab: number, at: number): Uint8Array {
    this.sessions.advance(time);
    if (op === Op.REGISTER) return result(ApplyStatus.Ok, this.sessions.register(index));
    if (client) {
      const seen = this.sessions.check(client, seq, acked, index);
      if (seen.kind === 'duplicate') return seen.response;
      if (seen.kind === 'expired') return result(ApplyStatus.Expired, 'request expired: its answer was already acknowledged');
      if (seen.kind === 'unknown-session') return result(ApplyStatus.SessionExpired, `session ${client.slice(0, 40)} expired or was never registered: register a new one`);
    }
    const invalid = this.engine.validate(key, op === Op.SET ? valueLength : undefined);
    let out: Uint8Array;
    if (invalid) {
      out = result(ApplyStatus.Rejected, invalid);
    } else {
      if (op === Op.SET) {
        if (slab >= 0) (this.engine as MemoryEngine).putStored(key, slab, at);
        else this.engine.put(key, value!);
      } else if (op === Op.DELETE) this.engine.delete(key);
      out = OK_RESULT;
    }
    if (client) this.sessions.record(client, seq, out, index);
    return out;
  }

  /** What rebuild() needs to install batches prepared on its receiving thread. */
  preparedInstall(): { slabBytes: number; apply(b: PreparedKvBatch): void } {
    return { slabBytes: this.engine instanceof MemoryEngine ? this.engine.slabSize : DEFAULT_SLAB_BYTES, apply: (b) => this.applyPrepared(b) };
  }

  /**
   * Apply a batch prepared on another thread (replica/prepared.ts), to the engine only, like
   * applyToEngine. With the kvstore engine its slabs are adopted, not copied.
   */
  applyPrepared(b: PreparedKvBatch): void {
    const f = b.fields;
    // utf8Slice is what toString('utf8', ...) calls after checking its arguments: a tenth of the loop.
    const text = Buffer.from(b.text.buffer, b.text.byteOffset, b.text.byteLength) as Buffer & { utf8Slice(start: number, end: number): string };
    const slabs = b.slabs.map((s) => Buffer.from(s));
    const memory = this.engine instanceof MemoryEngine && this.engine.slabSize === b.slabBytes ? this.engine : undefined;
    const ids = memory ? slabs.map((s) => memory.adopt(s)) : undefined;
    try {
      this.engine.batch(() => {
        for (let i = 0, o = 0; i < b.count; i++, o += FIELDS) {
          const index = f[o + F_INDEX];
          this.appliedIndex = index;
          if (f[o + F_TYPE] !== EntryType.Normal) continue;
          if (!f[o + F_PLAIN]) {
            this.applyCommand(unpreparedEntry(b, i));
            continue;
          }
          const key = f[o + F_KEY_START] >= 0 ? text.utf8Slice(f[o + F_KEY_START], f[o + F_KEY_END]) : '';
          const client = f[o + F_CLIENT] >= 0 ? b.clients[f[o + F_CLIENT]] : '';
          const s = f[o + F_SLAB];
          const at = f[o + F_AT];
          const length = f[o + F_LENGTH];
          // Adopted: the engine points at the value where it is. Otherwise it copies a view.
          const adopted = ids && s >= 0 ? ids[s] : -1;
          const value = adopted >= 0 ? undefined : s >= 0 ? slabs[s].subarray(at + SLAB_VALUE_HEADER, at + SLAB_VALUE_HEADER + length) : EMPTY;
          this.applyFields(index, f[o + F_OP], key, client, f[o + F_SEQ], f[o + F_ACKED], f[o + F_TIME], value, length, adopted, at);
        }
      });
    } finally {
      if (ids) for (const id of ids) memory!.settle(id);
    }
  }

  snapshot(): Uint8Array {
    const state = this.captureState();
    const out = Buffer.allocUnsafe(drain(snapshotSize(state, Infinity)));
    let off = 0;
    for (const chunk of snapshotChunks(state, Infinity)) {
      if (!chunk) continue;
      out.set(chunk, off);
      off += chunk.length;
    }
    return out;
  }

  /**
   * The state as of now, serialized later in slices with `pause()` between them (see the
   * driver) and handed over a few MB at a time, so the whole snapshot is never in memory.
   */
  captureSnapshot(): CapturedSnapshot {
    const state = this.captureState();
    const slice = this.snapshotSlice;
    let size: number | undefined;
    return {
      size: async (pause) => {
        const sizing = snapshotSize(state, slice);
        for (let step = sizing.next(); ; step = sizing.next()) {
          if (step.done) return (size = step.value);
          await pause();
        }
      },
      chunks: async function* (pause, reuse) {
        for (const chunk of snapshotChunks(state, slice, reuse, chunkBytesFor(size))) {
          if (chunk) yield chunk;
          else await pause();
        }
      },
    };
  }

  /** The sessions and every key and value as of now (an engine's cheap capture, or its entries). */
  private captureState(): CapturedState {
    const sessions = Buffer.from(JSON.stringify({ applied: this.appliedIndex, sessions: this.sessions.toJSON() }));
    const captured = this.engine.capture?.();
    if (captured) return { sessions, ...captured };
    const keys: string[] = [];
    const values: Uint8Array[] = [];
    for (const [k, v] of this.engine.entries()) {
      keys.push(k);
      values.push(v);
    }
    return { sessions, keys, value: (i) => values[i], valueLength: (i) => values[i].length };
  }

  restore(s: Snapshot): void | Promise<void> {
    this.restoreState(s);
    // The applog starts over at a snapshot that is ahead of it (a no-op at a replica's restart).
    if (this.applog) return this.applog.installBase(s).then(() => undefined);
  }

  /** Replace the engine's state and the sessions with a snapshot's. */
  restoreState(s: Snapshot): void {
    const buf = Buffer.from(s.data.buffer, s.data.byteOffset, s.data.length);
    if (buf.length < 12 || !buf.subarray(0, 8).equals(MAGIC)) throw new Error('snapshot is not a raftkv key-value snapshot');
    const slen = buf.readUInt32LE(8);
    const meta = JSON.parse(buf.subarray(12, 12 + slen).toString()) as { applied: number; sessions: unknown };
    this.sessions = SessionTable.fromJSON(meta.sessions, this.sessionOptions);
    this.engine.clear();
    this.engine.bulk(() => {
      let off = 12 + slen;
      while (off < buf.length) {
        const kl = buf.readUInt32LE(off);
        const key = buf.toString('utf8', off + 4, off + 4 + kl);
        off += 4 + kl;
        const vl = buf.readUInt32LE(off);
        this.engine.put(key, buf.subarray(off + 4, off + 4 + vl));
        off += 4 + vl;
      }
    });
    this.appliedIndex = s.meta.index;
  }

  close(): Promise<void> {
    return this.applog ? this.applog.close() : Promise.resolve();
  }
}

interface CapturedState extends CapturedEntries {
  sessions: Buffer;
}

/** Bytes a snapshot hands over at once at most (a value larger than this goes alone, uncopied). */
const SNAPSHOT_CHUNK = 4 << 20;
/**
 * ...and at least, once the size is known: a 256th of the state. Small pieces are short bursts
 * for the disk the WAL shares (at 8 clients, 1 MB pieces instead of 4 MB took 1-1.5 ms off the
 * write p99: snapshots of states of tens of MB); a large state keeps 4 MB pieces, because each
 * piece's write is a pass of the event loop and the log grows until the snapshot is done (1 MB
 * pieces for a 1 GB state: replica RSS 1,460-1,527 MB instead of 1,425).
 */
const MIN_SNAPSHOT_CHUNK = 1 << 20;

function chunkBytesFor(size: number | undefined): number {
  if (size === undefined) return SNAPSHOT_CHUNK;
  return Math.min(SNAPSHOT_CHUNK, Math.max(MIN_SNAPSHOT_CHUNK, Math.ceil(size / 256)));
}

/** Run a generator that only pauses to its end, without pausing. */
function drain<T>(g: Generator<void, T>): T {
  for (let step = g.next(); ; step = g.next()) if (step.done) return step.value;
}

/** The snapshot's size in bytes, yielding every `slice` keys. */
function* snapshotSize({ sessions, keys, valueLength }: CapturedState, slice: number): Generator<void, number> {
  let bytes = 12 + sessions.length;
  for (let i = 0; i < keys.length; i++) {
    bytes += 8 + Buffer.byteLength(keys[i]) + valueLength(i);
    if ((i + 1) % slice === 0) yield;
  }
  return bytes;
}

/**
 * Snapshot format: MAGIC | u32 length | sessions JSON | (u32 key length | key | u32 value
 * length | value)*, produced as chunks of about `chunkBytes`; `undefined` every
 * `slice` keys is where the caller may pause.
 */
function* snapshotChunks({ sessions, keys, value: valueAt }: CapturedState, slice: number, reuse = false, chunkBytes = SNAPSHOT_CHUNK): Generator<Uint8Array | undefined> {
  // Reused, a chunk is overwritten once the next one is asked for (see CapturedSnapshot.chunks).
  let shared: Buffer | undefined;
  const fresh = (bytes = chunkBytes): Buffer => {
    if (!reuse || bytes > chunkBytes) return Buffer.allocUnsafe(bytes);
    return (shared ??= Buffer.allocUnsafe(chunkBytes));
  };
  let out = fresh();
  let off = MAGIC.copy(out, 0);
  off = out.writeUInt32LE(sessions.length, off);
  if (off + sessions.length > out.length) {
    yield out.subarray(0, off);
    yield sessions;
    out = fresh();
    off = 0;
  } else off += sessions.copy(out, off);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const value = valueAt(i);
    // The key's UTF-8 is at most 3 bytes per UTF-16 unit: room for the header is checked first.
    if (off + 8 + key.length * 3 > out.length) {
      yield out.subarray(0, off);
      out = fresh(Math.max(chunkBytes, 8 + key.length * 3));
      off = 0;
    }
    const kl = out.write(key, off + 4, 'utf8');
    off = out.writeUInt32LE(kl, off) + kl;
    off = out.writeUInt32LE(value.length, off);
    if (off + value.length <= out.length) {
      out.set(value, off);
      off += value.length;
    } else {
      yield out.subarray(0, off);
      yield value;
      out = fresh();
      off = 0;
    }
    if ((i + 1) % slice === 0) yield undefined;
  }
  if (off > 0) yield out.subarray(0, off);
}

/** The answer to most commands, shared: results are only read (sent, or kept for a retry). */
const OK_RESULT = result(ApplyStatus.Ok);

export function result(status: ApplyStatus, message = ''): Uint8Array {
  const m = Buffer.from(message);
  const out = new Uint8Array(1 + m.length);
  out[0] = status;
  out.set(m, 1);
  return out;
}

export function parseResult(r: Uint8Array): { status: ApplyStatus; message: string } {
  return { status: (r[0] ?? ApplyStatus.Ok) as ApplyStatus, message: Buffer.from(r.subarray(1)).toString() };
}
