/**
 * Byte-stream framing. Peer connections carry `u32 length | u8 kind | payload` frames. The
 * client port carries two protocols on one socket that can never be confused: a binary frame
 * starts with a 0x00 byte (`0x00 | u32 length | protobuf`), and a text command is a line of
 * printable text ending in '\n' (which never starts with 0x00).
 */
export class FrameError extends Error {}

export class PeerFrameDecoder {
  /** A frame that straddles reads, assembled in a buffer of its own size as its bytes come. */
  private partial: Buffer | undefined;
  private filled = 0;
  /** Fewer than 5 bytes left over: not yet a whole frame header. */
  private stub: Buffer | undefined;
  constructor(private readonly maxFrame: number) {}

  /**
   * The frames completed by `chunk`. Frames inside one read are views of it; a frame split
   * across reads is copied once into a buffer of its size (not the read it came with appended
   * to what was left, a fresh 64 KB allocation per read that V8 answers with garbage collections).
   */
  push(chunk: Buffer): { kind: number; payload: Buffer }[] {
    const out: { kind: number; payload: Buffer }[] = [];
    let buf = chunk;
    let off = 0;
    if (this.partial) {
      const n = Math.min(this.partial.length - this.filled, buf.length);
      buf.copy(this.partial, this.filled, 0, n);
      this.filled += n;
      off = n;
      if (this.filled < this.partial.length) return out;
      const f = this.partial;
      this.partial = undefined;
      out.push({ kind: f[4], payload: f.subarray(5) });
    } else if (this.stub) {
      buf = Buffer.concat([this.stub, buf]);
      this.stub = undefined;
    }
    while (buf.length - off >= 5) {
      const len = buf.readUInt32BE(off);
      if (len < 1 || len > this.maxFrame) throw new FrameError(`frame of ${len} bytes (limit ${this.maxFrame})`);
      const have = buf.length - off;
      if (have < 4 + len) {
        this.partial = Buffer.allocUnsafe(4 + len);
        buf.copy(this.partial, 0, off);
        this.filled = have;
        return out;
      }
      out.push({ kind: buf[off + 4], payload: buf.subarray(off + 5, off + 4 + len) });
      off += 4 + len;
    }
    if (off < buf.length) this.stub = Buffer.from(buf.subarray(off));
    return out;
  }
}

/** The 5 bytes in front of a peer frame's payload (written separately: no copy of the payload). */
export function peerFrameHeader(kind: number, payloadLength: number): Buffer {
  const b = Buffer.allocUnsafe(5);
  b.writeUInt32BE(payloadLength + 1, 0);
  b[4] = kind;
  return b;
}

export function peerFrame(kind: number, payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + payload.length);
  b.writeUInt32BE(payload.length + 1, 0);
  b[4] = kind;
  b.set(payload, 5);
  return b;
}

export type ClientFrame = { kind: 'text'; line: string } | { kind: 'binary'; payload: Buffer };

export class ClientFrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  constructor(
    private readonly maxFrame: number,
    private readonly maxLine: number,
  ) {}

  push(chunk: Buffer): ClientFrame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: ClientFrame[] = [];
    let off = 0;
    while (off < this.buf.length) {
      if (this.buf[off] === 0) {
        if (this.buf.length - off < 5) break;
        const len = this.buf.readUInt32BE(off + 1);
        if (len > this.maxFrame) throw new FrameError(`request frame of ${len} bytes is over the ${this.maxFrame}-byte limit`);
        if (this.buf.length - off - 5 < len) break;
        out.push({ kind: 'binary', payload: this.buf.subarray(off + 5, off + 5 + len) });
        off += 5 + len;
      } else {
        const nl = this.buf.indexOf(10, off);
        if (nl < 0) {
          if (this.buf.length - off > this.maxLine) throw new FrameError(`request line longer than ${this.maxLine} bytes`);
          break;
        }
        if (nl - off > this.maxLine) throw new FrameError(`request line longer than ${this.maxLine} bytes`);
        let line = this.buf.toString('utf8', off, nl);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        out.push({ kind: 'text', line });
        off = nl + 1;
      }
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
    return out;
  }
}

export function clientFrame(payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + payload.length);
  b[0] = 0;
  b.writeUInt32BE(payload.length, 1);
  b.set(payload, 5);
  return b;
}
