/**
 * Real replica processes on 127.0.0.1 for integration tests: spawn, kill -9, restart, stop.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from './ports.js';
import { requestJson } from '../../replica/tls.js';

export const CLI = fileURLToPath(new URL('../../cli.js', import.meta.url));

export interface NodeSpec {
  id: string;
  client: number;
  raft: number;
  http: number;
  dataDir: string;
  args: string[];
}

export interface ReplicaStatusLite {
  id: string;
  role: string;
  term: number;
  leader: string;
  commitIndex: number;
  clusterId: string;
  appliedIndex: number;
  members: { id: string; role: string; match?: number }[];
}

export class TestCluster {
  readonly nodes = new Map<string, NodeSpec>();
  readonly procs = new Map<string, ChildProcess>();
  readonly logs = new Map<string, string>();
  /** Bearer token sent on status and HTTP calls (for clusters run with --client-token). */
  clientToken: string | undefined;
  /** CA to trust for clusters run with TLS (status calls then use https). */
  ca: Buffer | undefined;
  /** How a replica process is started (the fault suite swaps in one whose kill -9 is a power cut). */
  replicaCommand: string[] = [CLI, 'replica'];

  private constructor(readonly dir: string) {}

  static async create(prefix = 'cluster'): Promise<TestCluster> {
    return new TestCluster(await mkdtemp(join(tmpdir(), `raftkv-${prefix}-`)));
  }

  /** A statically bootstrapped cluster (`--peers`), started, with a leader elected. */
  static async startStatic(prefix: string, ids: string[], args: string[] = []): Promise<TestCluster> {
    const c = await TestCluster.create(prefix);
    for (const id of ids) await c.define(id, args);
    for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
    // A cluster that does not form is torn down here: its processes would keep the test file alive.
    await c.waitLeader(ids).catch(async (e: unknown) => {
      await c.destroy();
      throw e;
    });
    return c;
  }

  /** Allocate addresses for a node; `args` are extra replica flags. */
  async define(id: string, args: string[] = []): Promise<NodeSpec> {
    const [client, raft, http] = await freePorts(3);
    const spec = { id, client, raft, http, dataDir: join(this.dir, id), args };
    this.nodes.set(id, spec);
    return spec;
  }

  peersFlag(ids: string[]): string {
    return ids.map((id) => `${id}=127.0.0.1:${this.nodes.get(id)!.raft}`).join(',');
  }

  start(id: string, extra: string[] = []): ChildProcess {
    const n = this.nodes.get(id)!;
    const args = [
      ...this.replicaCommand,
      '--id', id,
      '--port', `127.0.0.1:${n.client}`,
      '--raft', `127.0.0.1:${n.raft}`,
      '--http', `127.0.0.1:${n.http}`,
      '--data-dir', n.dataDir,
      '--election-timeout', '400',
      '--heartbeat', '40',
      ...n.args,
      ...extra,
    ];
    // RAFTKV_NODE_ARGS: Node flags for every replica this helper starts (e.g. `--cpu-prof
    // --cpu-prof-dir=/tmp/prof` to profile a benchmark's servers; NODE_OPTIONS refuses those).
    const nodeArgs = (process.env.RAFTKV_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const p = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.logs.set(id, this.logs.get(id) ?? '');
    const append = (d: Buffer) => this.logs.set(id, (this.logs.get(id) ?? '') + d.toString());
    p.stdout!.on('data', append);
    p.stderr!.on('data', append);
    this.procs.set(id, p);
    return p;
  }

  kill9(id: string): void {
    this.procs.get(id)?.kill('SIGKILL');
    this.procs.delete(id);
  }

  async terminate(id: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const p = this.procs.get(id);
    if (!p) return null;
    this.procs.delete(id);
    if (p.exitCode !== null) return p.exitCode;
    const code = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
    p.kill(signal);
    return code;
  }

  clientAddr(id: string): string {
    return `127.0.0.1:${this.nodes.get(id)!.client}`;
  }

  httpUrl(id: string, path: string): string {
    return `${this.ca ? 'https' : 'http'}://127.0.0.1:${this.nodes.get(id)!.http}${path}`;
  }

  async status(id: string): Promise<ReplicaStatusLite | undefined> {
    try {
      const res = await requestJson(this.httpUrl(id, '/v1/status'), { method: 'GET', timeoutMs: 1000, headers: this.authHeaders(), ca: this.ca });
      return res.status === 200 ? (res.json as ReplicaStatusLite) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Wait until `ids` agree on one leader; returns it. */
  async waitLeader(ids: string[] = [...this.procs.keys()], timeoutMs = 15_000): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const st = await Promise.all(ids.map((id) => this.status(id)));
      const leaders = new Set(st.map((s) => s?.leader));
      if (st.every((s) => s && s.leader) && leaders.size === 1) {
        const l = [...leaders][0]!;
        if (st.find((s) => s!.id === l)?.role === 'leader' || !ids.includes(l)) return l;
      }
      await sleep(50);
    }
    throw new Error(`no agreed leader among ${ids.join(',')} within ${timeoutMs} ms\n${this.dump()}`);
  }

  /** Wait until every listed node applied at least the leader's commit index. */
  async waitConverged(ids: string[], timeoutMs = 15_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const st = await Promise.all(ids.map((id) => this.status(id)));
      const commit = Math.max(...st.map((s) => s?.commitIndex ?? 0));
      if (st.every((s) => s && s.appliedIndex >= commit)) return;
      await sleep(50);
    }
    throw new Error(`nodes ${ids.join(',')} did not converge within ${timeoutMs} ms\n${this.dump()}`);
  }

  /**
   * The state digest of every node once all have applied the same index. Waiting for that (not
   * just for applied >= commit) matters: a join still commits its membership steps after the
   * joiner caught up, and those move the index without changing the data.
   */
  async sameIndexDigests(ids: string[], timeoutMs = 15_000): Promise<{ index: number; digest: string; keys: number }[]> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const ds = await Promise.all(ids.map(async (id) => (await this.http(id, 'GET', '/v1/digest')).json as { index: number; digest: string; keys: number }));
      if (new Set(ds.map((d) => d.index)).size === 1 || performance.now() > deadline) return ds;
      await sleep(50);
    }
  }

  async http(id: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; json: unknown }> {
    const res = await fetch(this.httpUrl(id, path), {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': contentType }), ...this.authHeaders() },
      body: body === undefined ? undefined : typeof body === "string" ? body : body instanceof Uint8Array ? Buffer.from(body) : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, json };
  }

  private authHeaders(): Record<string, string> {
    return this.clientToken ? { authorization: `Bearer ${this.clientToken}` } : {};
  }

  dump(): string {
    return [...this.logs].map(([id, log]) => `--- ${id}\n${log.split('\n').slice(-15).join('\n')}`).join('\n');
  }

  async destroy(): Promise<void> {
    for (const id of [...this.procs.keys()]) this.kill9(id);
    await sleep(50);
    await rm(this.dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Send raw text lines to a client port and collect `count` answer lines. */
export async function textRequest(port: number, lines: string[], count = lines.length): Promise<string[]> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(lines.map((l) => `${l}\n`).join('')));
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no ${count} answers within 10 s; got ${JSON.stringify(out)}`));
    }, 10_000);
    s.on('data', (d) => {
      out += d.toString();
      const got = out.split('\n').filter(Boolean);
      if (got.length >= count) {
        clearTimeout(timer);
        s.destroy();
        resolve(got.slice(0, count));
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
