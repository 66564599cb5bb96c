/**
 * The state-transfer port (the seed's --recov): a client connects, sends one request line, and
 * gets one answer line followed by the data, then the connection closes.
 *
 *   INFO                                 -> OK <json: the logs served>
 *   BASE <cluster>                       -> OK <index> <term> <bytes> \n <snapshot file bytes>
 *                                           (the state the log starts from; index 0 = none)
 *   RECOVER <cluster> <from> <to|last> [<wait ms>]
 *                                        -> OK <from> <to> <count> \n <records>
 *   anything else, or a range not held   -> ERR <reason>   (nothing changes)
 *
 * <cluster> is a cluster id, a member name, or '-' when exactly one log is served. Records use
 * the command log's own encoding (u32 length | u32 CRC-32C | u48 index | u48 term | u8 type |
 * bytes), so a range goes from file to socket without being decoded.
 */
import net from 'node:net';
import { decodeSnapshot } from '../raft/storage/snapshots.js';
import { Entry, Snapshot } from '../raft/types.js';
import { HostPort, dialHost, listenHost, parseHostPort } from '../replica/addr.js';
import { CommandLog, RecordSplitter } from './command-log.js';
import { FIELDS, F_INDEX, PreparedKvBatch } from '../replica/prepared.js';

export interface RecoverySource {
  /** Member name in its cluster (the logger's --id entry, or the replica's id). */
  name: string;
  clusterId: string;
  log: CommandLog;
  commitIndex?: () => number;
}

const MAX_LINE = 1024;
/** Longest a RECOVER may wait for its last entry to arrive. */
const MAX_WAIT_MS = 300_000;

export function findSource(sources: RecoverySource[], key: string): RecoverySource {
  if (key === '-' || key === '') {
    if (sources.length === 1) return sources[0];
    throw new Error(`this server keeps ${sources.length} logs (${sources.map((s) => s.name).join(', ')}): name one`);
  }
  const s = sources.find((x) => x.clusterId === key || x.name === key);
  if (!s) throw new Error(`no log for cluster '${key.slice(0, 80)}' here; served: ${sources.map((x) => `${x.name} (${x.clusterId || 'cluster id not known yet'})`).join(', ') || 'none'}`);
  return s;
}

export function describeSources(sources: RecoverySource[]) {
  return sources.map((s) => {
    const i = s.log.info();
    return { name: s.name, clusterId: s.clusterId, first: i.first, last: i.last, commitIndex: s.commitIndex?.() ?? i.last, base: i.base ?? null, bytes: i.bytes };
  });
}

/** Parse `from`/`to` of a request: positive integers ('last' for to). */
export function parseRange(from: string | undefined, to: string | undefined, last: number): { from: number; to: number } {
  const num = (v: string, what: string) => {
    if (!/^\d{1,15}$/.test(v)) throw new Error(`${what} must be a positive integer, not '${v.slice(0, 40)}'`);
    return Number(v);
  };
  const f = from === undefined || from === '' ? 1 : num(from, 'from');
  const t = to === undefined || to === '' || to === 'last' ? last : num(to, 'to');
  if (f < 1) throw new Error('from must be at least 1');
  if (t < f) throw new Error(`the range ${f}..${t} is reversed (from must not exceed to)`);
  return { from: f, to: t };
}

export class RecovServer {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly sources: () => RecoverySource[]) {}

  async start(listen: HostPort): Promise<number> {
    const server = net.createServer((s) => this.accept(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listenHost(listen), () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private accept(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl < 0 && buf.length <= MAX_LINE) return;
      sock.off('data', onData);
      sock.pause();
      const line = nl < 0 ? '' : buf.slice(0, nl).replace(/\r$/, '');
      if (nl < 0) return void sock.end(`ERR request line longer than ${MAX_LINE} bytes\n`);
      this.handle(sock, line).catch((e: unknown) => {
        if (!sock.destroyed) sock.end(`ERR ${oneLine((e as Error).message)}\n`);
      });
    };
    sock.on('data', onData);
    sock.setTimeout(30_000, () => sock.destroy());
  }

  private async handle(sock: net.Socket, line: string): Promise<void> {
    const [verb, ...args] = line.trim().split(/\s+/);
    switch ((verb ?? '').toUpperCase()) {
      case 'INFO':
        return void sock.end(`OK ${JSON.stringify(describeSources(this.sources()))}\n`);
      case 'BASE': {
        const src = findSource(this.sources(), args[0] ?? '-');
        const base = await src.log.openBase();
        if (!base) return void sock.end('OK 0 0 0\n');
        return streamAnswer(sock, `OK ${base.index} ${base.term} ${base.bytes}`, base.chunks, () => base.close());
      }
      case 'RECOVER': {
        if (args.length < 3 || args.length > 4) throw new Error('usage: RECOVER <cluster> <from> <to|last> [<wait ms>]');
        const src = findSource(this.sources(), args[0]);
        const waitMs = args[3] === undefined ? 0 : Math.min(MAX_WAIT_MS, Number(parseRange('1', args[3], 0).to));
        let range = parseRange(args[1], args[2], src.log.info().last);
        if (waitMs > 0 && args[2] !== 'last') await src.log.waitFor(range.to, waitMs);
        range = parseRange(args[1], args[2], src.log.info().last);
        // Opened before the answer: a range truncated meanwhile is an ERR, not a stream cut off.
        const reader = await src.log.openRange(range.from, range.to);
        return streamAnswer(sock, `OK ${range.from} ${range.to} ${range.to - range.from + 1}`, reader.chunks(), () => reader.close());
      }
      default:
        throw new Error(`unknown request '${oneLine(line).slice(0, 60)}': send INFO, BASE <cluster> or RECOVER <cluster> <from> <to|last> [<wait ms>]`);
    }
  }
}

/**
 * Send the `OK ...` line, then `chunks` as the socket drains, then end; `close` the source
 * however it ends. A failure once bytes are on the wire cuts the connection: an ERR line then
 * would read as data, and the client sees a stream that ended early.
 */
async function streamAnswer(sock: net.Socket, okLine: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, close: () => Promise<void>): Promise<void> {
  try {
    sock.setTimeout(0);
    sock.write(`${okLine}\n`);
    for await (const chunk of chunks) {
      if (sock.destroyed) return;
      if (!sock.write(chunk)) await drainOrClose(sock);
    }
    sock.end();
  } catch (e) {
    sock.destroy();
    throw e;
  } finally {
    await close();
  }
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

// -----------------------------------------------------------------------------------------
// Client side

/** One request on a fresh connection: the answer line and a reader for what follows. */
function request(addr: string, line: string, timeoutMs: number, onBody: (first: Buffer | undefined, sock: net.Socket, header: string) => Promise<void>): Promise<void> {
  const hp = parseHostPort(addr, '--recov');
  return new Promise<void>((resolve, reject) => {
    const sock = net.connect(hp.port, dialHost(hp));
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error(`no answer from ${addr} within ${timeoutMs} ms`)));
    let head = Buffer.alloc(0);
    let done = false;
    const fail = (e: Error) => {
      if (done) return;
      done = true;
      sock.destroy();
      reject(e);
    };
    sock.once('error', fail);
    sock.once('connect', () => sock.write(`${line}\n`));
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) return;
      sock.off('data', onData);
      sock.off('close', onEarlyClose);
      const header = head.subarray(0, nl).toString();
      const rest = head.subarray(nl + 1);
      if (!header.startsWith('OK')) return fail(new Error(`${addr}: ${header.replace(/^ERR /, '')}`));
      onBody(rest.length > 0 ? rest : undefined, sock, header.slice(3)).then(
        () => {
          done = true;
          sock.destroy();
          resolve();
        },
        (e: unknown) => fail(e as Error),
      );
    };
    const onEarlyClose = () => fail(new Error(`${addr} closed the connection without an answer`));
    sock.on('data', onData);
    sock.once('close', onEarlyClose);
  });
}

/**
 * Feed the rest of the connection to `onChunk`; a throw (or rejection) from it ends the read
 * with that error, a promise from it pauses reading until it settles.
 */
function readAll(first: Buffer | undefined, sock: net.Socket, onChunk: (b: Buffer) => void | Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let over = false;
    const finish = (e?: Error) => {
      if (over) return;
      over = true;
      if (e) {
        sock.destroy();
        reject(e);
      } else resolve();
    };
    let paused: Promise<void> | undefined;
    const feed = (b: Buffer) => {
      try {
        const p = onChunk(b);
        if (p) {
          sock.pause();
          paused = p.then(
            () => {
              paused = undefined;
              sock.resume();
            },
            (e: unknown) => finish(e as Error),
          );
        }
      } catch (e) {
        finish(e as Error);
      }
    };
    if (first) feed(first);
    sock.on('data', feed);
    // The end may come while a pause is pending: it counts once what was fed is taken.
    sock.once('end', () => (paused ? paused.then(() => finish()) : finish()));
    sock.once('error', (e) => finish(e));
    sock.once('close', () => (paused ? paused.then(() => finish()) : finish()));
  });
}

export async function recovInfo(addr: string, timeoutMs = 10_000): Promise<ReturnType<typeof describeSources>> {
  let out: ReturnType<typeof describeSources> = [];
  await request(addr, 'INFO', timeoutMs, async (_f, _s, header) => {
    out = JSON.parse(header) as typeof out;
  });
  return out;
}

export async function recovBase(addr: string, cluster: string, timeoutMs = 60_000): Promise<Snapshot | undefined> {
  let snap: Snapshot | undefined;
  await request(addr, `BASE ${cluster}`, timeoutMs, async (first, sock, header) => {
    const [index, , bytes] = header.split(' ').map(Number);
    if (index === 0) return;
    const parts: Buffer[] = [];
    let n = 0;
    await readAll(first, sock, (b) => {
      parts.push(b);
      n += b.length;
    });
    if (n !== bytes) throw new Error(`base snapshot cut short: ${n} of ${bytes} bytes`);
    snap = decodeSnapshot(Buffer.concat(parts));
  });
  return snap;
}

/**
 * Stream entries from..to from a recov port, handing each decoded batch to `onEntries` as it
 * arrives; checks that exactly the asked range came, in order, with nothing missing.
 */
export async function recovRange(
  addr: string,
  cluster: string,
  from: number,
  to: number | 'last',
  onEntries: (batch: Entry[]) => void,
  o: { waitMs?: number; timeoutMs?: number } = {},
): Promise<{ from: number; to: number; count: number; bytes: number }> {
  const check = new RangeCheck(from);
  const r = await recovRawRange(addr, cluster, from, to, (b) => check.push(b, onEntries), o);
  check.end(r.to, `got ${check.next - r.from} of ${r.count} entries`);
  return r;
}

/**
 * The same stream as raw bytes: `onChunk` gets what arrives, as it arrives (not yet split into
 * records or checked); when it returns a promise, reading pauses until it settles.
 */
export async function recovRawRange(
  addr: string,
  cluster: string,
  from: number,
  to: number | 'last',
  onChunk: (b: Buffer) => void | Promise<void>,
  o: { waitMs?: number; timeoutMs?: number } = {},
): Promise<{ from: number; to: number; count: number; bytes: number }> {
  let result = { from, to: 0, count: 0, bytes: 0 };
  const line = `RECOVER ${cluster} ${from} ${to}${o.waitMs ? ` ${o.waitMs}` : ''}`;
  await request(addr, line, o.timeoutMs ?? 60_000, async (first, sock, header) => {
    const [f, t, count] = header.split(' ').map(Number);
    let bytes = 0;
    await readAll(first, sock, (b) => {
      bytes += b.length;
      return onChunk(b);
    });
    result = { from: f, to: t, count, bytes };
  });
  return result;
}

/** Splits a stream of records and checks it holds from, from+1, ... in order. */
export class RangeCheck {
  private readonly splitter = new RecordSplitter();
  next: number;
  constructor(from: number) {
    this.next = from;
  }
  push(chunk: Buffer, onEntries: (batch: Entry[]) => void): void {
    const batch = this.splitter.push(chunk);
    this.follow(batch);
    if (batch.length > 0) onEntries(batch);
  }
  /** Feed bytes; returns the whole records completed so far, checked, for a caller that decodes them itself. */
  records(chunk: Buffer): Buffer[] {
    return this.splitter.pushRaw(chunk);
  }
  /** A prepared batch of entries checked elsewhere: only their order is checked here. */
  followPrepared(b: PreparedKvBatch): void {
    for (let i = 0; i < b.count; i++) {
      const index = b.fields[i * FIELDS + F_INDEX];
      if (index !== this.next) throw new Error(`stream out of order: got ${index}, expected ${this.next}`);
      this.next++;
    }
  }
  /** Entries already split and checked elsewhere: only their order is checked here. */
  follow(batch: Entry[]): void {
    for (const e of batch) {
      if (e.index !== this.next) throw new Error(`stream out of order: got ${e.index}, expected ${this.next}`);
      this.next++;
    }
  }
  end(to: number, what: string): void {
    if (this.splitter.pending() > 0 || this.next !== to + 1) throw new Error(`stream ended early: ${what}`);
  }
}

/** Resolves when `sock` can take more or is gone; leaves no listener behind either way. */
function drainOrClose(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sock.off('drain', done);
      sock.off('close', done);
      resolve();
    };
    sock.on('drain', done);
    sock.on('close', done);
  });
}
