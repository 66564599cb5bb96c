/**
 * A simulated disk for the whole-replica simulator, with what a power cut does to a real one:
 * data written since the file's last fsync is lost or torn, per 4 KiB sector and in any order;
 * directory changes (create, rename, delete) since the directory's last fsync may be undone;
 * an fsync can fail (EIO), after which the real storage stops for good. fsync takes simulated
 * time, so group commit happens as it does on a disk.
 */
import { dirname } from 'node:path';
import type { FileHandleLike, FileSystem } from '../../../raft/index.js';
import { Prng } from '../../../util/prng.js';

const SECTOR = 4096;

interface Inode {
  data: Buffer;
  /** What a power cut leaves for sure: the content as of the last fsync. */
  synced: Buffer;
}

function ioError(code: string, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${what}`), { code });
}

export class SimFs implements FileSystem {
  /** Current directory entries: path -> inode. */
  private entries = new Map<string, Inode>();
  /** Entries as of each directory's last fsync, for the power cut (path -> inode). */
  private durable = new Map<string, Inode>();
  private dirs = new Set<string>(['/']);
  /** Probability that an fsync fails with EIO. */
  syncFailureRate = 0;
  syncFailures = 0;
  /** Bumped when the process using the disk goes away: its open files stop working. */
  private generation = 0;

  constructor(
    private readonly rng: Prng,
    /** Resolve after `ms` of simulated time (the fsync latency). */
    private readonly delay: (ms: number) => Promise<void>,
    /**
     * Offer an fdatasync on the calling thread (FileHandleLike.datasyncSync), as node:fs does:
     * it takes no simulated time and nothing else runs during it. Without it, a caller that
     * asks for one (a follower's WAL) syncs in the background, as over the fault suite's disk.
     */
    private readonly syncOnCaller = false,
    /** Simulated milliseconds (FileSystem.now): the WAL times its syncs by it. */
    readonly now?: () => number,
  ) {}

  async open(path: string, flags: 'r' | 'r+' | 'w' | 'wx'): Promise<FileHandleLike> {
    if (this.dirs.has(path)) return this.dirHandle(path);
    if (!this.dirs.has(dirname(path))) throw ioError('ENOENT', `no such directory, open '${path}'`);
    let inode = this.entries.get(path);
    if (flags === 'wx' && inode) throw ioError('EEXIST', `file already exists, open '${path}'`);
    if ((flags === 'r' || flags === 'r+') && !inode) throw ioError('ENOENT', `no such file, open '${path}'`);
    if (!inode) {
      inode = { data: Buffer.alloc(0), synced: Buffer.alloc(0) };
      this.entries.set(path, inode);
    } else if (flags === 'w') {
      inode.data = Buffer.alloc(0);
    }
    return this.fileHandle(inode);
  }

  async mkdir(path: string): Promise<unknown> {
    let p = path;
    while (p !== '/' && !this.dirs.has(p)) {
      this.dirs.add(p);
      p = dirname(p);
    }
    return undefined;
  }

  async readdir(path: string): Promise<string[]> {
    if (!this.dirs.has(path)) throw ioError('ENOENT', `no such directory, scandir '${path}'`);
    const names: string[] = [];
    for (const p of this.entries.keys()) if (dirname(p) === path) names.push(p.slice(path.length + 1));
    for (const d of this.dirs) if (d !== path && dirname(d) === path) names.push(d.slice(path.length + 1));
    return names.sort();
  }

  async readFile(path: string): Promise<Buffer> {
    const inode = this.entries.get(path);
    if (!inode) throw ioError('ENOENT', `no such file, open '${path}'`);
    return Buffer.from(inode.data);
  }

  readRange(path: string, position: number, length: number): Buffer {
    const inode = this.entries.get(path);
    if (!inode) throw ioError('ENOENT', `no such file, open '${path}'`);
    if (position + length > inode.data.length) throw ioError('EIO', `${path} ends before byte ${position + length}`);
    return Buffer.from(inode.data.subarray(position, position + length));
  }

  async rm(path: string, opts: { force?: boolean; recursive?: boolean } = {}): Promise<void> {
    if (opts.recursive && this.dirs.has(path)) {
      // A directory and everything under it (entries first: they are what a crash may undo).
      for (const p of [...this.entries.keys()]) if (p.startsWith(`${path}/`)) this.entries.delete(p);
      for (const d of [...this.dirs]) if (d === path || d.startsWith(`${path}/`)) this.dirs.delete(d);
      return;
    }
    if (!this.entries.delete(path) && !opts.force) throw ioError('ENOENT', `no such file, rm '${path}'`);
  }

  async rename(from: string, to: string): Promise<void> {
    const inode = this.entries.get(from);
    if (!inode) throw ioError('ENOENT', `no such file, rename '${from}'`);
    this.entries.delete(from);
    this.entries.set(to, inode);
  }

  /** A new process starts: files the previous one had open are dead to it. */
  reopen(): void {
    this.generation++;
  }

  /** Everything on this disk is gone (a replaced machine). */
  wipe(): void {
    this.generation++;
    this.entries.clear();
    this.durable.clear();
    this.dirs = new Set(['/']);
  }

  /**
   * Power cut: directory changes since the last directory fsync may be undone, and each file
   * keeps what it had synced plus, per sector written since, the new content, zeros, or
   * nothing past a point (the write was cut short). Returns how many files lost something.
   */
  crash(): number {
    this.generation++;
    let damaged = 0;
    // A directory entry survives if it was synced, or with luck (the metadata made it anyway).
    const after = new Map<string, Inode>();
    for (const [p, inode] of this.durable) after.set(p, inode);
    for (const [p, inode] of this.entries) {
      if (this.durable.get(p) !== inode && this.rng.chance(0.5)) after.set(p, inode);
    }
    for (const p of this.durable.keys()) {
      if (!this.entries.has(p) && this.rng.chance(0.5)) after.delete(p); // an unsynced delete that made it
    }
    for (const inode of new Set(after.values())) {
      if (inode.data.equals(inode.synced)) continue;
      damaged++;
      inode.data = this.tear(inode.synced, inode.data);
      inode.synced = Buffer.from(inode.data);
    }
    this.entries = after;
    this.durable = new Map(after);
    return damaged;
  }

  private tear(synced: Buffer, current: Buffer): Buffer {
    // How far the new content reaches on disk: all of it, or cut at a sector boundary.
    let length = current.length;
    if (current.length > synced.length && this.rng.chance(0.5)) {
      const first = Math.floor(synced.length / SECTOR);
      const last = Math.ceil(current.length / SECTOR);
      length = Math.min(current.length, Math.max(synced.length, this.rng.int(first, last) * SECTOR));
    }
    if (current.length < synced.length && this.rng.chance(0.5)) length = synced.length; // the truncate did not stick
    const out = Buffer.alloc(length);
    for (let s = 0; s * SECTOR < length; s++) {
      const from = s * SECTOR;
      const to = Math.min(length, from + SECTOR);
      const roll = this.rng.float();
      // Each sector independently, and atomically (as disks write sectors): one that held
      // synced data has its old content or its new; one past the synced end, the new
      // content or zeros (allocated, never written).
      const src = from < synced.length ? (roll < 0.6 ? current : synced) : roll < 0.6 ? current : undefined;
      if (src) src.copy(out, from, Math.min(from, src.length), Math.min(to, src.length));
    }
    return out;
  }

  private fileHandle(inode: Inode): FileHandleLike {
    const fs = this;
    let closed = false;
    const generation = this.generation;
    const check = () => {
      if (closed || generation !== fs.generation) throw ioError('EBADF', 'file handle closed');
    };
    // On the calling thread (datasyncSync): no simulated time passes.
    const syncNow = () => {
      check();
      if (fs.rng.chance(fs.syncFailureRate)) {
        fs.syncFailures++;
        // The kernel may have dropped the dirty pages: what was written is not durable.
        throw ioError('EIO', 'i/o error, fsync');
      }
      inode.synced = Buffer.from(inode.data);
    };
    const sync = async () => {
      check();
      await fs.delay(fs.rng.int(0, 3));
      syncNow();
    };
    // Both ways of writing, as the real file system offers them (the WAL writes small batches
    // synchronously): what a power cut does to an unsynced write is the same.
    const writeSync = (buffer: Uint8Array, offset: number, length: number, position: number) => {
      check();
      const end = position + length;
      if (end > inode.data.length) {
        const grown = Buffer.alloc(end);
        inode.data.copy(grown);
        inode.data = grown;
      }
      Buffer.from(buffer.buffer, buffer.byteOffset + offset, length).copy(inode.data, position);
      return length;
    };
    return {
      writeSync,
      async write(buffer, offset, length, position) {
        return { bytesWritten: writeSync(buffer, offset, length, position) };
      },
      async writeFile(data) {
        check();
        inode.data = Buffer.from(data);
      },
      // An open file stays readable after it is deleted (the handle holds the inode).
      async read(buffer, offset, length, position) {
        check();
        const n = Math.max(0, Math.min(length, inode.data.length - position));
        inode.data.copy(buffer, offset, position, position + n);
        return { bytesRead: n };
      },
      datasync: sync,
      ...(this.syncOnCaller ? { datasyncSync: syncNow } : {}),
      sync,
      async truncate(length) {
        check();
        const next = Buffer.alloc(length);
        inode.data.copy(next, 0, 0, Math.min(length, inode.data.length));
        inode.data = next;
      },
      async stat() {
        check();
        return { size: inode.data.length };
      },
      async close() {
        closed = true;
      },
    };
  }

  private dirHandle(dir: string): FileHandleLike {
    const fs = this;
    const sync = async () => {
      await fs.delay(fs.rng.int(0, 2));
      // The directory's entries become durable: creations, renames and deletions in it.
      for (const [p, inode] of fs.entries) if (dirname(p) === dir) fs.durable.set(p, inode);
      for (const p of [...fs.durable.keys()]) if (dirname(p) === dir && !fs.entries.has(p)) fs.durable.delete(p);
    };
    const bad = async (): Promise<never> => {
      throw ioError('EISDIR', `is a directory '${dir}'`);
    };
    return { write: bad, writeFile: bad, datasync: sync, sync, truncate: bad, stat: async () => ({ size: 0 }), close: async () => undefined };
  }
}
