/**
 * Load drivers: one instance per closed-loop client, each with its own connection, so N
 * clients are N connections like N independent users. Every driver does the same two things
 * (read a key, write a key) so raftkv and etcd are measured the same way.
 */
import http from 'node:http';
import net from 'node:net';
import { dialHost, parseHostPort } from '../replica/addr.js';
import { Connection, LeaderRoute } from '../replica/client.js';
import { Command, Op, Response, Status } from '../replica/proto.js';

export type DriverName = 'protobuf' | 'text' | 'http' | 'etcd';
/** Where the protobuf driver sends writes: to the leader a replica names (default), or always to its own target. */
export type Route = 'leader' | 'member';
export const ROUTES: Route[] = ['leader', 'member'];
export const DRIVERS: DriverName[] = ['protobuf', 'text', 'http', 'etcd'];

export interface Driver {
  /** Resolves when the operation was answered successfully; rejects on an error answer. */
  get(key: string): Promise<void>;
  set(key: string, value: Uint8Array): Promise<void>;
  close(): void | Promise<void>;
}

export class TimeoutError extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new TimeoutError(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

class ProtobufDriver implements Driver {
  private conn: Connection;
  /** With --route leader, writes go to the leader once a replica names it (as RaftKvClient's do). */
  private leader: LeaderRoute | undefined;
  private seq = 0;
  /** This generator client's session, registered through the log before its first write. */
  private session = '';
  constructor(targets: string[], target: string, timeoutMs: number, route: Route) {
    this.conn = new Connection(target, timeoutMs);
    if (route === 'leader') this.leader = new LeaderRoute(targets, (addr) => new Connection(addr, timeoutMs));
  }
  async get(key: string): Promise<void> {
    const r = await this.conn.request({ op: Op.GET, key });
    if (r.status !== Status.OK && r.status !== Status.NOT_FOUND) throw new Error(r.error || Status[r.status]);
  }
  async set(key: string, value: Uint8Array): Promise<void> {
    if (!this.session) await this.register();
    const seq = ++this.seq;
    const r = await this.write({ op: Op.SET, key, value, client: this.session, seq, acked: seq - 1 });
    if (r.status === Status.SESSION_EXPIRED) this.session = ''; // the next write registers anew
    if (r.status !== Status.OK) throw new Error(r.error || Status[r.status]);
  }
  private async register(): Promise<void> {
    const r = await this.write({ op: Op.REGISTER, key: '' });
    if (r.status !== Status.OK) throw new Error(r.error || `session registration: ${Status[r.status]}`);
    this.session = Buffer.from(r.value).toString();
    this.seq = 0;
  }
  /** A write through the leader when one was named, else through this client's target. */
  private async write(cmd: Partial<Command>): Promise<Response> {
    const toLeader = this.leader?.connection();
    let r: Response;
    try {
      r = await (toLeader ?? this.conn).request(cmd);
    } catch (e) {
      if (toLeader) this.leader!.forget();
      throw e;
    }
    if (this.leader) {
      const named = this.leader.target;
      this.leader.learn(r.leader, this.conn.address);
      if (toLeader && r.status !== Status.OK && this.leader.target === named) this.leader.forget();
    }
    return r;
  }
  close(): void {
    this.conn.close();
    this.leader?.forget();
  }
}

/** The seed's text protocol: one request line, one answer line. */
class TextDriver implements Driver {
  private socket: net.Socket;
  private buf = '';
  private waiting: { resolve: (line: string) => void; reject: (e: Error) => void } | undefined;
  private ready: Promise<void>;
  constructor(
    target: string,
    private readonly timeoutMs: number,
  ) {
    const hp = parseHostPort(target, 'target');
    this.socket = net.connect({ host: dialHost(hp), port: hp.port });
    this.socket.setNoDelay(true);
    this.ready = new Promise((res, rej) => {
      this.socket.once('connect', res);
      this.socket.once('error', rej);
    });
    this.ready.catch(() => undefined);
    this.socket.on('data', (d) => {
      this.buf += d.toString();
      const nl = this.buf.indexOf('\n');
      if (nl >= 0 && this.waiting) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiting;
        this.waiting = undefined;
        w.resolve(line);
      }
    });
    const fail = (e: Error) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.reject(e);
    };
    this.socket.on('error', fail);
    this.socket.on('close', () => fail(new Error('connection closed')));
  }
  private async request(line: string): Promise<string> {
    await this.ready;
    if (this.socket.destroyed) throw new Error('connection closed');
    const answer = new Promise<string>((resolve, reject) => (this.waiting = { resolve, reject }));
    this.socket.write(`${line}\n`);
    return withTimeout(answer, this.timeoutMs, 'text request');
  }
  async get(key: string): Promise<void> {
    const a = await this.request(`get-${key}`);
    if (a.startsWith('ERR')) throw new Error(a);
  }
  async set(key: string, value: Uint8Array): Promise<void> {
    const a = await this.request(`set-${key}-${Buffer.from(value).toString('latin1').replace(/\n/g, ' ')}`);
    if (a !== 'OK') throw new Error(a);
  }
  close(): void {
    this.socket.destroy();
  }
}

class HttpDriver implements Driver {
  private agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private host: string;
  private port: number;
  constructor(
    target: string,
    private readonly timeoutMs: number,
  ) {
    const hp = parseHostPort(target, 'target');
    this.host = dialHost(hp);
    this.port = hp.port;
  }
  private request(method: string, path: string, body?: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: this.host, port: this.port, method, path, agent: this.agent, timeout: this.timeoutMs, headers: body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {} },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('timeout', () => req.destroy(new TimeoutError(`http ${method}: no answer within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }
  async get(key: string): Promise<void> {
    const s = await this.request('GET', `/v1/kv/${encodeURIComponent(key)}`);
    if (s !== 200 && s !== 404) throw new Error(`HTTP ${s}`);
  }
  async set(key: string, value: Uint8Array): Promise<void> {
    const s = await this.request('PUT', `/v1/kv/${encodeURIComponent(key)}`, Buffer.from(value));
    if (s !== 200) throw new Error(`HTTP ${s}`);
  }
  close(): void {
    this.agent.destroy();
  }
}

/**
 * etcd v3 over gRPC (the etcd3 package): linearizable range reads and puts, like raftkv's
 * defaults. One endpoint per client, as raftkv's drivers have: given several, etcd3 sends each
 * request to a random one, so where a client's requests go would differ between the systems.
 */
class EtcdDriver implements Driver {
  private constructor(
    private readonly client: import('etcd3').Etcd3,
    private readonly timeoutMs: number,
  ) {}
  static async create(targets: string[], timeoutMs: number): Promise<EtcdDriver> {
    const { Etcd3 } = await import('etcd3');
    const hosts = targets.map((t) => {
      const hp = parseHostPort(t, 'etcd target');
      return `http://${dialHost(hp)}:${hp.port}`;
    });
    return new EtcdDriver(new Etcd3({ hosts, dialTimeout: timeoutMs }), timeoutMs);
  }
  async get(key: string): Promise<void> {
    await withTimeout(this.client.get(key).buffer(), this.timeoutMs, 'etcd get');
  }
  async set(key: string, value: Uint8Array): Promise<void> {
    await withTimeout(this.client.put(key).value(Buffer.from(value)).exec(), this.timeoutMs, 'etcd put');
  }
  close(): void {
    this.client.close();
  }
}

export async function makeDriver(name: DriverName, targets: string[], index: number, timeoutMs: number, route: Route = 'leader'): Promise<Driver> {
  // Spread clients over the targets, like independent users of a load-balanced service.
  const target = targets[index % targets.length];
  switch (name) {
    case 'protobuf':
      return new ProtobufDriver(targets, target, timeoutMs, route);
    case 'text':
      return new TextDriver(target, timeoutMs);
    case 'http':
      return new HttpDriver(target, timeoutMs);
    case 'etcd':
      return EtcdDriver.create([target], timeoutMs);
  }
}
