/**
 * The write-ahead log: a directory of segment files named `<seq>-<firstIndex>.wal` (16 hex
 * digits each), filled with framed records (see records.ts). Appends of one batch are encoded
 * into one buffer, written with one write and made durable with one fdatasync: group commit.
 *
 * Every segment starts with a header, the current hard state and the latest snapshot marker,
 * so older segments can be deleted once a snapshot covers their entries.
 */
import { join } from 'node:path';
import { Entry, HardState } from '../types.js';
import { CorruptionError, StorageError, describeIoError } from './errors.js';
import { FileHandleLike, FileSystem, nodeFs } from './fs.js';
import { RecordType, WAL_VERSION, WalRecord, decodeRecord, encodeBatch } from './records.js';

export type FsyncMode = 'always' | 'batch' | 'never';

export interface FaultHooks {
  /** Called before each write; return an error to fail it, or a byte count to cut it short. */
  write?: (file: string, bytes: number) => Error | number | undefined;
  /** Called before each fdatasync; return an error to fail it. */
  sync?: (file: string) => Error | undefined;
}

export interface WalOptions {
  /**
   * always: fdatasync after every entry (what an unbatched log costs); batch: one fdatasync per
   * append call, covering every entry in it (group commit, the default); never: leave it to the
   * OS (survives a process crash, not a power loss).
   */
  fsync?: FsyncMode;
  /** Roll to a new segment once the current one passes this size. */
  segmentBytes?: number;
  faults?: FaultHooks;
  /** The file system (default node:fs; the simulator passes a simulated disk). */
  fs?: FileSystem;
}

export interface WalBatch {
  /** An installed snapshot replaced the log: entries before it are void. */
  reset?: { index: number; term: number };
  entries: Entry[];
  hardState?: HardState;
}

export interface WalState {
  hardState: HardState;
  entries: Entry[];
  /** Latest snapshot marker or reset seen (index 0 when none). */
  snapshot: { index: number; term: number };
  /** Bytes cut from the end of the last segment because a crash tore its last write. */
  tornBytesRepaired: number;
}

interface Segment {
  seq: number;
  firstIndex: number;
  path: string;
}

/**
 * Batches up to this size are written on the calling thread (FileHandleLike.writeSync): a copy
 * into the page cache, about 0.3 ms per MB; larger ones go to the thread pool.
 */
const SYNC_WRITE_MAX = 1 << 20;
const SEGMENT_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;
const segName = (seq: number, first: number) => `${seq.toString(16).padStart(16, '0')}-${first.toString(16).padStart(16, '0')}.wal`;

export class Wal {
  private fh: FileHandleLike | undefined;
  private readonly fs: FileSystem;
  private size = 0;
  /** The hard state holds a commit index not yet written (it rides with the next write). */
  private pendingHardState = false;
  private failed: StorageError | undefined;
  private lastIndex: number;
  private hardState: HardState;
  private marker: { index: number; term: number };
  private readonly fsync: FsyncMode;
  private readonly segmentBytes: number;
  private readonly faults: FaultHooks;
  /** Serializes every operation on the files. */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly dir: string,
    private segments: Segment[],
    state: WalState,
    opts: WalOptions,
  ) {
    this.fsync = opts.fsync ?? 'batch';
    this.segmentBytes = opts.segmentBytes ?? 64 << 20;
    this.faults = opts.faults ?? {};
    this.fs = opts.fs ?? nodeFs;
    this.hardState = state.hardState;
    this.marker = state.snapshot;
    this.lastIndex = state.entries.length > 0 ? state.entries[state.entries.length - 1].index : state.snapshot.index;
  }

  /** Open (creating if needed) and replay the log in `dir`. */
  static async open(dir: string, opts: WalOptions = {}): Promise<{ wal: Wal; state: WalState }> {
    if (opts.fsync && !['always', 'batch', 'never'].includes(opts.fsync)) {
      throw new Error(`fsync must be always, batch or never, not ${String(opts.fsync)}`);
    }
    const fs = opts.fs ?? nodeFs;
    await fs.mkdir(dir, { recursive: true });
    const segments = await listSegments(fs, dir);
    const state = await replay(fs, segments);
    const wal = new Wal(dir, segments, state, opts);
    if (segments.length === 0) {
      await wal.createSegment(1);
    } else {
      const last = segments[segments.length - 1];
      try {
        wal.fh = await wal.fs.open(last.path, 'r+');
        const { size } = await wal.fh.stat();
        wal.size = size;
      } catch (e) {
        throw describeIoError('opening', last.path, e);
      }
      if (state.tornBytesRepaired > 0 || wal.size === 0) {
        await wal.repairTail(last, wal.size - state.tornBytesRepaired).catch(async (e: unknown) => {
          await wal.fh?.close().catch(() => undefined);
          throw e;
        });
      }
    }
    return { wal, state };
  }

  get fsyncMode(): FsyncMode {
    return this.fsync;
  }

  segmentCount(): number {
    return this.segments.length;
  }

  /** Append a batch; resolves once it is durable (per the fsync mode). */
  append(batch: WalBatch): Promise<void> {
    return this.serialize(async () => {
      const hs = batch.hardState;
      // Only entries, a reset, and the term and vote must be durable before anyone hears of
      // them (etcd's MustSync). A commit index alone is learned again from the leader after a
      // crash, so it is not written on its own: it joins the next write (or the next segment's
      // preamble, or the close). At one client this took the second of two sequential
      // fdatasyncs off every write's path. It is never written unsynced either: an unsynced
      // write followed by a synced one could be lost while the later one survives, and a hole
      // before a later write reads as corruption of synced data.
      const commitOnly = batch.entries.length === 0 && !batch.reset && hs !== undefined && hs.term === this.hardState.term && hs.vote === this.hardState.vote;
      if (commitOnly && this.fsync !== 'always') {
        this.hardState = hs;
        this.pendingHardState = true;
        return;
      }
      const records: WalRecord[] = [];
      if (batch.reset) records.push({ type: RecordType.LogReset, ...batch.reset });
      for (const entry of batch.entries) records.push({ type: RecordType.Entry, entry });
      if (hs) records.push({ type: RecordType.HardState, hardState: hs });
      else if (this.pendingHardState && records.length > 0) records.push({ type: RecordType.HardState, hardState: this.hardState });
      if (records.length === 0) return;
      if (this.fsync === 'always') {
        // One write and one sync per record: the cost of not batching, for experiments.
        for (const r of records) {
          await this.write(encodeBatch([r]));
          await this.sync();
        }
      } else {
        await this.write(encodeBatch(records, this.scratchFor));
        if (this.fsync === 'batch') await this.sync();
      }
      this.pendingHardState = false;
      if (batch.reset) {
        this.marker = batch.reset;
        this.lastIndex = batch.reset.index;
      }
      if (batch.entries.length > 0) this.lastIndex = batch.entries[batch.entries.length - 1].index;
      if (batch.hardState) this.hardState = batch.hardState;
      if (this.size >= this.segmentBytes) await this.createSegment(this.lastIndex + 1);
    });
  }

  /**
   * Record that a durable snapshot covers the log up to `index`, then delete segments whose
   * entries are all at or below `compactTo`.
   */
  markSnapshot(index: number, term: number, compactTo: number): Promise<void> {
    return this.serialize(async () => {
      const records: WalRecord[] = [{ type: RecordType.SnapshotMarker, index, term }];
      if (this.pendingHardState) records.push({ type: RecordType.HardState, hardState: this.hardState });
      await this.write(encodeBatch(records));
      if (this.fsync !== 'never') await this.sync();
      this.pendingHardState = false;
      if (index > this.marker.index) this.marker = { index, term };
      // Segment k holds entries below segment k+1's first index; never delete the open one.
      while (this.segments.length > 1 && this.segments[1].firstIndex - 1 <= compactTo) {
        const old = this.segments.shift()!;
        try {
          await this.fs.rm(old.path);
        } catch (e) {
          throw this.fail(describeIoError('deleting', old.path, e));
        }
      }
      await this.syncDir();
    });
  }

  /** Close the files; works after a failure too, so a stopping node releases them. */
  close(): Promise<void> {
    const p = this.chain.then(async () => {
      // A clean close keeps the latest commit index (after a crash it is learned again).
      if (this.fh && this.pendingHardState && !this.failed) {
        await this.write(encodeBatch([{ type: RecordType.HardState, hardState: this.hardState }])).catch(() => undefined);
        this.pendingHardState = false;
      }
      const fh = this.fh;
      this.fh = undefined;
      if (fh) {
        if (this.fsync !== 'never' && !this.failed) await fh.datasync().catch(() => undefined);
        await fh.close();
      }
    });
    this.chain = p.catch(() => undefined);
    return p;
  }

  private serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = async () => {
      if (this.failed) throw this.failed;
      if (!this.fh) throw new StorageError('write-ahead log is closed');
      return op();
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private fail(e: StorageError): StorageError {
    this.failed = e;
    return e;
  }

  private current(): Segment {
    return this.segments[this.segments.length - 1];
  }

  private async write(buf: Buffer): Promise<void> {
    const seg = this.current();
    let off = 0;
    try {
      while (off < buf.length) {
        let len = buf.length - off;
        const fault = this.faults.write?.(seg.path, len);
        if (fault instanceof Error) throw fault;
        if (typeof fault === 'number') len = Math.min(len, fault);
        const fh = this.fh!;
        const bytesWritten = fh.writeSync && len <= SYNC_WRITE_MAX ? fh.writeSync(buf, off, len, this.size + off) : (await fh.write(buf, off, len, this.size + off)).bytesWritten;
        if (bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
        off += bytesWritten;
        if (typeof fault === 'number') throw Object.assign(new Error(`short write: ${off} of ${buf.length} bytes`), { code: 'EIO' });
      }
    } catch (e) {
      throw this.fail(describeIoError('writing', seg.path, e));
    }
    this.size += buf.length;
  }

  /**
   * The buffer an append encodes into when its write is a synchronous copy (see write): reused,
   * grown by doubling up to SYNC_WRITE_MAX. Appends are serialized, and a write that copies
   * synchronously is done with its buffer when it returns.
   */
  private scratch: Buffer | undefined;
  private readonly scratchFor = (bytes: number): Buffer | undefined => {
    if (!this.fh?.writeSync || bytes > SYNC_WRITE_MAX) return undefined;
    if (!this.scratch || this.scratch.length < bytes) {
      let size = 64 << 10;
      while (size < bytes) size *= 2;
      this.scratch = Buffer.allocUnsafeSlow(size);
    }
    return this.scratch;
  };

  private async sync(): Promise<void> {
    const seg = this.current();
    try {
      const fault = this.faults.sync?.(seg.path);
      if (fault) throw fault;
      await this.fh!.datasync();
    } catch (e) {
      throw this.fail(describeIoError('syncing', seg.path, e));
    }
  }

  private async syncDir(): Promise<void> {
    if (this.fsync === 'never') return;
    try {
      const d = await this.fs.open(this.dir, 'r');
      try {
        await d.sync();
      } finally {
        await d.close();
      }
    } catch (e) {
      throw this.fail(describeIoError('syncing directory', this.dir, e));
    }
  }

  private async createSegment(firstIndex: number): Promise<void> {
    const seq = this.segments.length > 0 ? this.current().seq + 1 : 0;
    const seg: Segment = { seq, firstIndex, path: join(this.dir, segName(seq, firstIndex)) };
    const old = this.fh;
    try {
      this.fh = await this.fs.open(seg.path, 'wx');
    } catch (e) {
      throw this.fail(describeIoError('creating', seg.path, e));
    }
    this.segments.push(seg);
    this.size = 0;
    if (old) await old.close();
    await this.write(this.segmentPreamble());
    await this.sync();
    await this.syncDir();
    this.pendingHardState = false; // the preamble holds the latest hard state
  }

  /** Header, hard state and snapshot marker: what a segment needs once older ones are gone. */
  private segmentPreamble(): Buffer {
    return encodeBatch([
      { type: RecordType.SegmentHeader, version: WAL_VERSION },
      { type: RecordType.HardState, hardState: this.hardState },
      { type: RecordType.SnapshotMarker, ...this.marker },
    ]);
  }

  private async repairTail(seg: Segment, validBytes: number): Promise<void> {
    try {
      await this.fh!.truncate(validBytes);
      this.size = validBytes;
      if (validBytes === 0) await this.write(this.segmentPreamble());
      await this.fh!.datasync();
    } catch (e) {
      throw this.fail(describeIoError('repairing the torn tail of', seg.path, e));
    }
  }
}

async function listSegments(fs: FileSystem, dir: string): Promise<Segment[]> {
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.wal'));
  const segments: Segment[] = [];
  for (const name of names) {
    const m = SEGMENT_RE.exec(name);
    if (!m) throw new CorruptionError(join(dir, name), 0, 'file name is not <seq>-<firstIndex>.wal');
    segments.push({ seq: parseInt(m[1], 16), firstIndex: parseInt(m[2], 16), path: join(dir, name) });
  }
  segments.sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < segments.length; i++) {
    if (segments[i].seq !== segments[i - 1].seq + 1) {
      throw new CorruptionError(segments[i].path, 0, `segment ${segments[i - 1].seq + 1} is missing`);
    }
  }
  return segments;
}

async function replay(fs: FileSystem, segments: Segment[]): Promise<WalState> {
  const state: WalState = {
    hardState: { term: 0, vote: '', commit: 0 },
    entries: [],
    snapshot: { index: 0, term: 0 },
    tornBytesRepaired: 0,
  };
  for (let s = 0; s < segments.length; s++) {
    const seg = segments[s];
    const isLast = s === segments.length - 1;
    const buf = await fs.readFile(seg.path);
    let off = 0;
    let first = true;
    // The write being read: where it starts and ends, and its records, applied once complete.
    let batchStart = -1;
    let batchEnd = -1;
    let pending: { rec: WalRecord; off: number }[] = [];
    const tornFrom = (start: number): void => {
      // A crash tore the last write. Nothing in it was acknowledged (acknowledgement follows
      // the fsync of the whole write), so all of it goes, from its first byte.
      state.tornBytesRepaired = buf.length - start;
      pending = [];
    };
    while (off < buf.length) {
      const r = decodeRecord(buf, off);
      if (r.kind !== 'record') {
        const reason = r.kind === 'corrupt' ? r.reason : 'record cut short';
        if (isLast) {
          if (off < batchEnd && !validRecordAt(buf, batchEnd)) {
            // Damage inside the last write, wherever in it: a torn write.
            tornFrom(batchStart);
            break;
          }
          if (off >= batchEnd && !(batchStart >= 0 ? validBatchHeaderAfter(buf, off) : validRecordAfter(buf, off))) {
            // Damage where a write begins (its header), with no later write: torn too.
            tornFrom(off);
            break;
          }
        }
        throw new CorruptionError(seg.path, off, isLast ? `${reason}, and a later write follows it` : `${reason} in a sealed segment`);
      }
      const rec = r.record;
      if (rec.type === RecordType.BatchHeader) {
        if (off < batchEnd) throw new CorruptionError(seg.path, off, 'a write begins inside another');
        batchStart = off;
        batchEnd = r.next + rec.bytes;
        off = r.next;
        continue;
      }
      if (first) {
        if (rec.type !== RecordType.SegmentHeader) throw new CorruptionError(seg.path, off, 'segment does not start with a header');
        if (rec.version !== WAL_VERSION) throw new CorruptionError(seg.path, off, `unsupported WAL version ${rec.version}`);
        first = false;
      }
      if (off < batchEnd) {
        if (r.next > batchEnd) throw new CorruptionError(seg.path, off, 'a record runs past the end of its write');
        pending.push({ rec, off });
        if (r.next === batchEnd) {
          for (const p of pending) applyRecord(state, p.rec, seg.path, p.off);
          pending = [];
        }
      } else {
        // A record outside any batch (a log written before batches were marked).
        applyRecord(state, rec, seg.path, off);
      }
      off = r.next;
    }
    if (off >= buf.length && off < batchEnd) {
      // The file ends inside a write: it was cut short.
      if (!isLast) throw new CorruptionError(seg.path, batchStart, 'a write cut short in a sealed segment');
      tornFrom(batchStart);
    }
  }
  // Entries a snapshot marker covers may still be listed; the caller trims to its snapshot.
  return state;
}

function applyRecord(state: WalState, rec: WalRecord, file: string, off: number): void {
  switch (rec.type) {
    case RecordType.SegmentHeader:
      return;
    case RecordType.HardState:
      state.hardState = rec.hardState;
      return;
    case RecordType.SnapshotMarker:
      if (rec.index > state.snapshot.index) state.snapshot = { index: rec.index, term: rec.term };
      return;
    case RecordType.LogReset:
      state.entries = [];
      state.snapshot = { index: rec.index, term: rec.term };
      return;
    case RecordType.Entry: {
      const e = rec.entry;
      const entries = state.entries;
      if (entries.length > 0) {
        const first = entries[0].index;
        const last = entries[entries.length - 1].index;
        if (e.index <= last) {
          // A leader overwrote our uncommitted suffix: the rewrite supersedes it.
          entries.length = Math.max(0, e.index - first);
        } else if (e.index !== last + 1) {
          throw new CorruptionError(file, off, `entry ${e.index} follows entry ${last}: the log has a gap`);
        }
      }
      entries.push(e);
      return;
    }
  }
}

function validRecordAt(buf: Buffer, off: number): boolean {
  return off < buf.length && decodeRecord(buf, off).kind === 'record';
}

/** Whether a later write (a well-formed batch header) starts after `off`. */
function validBatchHeaderAfter(buf: Buffer, off: number): boolean {
  for (let p = off + 1; p + 9 <= buf.length; p++) {
    if (buf[p] === 0 && buf[p + 1] === 0 && buf[p + 2] === 0 && buf[p + 3] === 0) continue;
    const r = decodeRecord(buf, p);
    if (r.kind === 'record' && r.record.type === RecordType.BatchHeader) return true;
  }
  return false;
}

/** Whether any well-formed record starts after `off` (then the damage is not a torn tail). */
function validRecordAfter(buf: Buffer, off: number): boolean {
  for (let p = off + 1; p + 9 <= buf.length; p++) {
    if (buf[p] === 0 && buf[p + 1] === 0 && buf[p + 2] === 0 && buf[p + 3] === 0) continue;
    const r = decodeRecord(buf, p);
    if (r.kind === 'record') return true;
  }
  return false;
}

export { StorageError };
