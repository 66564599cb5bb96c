/**
 * The TypeScript client. Talks the binary client protocol to any replica: the replica forwards
 * writes to the leader and serves linearizable reads itself, so the client never needs to know
 * who leads. Writes carry a session (client id, sequence number, acknowledged-through) so a
 * retry after a timeout or a dropped connection is applied at most once.
 */
import net from 'node:net';
import tls from 'node:tls';
import { dialHost, parseHostPort, targetIndex } from './addr.js';
import { coalescedWrite } from './coalesce.js';
import { commandFrame } from './client-frames.js';
import { ClientFrameDecoder } from './framing.js';
import { Command, Op, Response, Status, decodeResponse } from './proto.js';

export class RaftKvError extends Error {
  constructor(
    message: string,
    readonly status: Status | 'timeout' | 'connection',
  ) {
    super(message);
    this.name = 'RaftKvError';
  }
}

/** One connection with many requests in flight, matched to answers by id. */
export class Connection {
  private socket: net.Socket;
  private nextId = 1;
  private waiting = new Map<number, { resolve: (r: Response) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private ready: Promise<void>;
  private readonly flushAt: (flush: () => void) => void;
  closed = false;

  /**
   * `batched`: requests made in one pass of the event loop leave in one write, for a connection
   * that many callers share (a follower's connection to the leader); otherwise those made in
   * one callback do.
   */
  constructor(
    readonly address: string,
    private readonly timeoutMs: number,
    tlsOptions?: { ca: string | Buffer },
    opts: { batched?: boolean } = {},
  ) {
    this.flushAt = opts.batched ? setImmediate : process.nextTick;
    const hp = parseHostPort(address, 'replica address');
    this.socket = tlsOptions ? tls.connect({ host: dialHost(hp), port: hp.port, ca: tlsOptions.ca }) : net.connect({ host: dialHost(hp), port: hp.port });
    this.socket.setNoDelay(true);
    this.ready = new Promise((resolve, reject) => {
      this.socket.once(tlsOptions ? 'secureConnect' : 'connect', resolve);
      this.socket.once('error', reject);
    });
    this.ready.catch(() => undefined);
    const decoder = new ClientFrameDecoder(1 << 30, 1 << 20);
    this.socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (e) {
        this.fail(new RaftKvError(`bad answer from ${address}: ${(e as Error).message}`, 'connection'));
        return;
      }
      for (const f of frames) {
        if (f.kind !== 'binary') continue;
        const r = decodeResponse(f.payload);
        const w = this.waiting.get(r.id);
        if (!w) continue;
        this.waiting.delete(r.id);
        clearTimeout(w.timer);
        w.resolve(r);
      }
    });
    this.socket.on('error', (e) => this.fail(new RaftKvError(`connection to ${address}: ${e.message}`, 'connection')));
    this.socket.on('close', () => this.fail(new RaftKvError(`connection to ${address} closed`, 'connection')));
  }

  async request(cmd: Partial<Command>): Promise<Response> {
    await this.ready;
    if (this.closed) throw new RaftKvError(`connection to ${this.address} closed`, 'connection');
    const id = this.nextId++;
    return new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new RaftKvError(`no answer from ${this.address} within ${this.timeoutMs} ms`, 'timeout'));
      }, this.timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      coalescedWrite(this.socket, commandFrame(cmd, id), this.flushAt);
    });
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
    this.fail(new RaftKvError('connection closed', 'connection'));
  }

  private fail(e: Error): void {
    this.closed = true;
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(e);
    }
    this.waiting.clear();
  }
}

export interface ClientOptions {
  /** Client addresses of any replicas (host:port of their --port). */
  targets: string[];
  /** Per-attempt timeout (default 2 s). */
  timeoutMs?: number;
  /** Give up after this long across retries (default 10 s). */
  deadlineMs?: number;
  /** Connect with TLS, trusting this CA (for replicas run with --tls-*). */
  tls?: { ca: string | Buffer };
  /**
   * Fail a request at once when every target refused the connection (nothing listens: a typo or
   * a stopped cluster), instead of retrying until the deadline. Off by default, because a
   * library client usually outlives restarts; the interactive CLI turns it on.
   */
  giveUpWhenAllRefuse?: boolean;
}

export class RaftKvClient {
  /** Our session, registered through the log before the first write (dissertation §6.3). */
  private session: string | undefined;
  private registering: Promise<string> | undefined;
  private seq = 0;
  private outstanding = new Set<number>();
  private conn: Connection | undefined;
  private target = 0;
  /** Where writes go once a replica names the leader; reads stay on `target`, served there. */
  private readonly leader: LeaderRoute;
  private readonly timeoutMs: number;
  private readonly deadlineMs: number;

  constructor(private readonly opts: ClientOptions) {
    if (opts.targets.length === 0) throw new Error('RaftKvClient needs at least one target address');
    for (const t of opts.targets) parseHostPort(t, 'target');
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.deadlineMs = opts.deadlineMs ?? 10_000;
    this.target = Math.floor(Math.random() * opts.targets.length);
    this.leader = new LeaderRoute(opts.targets, (addr) => new Connection(addr, this.timeoutMs, opts.tls));
  }

  async get(key: string, opts: { stale?: boolean } = {}): Promise<Uint8Array | undefined> {
    const r = await this.send({ op: Op.GET, key, stale: opts.stale ?? false });
    return r.status === Status.NOT_FOUND ? undefined : r.value;
  }

  async getString(key: string, opts: { stale?: boolean } = {}): Promise<string | undefined> {
    const v = await this.get(key, opts);
    return v === undefined ? undefined : Buffer.from(v).toString();
  }

  async set(key: string, value: Uint8Array | string): Promise<void> {
    await this.write(Op.SET, key, typeof value === 'string' ? Buffer.from(value) : value);
  }

  async delete(key: string): Promise<void> {
    await this.write(Op.DELETE, key, new Uint8Array(0));
  }

  close(): void {
    this.conn?.close();
    this.conn = undefined;
    this.leader.forget();
  }

  /** The target writes go to now (the leader when one was named, else the current target). */
  writeTarget(): string {
    return this.leader.target ?? this.opts.targets[this.target];
  }

  /** This client's session id (registered with the cluster on first use). */
  async sessionId(): Promise<string> {
    if (this.session) return this.session;
    this.registering ??= this.send({ op: Op.REGISTER, key: '' })
      .then((r) => {
        this.session = Buffer.from(r.value).toString();
        this.seq = 0;
        return this.session;
      })
      .finally(() => {
        this.registering = undefined;
      });
    return this.registering;
  }

  private async write(op: Op, key: string, value: Uint8Array): Promise<void> {
    // Whether an attempt may have been applied: then a retry must keep the session and seq.
    const attempt = { maybeApplied: false };
    for (;;) {
      const client = await this.sessionId();
      const seq = ++this.seq;
      this.outstanding.add(seq);
      try {
        const r = await this.send({ op, key, value, client, seq }, attempt);
        if (r.status !== Status.SESSION_EXPIRED) return;
        // The session is gone (idle too long, or the cluster had too many): nothing was applied
        // by this answer, but an earlier attempt might have been, and no one can tell now.
        if (this.session === client) this.session = undefined;
        if (attempt.maybeApplied) throw new RaftKvError(`outcome unknown: the session expired while the write's outcome was unknown (${r.error})`, Status.UNKNOWN);
      } finally {
        this.outstanding.delete(seq);
      }
    }
  }

  /** Everything below the oldest request still in flight has been answered. */
  private ackedThrough(): number {
    let min = this.seq + 1;
    for (const s of this.outstanding) if (s < min) min = s;
    return min - 1;
  }

  /**
   * Send until answered. UNAVAILABLE (not applied) and UNKNOWN (maybe applied) are retried with
   * the same session and seq, which is what makes the retry safe; SESSION_EXPIRED is returned.
   */
  private async send(cmd: Partial<Command>, outcome = { maybeApplied: false }): Promise<Response> {
    const deadline = performance.now() + this.deadlineMs;
    let last: Error | undefined;
    const refused = new Set<string>();
    const write = cmd.op !== Op.GET;
    let rerouted = false;
    for (let attempt = 0; performance.now() < deadline; attempt++) {
      const home = this.opts.targets[this.target];
      const toLeader = write ? this.leader.connection() : undefined;
      const viaLeader = toLeader !== undefined;
      try {
        const conn = toLeader ?? this.connection();
        const r = await conn.request({ ...cmd, acked: cmd.client ? Math.min(this.ackedThrough(), (cmd.seq ?? 1) - 1) : 0 });
        const named = this.leader.target;
        if (write) this.leader.learn(r.leader, home);
        if (r.status === Status.OK || r.status === Status.NOT_FOUND || r.status === Status.SESSION_EXPIRED) return r;
        if (r.status === Status.ERROR) throw new RaftKvError(r.error || 'request failed', r.status);
        if (r.status === Status.UNKNOWN) outcome.maybeApplied = true;
        last = new RaftKvError(r.error || Status[r.status], r.status);
        if (viaLeader && (r.status === Status.UNAVAILABLE || r.status === Status.NOT_LEADER)) {
          // It leads no more: to the leader it named, or else back to the current target (at
          // once the first time; hints that go round in circles wait for the backoff).
          if (this.leader.target === named) this.leader.forget();
          if (rerouted) await backoff(attempt);
          rerouted = true;
          continue;
        }
        if (r.status === Status.UNAVAILABLE || r.status === Status.NOT_LEADER) {
          // This replica cannot serve it now (no leader it can reach): ask another.
          this.conn?.close();
          this.conn = undefined;
          this.target = (this.target + 1) % this.opts.targets.length;
        }
      } catch (e) {
        if (e instanceof RaftKvError && e.status === Status.ERROR) throw e;
        // A socket error before connecting means nothing was sent; a timeout or a connection
        // lost after sending may have reached the cluster.
        if (typeof (e as NodeJS.ErrnoException).code !== 'string') outcome.maybeApplied = true;
        last = e as Error;
        if (viaLeader) {
          // The leader we were told of is gone or unreachable: the current target passes the
          // write on to whichever replica leads now.
          this.leader.forget();
          if (rerouted) await backoff(attempt);
          rerouted = true;
          continue;
        }
        this.conn?.close();
        this.conn = undefined;
        this.target = (this.target + 1) % this.opts.targets.length;
        if ((e as NodeJS.ErrnoException).code === 'ECONNREFUSED') {
          // Nothing listens there: try the next target now rather than after a backoff.
          refused.add(home);
          if (refused.size < new Set(this.opts.targets).size) continue;
          if (this.opts.giveUpWhenAllRefuse) throw new RaftKvError(`no replica accepts connections (refused: ${[...refused].join(', ')})`, 'connection');
          refused.clear();
        }
      }
      await backoff(attempt);
    }
    if (outcome.maybeApplied && cmd.op !== Op.GET) {
      throw new RaftKvError(`outcome unknown: no answer within ${this.deadlineMs} ms (${last?.message ?? 'deadline exceeded'})`, Status.UNKNOWN);
    }
    throw last ?? new RaftKvError('deadline exceeded', 'timeout');
  }

  private connection(): Connection {
    if (!this.conn || this.conn.closed) this.conn = new Connection(this.opts.targets[this.target], this.timeoutMs, this.opts.tls);
    return this.conn;
  }
}

/**
 * Leader discovery: which of `targets` a replica named as the leader (a follower that passes a
 * write on names it), and a connection to it, so that writes skip the follower's hop. Only an
 * address the client was given is followed; the caller forgets it when it fails.
 */
export class LeaderRoute {
  private index: number | undefined;
  private conn: Connection | undefined;

  constructor(
    private readonly targets: readonly string[],
    private readonly open: (addr: string) => Connection,
  ) {}

  /** The named leader's address, if one is named. */
  get target(): string | undefined {
    return this.index === undefined ? undefined : this.targets[this.index];
  }

  /** A connection to the named leader; undefined when none is named. */
  connection(): Connection | undefined {
    if (this.index === undefined) return undefined;
    if (!this.conn || this.conn.closed) this.conn = this.open(this.targets[this.index]);
    return this.conn;
  }

  /**
   * Follow an answer's leader field. The leader itself names none, so a hint on the way through
   * the leader means the leadership moved; one naming `home` (the caller's own target) ends the
   * detour.
   */
  learn(hint: string, home: string): void {
    const i = targetIndex(this.targets, hint);
    if (i < 0 || i === this.index) return;
    this.forget();
    if (this.targets[i] !== home) this.index = i;
  }

  forget(): void {
    this.conn?.close();
    this.conn = undefined;
    this.index = undefined;
  }
}

/** The wait before retry number `attempt + 1`: 20 ms doubling to 1 s. */
function backoff(attempt: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.min(1000, 20 * 2 ** Math.min(attempt, 6))));
}
