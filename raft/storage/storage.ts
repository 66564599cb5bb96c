/**
 * Stable storage for a Raft node: what the driver calls to make a Ready durable, and what a
 * restarted node recovers from. Two implementations share the interface: DiskStorage (the WAL
 * plus snapshot files) and MemoryStorage (tests, and the seed's non-durable mode).
 */
import { join } from 'node:path';
import { Entry, HardState, HeldSnapshot, Snapshot, SnapshotMeta } from '../types.js';
import type { InitialState } from '../node.js';
import { EntryReader, entryBytes } from '../log.js';
import { SnapshotStore } from './snapshots.js';
import { DEFAULT_SEGMENT_BYTES, FaultHooks, FsyncMode, Wal } from './wal.js';
import type { FileSystem } from './fs.js';

/**
 * Append `entries` to a stored log (contiguous by index), replacing any suffix at or after
 * the first new index: a leader overwrote our uncommitted entries.
 */
export function appendToLog(log: Entry[], entries: Entry[]): void {
  if (entries.length === 0) return;
  const first = entries[0].index;
  const base = log.length > 0 ? log[0].index : first;
  log.length = Math.max(0, Math.min(log.length, first - base));
  for (const e of entries) log.push(e);
}

/** EntryReader.readEntries over a stored log (contiguous by index). */
export function readFromLog(log: Entry[], lo: number, hi: number, maxBytes: number): Entry[] {
  const base = log[0]?.index ?? 0;
  if (log.length === 0 || lo < base) return [];
  const out: Entry[] = [];
  let bytes = 0;
  for (let i = lo; i < hi && i - base < log.length; i++) {
    const e = log[i - base];
    if (out.length > 0 && bytes + entryBytes(e) > maxBytes) break;
    out.push(e);
    bytes += entryBytes(e);
  }
  return out;
}

/** What one save makes durable (a Ready's snapshot, entries and hard state). */
export interface SaveRequest {
  snapshot?: Snapshot;
  entries: Entry[];
  hardState?: HardState;
  /** The caller waits for nothing else meanwhile: the storage may sync on its thread (WalBatch.syncOnCaller). */
  syncOnCaller?: boolean;
}

export interface Storage extends EntryReader {
  readonly kind: 'disk' | 'memory';
  readonly fsync: FsyncMode | 'memory';
  /** What the node starts from (read once at open). */
  initialState(): InitialState;
  /**
   * Persist a Ready's snapshot, entries and hard state; resolves once durable, with whether
   * anything was written (a commit index alone is kept for the next write: see Wal.append).
   */
  save(rd: SaveRequest): Promise<boolean>;
  /** Persist a snapshot the node made itself, then drop log entries at or below `compactTo`. */
  saveSnapshot(snapshot: Snapshot, compactTo: number): Promise<void>;
  /**
   * saveSnapshot for a state serialized as it is written (`size` bytes in `chunks`); returns the
   * snapshot as the core should keep it (DiskStorage: read from its file, never whole in memory).
   * It is done with each chunk before it asks for the next (the chunks' buffer may be reused).
   */
  saveSnapshotStream(meta: SnapshotMeta, size: number, chunks: AsyncIterable<Uint8Array>, compactTo: number): Promise<HeldSnapshot>;
  /**
   * The latest snapshot saved or loaded, if it is the one at `index`, with its bytes read from
   * its file: the core keeps this instead of the bytes themselves (undefined: keep the bytes).
   */
  heldSnapshot(index: number): HeldSnapshot | undefined;
  /**
   * The node started from initialState(), so the storage lets go of what it recovered: the
   * entries (the core releases each once applied, see RaftConfig.entryReader) and the loaded
   * snapshot's bytes (the core holds it as its file when it can). initialState() no longer
   * carries them.
   */
  forgetInitialState(): void;
  close(): Promise<void>;
}

export interface DiskStorageOptions {
  fsync?: FsyncMode;
  segmentBytes?: number;
  /**
   * Make WAL segments this long ahead of use (default: the segment size, at most 64 MB, unless
   * fsync is 'never'; 0: segments grow as they are written). See wal.ts.
   */
  preallocateBytes?: number;
  keepSnapshots?: number;
  faults?: FaultHooks;
  /** The file system (default node:fs; the simulator passes a simulated disk). */
  fs?: FileSystem;
}

export interface RecoveryReport {
  tornBytesRepaired: number;
  skippedSnapshots: { file: string; reason: string }[];
}

export class DiskStorage implements Storage {
  readonly kind = 'disk';
  private constructor(
    private readonly wal: Wal,
    private readonly snapshots: SnapshotStore,
    private initial: InitialState,
    readonly recovery: RecoveryReport,
    /** The latest snapshot file written or loaded. */
    private latest: { file: string; meta: SnapshotMeta; size: number } | undefined,
  ) {}

  get fsync(): FsyncMode {
    return this.wal.fsyncMode;
  }

  /** Open `dir` (wal/ and snap/ inside), repairing a torn tail and refusing corruption. */
  static async open(dir: string, opts: DiskStorageOptions = {}): Promise<DiskStorage> {
    const snapshots = new SnapshotStore(join(dir, 'snap'), opts.keepSnapshots ?? 2, opts.fsync !== 'never', opts.fs);
    const loaded = await snapshots.loadLatest();
    const { wal, state } = await Wal.open(join(dir, 'wal'), {
      fsync: opts.fsync,
      segmentBytes: opts.segmentBytes,
      // Preallocation only spares fdatasync work: without fdatasync it would be bytes for nothing.
      preallocateBytes: opts.preallocateBytes ?? (opts.fsync === 'never' ? 0 : Math.min(opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES, DEFAULT_SEGMENT_BYTES)),
      faults: opts.faults,
      fs: opts.fs,
    });
    const snap = loaded.snapshot;
    let entries = state.entries;
    if (snap) {
      const at = entries.find((e) => e.index === snap.meta.index);
      const walLast = entries.length > 0 ? entries[entries.length - 1].index : state.snapshot.index;
      if ((at && at.term !== snap.meta.term) || walLast < snap.meta.index) {
        // The snapshot was installed (over a conflicting log, or past the end of ours) and the
        // crash came before the WAL recorded the reset: what the WAL holds belongs to the old
        // history. Record the reset now, before anything is appended after the snapshot, or
        // the next replay would find those appends following the old entries: a gap.
        entries = [];
        await wal.append({ reset: { index: snap.meta.index, term: snap.meta.term }, entries: [] });
      } else if (!at && entries.length > 0 && entries[0].index > snap.meta.index + 1) {
        throw new Error(`storage: WAL starts at entry ${entries[0].index} but the newest intact snapshot ends at ${snap.meta.index}`);
      } else {
        entries = entries.filter((e) => e.index > snap.meta.index);
      }
    } else if (entries.length > 0 && entries[0].index > 1) {
      throw new Error(`storage: WAL starts at entry ${entries[0].index} and no intact snapshot covers the entries before it`);
    }
    const initial: InitialState = { hardState: state.hardState, snapshot: snap, entries, applied: snap?.meta.index ?? 0 };
    const latest = snap && loaded.file ? { file: loaded.file, meta: snap.meta, size: snap.data.length } : undefined;
    return new DiskStorage(wal, snapshots, initial, { tornBytesRepaired: state.tornBytesRepaired, skippedSnapshots: loaded.skipped }, latest);
  }

  initialState(): InitialState {
    return this.initial;
  }

  save(rd: SaveRequest): Promise<boolean> {
    // Without a snapshot (every save but an install), no async frame of its own.
    return rd.snapshot ? this.saveWithSnapshot(rd, rd.snapshot) : this.wal.append(rd);
  }

  private async saveWithSnapshot(rd: SaveRequest, snapshot: Snapshot): Promise<boolean> {
    this.latest = { file: await this.snapshots.save(snapshot), meta: snapshot.meta, size: snapshot.data.length };
    return this.wal.append({ ...rd, reset: { index: snapshot.meta.index, term: snapshot.meta.term } });
  }

  async saveSnapshot(snapshot: Snapshot, compactTo: number): Promise<void> {
    this.latest = { file: await this.snapshots.save(snapshot), meta: snapshot.meta, size: snapshot.data.length };
    await this.wal.markSnapshot(snapshot.meta.index, snapshot.meta.term, Math.min(compactTo, snapshot.meta.index));
  }

  async saveSnapshotStream(meta: SnapshotMeta, size: number, chunks: AsyncIterable<Uint8Array>, compactTo: number): Promise<HeldSnapshot> {
    const file = await this.snapshots.saveStream(meta, size, chunks);
    this.latest = { file, meta, size };
    await this.wal.markSnapshot(meta.index, meta.term, Math.min(compactTo, meta.index));
    return this.snapshots.held(file, meta, size);
  }

  forgetInitialState(): void {
    this.initial = { ...this.initial, snapshot: undefined, entries: [] };
  }

  heldSnapshot(index: number): HeldSnapshot | undefined {
    const l = this.latest;
    return l && l.meta.index === index ? this.snapshots.held(l.file, l.meta, l.size) : undefined;
  }

  readEntries(lo: number, hi: number, maxBytes: number): Entry[] {
    return this.wal.readEntries(lo, hi, maxBytes);
  }

  segmentCount(): number {
    return this.wal.segmentCount();
  }

  close(): Promise<void> {
    return this.wal.close();
  }
}

/** Everything in memory: for tests and for the seed's non-durable kvstore mode. */
export class MemoryStorage implements Storage {
  readonly kind = 'memory';
  readonly fsync = 'memory' as const;
  hardState: HardState = { term: 0, vote: '', commit: 0 };
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];

  initialState(): InitialState {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: this.entries.slice(), applied: this.snapshot?.meta.index ?? 0 };
  }

  async save(rd: SaveRequest): Promise<boolean> {
    if (rd.snapshot) {
      this.snapshot = rd.snapshot;
      this.entries = [];
    }
    appendToLog(this.entries, rd.entries);
    if (rd.hardState) this.hardState = rd.hardState;
    return true;
  }

  async saveSnapshot(snapshot: Snapshot, compactTo: number): Promise<void> {
    if (this.snapshot && snapshot.meta.index <= this.snapshot.meta.index) return;
    this.snapshot = snapshot;
    this.entries = this.entries.filter((e) => e.index > compactTo);
  }

  async saveSnapshotStream(meta: SnapshotMeta, size: number, chunks: AsyncIterable<Uint8Array>, compactTo: number): Promise<HeldSnapshot> {
    const data = Buffer.allocUnsafe(size);
    let off = 0;
    for await (const chunk of chunks) {
      if (off + chunk.length > size) throw new Error(`snapshot data came to more than the ${size} bytes announced`);
      data.set(chunk, off);
      off += chunk.length;
    }
    if (off !== size) throw new Error(`snapshot data came to ${off} bytes, ${size} were announced`);
    const snapshot: Snapshot = { meta, data };
    await this.saveSnapshot(snapshot, compactTo);
    return snapshot;
  }

  readEntries(lo: number, hi: number, maxBytes: number): Entry[] {
    return readFromLog(this.entries, lo, hi, maxBytes);
  }

  /** Its snapshots are in memory: the core keeps their bytes. */
  heldSnapshot(): undefined {
    return undefined;
  }

  /** initialState() hands out copies: nothing to let go of. */
  forgetInitialState(): void {}

  async close(): Promise<void> {}
}
