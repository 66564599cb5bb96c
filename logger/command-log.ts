/**
 * The command log: committed entries of one cluster, in index order, durable, readable by range.
 * It is what a logger keeps (and what a replica's applog keeps): the recovery source.
 *
 * Layout of its directory:
 *   seg-<first index, 16 hex>.log   records: u32 body length | u32 CRC-32C of body | body
 *                                   body: u48 index | u48 term | u8 entry type | command bytes
 *   base/snap-*.snap                the state the log starts from when it does not start at 1
 *                                   (an installed cluster snapshot, or one taken at truncation)
 *   base-download/                  a base being received (fetched from a voter), written and
 *                                   checked here before it is named; emptied at open
 *   meta.json                       { first, base?: { index, term } }: the authority on where
 *                                   the log starts; written to a temp file, fsynced, renamed
 *
 * Appends are group-committed: `append` queues, `flush` writes everything queued with one
 * write and one fdatasync, and concurrent flushes share it. Readers see only durable records.
 * Dropping a prefix or starting over at a base snapshot first commits the new meta, then deletes
 * files; a crash in between leaves files that the next open deletes, never a log that lies.
 */
import { join } from 'node:path';
import { FileHandleLike, FileSystem, nodeFs, syncDirectory, writeAll } from '../raft/storage/fs.js';
import { Entry, EntryType, Snapshot } from '../raft/types.js';
import { CorruptionError } from '../raft/storage/errors.js';
import { SnapshotStore, decodeSnapshot, encodeSnapshot, snapshotFileName, verifySnapshotFile } from '../raft/storage/snapshots.js';
import { crc32c } from '../raft/storage/crc32c.js';

const HEADER = 8;
const BODY_FIXED = 13;
const SEG_RE = /^seg-([0-9a-f]{16})\.log$/;
/** A base snapshot file (the SnapshotStore's naming); anything else in base/ is a leftover. */
const BASE_RE = /^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
/** Bases up to this size stay in memory after they are written or read (see keepBase). */
const BASE_CACHE_BYTES = 8 << 20;
/** The largest command a record may hold: far above any value limit, far below a bad length. */
const MAX_RECORD = 256 << 20;

export interface CommandLogOptions {
  /** Start a new segment file once the current one reaches this size (default 64 MiB). */
  segmentBytes?: number;
  /** fdatasync on flush (default true; false only for throwaway logs). */
  sync?: boolean;
  /** The file system (default node:fs; the simulated disk in power-cut tests). */
  fs?: FileSystem;
  /**
   * Test hook: named points in truncation and base installation at which a test process kills
   * itself (SIGKILL), to prove a crash there leaves a consistent log.
   */
  crashAt?: string;
}

export interface CommandLogInfo {
  /** Lowest index a range may start at. */
  first: number;
  /** Highest durable index (first - 1 when the log holds no entry). */
  last: number;
  /** The snapshot the log starts from, when it does not start at index 1. */
  base?: { index: number; term: number };
  bytes: number;
  segments: number;
}

export interface OpenReport {
  tornBytesRepaired: number;
  /** Files a crash left behind (an interrupted truncation or base install), now removed. */
  leftoversRemoved: string[];
}

interface Segment {
  file: string;
  first: number;
  /** Byte offset of each record, by index - first. */
  offsets: number[];
  size: number;
}

/**
 * A base received into a file of its own (receiveBase): complete, synced and checked, to be
 * named by truncatePrefix or let go with discardBase. The snapshot is there when small.
 */
export interface ReceivedBase {
  file: string;
  meta: { index: number; term: number };
  snapshot?: Snapshot;
}

/** The base as bytes of a snapshot file, read a piece at a time (see openBase). */
export interface BaseStream {
  index: number;
  term: number;
  bytes: number;
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  close(): Promise<void>;
}

/** Pieces a base file is read in when served. */
const BASE_READ_CHUNK = 1 << 20;

interface Meta {
  first: number;
  base?: { index: number; term: number };
}

/** A range outside what the log holds: says what is available instead. */
export class UnavailableRangeError extends Error {
  constructor(
    message: string,
    readonly available: { first: number; last: number },
  ) {
    super(message);
    this.name = 'UnavailableRangeError';
  }
}

export class CommandLog {
  private segments: Segment[] = [];
  private meta: Meta = { first: 1 };
  private durableLast = 0;
  /** Last index appended (durable or queued). */
  private appendedLast = 0;
  private lastTerm = 0;
  private queued: Buffer[] = [];
  private queuedIndexes: { index: number; bytes: number }[] = [];
  private flushing: Promise<void> | undefined;
  /** Set while the active segment is being closed or replaced: flushes wait for it. */
  private held: Promise<void> | undefined;
  /** Settles when the last caller of withoutFlushes queued so far is done. */
  private exclusive: Promise<void> = Promise.resolve();
  private flushAgain = false;
  /** The segment appends go to, open for writing. */
  private active: FileHandleLike | undefined;
  private readonly fs: FileSystem;
  private waiters: { index: number; resolve: (reached: boolean) => void; timer: NodeJS.Timeout }[] = [];
  private closed = false;
  private readonly segmentBytes: number;
  private readonly sync: boolean;
  private readonly bases: SnapshotStore;
  /** The base snapshot, when small enough to keep in memory (see keepBase). */
  private baseCache: Snapshot | undefined;
  /** Bases received by this process so far (names their download files apart). */
  private downloads = 0;
  report: OpenReport = { tornBytesRepaired: 0, leftoversRemoved: [] };
  /** Called after each flush with the new durable index, entries and bytes made durable and the fsync time. */
  onFlush?: (info: { last: number; entries: number; bytes: number; seconds: number }) => void;

  private constructor(
    readonly dir: string,
    private readonly opts: CommandLogOptions,
  ) {
    this.segmentBytes = opts.segmentBytes ?? 64 << 20;
    this.sync = opts.sync ?? true;
    this.fs = opts.fs ?? nodeFs;
    // The store never prunes: the log removes base files itself once meta.json names another
    // (pruning "all but the newest two" deleted the named one after two installs that saved
    // their base and crashed before committing meta.json).
    this.bases = new SnapshotStore(join(dir, 'base'), Number.POSITIVE_INFINITY, this.sync, this.fs);
  }

  static async open(dir: string, opts: CommandLogOptions = {}): Promise<CommandLog> {
    const log = new CommandLog(dir, opts);
    await log.load();
    return log;
  }

  info(): CommandLogInfo {
    let bytes = 0;
    for (const s of this.segments) bytes += s.size;
    return { first: this.meta.first, last: this.durableLast, base: this.meta.base, bytes, segments: this.segments.length };
  }

  /** Index and term of the last entry appended, durable or not (0, 0 when empty). */
  lastAppended(): { index: number; term: number } {
    return { index: this.appendedLast, term: this.lastTerm };
  }

  /** Term of a durable entry, or undefined if the log does not hold it. */
  async termAt(index: number): Promise<number | undefined> {
    if (index === this.meta.base?.index) return this.meta.base.term;
    if (index < this.meta.first || index > this.durableLast) return undefined;
    for await (const batch of this.read(index, index)) return batch[0]?.term;
    return undefined;
  }

  /**
   * Queue committed entries (contiguous, continuing the log). Entries at or below the last
   * appended index are checked and skipped: a restarted node applies some entries twice.
   */
  append(entries: Entry[]): void {
    if (this.closed) throw new Error('command log is closed');
    for (const e of entries) {
      if (e.index <= this.appendedLast) continue;
      if (e.index !== this.appendedLast + 1) {
        throw new Error(`command log ${this.dir}: entry ${e.index} does not follow ${this.appendedLast} (a gap would make the log lie)`);
      }
      const rec = encodeRecord(e);
      this.queued.push(rec);
      this.queuedIndexes.push({ index: e.index, bytes: rec.length });
      this.appendedLast = e.index;
      this.lastTerm = e.term;
    }
  }

  /** Make everything appended so far durable (one write, one fdatasync, shared by concurrent callers). */
  flush(): Promise<void> {
    if (this.held) return this.held.then(() => this.flush());
    if (this.closed && this.queued.length > 0) return Promise.reject(new Error('command log is closed'));
    if (this.queued.length === 0 && !this.flushing) return Promise.resolve();
    if (this.flushing) {
      this.flushAgain = true;
      const current = this.flushing;
      return current.then(() => this.flush());
    }
    this.flushing = this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Resolves once `index` is durable, or with false after `timeoutMs` or when the log closes. */
  waitFor(index: number, timeoutMs: number): Promise<boolean> {
    if (this.durableLast >= index) return Promise.resolve(true);
    if (timeoutMs <= 0 || this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w = {
        index,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /**
   * Read durable entries from..to (inclusive) in batches. Throws UnavailableRangeError when the
   * range is not held whole.
   */
  async *read(from: number, to: number, batchBytes = 4 << 20): AsyncGenerator<Entry[]> {
    for await (const raw of this.readRaw(from, to, batchBytes)) yield decodeRecords(raw);
  }

  /**
   * The same range as whole records in their stored encoding (which is also the stream format
   * of recover(i, n)), straight from the files: nothing decoded or copied per entry.
   */
  async *readRaw(from: number, to: number, batchBytes = 4 << 20): AsyncGenerator<Buffer> {
    const r = await this.openRange(from, to, batchBytes);
    try {
      yield* r.chunks();
    } finally {
      await r.close();
    }
  }

  /**
   * Open every segment file of from..to now, so a truncation that deletes them while the range
   * is read cannot take them away (an open file stays readable). Throws UnavailableRangeError if
   * the range is not held, or was truncated while being opened. The caller closes it.
   */
  async openRange(from: number, to: number, batchBytes = 4 << 20): Promise<{ chunks(): AsyncGenerator<Buffer>; close(): Promise<void> }> {
    this.checkRange(from, to);
    const parts: { seg: Segment; fh: FileHandleLike; first: number; last: number }[] = [];
    const close = async () => {
      for (const p of parts.splice(0)) await p.fh.close().catch(() => undefined);
    };
    try {
      let index = from;
      for (const seg of this.segments) {
        const segLast = seg.first + seg.offsets.length - 1;
        if (segLast < index || index > to) continue;
        const last = Math.min(to, segLast);
        const fh = await this.fs.open(seg.file, 'r');
        parts.push({ seg, fh, first: index - seg.first, last: last - seg.first });
        if (!fh.read) throw new Error('the command log needs a file system that reads through open files');
        index = last + 1;
      }
    } catch (e) {
      await close();
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      this.checkRange(from, to); // truncated meanwhile: say what is held now
      throw e;
    }
    async function* chunks(): AsyncGenerator<Buffer> {
      for (const { seg, fh, first, last } of parts) {
        for (let i = first; i <= last; ) {
          // As many whole records as fit in one read (at least one).
          const start = seg.offsets[i];
          let j = i;
          while (j < last && seg.offsets[j + 1] + recordEnd(seg, j + 1) - start <= batchBytes) j++;
          const len = seg.offsets[j] - start + recordEnd(seg, j);
          const buf = Buffer.allocUnsafe(len);
          const { bytesRead } = await fh.read!(buf, 0, len, start);
          if (bytesRead !== len) throw new CorruptionError(seg.file, start + bytesRead, 'segment shorter than its index says');
          yield buf;
          i = j + 1;
        }
      }
    }
    return { chunks, close };
  }

  /** Throws UnavailableRangeError unless from..to is held whole and durable. */
  checkRange(from: number, to: number): void {
    const avail = { first: this.meta.first, last: this.durableLast };
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 1 || to < from) {
      throw new UnavailableRangeError(`range ${from}..${to} is not a range of indexes (need 1 <= from <= to)`, avail);
    }
    if (from < avail.first) {
      const base = this.meta.base ? `; the state at ${this.meta.base.index} is available as a snapshot` : '';
      throw new UnavailableRangeError(`entries before ${avail.first} were truncated or never received: available ${avail.first}..${avail.last}${base}`, avail);
    }
    if (to > avail.last) throw new UnavailableRangeError(`entry ${to} is not in the log yet: available ${avail.first}..${avail.last}`, avail);
  }

  /** The snapshot the log starts from (undefined when it starts at index 1). */
  async base(): Promise<Snapshot | undefined> {
    const b = this.meta.base;
    if (!b) return undefined;
    if (this.baseCache?.meta.index === b.index && this.baseCache.meta.term === b.term) return this.baseCache;
    const names = (await this.fs.readdir(join(this.dir, 'base')).catch(() => [] as string[])).filter((n) => n.endsWith('.snap'));
    for (const n of names) {
      try {
        const s = decodeSnapshot(await this.fs.readFile(join(this.dir, 'base', n)));
        if (s.meta.index === b.index && s.meta.term === b.term) {
          this.keepBase(s);
          return s;
        }
      } catch {
        // A damaged older base: not the one meta.json names, so not needed.
      }
    }
    throw new CorruptionError(join(this.dir, 'base'), 0, `the base snapshot at ${b.index} (term ${b.term}) named by meta.json is missing or damaged`);
  }

  /**
   * Write a base that arrives a piece at a time (a snapshot file's bytes, fetched from a voter)
   * to a file of its own, sync it and check it: a large state is never whole in memory here.
   * Name it with truncatePrefix, or let it go with discardBase; one left over is removed at the
   * next open. Throws (and keeps nothing) when the bytes are not an intact snapshot.
   */
  async receiveBase(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<ReceivedBase> {
    const dir = join(this.dir, 'base-download');
    await this.fs.mkdir(dir, { recursive: true });
    const file = join(dir, `base-${process.pid}-${++this.downloads}.snap`);
    try {
      const fh = await this.fs.open(file, 'w');
      try {
        let pos = 0;
        let unsynced = 0;
        for await (const c of chunks) {
          pos = await writeAll(fh, c, pos);
          unsynced += c.length;
          // Flushed as it comes (as SnapshotStore does): one flush of a large file at the end
          // would stall the disk, and every append's fdatasync behind it.
          if (this.sync && unsynced >= 8 << 20) {
            await fh.datasync();
            unsynced = 0;
          }
        }
        if (this.sync) await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      await this.fs.rm(file, { force: true }).catch(() => undefined);
      throw new Error(`receiving a base into ${file}: ${(e as Error).message}`);
    }
    try {
      const v = await verifySnapshotFile(this.fs, file, BASE_CACHE_BYTES);
      return { file, meta: { index: v.meta.index, term: v.meta.term }, snapshot: v.snapshot };
    } catch (e) {
      await this.fs.rm(file, { force: true }).catch(() => undefined);
      throw new Error(`the base received is not an intact snapshot: ${(e as Error).message}`);
    }
  }

  /** Let go of a received base that will not be named. */
  async discardBase(b: ReceivedBase): Promise<void> {
    await this.fs.rm(b.file, { force: true });
  }

  /**
   * The base as the bytes of its snapshot file, for serving it (a recovery's BASE request, the
   * HTTP base route): read from the file a piece at a time, not decoded and encoded again whole.
   * The file is checked first and held open, so a truncation meanwhile cannot cut it short.
   */
  async openBase(): Promise<BaseStream | undefined> {
    const b = this.meta.base;
    if (!b) return undefined;
    const whole = (s: Snapshot): BaseStream => {
      const bytes = encodeSnapshot(s);
      return { index: s.meta.index, term: s.meta.term, bytes: bytes.length, chunks: [bytes], close: async () => undefined };
    };
    if (this.baseCache?.meta.index === b.index && this.baseCache.meta.term === b.term) return whole(this.baseCache);
    const file = join(this.dir, 'base', snapshotFileName(b));
    let fh: FileHandleLike | undefined;
    try {
      fh = await this.fs.open(file, 'r');
      const read = fh.read?.bind(fh);
      const v = await verifySnapshotFile(this.fs, file);
      if (!read || v.meta.index !== b.index || v.meta.term !== b.term) throw new Error('not the named base');
      const { size } = await fh.stat();
      const h = fh;
      const chunks = (async function* () {
        for (let pos = 0; pos < size; ) {
          const buf = Buffer.allocUnsafe(Math.min(BASE_READ_CHUNK, size - pos));
          const { bytesRead } = await read(buf, 0, buf.length, pos);
          if (bytesRead === 0) throw new Error(`${file} ended at ${pos} of ${size} bytes`);
          pos += bytesRead;
          yield buf.subarray(0, bytesRead);
        }
      })();
      return { index: b.index, term: b.term, bytes: size, chunks, close: () => h.close() };
    } catch {
      await fh?.close().catch(() => undefined);
      // Not under its own name, or damaged there: base() finds it elsewhere or says what is wrong.
      const s = await this.base();
      return s && whole(s);
    }
  }

  /**
   * At open: the base meta.json names is there and intact, checked a piece at a time (a large
   * state is not read whole to be checked; it is read when asked for). A small one is kept.
   */
  private async verifyBase(b: { index: number; term: number }): Promise<void> {
    const file = join(this.dir, 'base', snapshotFileName(b));
    // A small one is read whole (once) and kept.
    const found = await verifySnapshotFile(this.fs, file, BASE_CACHE_BYTES).catch(() => undefined);
    // Not under its own name, or damaged there: base() looks at every file and says what is wrong.
    if (!found || found.meta.index !== b.index || found.meta.term !== b.term) await this.base();
    else if (found.snapshot) this.keepBase(found.snapshot);
  }

  /**
   * Start over at `snapshot` (a cluster snapshot that is ahead of everything held): the entries
   * before it are gone from the cluster and from here. A snapshot at or below the last appended
   * index changes nothing (the log already holds that history).
   */
  async installBase(snapshot: Snapshot): Promise<boolean> {
    const { index, term } = snapshot.meta;
    if (index <= this.appendedLast) return false;
    await this.withoutFlushes(async () => {
      await this.bases.save(snapshot);
      this.crashPoint('base:after-snapshot-file');
      await this.writeMeta({ first: index + 1, base: { index, term } });
      this.crashPoint('base:after-meta');
      await this.closeActive();
      const old = this.segments;
      this.segments = [];
      for (const s of old) await this.fs.rm(s.file, { force: true });
      await this.removeUnnamedBases();
      this.keepBase(snapshot);
      this.durableLast = this.appendedLast = index;
      this.lastTerm = term;
    });
    this.wake();
    return true;
  }

  /**
   * Run `fn` with everything appended so far durable and no flush writing meanwhile (flushes
   * asked for wait until it is done): the active segment's file may be closed inside.
   */
  private async withoutFlushes(fn: () => Promise<void>): Promise<void> {
    // Callers queue in call order. Checking `held` and then awaiting a flush before taking it let
    // two callers (two voters' truncation asks at once) both pass the check and run side by side.
    const before = this.exclusive;
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    this.exclusive = before.then(() => done);
    try {
      await before;
      await this.flush();
      this.held = done;
      // A flush started between the one awaited above and the hold ends its current round.
      while (this.flushing) await this.flushing;
      await fn();
    } finally {
      this.held = undefined;
      release();
    }
  }

  /**
   * Drop entries up to `upTo` (inclusive). When `base` is given (a snapshot at or after `upTo`,
   * in memory or received into a file by receiveBase, which is then moved into place), it
   * becomes the state the log starts from, so the log alone can still rebuild the state.
   * Returns the new first index.
   */
  async truncatePrefix(upTo: number, base?: Snapshot | ReceivedBase): Promise<number> {
    try {
      return await this.truncatePrefixWith(upTo, base);
    } finally {
      // A received base not named (the held one covers the cut, or the cut failed) goes.
      if (base && 'file' in base) await this.fs.rm(base.file, { force: true }).catch(() => undefined);
    }
  }

  private async truncatePrefixWith(upTo: number, base?: Snapshot | ReceivedBase): Promise<number> {
    await this.flush();
    upTo = Math.min(upTo, this.durableLast);
    if (upTo < this.meta.first) return this.meta.first;
    if (base && base.meta.index < upTo) throw new Error(`a base snapshot at ${base.meta.index} cannot cover a truncation to ${upTo}`);
    if (base && !(await this.waitFor(base.meta.index, 30_000))) throw new Error(`a base snapshot at ${base.meta.index} is past the log's end (${this.durableLast})`);
    let first = this.meta.first;
    // Decided and written under the same hold as installBase: a base installed while this
    // waited (the leader sent a snapshot) has moved the start past `upTo` and must stay.
    await this.withoutFlushes(async () => {
      first = this.meta.first;
      if (upTo < first) return;
      // Voters snapshot at different indexes, so a later ask may bring an older base than the
      // one held. The held one still covers the cut when it is at or past it: keep it (less to
      // replay on a rebuild, and no base file written).
      const held = this.meta.base;
      const useHeld = held !== undefined && held.index >= upTo && (!base || held.index >= base.meta.index);
      if (base && !useHeld) {
        if ('file' in base) {
          // Received into a file already checked and synced: named by moving it into base/.
          const dir = join(this.dir, 'base');
          await this.fs.mkdir(dir, { recursive: true });
          await this.fs.rename(base.file, join(dir, snapshotFileName(base.meta)));
          if (this.sync) await syncDirectory(this.fs, dir);
          this.baseCache = base.snapshot && base.snapshot.data.length <= BASE_CACHE_BYTES ? base.snapshot : undefined;
        } else {
          await this.bases.save(base);
          this.keepBase(base);
        }
      }
      this.crashPoint('truncate:after-snapshot-file');
      // Cut past the held base without a newer one (a plain prefix drop: the logger always
      // brings one), the log no longer meets that base: it is let go, so the log says it starts
      // with no snapshot before it (it cannot rebuild the state) instead of naming a base that a
      // rebuild would follow with the entries after a gap.
      const keep = base && !useHeld ? { index: base.meta.index, term: base.meta.term } : useHeld ? held : undefined;
      await this.writeMeta({ first: upTo + 1, base: keep });
      this.crashPoint('truncate:after-meta');
      await this.removeSegmentsBelow(this.meta.first, (f) => this.crashPoint('truncate:mid-delete', f));
      await this.removeUnnamedBases();
      first = this.meta.first;
    });
    return first;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.withoutFlushes(async () => {
      this.closed = true;
      await this.closeActive();
    });
    // Nobody is left waiting for ever (a truncation waiting for its base, a recovery reader).
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve(false);
    }
    this.waiters = [];
  }

  // ---------------------------------------------------------------------------------------

  private async doFlush(): Promise<void> {
    do {
      this.flushAgain = false;
      const bufs = this.queued;
      const idx = this.queuedIndexes;
      this.queued = [];
      this.queuedIndexes = [];
      if (bufs.length === 0) continue;
      const started = performance.now();
      let bytes = 0;
      let seg = this.segments[this.segments.length - 1];
      if (!seg || this.active === undefined || seg.size >= this.segmentBytes) seg = await this.startSegment(idx[0].index);
      const data = bufs.length === 1 ? bufs[0] : Buffer.concat(bufs);
      // Write + fdatasync on the thread pool: a logger serving several clusters must not stop
      // all of them while one cluster's disk flush runs (on the main thread they queued behind
      // each other and the logger heard its clusters' commits half a second late). Appends that
      // arrive meanwhile are queued and go together in the next round (group commit).
      await writeAll(this.active!, data, seg.size);
      if (this.sync) await this.active!.datasync();
      for (const q of idx) {
        seg.offsets.push(seg.size);
        seg.size += q.bytes;
        bytes += q.bytes;
      }
      this.durableLast = idx[idx.length - 1].index;
      this.onFlush?.({ last: this.durableLast, entries: idx.length, bytes, seconds: (performance.now() - started) / 1000 });
      this.wake();
      // Let appends queued meanwhile (same tick) ride the next round.
      await Promise.resolve();
    } while (!this.held && (this.flushAgain || this.queued.length > 0));
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.index <= this.durableLast) {
        clearTimeout(w.timer);
        w.resolve(true);
      } else still.push(w);
    }
    this.waiters = still;
  }

  private async startSegment(first: number): Promise<Segment> {
    await this.closeActive();
    const file = join(this.dir, `seg-${first.toString(16).padStart(16, '0')}.log`);
    this.active = await this.fs.open(file, 'w');
    if (this.sync) await syncDirectory(this.fs, this.dir);
    const seg: Segment = { file, first, offsets: [], size: 0 };
    this.segments.push(seg);
    return seg;
  }

  private async closeActive(): Promise<void> {
    const fh = this.active;
    this.active = undefined;
    await fh?.close();
  }

  /** Written to a temporary file, synced, renamed over the old one: a crash leaves old or new, whole. */
  private async writeMeta(meta: Meta): Promise<void> {
    const file = join(this.dir, 'meta.json');
    const fh = await this.fs.open(`${file}.tmp`, 'w');
    try {
      await writeAll(fh, Buffer.from(JSON.stringify(meta) + '\n'), 0);
      if (this.sync) await fh.sync();
    } finally {
      await fh.close();
    }
    await this.fs.rename(`${file}.tmp`, file);
    if (this.sync) await syncDirectory(this.fs, this.dir);
    this.meta = meta;
  }

  /**
   * Keep a base in memory only when it is small: a logger serving several clusters with large
   * states held a copy of each one's whole state for good. A large base is read from its file
   * when asked for (a recovery's BASE request, a rebuild), which is rare.
   */
  private keepBase(s: Snapshot): void {
    this.baseCache = s.data.length <= BASE_CACHE_BYTES ? s : undefined;
  }

  /**
   * Delete every file in base/ but the one meta.json names: the bases of earlier truncations and
   * installs, and any a crash left saved (or half-written) but never named. Returns them.
   */
  private async removeUnnamedBases(): Promise<string[]> {
    const dir = join(this.dir, 'base');
    const named = this.meta.base;
    const removed: string[] = [];
    for (const n of await this.fs.readdir(dir).catch(() => [] as string[])) {
      const m = BASE_RE.exec(n);
      if (m && named && Number.parseInt(m[1], 16) === named.index && Number.parseInt(m[2], 16) === named.term) continue;
      await this.fs.rm(join(dir, n), { force: true });
      removed.push(join(dir, n));
    }
    return removed;
  }

  private async removeSegmentsBelow(first: number, each?: (file: string) => void): Promise<void> {
    const keep: Segment[] = [];
    const active = this.segments[this.segments.length - 1];
    for (const s of this.segments) {
      const last = s.first + s.offsets.length - 1;
      // The active segment stays (appends continue there); its dropped records are skipped.
      if (last < first && s !== active) {
        await this.fs.rm(s.file, { force: true });
        each?.(s.file);
      } else keep.push(s);
    }
    this.segments = keep;
  }

  private crashPoint(name: string, detail?: string): void {
    if (this.opts.crashAt !== name) return;
    // Only ever set by a test's child process: die here as a power cut or kill -9 would.
    void detail;
    process.kill(process.pid, 'SIGKILL');
  }

  private async load(): Promise<void> {
    await this.fs.mkdir(this.dir, { recursive: true });
    try {
      this.meta = JSON.parse((await this.fs.readFile(join(this.dir, 'meta.json'))).toString('utf8')) as Meta;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CorruptionError(join(this.dir, 'meta.json'), 0, `unreadable: ${(e as Error).message}`);
    }
    await this.fs.rm(join(this.dir, 'meta.json.tmp'), { force: true });
    const names = (await this.fs.readdir(this.dir)).filter((n) => SEG_RE.test(n)).sort();
    const segs: Segment[] = [];
    for (let i = 0; i < names.length; i++) {
      const file = join(this.dir, names[i]);
      const isLast = i === names.length - 1;
      const seg = await this.scanSegment(file, Number.parseInt(SEG_RE.exec(names[i])![1], 16), isLast);
      segs.push(seg);
    }
    // Segments wholly below meta.first belong to a truncation or base install that a crash
    // interrupted after committing meta.json: finish it.
    this.segments = [];
    for (const s of segs) {
      if (s.offsets.length === 0 || s.first + s.offsets.length - 1 < this.meta.first) {
        await this.fs.rm(s.file, { force: true });
        this.report.leftoversRemoved.push(s.file);
      } else this.segments.push(s);
    }
    for (let i = 1; i < this.segments.length; i++) {
      const prev = this.segments[i - 1];
      const s = this.segments[i];
      if (s.first !== prev.first + prev.offsets.length) throw new CorruptionError(s.file, 0, `segment starts at ${s.first}, the one before ends at ${prev.first + prev.offsets.length - 1}: entries are missing`);
    }
    const startsAt = this.meta.base ? this.meta.base.index + 1 : 1;
    if (this.segments.length > 0 && this.segments[0].first > Math.max(this.meta.first, startsAt)) {
      throw new CorruptionError(this.segments[0].file, 0, `the log should hold ${this.meta.first} but its first segment starts at ${this.segments[0].first}`);
    }
    const held = this.segments[this.segments.length - 1];
    this.durableLast = held ? held.first + held.offsets.length - 1 : this.meta.first - 1;
    this.report.leftoversRemoved.push(...(await this.removeUnnamedBases()));
    const downloads = join(this.dir, 'base-download');
    for (const n of await this.fs.readdir(downloads).catch(() => [] as string[])) {
      await this.fs.rm(join(downloads, n), { force: true });
      this.report.leftoversRemoved.push(join(downloads, n));
    }
    if (this.meta.base) {
      await this.verifyBase(this.meta.base);
      this.durableLast = Math.max(this.durableLast, this.meta.base.index);
      this.lastTerm = this.meta.base.term;
    }
    if (held) for await (const b of this.read(this.durableLast, this.durableLast)) this.lastTerm = b[b.length - 1].term;
    this.appendedLast = this.durableLast;
    // Appends go to a new segment after a restart: the old tail stays as it was verified.
  }

  private async scanSegment(file: string, first: number, isLast: boolean): Promise<Segment> {
    const buf = await this.fs.readFile(file);
    const offsets: number[] = [];
    let off = 0;
    let index = first;
    while (off < buf.length) {
      const bad = (why: string) => new CorruptionError(file, off, why);
      let torn: string | undefined;
      if (off + HEADER > buf.length) torn = 'a partial record header';
      else {
        const len = buf.readUInt32LE(off);
        if (len < BODY_FIXED || len > MAX_RECORD) torn = `an impossible record length ${len}`;
        else if (off + HEADER + len > buf.length) torn = 'a record cut short';
        else if (crc32c(buf.subarray(off + HEADER, off + HEADER + len)) !== buf.readUInt32LE(off + 4)) torn = 'a checksum mismatch';
        else {
          const e = decodeBody(buf, off + HEADER, len);
          if (e.index !== index) throw bad(`record holds index ${e.index}, expected ${index}`);
          offsets.push(off);
          off += HEADER + len;
          index++;
          continue;
        }
      }
      // Only the end of the newest segment can be torn by a crash during an append that was
      // never acknowledged; anywhere else it is damage.
      if (!isLast) throw bad(`${torn} inside a sealed segment`);
      const fh = await this.fs.open(file, 'r+');
      try {
        await fh.truncate(off);
        if (this.sync) await fh.sync();
      } finally {
        await fh.close();
      }
      this.report.tornBytesRepaired += buf.length - off;
      break;
    }
    return { file, first, offsets, size: off };
  }
}

/** Length of record i of a segment (its offset to the next one, or to the end). */
function recordEnd(seg: Segment, i: number): number {
  return (i + 1 < seg.offsets.length ? seg.offsets[i + 1] : seg.size) - seg.offsets[i];
}

/**
 * Decode whole records (as read or streamed); throws on a damaged one. `verified`: the bytes
 * came from `RecordSplitter.pushRaw`, which already checked every length and checksum.
 */
export function decodeRecords(buf: Buffer, verified = false): Entry[] {
  if (!verified) checkRecords(buf);
  const out: Entry[] = [];
  for (let off = 0; off < buf.length; ) {
    const len = buf.readUInt32LE(off);
    out.push(decodeBody(buf, off + HEADER, len));
    off += HEADER + len;
  }
  return out;
}

/**
 * Visit whole, already checked records without making an entry object per record: `start` and
 * `end` bound the entry's data in `buf` (recovery prepares commands this way on its receiving
 * thread).
 */
export function forEachRecord(buf: Buffer, visit: (buf: Buffer, index: number, term: number, type: EntryType, start: number, end: number) => void): void {
  for (let off = 0; off < buf.length; ) {
    const len = buf.readUInt32LE(off);
    const body = off + HEADER;
    visit(buf, buf.readUIntLE(body, 6), buf.readUIntLE(body + 6, 6), buf[body + 12] as EntryType, body + BODY_FIXED, body + len);
    off = body + len;
  }
}

/** Throws unless `buf` is whole records with good lengths and checksums. */
function checkRecords(buf: Buffer): void {
  for (let off = 0; off < buf.length; ) {
    if (off + HEADER > buf.length) throw new Error(`record header cut short at byte ${off}`);
    const len = buf.readUInt32LE(off);
    if (len < BODY_FIXED || len > MAX_RECORD || off + HEADER + len > buf.length) throw new Error(`bad record length ${len} at byte ${off}`);
    if (crc32c(buf.subarray(off + HEADER, off + HEADER + len)) !== buf.readUInt32LE(off + 4)) throw new Error(`record checksum mismatch at byte ${off}`);
    off += HEADER + len;
  }
}

const EMPTY_BUF = Buffer.alloc(0);

/** Splits a byte stream of records into whole records, as the bytes arrive. */
export class RecordSplitter {
  private carry: Buffer = EMPTY_BUF;
  /** Feed bytes; returns the whole records completed so far, decoded and checked. */
  push(chunk: Buffer): Entry[] {
    const out: Entry[] = [];
    for (const raw of this.pushRaw(chunk)) for (const e of decodeRecords(raw, true)) out.push(e);
    return out;
  }
  /**
   * Feed bytes; returns the whole records completed so far as checked bytes (views into the
   * chunk where they lie whole in it), for `decodeRecords(raw, true)`.
   */
  pushRaw(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let buf = chunk;
    if (this.carry.length > 0) {
      // Complete the record that straddles the boundary, copying only its bytes (copying the
      // whole chunk each time was an eighth of a recovery's CPU).
      const head = this.carry.length >= HEADER ? this.carry : Buffer.concat([this.carry, chunk.subarray(0, HEADER - this.carry.length)]);
      if (head.length < HEADER) {
        this.carry = head;
        return out;
      }
      const len = head.readUInt32LE(0);
      if (len < BODY_FIXED || len > MAX_RECORD) throw new Error(`bad record length ${len} in the stream`);
      const need = HEADER + len - this.carry.length;
      if (chunk.length < need) {
        this.carry = Buffer.concat([this.carry, chunk]);
        return out;
      }
      const rec = Buffer.concat([this.carry, chunk.subarray(0, need)]);
      checkRecords(rec);
      out.push(rec);
      buf = chunk.subarray(need);
      this.carry = EMPTY_BUF;
    }
    let off = 0;
    while (off + HEADER <= buf.length) {
      const len = buf.readUInt32LE(off);
      if (len < BODY_FIXED || len > MAX_RECORD) throw new Error(`bad record length ${len} in the stream`);
      if (off + HEADER + len > buf.length) break;
      off += HEADER + len;
    }
    if (off > 0) {
      const whole = buf.subarray(0, off);
      checkRecords(whole);
      out.push(whole);
    }
    this.carry = off < buf.length ? Buffer.from(buf.subarray(off)) : EMPTY_BUF;
    return out;
  }
  /** Bytes of an unfinished record at the end (0 when the stream ended cleanly). */
  pending(): number {
    return this.carry.length;
  }
}

export function encodeRecord(e: Entry): Buffer {
  const len = BODY_FIXED + e.data.length;
  const buf = Buffer.allocUnsafe(HEADER + len);
  buf.writeUInt32LE(len, 0);
  buf.writeUIntLE(e.index, 8, 6);
  buf.writeUIntLE(e.term, 14, 6);
  buf.writeUInt8(e.type, 20);
  buf.set(e.data, 21);
  buf.writeUInt32LE(crc32c(buf.subarray(HEADER)), 4);
  return buf;
}

function decodeBody(buf: Buffer, off: number, len: number): Entry {
  return {
    index: buf.readUIntLE(off, 6),
    term: buf.readUIntLE(off + 6, 6),
    type: buf.readUInt8(off + 12) as EntryType,
    data: buf.subarray(off + BODY_FIXED, off + len),
  };
}


