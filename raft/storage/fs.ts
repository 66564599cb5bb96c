/**
 * The file-system calls the WAL and the snapshot store make, as an interface, so the whole
 * storage stack can run over a simulated disk (unsynced writes lost or torn on a power cut,
 * fsync errors) in the deterministic simulator, and over node:fs everywhere else.
 */
import { closeSync, fdatasyncSync, openSync, readSync, writeSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';

export interface FileHandleLike {
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  /**
   * Optional: the same write, done before returning. A small write only copies into the page
   * cache (microseconds); sent to the thread pool it cost a round trip of its own before the
   * fdatasync's, on the leader and again on every follower: most of a write's time at one client.
   */
  writeSync?(buffer: Uint8Array, offset: number, length: number, position: number): number;
  writeFile(data: Uint8Array): Promise<void>;
  /**
   * Optional: read at a position through this handle. The command log needs it: a range reader
   * holds its segments open, so a truncation that deletes them cannot cut the read short.
   */
  read?(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  /** Make the file's data durable. */
  datasync(): Promise<void>;
  /**
   * Optional: the same fdatasync on the calling thread. For a caller with nothing else to do
   * while it waits (a follower's save): no thread-pool hand-off and completion wake-up.
   */
  datasyncSync?(): void;
  /** Make the file's data and metadata durable (on a directory: its entries). */
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
}

export interface FileSystem {
  open(path: string, flags: 'r' | 'r+' | 'w' | 'wx'): Promise<FileHandleLike>;
  mkdir(path: string, opts: { recursive: true }): Promise<unknown>;
  readdir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Buffer>;
  rm(path: string, opts?: { force?: boolean; recursive?: boolean }): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /**
   * `length` bytes of a file from `position`, synchronously: the core reads a chunk of a
   * snapshot file (written and fsynced before) while it builds a message to a follower.
   */
  readRange(path: string, position: number, length: number): Buffer;
  /**
   * Optional: milliseconds on a monotonic clock, for timing file operations (the WAL's syncs;
   * default performance.now). The simulator's disk gives simulated time, so runs replay.
   */
  now?(): number;
}

/** Write all of `buf` at `position` (a write may take less); returns the position after it. */
export async function writeAll(fh: FileHandleLike, buf: Uint8Array, position: number): Promise<number> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
    if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    off += bytesWritten;
  }
  return position + buf.length;
}

/** Make a directory's entries durable (files created, renamed or deleted in it). */
export async function syncDirectory(fs: FileSystem, dir: string): Promise<void> {
  const d = await fs.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

export const nodeFs: FileSystem = {
  open: async (path, flags) => {
    const fh = await open(path, flags);
    return Object.assign(fh, {
      writeSync: (buffer: Uint8Array, offset: number, length: number, position: number) => writeSync(fh.fd, buffer, offset, length, position),
      datasyncSync: () => fdatasyncSync(fh.fd),
    });
  },
  mkdir: (path, opts) => mkdir(path, opts),
  readdir: (path) => readdir(path),
  readFile: (path) => readFile(path),
  rm: (path, opts) => rm(path, opts),
  rename: (from, to) => rename(from, to),
  readRange: (path, position, length) => {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.allocUnsafe(length);
      for (let done = 0; done < length; ) {
        const n = readSync(fd, buf, done, length - done, position + done);
        if (n === 0) throw Object.assign(new Error(`${path} ends before byte ${position + length}`), { code: 'EIO' });
        done += n;
      }
      return buf;
    } finally {
      closeSync(fd);
    }
  },
};
