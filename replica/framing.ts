/**
 * Byte-stream framing. Peer connections carry `u32 length | u8 kind | payload` frames. The
 * client port carries two protocols on one socket that can never be confused: a binary frame
 * starts with a 0x00 byte (`0x00 | u32 length | protobuf`), and a text command is a line of
 * printable text ending in '\n' (which never starts with 0x00).
 */
export class FrameError extends Error {}

export class PeerFrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly maxFrame: number) {}

  push(chunk: Buffer): { kind: number; payload: Buffer }[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: { kind: number; payload: Buffer }[] = [];
    let off = 0;
    while (this.buf.length - off >= 5) {
      const len = this.buf.readUInt32BE(off);
      if (len < 1 || len > this.maxFrame) throw new FrameError(`frame of ${len} bytes (limit ${this.maxFrame})`);
      if (this.buf.length - off - 4 < len) break;
      out.push({ kind: this.buf[off + 4], payload: this.buf.subarray(off + 5, off + 4 + len) });
      off += 4 + len;
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
    return out;
  }
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
