import { createRequire } from 'node:module';

/**
 * CRC-32C (Castagnoli), the checksum of iSCSI, ext4 metadata and etcd's WAL. Slicing-by-8
 * tables: eight bytes per step, fast enough that checksumming is not what limits the WAL.
 */
const POLY = 0x82f63b78;
const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n];
  for (let t = 1; t < 8; t++) {
    c = T[c & 0xff] ^ (c >>> 8);
    T[t * 256 + n] = c;
  }
}

/** Portable CRC-32C of buf[start, end), continuing from `crc` (0 for a fresh checksum). */
export function crc32cPortable(buf: Uint8Array, crc = 0, start = 0, end = buf.length): number {
  let c = ~crc;
  let i = start;
  const n8 = end - ((end - start) & 7);
  while (i < n8) {
    const lo = (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24)) ^ c;
    const hi = buf[i + 4] | (buf[i + 5] << 8) | (buf[i + 6] << 16) | (buf[i + 7] << 24);
    c =
      T[1792 + (lo & 0xff)] ^
      T[1536 + ((lo >>> 8) & 0xff)] ^
      T[1280 + ((lo >>> 16) & 0xff)] ^
      T[1024 + (lo >>> 24)] ^
      T[768 + (hi & 0xff)] ^
      T[512 + ((hi >>> 8) & 0xff)] ^
      T[256 + ((hi >>> 16) & 0xff)] ^
      T[hi >>> 24];
    i += 8;
  }
  while (i < end) c = T[(c ^ buf[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

type NativeCrc = (input: Uint8Array, initial?: number) => number;

function loadNative(): NativeCrc | undefined {
  if (process.env.RAFTKV_PORTABLE_CRC === '1') return undefined;
  try {
    const mod = createRequire(import.meta.url)('@node-rs/crc32') as { crc32c: NativeCrc };
    return mod.crc32c(Buffer.from('123456789')) === 0xe3069283 ? mod.crc32c : undefined;
  } catch {
    return undefined;
  }
}

const native = loadNative();

/** Which implementation is in use (reported by benchmarks). */
export const crc32cImplementation = native ? 'native (SIMD, @node-rs/crc32)' : 'portable (slicing-by-8)';

/** CRC-32C of `buf`, continuing from `crc`: the native SIMD version when it loads (7x faster). */
export const crc32c: (buf: Uint8Array, crc?: number) => number = native
  ? (buf, crc = 0) => native(buf, crc)
  : (buf, crc = 0) => crc32cPortable(buf, crc);
