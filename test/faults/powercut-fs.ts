/**
 * A file system for replica processes under fault injection that turns kill -9 into a power
 * cut: writes stay in the process's memory until the file is fsynced, so a killed process
 * loses them, as a machine that loses power loses its page cache. Sometimes part of a pending
 * write reaches the disk early and out of order (a later sector before an earlier one), so a
 * kill can leave a torn write with a hole in it, the case the WAL must treat as torn.
 * Test infrastructure: never used by the product.
 */
import { FileHandleLike, FileSystem, nodeFs } from '../../raft/index.js';

const SECTOR = 4096;

interface Pending {
  position: number;
  data: Buffer;
}

export class PowerCutFs implements FileSystem {
  constructor(
    private readonly inner: FileSystem = nodeFs,
    /** Chance that a write sends some of its sectors to the disk before the fsync. */
    private readonly earlySectors = 0.3,
    private readonly random: () => number = Math.random,
  ) {}

  async open(path: string, flags: 'r' | 'r+' | 'w' | 'wx'): Promise<FileHandleLike> {
    const real = await this.inner.open(path, flags);
    return this.wrap(real);
  }
  mkdir(path: string, opts: { recursive: true }): Promise<unknown> {
    return this.inner.mkdir(path, opts);
  }
  readdir(path: string): Promise<string[]> {
    return this.inner.readdir(path);
  }
  readFile(path: string): Promise<Buffer> {
    return this.inner.readFile(path);
  }
  rm(path: string, opts?: { force?: boolean; recursive?: boolean }): Promise<void> {
    return this.inner.rm(path, opts);
  }
  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }
  readRange(path: string, position: number, length: number): Buffer {
    return this.inner.readRange(path, position, length);
  }

  private wrap(real: FileHandleLike): FileHandleLike {
    let pending: Pending[] = [];
    let size: number | undefined;
    const fs = this;
    const flush = async () => {
      const writes = pending;
      pending = [];
      for (const w of writes) await real.write(w.data, 0, w.data.length, w.position);
    };
    return {
      async write(buffer, offset, length, position) {
        const data = Buffer.from(buffer.subarray(offset, offset + length));
        if (size === undefined) size = (await real.stat()).size;
        size = Math.max(size, position + length);
        pending.push({ position, data });
        if (length > SECTOR && fs.random() < fs.earlySectors) {
          // One sector of this write, not the first, reaches the disk now: a kill before the
          // fsync leaves a hole before it.
          const sectors = Math.ceil(length / SECTOR);
          const s = 1 + Math.floor(fs.random() * (sectors - 1));
          const part = data.subarray(s * SECTOR, Math.min(length, (s + 1) * SECTOR));
          await real.write(part, 0, part.length, position + s * SECTOR);
        }
        return { bytesWritten: length };
      },
      async writeFile(data) {
        pending = [{ position: 0, data: Buffer.from(data) }];
        size = data.length;
        await real.truncate(0);
      },
      async datasync() {
        await flush();
        await real.datasync();
      },
      // The same on the calling thread, as node:fs offers it (a follower's WAL uses it).
      ...(real.writeSync && real.datasyncSync
        ? {
            datasyncSync() {
              const writes = pending;
              pending = [];
              for (const w of writes) real.writeSync!(w.data, 0, w.data.length, w.position);
              real.datasyncSync!();
            },
          }
        : {}),
      async sync() {
        await flush();
        await real.sync();
      },
      async truncate(length) {
        await flush();
        size = length;
        await real.truncate(length);
      },
      async stat() {
        if (size === undefined) size = (await real.stat()).size;
        return { size };
      },
      async close() {
        // Closing does not make anything durable: what was not synced stays in "memory".
        pending = [];
        await real.close();
      },
    };
  }
}
