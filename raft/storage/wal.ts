/**
 * The write-ahead log: a directory of segment files named `<seq>-<firstIndex>.v2.wal` (16 hex
 * digits each; `.wal` for version 1), filled with framed records (see records.ts). Appends of one batch are encoded
 * into one buffer, written with one write and made durable with one fdatasync: group commit.
 *
 * Every segment starts with a header, the current hard state and the latest snapshot marker,
 * so older segments can be deleted once a snapshot covers their entries.
 *
 * Segments are preallocated (as etcd does): a segment's file is full-size and written before
 * the log writes into it, so an append overwrites allocated blocks instead of growing the file,
 * and fdatasync has only data to flush: no block allocation, no file size for the file
 * system's journal. On this machine's ext4, three processes each writing 1.1 KB and syncing
 * made 33-38% more syncs per second (p50 294 -> 218-233 us).
 *
 * A file is made full-size in one of two ways. A segment a snapshot has covered is recycled
 * (renamed to `next.wal.tmp`, later to the next segment's name) instead of deleted, as
 * PostgreSQL recycles WAL files: free, and what a log under steady load does. Otherwise zeros
 * are written: for a new log's first two segments, and for a next one (in the background, once
 * the current one is half full) only while the log's writes are small, at most
 * PREALLOCATE_BELOW_BYTES_PER_SYNC per fdatasync. Zero-filling writes the segment twice, and
 * once group commit makes writes large that costs more than the journal work it saves: with
 * 128 clients (28-43 entries of 1 KB per sync) zero-filling every segment cost 4% of the
 * throughput; at 1 to 32 clients (1-12 per sync) preallocation gave 8-18%.
 *
 * So that a recycled file's old records are never read as the new segment's, version 2
 * segments (`.v2.wal`) seed every record's checksum with the segment's number and end every
 * write with a terminator (see records.ts). Version 1 segments (`.wal`) are still read with
 * their own rules; a log that has one last goes on in a new version 2 segment.
 */
import { join } from 'node:path';
import { Entry, HardState } from '../types.js';
import { CorruptionError, StorageError, describeIoError } from './errors.js';
import { FileHandleLike, FileSystem, nodeFs, syncDirectory, writeAll } from './fs.js';
import { RecordType, TERMINATOR_BYTES, WAL_VERSION, WalRecord, decodeRecord, encodeBatch, encodedSize, segmentSeed } from './records.js';
import { EntryLocations } from './entry-locations.js';

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
  /**
   * Make each new segment this many bytes long before writing into it, by recycling or
   * zero-filling (0, the default here: segments grow as they are written; DiskStorage
   * preallocates a whole segment, up to 64 MB).
   */
  preallocateBytes?: number;
  faults?: FaultHooks;
  /** The file system (default node:fs; the simulator passes a simulated disk). */
  fs?: FileSystem;
  /** Milliseconds, monotonic, timing syncs on the calling thread (default: the file system's now, else performance.now). */
  clock?: () => number;
}

export interface WalBatch {
  /** An installed snapshot replaced the log: entries before it are void. */
  reset?: { index: number; term: number };
  entries: Entry[];
  hardState?: HardState;
  /**
   * The caller has nothing else to do until this batch is durable (a follower, a logger): sync
   * on the calling thread when the file system can (FileHandleLike.datasyncSync).
   */
  syncOnCaller?: boolean;
}

export interface WalState {
  hardState: HardState;
  entries: Entry[];
  /** Latest snapshot marker or reset seen (index 0 when none). */
  snapshot: { index: number; term: number };
  /** Bytes cut from the end of the last segment because a crash tore its last write. */
  tornBytesRepaired: number;
  /** Where the last segment's data ends (before repair): a preallocated segment goes on past it. */
  lastSegmentBytes: number;
  /** Where each of `entries` lies (for Wal.readEntries). */
  locations: EntryLocations;
}

/**
 * The next segment's file (`next.wal.tmp`): not decided yet (until the current segment is half
 * full), being zero-filled (`done` tells whether it worked), ready (zero-filled or recycled), or
 * none (the next segment grows as it is written).
 */
type Spare = { state: 'undecided' | 'ready' | 'none' } | { state: 'filling'; done: Promise<boolean> };

interface Segment {
  seq: number;
  firstIndex: number;
  path: string;
  /** Version 2 (`.v2.wal`): seeded checksums and terminated writes, so its file can be recycled. */
  v2: boolean;
  /** The checksum seed of its records (0 in version 1). */
  seed: number;
}

/**
 * Batches up to this size are written on the calling thread (FileHandleLike.writeSync): a copy
 * into the page cache, about 0.3 ms per MB; larger ones go to the thread pool.
 */
const SYNC_WRITE_MAX = 1 << 20;
/**
 * A sync on the calling thread that took longer than this sends the next ones to the thread
 * pool until one is quick again: a stalling disk must not also stall the process's timers,
 * health checks and reads.
 */
export const CALLER_SYNC_MAX_MS = 20;
/** Segment size unless told otherwise (etcd's too). */
export const DEFAULT_SEGMENT_BYTES = 64 << 20;
/** The file the next segment is prepared in; its name does not end in .wal, so replay skips it. */
const SPARE = 'next.wal.tmp';
/** Zero-filling writes this much at a time and syncs every PREALLOCATE_SYNC_BYTES, so a
 * concurrent append's fdatasync never waits behind one long flush of the whole segment. */
const PREALLOCATE_CHUNK = 1 << 20;
const PREALLOCATE_SYNC_BYTES = 8 << 20;
const PREALLOCATE_BELOW_BYTES_PER_SYNC = 24 << 10;
const SEGMENT_RE = /^([0-9a-f]{16})-([0-9a-f]{16})(\.v2)?\.wal$/;
/** The most readEntries reads at once. */
const READ_MAX_BYTES = 4 << 20;
/** The batch header that starts every write (its records follow it). */
const BATCH_HEADER_BYTES = encodedSize({ type: RecordType.BatchHeader, bytes: 0 });
const segName = (seq: number, first: number) => `${seq.toString(16).padStart(16, '0')}-${first.toString(16).padStart(16, '0')}.v2.wal`;

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
  private readonly preallocateBytes: number;
  private spare: Spare = { state: 'undecided' };
  /** Bytes written and fdatasyncs made since the current segment began (or the log opened). */
  private written = 0;
  private syncs = 0;
  /** The last sync took longer than CALLER_SYNC_MAX_MS: keep syncs off the calling thread. */
  private slowSync = false;
  private readonly clock: () => number;
  private readonly faults: FaultHooks;
  /** Serializes every operation on the files. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Where the log's entries are, for reading them back (readEntries). */
  private readonly locations: EntryLocations;

  private constructor(
    readonly dir: string,
    private segments: Segment[],
    state: WalState,
    opts: WalOptions,
  ) {
    this.fsync = opts.fsync ?? 'batch';
    this.segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.preallocateBytes = Math.max(0, Math.floor(opts.preallocateBytes ?? 0));
    this.faults = opts.faults ?? {};
    this.fs = opts.fs ?? nodeFs;
    const fs = this.fs;
    this.clock = opts.clock ?? (fs.now ? () => fs.now!() : () => performance.now());
    this.hardState = state.hardState;
    this.marker = state.snapshot;
    this.locations = state.locations;
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
    // A spare left by the previous run goes: if a crash came between two renames of it, it
    // could still be a second name of a live segment's file (a file system that undoes part
    // of a rename on a power cut; the simulated disk does).
    await fs.rm(join(dir, SPARE), { force: true });
    if (segments.length === 0) {
      await wal.createSegment(1);
      // A new log: the next segment is prepared now, before there is load to disturb.
      if (wal.preallocateBytes > 0) wal.fillSpare();
    } else {
      const last = segments[segments.length - 1];
      try {
        wal.fh = await wal.fs.open(last.path, 'r+');
      } catch (e) {
        throw describeIoError('opening', last.path, e);
      }
      wal.size = state.lastSegmentBytes;
      try {
        if (state.tornBytesRepaired > 0 || wal.size === 0) await wal.repairTail(last, state.lastSegmentBytes, state.tornBytesRepaired);
        // Appends go to version 2 segments only.
        if (!last.v2) await wal.createSegment(wal.lastIndex + 1);
      } catch (e) {
        await wal.fh?.close().catch(() => undefined);
        throw e;
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

  /** Append a batch; resolves once it is durable (per the fsync mode), with whether anything was written. */
  append(batch: WalBatch): Promise<boolean> {
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
        return false;
      }
      const records: WalRecord[] = [];
      if (batch.reset) records.push({ type: RecordType.LogReset, ...batch.reset });
      for (const entry of batch.entries) records.push({ type: RecordType.Entry, entry });
      if (hs) records.push({ type: RecordType.HardState, hardState: hs });
      else if (this.pendingHardState && records.length > 0) records.push({ type: RecordType.HardState, hardState: this.hardState });
      if (records.length === 0) return false;
      if (batch.reset) this.locations.reset();
      if (this.fsync === 'always') {
        // One write and one sync per record: the cost of not batching, for experiments.
        for (const r of records) {
          const at = this.size + BATCH_HEADER_BYTES;
          await this.write(this.encode([r]));
          if (r.type === RecordType.Entry) this.locations.add(r.entry.index, this.current().seq, at, encodedSize(r));
          await this.sync(batch.syncOnCaller);
        }
      } else {
        let at = this.size + BATCH_HEADER_BYTES;
        await this.write(this.encode(records, this.scratchFor));
        const seq = this.current().seq;
        for (const r of records) {
          const bytes = encodedSize(r);
          if (r.type === RecordType.Entry) this.locations.add(r.entry.index, seq, at, bytes);
          at += bytes;
        }
        if (this.fsync === 'batch') await this.sync(batch.syncOnCaller);
      }
      this.pendingHardState = false;
      if (batch.reset) {
        this.marker = batch.reset;
        this.lastIndex = batch.reset.index;
      }
      if (batch.entries.length > 0) this.lastIndex = batch.entries[batch.entries.length - 1].index;
      if (batch.hardState) this.hardState = batch.hardState;
      this.planNextSegment();
      if (this.size >= this.segmentBytes) await this.createSegment(this.lastIndex + 1);
      return true;
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
      await this.write(this.encode(records));
      if (this.fsync !== 'never') await this.sync();
      this.pendingHardState = false;
      if (index > this.marker.index) this.marker = { index, term };
      // Segment k holds entries below segment k+1's first index; never delete the open one.
      while (this.segments.length > 1 && this.segments[1].firstIndex - 1 <= compactTo) {
        const old = this.segments.shift()!;
        try {
          if (old.v2 && this.preallocateBytes > 0 && (this.spare.state === 'undecided' || this.spare.state === 'none')) {
            // Recycled: its blocks are allocated and written, so the segment it becomes is
            // preallocated without writing it again (PostgreSQL recycles WAL files the same way).
            await this.fs.rename(old.path, join(this.dir, SPARE));
            this.spare = { state: 'ready' };
          } else {
            await this.fs.rm(old.path);
          }
        } catch (e) {
          throw this.fail(describeIoError('deleting', old.path, e));
        }
      }
      await this.syncDir();
      this.locations.dropBefore(compactTo + 1);
    });
  }

  /**
   * Entries [lo, hi) read back from the segments, up to about `maxBytes` of data (at least
   * one): see EntryReader. Only entries this log has written are asked for (the core reads
   * back what is durable and applied), so a read never meets a write in progress; one that
   * meets a segment deleted or recycled meanwhile, or a record that does not check out, stops
   * there and returns what it has.
   */
  readEntries(lo: number, hi: number, maxBytes: number): Entry[] {
    const out: Entry[] = [];
    if (this.failed || !this.fh) return out;
    let bytes = 0;
    for (let i = lo; i < hi && (bytes < maxBytes || out.length === 0); ) {
      const first = this.locations.get(i);
      const seg = first && this.segmentBySeq(first.seq);
      if (!first || !seg) break;
      // The run of entries in the same segment that fits: one read covers them all.
      const run = [first];
      let runBytes = first.length;
      for (let next = this.locations.get(i + 1); next && i + run.length < hi; next = this.locations.get(i + run.length)) {
        if (next.seq !== first.seq || bytes + runBytes + next.length > maxBytes || runBytes + next.length > READ_MAX_BYTES) break;
        run.push(next);
        runBytes += next.length;
      }
      const last = run[run.length - 1];
      let buf: Buffer;
      try {
        buf = this.fs.readRange(seg.path, first.offset, last.offset + last.length - first.offset);
      } catch {
        break;
      }
      for (const [k, at] of run.entries()) {
        const r = decodeRecord(buf, at.offset - first.offset, seg.seed);
        if (r.kind !== 'record' || r.record.type !== RecordType.Entry || r.record.entry.index !== i + k) return out;
        out.push(r.record.entry);
      }
      bytes += runBytes;
      i += run.length;
    }
    return out;
  }

  private segmentBySeq(seq: number): Segment | undefined {
    const s = this.segments[seq - (this.segments[0]?.seq ?? 0)];
    return s?.seq === seq ? s : undefined;
  }

  /** Close the files; works after a failure too, so a stopping node releases them. */
  close(): Promise<void> {
    const p = this.chain.then(async () => {
      if (this.spare.state === 'filling') await this.spare.done;
      // A clean close keeps the latest commit index (after a crash it is learned again).
      if (this.fh && this.pendingHardState && !this.failed) {
        await this.write(this.encode([{ type: RecordType.HardState, hardState: this.hardState }])).catch(() => undefined);
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

  /** One write of `records` in the current segment's format. */
  private encode(records: WalRecord[], into?: (bytes: number) => Buffer | undefined): Buffer {
    const seg = this.current();
    return seg.v2 ? encodeBatch(records, into, seg.seed, TERMINATOR_BYTES) : encodeBatch(records, into);
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
    // A version 2 write ends in its terminator, which the next write overwrites.
    const data = seg.v2 ? buf.length - TERMINATOR_BYTES : buf.length;
    this.size += data;
    this.written += data;
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

  /**
   * fdatasync the current segment. `onCaller`: on this thread when the handle can and the last
   * sync was quick. A follower at one client spent 13-15% of the cluster's CPU per write on the
   * thread-pool round trip (hand-off, futex wake, completion through the event loop) while it
   * had nothing else to do; a leader does have (acks, new requests), and blocking it cost 15%
   * of the throughput, so the driver asks for this only when it is not leading.
   */
  private async sync(onCaller = false): Promise<void> {
    const seg = this.current();
    try {
      const fault = this.faults.sync?.(seg.path);
      if (fault) throw fault;
      const fh = this.fh!;
      const t0 = this.clock();
      if (onCaller && fh.datasyncSync && !this.slowSync) fh.datasyncSync();
      else await fh.datasync();
      this.slowSync = this.clock() - t0 > CALLER_SYNC_MAX_MS;
      this.syncs++;
    } catch (e) {
      throw this.fail(describeIoError('syncing', seg.path, e));
    }
  }

  private async syncDir(): Promise<void> {
    if (this.fsync === 'never') return;
    try {
      await syncDirectory(this.fs, this.dir);
    } catch (e) {
      throw this.fail(describeIoError('syncing directory', this.dir, e));
    }
  }

  private async createSegment(firstIndex: number): Promise<void> {
    const seq = this.segments.length > 0 ? this.current().seq + 1 : 0;
    const seg: Segment = { seq, firstIndex, path: join(this.dir, segName(seq, firstIndex)), v2: true, seed: segmentSeed(seq) };
    const old = this.fh;
    // The first segment is always preallocated (there are no writes yet to judge by).
    if (this.preallocateBytes > 0 && this.segments.length === 0 && this.spare.state === 'undecided') this.fillSpare();
    const spare = this.spare.state === 'filling' ? await this.spare.done : this.spare.state === 'ready';
    this.spare = { state: 'undecided' };
    try {
      if (spare) {
        await this.fs.rename(join(this.dir, SPARE), seg.path);
        this.fh = await this.fs.open(seg.path, 'r+');
      } else {
        this.fh = await this.fs.open(seg.path, 'wx');
      }
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
    this.written = 0;
    this.syncs = 0;
  }

  /** Once the current segment is half full, decide (and start) how the next one is made. */
  private planNextSegment(): void {
    if (this.spare.state !== 'undecided' || this.preallocateBytes === 0 || this.size < Math.min(this.segmentBytes, this.preallocateBytes) / 2) return;
    const small = this.syncs > 0 && this.written / this.syncs <= PREALLOCATE_BELOW_BYTES_PER_SYNC;
    if (small) this.fillSpare();
    else this.spare = { state: 'none' };
  }

  /**
   * Zero-fill the next segment's file and make it durable, beside the appends (not in their
   * chain). Best effort: if it fails (a full disk, say), the next segment grows as it is
   * written, and a full disk is reported by the append that meets it.
   */
  private fillSpare(): void {
    const path = join(this.dir, SPARE);
    const fill = async (): Promise<boolean> => {
      let fh: FileHandleLike | undefined;
      try {
        fh = await this.fs.open(path, 'w');
        const zeros = Buffer.alloc(Math.min(PREALLOCATE_CHUNK, this.preallocateBytes));
        for (let off = 0; off < this.preallocateBytes; off += zeros.length) {
          const end = Math.min(off + zeros.length, this.preallocateBytes);
          await writeAll(fh, zeros.subarray(0, end - off), off);
          if (this.fsync !== 'never' && (end % PREALLOCATE_SYNC_BYTES === 0 || end === this.preallocateBytes)) await fh.datasync();
        }
        return true;
      } catch {
        return false;
      } finally {
        await fh?.close().catch(() => undefined);
      }
    };
    const done = fill().then(async (ok) => {
      if (!ok) await this.fs.rm(path, { force: true }).catch(() => undefined);
      this.spare = { state: ok ? 'ready' : 'none' };
      return ok;
    });
    this.spare = { state: 'filling', done };
  }

  /** Header, hard state and snapshot marker: what a segment needs once older ones are gone. */
  private segmentPreamble(): Buffer {
    return this.encode([
      { type: RecordType.SegmentHeader, version: WAL_VERSION },
      { type: RecordType.HardState, hardState: this.hardState },
      { type: RecordType.SnapshotMarker, ...this.marker },
    ]);
  }

  /**
   * Make the data of the last segment end at `validBytes` again, after a torn write of
   * `tornBytes` there: version 1 cuts the file; version 2 writes a terminator over the torn
   * write's start (what is left of it past that is never read as a write: it holds no header).
   */
  private async repairTail(seg: Segment, validBytes: number, tornBytes: number): Promise<void> {
    try {
      if (seg.v2) {
        if (tornBytes > 0) await writeAll(this.fh!, Buffer.alloc(TERMINATOR_BYTES), validBytes);
      } else {
        await this.fh!.truncate(validBytes);
      }
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
    if (!m) throw new CorruptionError(join(dir, name), 0, 'file name is not <seq>-<firstIndex>[.v2].wal');
    const seq = parseInt(m[1], 16);
    const v2 = m[3] !== undefined;
    segments.push({ seq, firstIndex: parseInt(m[2], 16), path: join(dir, name), v2, seed: v2 ? segmentSeed(seq) : 0 });
  }
  segments.sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < segments.length; i++) {
    if (segments[i].seq === segments[i - 1].seq) throw new CorruptionError(segments[i].path, 0, `two segments numbered ${segments[i].seq}`);
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
    lastSegmentBytes: 0,
    locations: new EntryLocations(),
  };
  for (let s = 0; s < segments.length; s++) {
    const seg = segments[s];
    const isLast = s === segments.length - 1;
    const buf = await fs.readFile(seg.path);
    if (seg.v2) replaySegmentV2(state, seg, buf, isLast);
    else replaySegmentV1(state, seg, buf, isLast);
  }
  // Entries a snapshot marker covers may still be listed; the caller trims to its snapshot.
  return state;
}

/**
 * A version 2 segment: writes back to back, each a batch header and its records, the last one
 * followed by a terminator. What follows the data (the terminator, zeros, a recycled file's
 * old bytes) is not a write of this segment: no record there passes this segment's checksum.
 */
function replaySegmentV2(state: WalState, seg: Segment, buf: Buffer, isLast: boolean): void {
  const seed = seg.seed;
  let off = 0;
  let first = true;
  for (;;) {
    // At a write boundary.
    const h = decodeRecord(buf, off, seed);
    if (h.kind !== 'record' || h.record.type !== RecordType.BatchHeader) {
      const reason = h.kind === 'record' ? `a ${RecordType[h.record.type]} record outside a write` : h.kind === 'corrupt' ? h.reason : 'record cut short';
      // A write of this segment after this point means synced data was damaged here.
      if (laterWrite(buf, off + 1, seed)) throw new CorruptionError(seg.path, off, `${reason}, and a later write follows it`);
      if (allZero(buf, off, off + TERMINATOR_BYTES)) {
        // The terminator (or the zeros of a new segment): the data ends here.
        if (first && !isLast && buf.length > 0) throw new CorruptionError(seg.path, 0, 'segment does not start with a header');
        if (isLast) state.lastSegmentBytes = off;
        return;
      }
      // Bytes that are no write, where one should begin: the last write, torn at its start
      // (its header's sector never reached the disk).
      if (!isLast) throw new CorruptionError(seg.path, off, `${reason} in a sealed segment`);
      const next = buf.indexOf(TERMINATOR, off);
      tornV2(state, off, (next < 0 ? buf.length : next) - off);
      return;
    }
    const start = off;
    const end = h.next + h.record.bytes;
    const records: { rec: WalRecord; off: number }[] = [];
    let damage: string | undefined;
    let at = h.next;
    if (end > buf.length) damage = 'a write cut short';
    while (!damage && at < end) {
      const r = decodeRecord(buf, at, seed);
      if (r.kind !== 'record') damage = r.kind === 'corrupt' ? r.reason : 'record cut short';
      else if (r.next > end) damage = 'a record runs past the end of its write';
      else if (r.record.type === RecordType.BatchHeader) damage = 'a write begins inside another';
      else {
        records.push({ rec: r.record, off: at });
        at = r.next;
      }
    }
    if (damage) {
      if (!isLast) throw new CorruptionError(seg.path, at, `${damage} in a sealed segment`);
      if (laterWrite(buf, start + 1, seed)) throw new CorruptionError(seg.path, at, `${damage}, and a later write follows it`);
      // Damage inside the last write, wherever in it: a torn write. Nothing in it was
      // acknowledged (acknowledgement follows the fsync of the whole write), so all of it goes.
      tornV2(state, start, Math.min(end, buf.length) - start);
      return;
    }
    if (first) {
      const head = records[0]?.rec;
      if (head?.type !== RecordType.SegmentHeader) throw new CorruptionError(seg.path, 0, 'segment does not start with a header');
      if (head.version !== 2) throw new CorruptionError(seg.path, 0, `a .v2.wal segment says WAL version ${head.version}`);
      first = false;
    }
    for (const p of records) applyRecord(state, p.rec, seg, p.off);
    off = end;
  }

  function tornV2(state: WalState, from: number, bytes: number): void {
    state.tornBytesRepaired = Math.max(1, bytes);
    state.lastSegmentBytes = from;
  }
}

const TERMINATOR = Buffer.alloc(TERMINATOR_BYTES);
/** The length field of a batch header record (its type byte and its 4-byte payload). */
const BATCH_HEADER_LENGTH = Buffer.from([5, 0, 0, 0]);

function allZero(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < Math.min(to, buf.length); i++) if (buf[i] !== 0) return false;
  return true;
}

/** Whether a write of this segment (a batch header with its checksum) starts at or after `from`. */
function laterWrite(buf: Buffer, from: number, seed: number): boolean {
  // Only batch-header-shaped places are decoded: a recycled segment is mostly old bytes.
  for (let p = buf.indexOf(BATCH_HEADER_LENGTH, from); p >= 0; p = buf.indexOf(BATCH_HEADER_LENGTH, p + 1)) {
    if (buf[p + 8] !== RecordType.BatchHeader) continue;
    const r = decodeRecord(buf, p, seed);
    if (r.kind === 'record' && r.record.type === RecordType.BatchHeader) return true;
  }
  return false;
}

/** A version 1 segment (written before segments were recycled): unchanged rules. */
function replaySegmentV1(state: WalState, seg: Segment, buf: Buffer, isLast: boolean): void {
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
    state.lastSegmentBytes = start;
    pending = [];
  };
  if (isLast) state.lastSegmentBytes = buf.length;
  while (off < buf.length) {
    const r = decodeRecord(buf, off);
    if (r.kind !== 'record') {
      const reason = r.kind === 'corrupt' ? r.reason : 'record cut short';
      if (isLast) {
        if (off < batchEnd && !validRecordAt(buf, batchEnd)) {
          // Damage inside the last write, wherever in it: a torn write.
          tornFrom(batchStart);
          return;
        }
        if (off >= batchEnd && !(batchStart >= 0 ? validBatchHeaderAfter(buf, off) : validRecordAfter(buf, off))) {
          // Damage where a write begins (its header), with no later write: torn too.
          tornFrom(off);
          return;
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
      if (rec.version !== 1) throw new CorruptionError(seg.path, off, `unsupported WAL version ${rec.version}`);
      first = false;
    }
    if (off < batchEnd) {
      if (r.next > batchEnd) throw new CorruptionError(seg.path, off, 'a record runs past the end of its write');
      pending.push({ rec, off });
      if (r.next === batchEnd) {
        for (const p of pending) applyRecord(state, p.rec, seg, p.off);
        pending = [];
      }
    } else {
      // A record outside any batch (a log written before batches were marked).
      applyRecord(state, rec, seg, off);
    }
    off = r.next;
  }
  if (off >= buf.length && off < batchEnd) {
    // The file ends inside a write: it was cut short.
    if (!isLast) throw new CorruptionError(seg.path, batchStart, 'a write cut short in a sealed segment');
    tornFrom(batchStart);
  }
}
function applyRecord(state: WalState, rec: WalRecord, seg: Segment, off: number): void {
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
      state.locations.reset();
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
          throw new CorruptionError(seg.path, off, `entry ${e.index} follows entry ${last}: the log has a gap`);
        }
      }
      entries.push(e);
      state.locations.add(e.index, seg.seq, off, encodedSize(rec));
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
