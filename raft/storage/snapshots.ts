/**
 * Snapshot files: `snap-<index>-<term>.snap` (16 hex digits each), written to a temporary
 * file, fsynced, renamed into place, and the directory fsynced, so a crash leaves either the
 * old set or the new one. Format:
 *
 *   "RKVSNAP1" | u32 meta length | meta JSON | u48 data length | data | u32 CRC-32C of all before
 *
 * A file that fails its checksum (a half-written or damaged snapshot) is ignored on start and
 * an older one is used.
 */
import { join } from 'node:path';
import { HeldSnapshot, Snapshot, SnapshotBytes, SnapshotMeta } from '../types.js';
import { StorageError, describeIoError } from './errors.js';
import { crc32c } from './crc32c.js';
import { FileSystem, nodeFs, syncDirectory, writeAll } from './fs.js';

const MAGIC = Buffer.from('RKVSNAP1');
const NAME_RE = /^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

export interface LoadedSnapshot {
  snapshot: Snapshot | undefined;
  /** The file it was read from. */
  file?: string;
  /** Files that were skipped, with the reason (reported, never silently lost). */
  skipped: { file: string; reason: string }[];
}

/** Everything before the data: magic, meta length, meta JSON, data length. */
function snapshotHead(meta: SnapshotMeta, dataLength: number): Buffer {
  const json = Buffer.from(JSON.stringify(meta));
  const head = Buffer.allocUnsafe(8 + 4 + json.length + 6);
  let off = MAGIC.copy(head, 0);
  off = head.writeUInt32LE(json.length, off);
  off += json.copy(head, off);
  head.writeUIntLE(dataLength, off, 6);
  return head;
}

/**
 * encodeSnapshot, a piece at a time, for a state serialized as it goes (`size` bytes of data in
 * `chunks`): the head, the chunks as they come, then the checksum. Throws if the chunks do not
 * add up to `size` (the head already announced it).
 */
export async function* encodeSnapshotStream(meta: SnapshotMeta, size: number, chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  const head = snapshotHead(meta, size);
  let crc = crc32c(head);
  yield head;
  let written = 0;
  for await (const chunk of chunks) {
    const part = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    crc = crc32c(part, crc);
    written += part.length;
    yield part;
  }
  if (written !== size) throw new Error(`snapshot data came to ${written} bytes, ${size} were announced`);
  const tail = Buffer.allocUnsafe(4);
  tail.writeUInt32LE(crc, 0);
  yield tail;
}

export function encodeSnapshot(s: Snapshot): Buffer {
  const head = snapshotHead(s.meta, s.data.length);
  const buf = Buffer.allocUnsafe(head.length + s.data.length + 4);
  head.copy(buf, 0);
  buf.set(s.data, head.length);
  const end = head.length + s.data.length;
  buf.writeUInt32LE(crc32c(buf.subarray(0, end)), end);
  return buf;
}

export function decodeSnapshot(buf: Buffer): Snapshot {
  if (buf.length < 22 || !buf.subarray(0, 8).equals(MAGIC)) throw new Error('not a raftkv snapshot file');
  const want = buf.readUInt32LE(buf.length - 4);
  if (crc32c(buf.subarray(0, buf.length - 4)) !== want) throw new Error('checksum mismatch (half-written or damaged)');
  const metaLen = buf.readUInt32LE(8);
  const meta = JSON.parse(buf.subarray(12, 12 + metaLen).toString()) as SnapshotMeta;
  const dataLen = buf.readUIntLE(12 + metaLen, 6);
  const start = 18 + metaLen;
  if (start + dataLen + 4 !== buf.length) throw new Error('length fields do not match the file size');
  return { meta, data: new Uint8Array(buf.buffer, buf.byteOffset + start, dataLen) };
}

/** Bytes checksummed and written per step when saving: the loop is never held for long. */
const SAVE_CHUNK = 4 << 20;

/**
 * Check a snapshot file as decodeSnapshot does (magic, lengths, checksum), reading it a piece
 * at a time: a 1 GB state is verified without holding 1 GB. Returns its meta and data length,
 * and the snapshot itself when the file is at most `wholeUpTo` bytes (read and decoded once);
 * throws decodeSnapshot's errors. File systems without positioned reads always decode it whole.
 */
export async function verifySnapshotFile(fs: FileSystem, file: string, wholeUpTo = 0): Promise<{ meta: SnapshotMeta; size: number; snapshot?: Snapshot }> {
  const h = await fs.open(file, 'r');
  try {
    const { size: fileSize } = await h.stat();
    if (!h.read || fileSize <= wholeUpTo) {
      const snapshot = decodeSnapshot(await fs.readFile(file));
      return { meta: snapshot.meta, size: snapshot.data.length, snapshot };
    }
    const buf = Buffer.allocUnsafe(Math.min(SAVE_CHUNK, Math.max(fileSize, 1)));
    const readAt = async (position: number, length: number, into = buf): Promise<Buffer> => {
      for (let got = 0; got < length; ) {
        const { bytesRead } = await h.read!(into, got, length - got, position + got);
        if (bytesRead === 0) throw new Error('length fields do not match the file size');
        got += bytesRead;
      }
      return into.subarray(0, length);
    };
    if (fileSize < 22 || !(await readAt(0, 8)).equals(MAGIC)) throw new Error('not a raftkv snapshot file');
    const want = (await readAt(fileSize - 4, 4)).readUInt32LE(0);
    let crc = 0;
    for (let off = 0; off < fileSize - 4; off += buf.length) crc = crc32c(await readAt(off, Math.min(buf.length, fileSize - 4 - off)), crc);
    if (crc !== want) throw new Error('checksum mismatch (half-written or damaged)');
    const metaLen = (await readAt(8, 4)).readUInt32LE(0);
    if (12 + metaLen + 6 + 4 > fileSize) throw new Error('length fields do not match the file size');
    const head = await readAt(12, metaLen + 6, Buffer.allocUnsafe(metaLen + 6));
    const meta = JSON.parse(head.subarray(0, metaLen).toString()) as SnapshotMeta;
    const size = head.readUIntLE(metaLen, 6);
    if (18 + metaLen + size + 4 !== fileSize) throw new Error('length fields do not match the file size');
    return { meta, size };
  } finally {
    await h.close();
  }
}

/** A snapshot file's name in a store: its index and term. */
export function snapshotFileName(meta: { index: number; term: number }): string {
  return `snap-${hex16(meta.index)}-${hex16(meta.term)}.snap`;
}

export class SnapshotStore {
  /** Files handed to the core as held snapshots (the newest two): never pruned. */
  private pinned: string[] = [];
  constructor(
    readonly dir: string,
    private readonly keep = 2,
    private readonly sync = true,
    private readonly fs: FileSystem = nodeFs,
  ) {
    if (keep < 1) throw new Error('must keep at least one snapshot');
  }

  /** Write `s` to its file; returns the file's path. */
  save(s: Snapshot): Promise<string> {
    const data = Buffer.from(s.data.buffer, s.data.byteOffset, s.data.length);
    return this.saveStream(s.meta, data.length, (async function* () {
      for (let off = 0; off < data.length; off += SAVE_CHUNK) yield data.subarray(off, off + SAVE_CHUNK);
    })());
  }

  /**
   * Write a snapshot whose `size` bytes of data come in `chunks` (a state serialized as it is
   * written, never whole in memory); returns the file's path. The chunks must add up to `size`.
   */
  async saveStream(meta: SnapshotMeta, size: number, chunks: AsyncIterable<Uint8Array>): Promise<string> {
    await this.fs.mkdir(this.dir, { recursive: true });
    const name = snapshotFileName(meta);
    const final = join(this.dir, name);
    const tmp = `${final}.tmp`;
    try {
      const fh = await this.fs.open(tmp, 'w');
      try {
        // The file is encodeSnapshot(s), written a piece at a time with the checksum computed
        // along the way: no copy of the data, no 100 MB checksum in one go.
        let pos = 0;
        let unsynced = 0;
        for await (const part of encodeSnapshotStream(meta, size, chunks)) {
          pos = await writeAll(fh, part, pos);
          unsynced += part.length;
          // Flush as we go (RocksDB's bytes_per_sync): one flush of 100 MB at the end stalls
          // the disk queue, and every WAL fdatasync behind it, for hundreds of milliseconds.
          if (this.sync && unsynced >= SAVE_CHUNK) {
            await fh.datasync();
            unsynced = 0;
          }
        }
        if (this.sync) await fh.sync();
      } finally {
        await fh.close();
      }
      await this.fs.rename(tmp, final);
      if (this.sync) await syncDirectory(this.fs, this.dir);
    } catch (e) {
      await this.fs.rm(tmp, { force: true }).catch(() => undefined);
      throw describeIoError('writing snapshot', final, e);
    }
    await this.prune();
    return final;
  }

  /**
   * The snapshot in `file` as the core keeps it: its bytes are read from the file a chunk at a
   * time. The file must be one this store wrote or loaded (complete and checked).
   */
  held(file: string, meta: SnapshotMeta, size: number): HeldSnapshot {
    // The core may still hold the one handed out before this (its swap to this one can come
    // later): pruning spares both.
    this.pinned = [file, ...this.pinned.filter((f) => f !== file)].slice(0, 2);
    return { meta, data: new FileSnapshotBytes(this.fs, file, snapshotHead(meta, size).length, size) };
  }

  /** The newest snapshot that reads back intact. */
  async loadLatest(): Promise<LoadedSnapshot> {
    const skipped: { file: string; reason: string }[] = [];
    let names: string[];
    try {
      names = await this.fs.readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { snapshot: undefined, skipped };
      throw e;
    }
    for (const n of names.filter((n) => n.endsWith('.tmp'))) {
      skipped.push({ file: join(this.dir, n), reason: 'unfinished write (removed)' });
      await this.fs.rm(join(this.dir, n), { force: true });
    }
    for (const name of this.sortedNames(names)) {
      const file = join(this.dir, name);
      try {
        return { snapshot: decodeSnapshot(await this.fs.readFile(file)), file, skipped };
      } catch (e) {
        skipped.push({ file, reason: (e as Error).message });
      }
    }
    return { snapshot: undefined, skipped };
  }

  /** Newest first. */
  private sortedNames(names: string[]): string[] {
    return names
      .filter((n) => NAME_RE.test(n))
      .sort()
      .reverse();
  }

  private async prune(): Promise<void> {
    const names = this.sortedNames(await this.fs.readdir(this.dir));
    for (const n of names.slice(this.keep)) if (!this.pinned.includes(join(this.dir, n))) await this.fs.rm(join(this.dir, n), { force: true });
  }
}

function hex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}

export { StorageError };

/** A snapshot's data in its file: the length, and any range of it read when asked for. */
class FileSnapshotBytes implements SnapshotBytes {
  constructor(
    private readonly fs: FileSystem,
    readonly file: string,
    private readonly dataOffset: number,
    readonly length: number,
  ) {}

  subarray(start: number, end: number): Uint8Array {
    start = Math.max(0, Math.min(start, this.length));
    end = Math.max(start, Math.min(end, this.length));
    return this.fs.readRange(this.file, this.dataOffset + start, end - start);
  }
}
