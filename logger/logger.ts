/**
 * `raftkv logger`: one process, one non-voting member per cluster it serves, each cluster's
 * command log kept apart. Serves recover(i, n) over HTTP and the --recov port, truncate(t)
 * once a majority of that cluster's voters asked, status and Prometheus metrics.
 */
import Fastify, { FastifyInstance } from 'fastify';
import client from 'prom-client';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { Readable } from 'node:stream';
import { EntryType } from '../raft/index.js';
import { TruncationAsks } from './truncation.js';
import { HostPort, dialHost, formatHostPort, listenHost, parseHostPort } from '../replica/addr.js';
import { bearer, sameSecret } from '../replica/secret.js';
import { TlsFiles, TlsMaterial, loadTls, requestStream } from '../replica/tls.js';
import { UnavailableRangeError, decodeRecords } from './command-log.js';
import { LoggerMember } from './member.js';
import { writeFileDurably } from '../util/durable-file.js';
import { RecovServer, RecoverySource, findSource, parseRange } from './recov.js';

export interface LoggerClusterSpec {
  id: string;
  raft: string;
  /** Raft address announced to peers, when they reach this logger through a proxy or Service. */
  advertiseRaft?: string;
  join: string[];
  /** The RaftCluster whose members to find (--discover kubernetes --clusters). */
  cluster?: string;
}

export interface LoggerOptions {
  clusters: LoggerClusterSpec[];
  logFolder: string;
  recov: string;
  http: string;
  advertiseHost?: string;
  token?: string;
  tls?: TlsFiles;
  electionTimeoutMs: number;
  heartbeatMs: number;
  /** Longest a range request may wait for its last entry (ms). */
  maxWaitMs?: number;
  sync?: boolean;
  crashAt?: string;
  /** The cluster's members are found through the Kubernetes API (the CLI fills `join`). */
  discover?: 'kubernetes';
  log?: (line: string) => void;
}

const TruncateBody = z.object({
  member: z.string().min(1).max(64),
  index: z.number().int().nonnegative(),
  /** Where the asking voter serves GET /v1/snapshot (a restarted logger may not have heard its hello yet). */
  http: z.string().max(300).regex(/^[^\s/]+:\d{1,5}$/, 'must be host:port').optional(),
});

class LoggerMetrics {
  readonly registry = new client.Registry();
  readonly entries = new client.Counter({ name: 'raftkv_logger_entries_total', help: 'Committed entries made durable in the command log', labelNames: ['cluster'], registers: [this.registry] });
  readonly bytes = new client.Counter({ name: 'raftkv_logger_bytes_total', help: 'Bytes made durable in the command log', labelNames: ['cluster'], registers: [this.registry] });
  readonly fsync = new client.Histogram({
    name: 'raftkv_logger_fsync_seconds',
    help: 'Time to write and fdatasync one group of entries',
    labelNames: ['cluster'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly truncations = new client.Counter({ name: 'raftkv_logger_truncations_total', help: 'Prefix truncations carried out', labelNames: ['cluster'], registers: [this.registry] });
  readonly baseInstalls = new client.Gauge({ name: 'raftkv_logger_snapshot_installs', help: 'Times the leader sent a snapshot because it lacked the entries this logger needed', labelNames: ['cluster'], registers: [this.registry] });
  readonly first = new client.Gauge({ name: 'raftkv_logger_first_index', help: 'First index held', labelNames: ['cluster'], registers: [this.registry] });
  readonly last = new client.Gauge({ name: 'raftkv_logger_last_index', help: 'Last durable index', labelNames: ['cluster'], registers: [this.registry] });
  readonly commit = new client.Gauge({ name: 'raftkv_logger_commit_index', help: 'Commit index of the cluster as seen by this logger', labelNames: ['cluster'], registers: [this.registry] });
  readonly lagEntries = new client.Gauge({ name: 'raftkv_logger_lag_entries', help: 'Committed entries not yet durable here', labelNames: ['cluster'], registers: [this.registry] });
  readonly lagSeconds = new client.Gauge({ name: 'raftkv_logger_lag_seconds', help: 'Age of the oldest committed entry not yet durable here', labelNames: ['cluster'], registers: [this.registry] });
  constructor(labels: Record<string, string>) {
    this.registry.setDefaultLabels(labels);
    client.collectDefaultMetrics({ register: this.registry, prefix: 'raftkv_' });
  }
}

export class Logger {
  readonly members: LoggerMember[] = [];
  httpAddr = '';
  recovAddr = '';
  readonly metrics: LoggerMetrics;
  private http: FastifyInstance | undefined;
  private recov: RecovServer | undefined;
  private readonly asks = new Map<LoggerMember, TruncationAsks>();
  private readonly rates = new Map<LoggerMember, { at: number; entries: number; bytes: number; rate: { entries: number; bytes: number } }>();
  private stopping: Promise<void> | undefined;
  private gaugeTimer: NodeJS.Timeout | undefined;
  private readonly log: (line: string) => void;
  private readonly tlsMaterial: TlsMaterial | undefined;
  /** Resolves when the logger stops on its own (a fatal storage error). */
  readonly stopped: Promise<Error | undefined>;
  private resolveStopped!: (e: Error | undefined) => void;

  private constructor(readonly opts: LoggerOptions) {
    this.log = opts.log ?? ((l) => console.log(l));
    this.metrics = new LoggerMetrics({ logger: opts.clusters.map((c) => c.id).join(',') });
    this.tlsMaterial = loadTls(opts.tls);
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  static async start(opts: LoggerOptions): Promise<Logger> {
    validate(opts);
    const l = new Logger(opts);
    try {
      await l.boot();
    } catch (e) {
      await l.stop().catch(() => undefined);
      throw e;
    }
    return l;
  }

  private async boot(): Promise<void> {
    const o = this.opts;
    const httpHp = parseHostPort(o.http, '--http');
    const recovHp = parseHostPort(o.recov, '--recov');
    this.http = this.buildHttp();
    await this.http.listen({ port: httpHp.port, host: listenHost(httpHp) });
    this.httpAddr = formatHostPort(o.advertiseHost ?? dialHost(httpHp), (this.http.server.address() as { port: number }).port);
    this.recov = new RecovServer(() => this.sources());
    this.recovAddr = formatHostPort(o.advertiseHost ?? dialHost(recovHp), await this.recov.start(recovHp));
    const claimed = new Map<string, string>();
    for (const c of o.clusters) {
      const m = await LoggerMember.start({
        id: c.id,
        raft: parseHostPort(c.raft, '--raft'),
        advertiseRaft: c.advertiseRaft,
        join: c.join,
        dir: join(o.logFolder, c.id),
        httpAddr: () => this.httpAddr,
        advertiseHost: o.advertiseHost,
        token: o.token,
        tls: this.tlsMaterial,
        electionTimeoutMs: o.electionTimeoutMs,
        heartbeatMs: o.heartbeatMs,
        sync: o.sync,
        crashAt: o.crashAt,
        log: this.log,
        claimCluster: (clusterId, by) => {
          const holder = claimed.get(clusterId);
          if (holder && holder !== by) return holder;
          claimed.set(clusterId, by);
          return undefined;
        },
        onFatal: (e) => void this.stop().then(() => this.resolveStopped(e)),
      });
      this.members.push(m);
      this.asks.set(m, this.loadAsks(m));
      const labels = { cluster: c.id };
      m.log.onFlush = (f) => {
        this.metrics.entries.inc(labels, f.entries);
        this.metrics.bytes.inc(labels, f.bytes);
        this.metrics.fsync.observe(labels, f.seconds);
      };
    }
    this.gaugeTimer = setInterval(() => this.updateGauges(), 1000);
    this.gaugeTimer.unref();
    this.log(`logger: serving ${o.clusters.map((c) => c.id).join(', ')}; http ${this.httpAddr}, recov ${this.recovAddr}, logs in ${o.logFolder}`);
  }

  private sources(): RecoverySource[] {
    return this.members.map((m) => ({ name: m.opts.id, clusterId: m.clusterId, log: m.log, commitIndex: () => m.commitIndex() }));
  }

  /** Per-cluster status: what /v1/log and `raftkv logger` report. */
  status() {
    const now = performance.now();
    return this.members.map((m) => {
      const i = m.log.info();
      const lag = m.lag(now);
      const r = this.rates.get(m)?.rate ?? { entries: 0, bytes: 0 };
      return {
        name: m.opts.id,
        clusterId: m.clusterId,
        first: i.first,
        last: i.last,
        commitIndex: m.commitIndex(),
        base: i.base ?? null,
        bytes: i.bytes,
        lagEntries: lag.entries,
        lagSeconds: Number(lag.seconds.toFixed(3)),
        entriesPerSecond: Math.round(r.entries),
        bytesPerSecond: Math.round(r.bytes),
        leader: m.leader(),
        voters: m.voters(),
        raftAddr: m.raftAddr,
        truncationAsks: this.asks.get(m)?.toJSON() ?? {},
        snapshotInstalls: m.baseInstalls,
      };
    });
  }

  private updateGauges(): void {
    const now = performance.now();
    for (const m of this.members) {
      const labels = { cluster: m.opts.id };
      const i = m.log.info();
      const lag = m.lag(now);
      this.metrics.first.set(labels, i.first);
      this.metrics.last.set(labels, i.last);
      this.metrics.commit.set(labels, m.commitIndex());
      this.metrics.lagEntries.set(labels, lag.entries);
      this.metrics.lagSeconds.set(labels, lag.seconds);
      this.metrics.baseInstalls.set(labels, m.baseInstalls);
      const prev = this.rates.get(m);
      const total = { entries: i.last, bytes: i.bytes };
      if (prev) {
        const dt = (now - prev.at) / 1000;
        if (dt > 0) prev.rate = { entries: Math.max(0, (total.entries - prev.entries) / dt), bytes: Math.max(0, (total.bytes - prev.bytes) / dt) };
        prev.at = now;
        prev.entries = total.entries;
        prev.bytes = total.bytes;
      } else this.rates.set(m, { at: now, ...total, rate: { entries: 0, bytes: 0 } });
    }
  }

  private asksFile(m: LoggerMember): string {
    return join(m.opts.dir, 'truncate-asks.json');
  }

  private loadAsks(m: LoggerMember): TruncationAsks {
    let text: string;
    try {
      text = readFileSync(this.asksFile(m), 'utf8');
    } catch {
      return new TruncationAsks();
    }
    const parsed = z.record(z.number().int().nonnegative()).safeParse(safeJson(text));
    if (!parsed.success) {
      this.log(`${m.opts.id}: ignoring an unreadable ${this.asksFile(m)} (voters will ask again after their next snapshot)`);
      return new TruncationAsks();
    }
    return new TruncationAsks(new Map(Object.entries(parsed.data)));
  }

  /**
   * A voter asks to drop the prefix up to `index` (it has a snapshot that covers it). The log is
   * cut only to the smallest index among a majority of the voters that asked; before cutting,
   * a snapshot at or past that point is fetched from one of them, so the log can still rebuild
   * the whole state (disaster recovery) after the cut.
   */
  async truncate(key: string, member: string, index: number, http?: string) {
    const m = this.memberFor(key);
    const voters = m.voters();
    if (!voters.includes(member)) throw new HttpError(403, `${member} is not a voter of cluster ${m.clusterId || m.opts.id} (voters: ${voters.join(', ') || 'not known yet'}); only voters' asks count`);
    // What a voter's own hello said wins over what an ask claims.
    if (http && !m.peers.get(member)?.httpAddr) m.peers.set(member, { httpAddr: http, raftAddr: m.peers.get(member)?.raftAddr ?? '', role: 'voter' });
    const asks = this.asks.get(m)!;
    const info = m.log.info();
    const d = asks.ask(member, index, voters, info);
    // Kept on disk: a logger restarted between the asks of a majority still counts the earlier
    // ones (a voter asks again only after its next snapshot).
    writeFileDurably(this.asksFile(m), JSON.stringify(asks) + '\n', this.opts.sync !== false);
    if (!d.truncate) return { truncated: false, first: info.first, reason: d.reason, asks: asks.toJSON() };
    const base = d.heldBase ? undefined : await this.fetchBase(m, d.baseFrom, d.upTo);
    const first = await m.truncate(d.upTo, base);
    // The log may keep a newer base it already held (see CommandLog.truncatePrefix).
    const kept = m.log.info().base!;
    this.metrics.truncations.inc({ cluster: m.opts.id });
    this.log(`${m.opts.id}: truncated the command log up to ${d.upTo} (base snapshot at ${kept.index}${base ? '' : ', held already'}); it now starts at ${first}`);
    return { truncated: true, first, upTo: d.upTo, base: { index: kept.index, term: kept.term, fetched: base !== undefined }, asks: asks.toJSON() };
  }

  private async fetchBase(m: LoggerMember, from: string[], atLeast: number) {
    const errors: string[] = [];
    for (const id of from) {
      const addr = m.peers.get(id)?.httpAddr;
      if (!addr) {
        errors.push(`${id}: HTTP address not known yet`);
        continue;
      }
      try {
        const res = await requestStream(`${this.tlsMaterial ? 'https' : 'http'}://${addr}/v1/snapshot`, {
          headers: this.opts.token ? { 'x-raftkv-token': this.opts.token } : {},
          timeoutMs: 120_000,
          ca: this.tlsMaterial?.ca,
        });
        if (res.statusCode !== 200) {
          let text = '';
          for await (const c of res) if (text.length < 200) text += String(c);
          throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
        }
        // Into a file as it arrives: a large state is never whole in this process's memory.
        const got = await m.log.receiveBase(res);
        if (got.meta.index < atLeast) {
          await m.log.discardBase(got);
          throw new Error(`its snapshot is at ${got.meta.index}, below ${atLeast}`);
        }
        return got;
      } catch (e) {
        errors.push(`${id}: ${(e as Error).message}`);
      }
    }
    throw new HttpError(503, `no snapshot covering ${atLeast} could be fetched from the voters (${errors.join('; ')}); nothing was dropped`);
  }

  private memberFor(key: string): LoggerMember {
    try {
      const src = findSource(this.sources(), key);
      return this.members.find((m) => m.opts.id === src.name)!;
    } catch (e) {
      throw new HttpError(404, (e as Error).message);
    }
  }

  private buildHttp(): FastifyInstance {
    const t = this.tlsMaterial;
    const app = (t ? Fastify({ logger: false, https: { key: t.key, cert: t.cert } }) : Fastify({ logger: false })) as unknown as FastifyInstance;
    const token = this.opts.token;
    app.addHook('onRequest', async (req, reply) => {
      const path = req.url.split('?')[0];
      const open = path === '/metrics' || path === '/healthz' || path === '/readyz';
      if (!open && token && !sameSecret(token, (req.headers['x-raftkv-token'] as string | undefined) ?? bearer(req.headers.authorization))) {
        return reply.code(401).send({ error: 'this call needs the cluster token (x-raftkv-token header)' });
      }
    });
    app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
      const code = err instanceof UnavailableRangeError ? 416 : err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
      const extra = err instanceof UnavailableRangeError ? { available: err.available } : {};
      void reply.code(code).send({ error: err.message, ...extra });
    });
    app.get('/v1/log', async () => ({ clusters: this.status() }));
    app.get('/v1/status', async () => ({ http: this.httpAddr, recov: this.recovAddr, clusters: this.status() }));
    app.get<{ Params: { cluster: string }; Querystring: Record<string, string | undefined> }>('/v1/log/:cluster', async (req, reply) => {
      const m = this.memberFor(req.params.cluster);
      const q = req.query;
      for (const k of Object.keys(q)) if (!['from', 'to', 'wait'].includes(k)) throw new HttpError(400, `unknown parameter '${k.slice(0, 40)}': use from, to (an index or 'last') and wait (ms)`);
      const waitMs = q.wait === undefined ? 0 : parseRange('1', q.wait, 0).to;
      if (waitMs > (this.opts.maxWaitMs ?? 300_000)) throw new HttpError(400, `wait is at most ${this.opts.maxWaitMs ?? 300_000} ms`);
      let range: { from: number; to: number };
      try {
        range = parseRange(q.from, q.to, m.log.info().last);
      } catch (e) {
        throw new HttpError(400, (e as Error).message);
      }
      if (waitMs > 0 && q.to !== undefined && q.to !== 'last') await m.log.waitFor(range.to, waitMs);
      // Opened before the answer: a range truncated meanwhile is a clear error, not a cut stream.
      const reader = await m.log.openRange(range.from, range.to);
      const binary = (req.headers.accept ?? '').includes('application/octet-stream');
      reply.header('x-raftkv-first', String(range.from)).header('x-raftkv-last', String(range.to));
      reply.header('content-type', binary ? 'application/octet-stream' : 'application/x-ndjson');
      const body = Readable.from(
        (async function* () {
          for await (const raw of reader.chunks()) {
            if (binary) yield raw;
            else {
              let out = '';
              for (const e of decodeRecords(raw)) {
                const type = e.type === EntryType.Normal ? '' : `,"type":"${EntryType[e.type]}"`;
                out += `{"index":${e.index},"term":${e.term}${type},"data":"${Buffer.from(e.data).toString('base64')}"}\n`;
              }
              yield out;
            }
          }
        })(),
      );
      // Closed however the response ends (done, failed, or the client went away).
      body.once('close', () => void reader.close());
      return reply.send(body);
    });
    app.get<{ Params: { cluster: string } }>('/v1/log/:cluster/base', async (req, reply) => {
      const m = this.memberFor(req.params.cluster);
      const base = await m.log.openBase();
      if (!base) return reply.code(404).send({ error: `the log of ${m.opts.id} starts at index 1: there is no base snapshot` });
      const body = Readable.from(base.chunks);
      // Closed however the response ends (done, failed, or the client went away).
      body.once('close', () => void base.close());
      reply.header('content-type', 'application/octet-stream').header('content-length', String(base.bytes)).header('x-raftkv-index', String(base.index)).header('x-raftkv-term', String(base.term));
      return reply.send(body);
    });
    app.post<{ Params: { cluster: string } }>('/v1/log/:cluster/truncate', async (req, reply) => {
      const parsed = TruncateBody.safeParse(req.body);
      if (!parsed.success) return reply.code(400).send({ error: `body must be {"member": "<voter id>", "index": <n>}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` });
      const r = await this.truncate(req.params.cluster, parsed.data.member, parsed.data.index, parsed.data.http);
      return reply.code(r.truncated ? 200 : 202).send(r);
    });
    app.get('/metrics', async (_req, reply) => {
      this.updateGauges();
      reply.header('content-type', this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    app.get('/healthz', async () => ({ ok: true }));
    app.get('/readyz', async (_req, reply) => {
      const unjoined = this.members.filter((m) => !m.clusterId || !m.leader()).map((m) => m.opts.id);
      return unjoined.length === 0 ? { ready: true } : reply.code(503).send({ ready: false, reason: `no leader known yet for ${unjoined.join(', ')}` });
    });
    return app;
  }

  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        if (this.gaugeTimer) clearInterval(this.gaugeTimer);
        await this.recov?.stop();
        await this.http?.close();
        for (const m of this.members) await m.stop();
      })();
    }
    return this.stopping;
  }
}

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

function validate(o: LoggerOptions): void {
  if (o.clusters.length === 0) throw new Error('--id names no cluster member');
  const ids = new Set<string>();
  for (const c of o.clusters) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(c.id)) throw new Error(`--id '${c.id}' must be 1-64 letters, digits, '.', '_' or '-'`);
    if (ids.has(c.id)) throw new Error(`--id lists ${c.id} twice`);
    ids.add(c.id);
    parseHostPort(c.raft, `--raft of ${c.id}`);
    for (const j of c.join) parseHostPort(j, `--join of ${c.id}`);
  }
  const hp: HostPort[] = [parseHostPort(o.http, '--http'), parseHostPort(o.recov, '--recov'), ...o.clusters.map((c) => parseHostPort(c.raft, '--raft'))];
  const ports = hp.map((h) => h.port).filter((p) => p !== 0);
  if (new Set(ports).size !== ports.length) throw new Error('--http, --recov and --raft must use different ports');
  if (o.heartbeatMs <= 0 || o.electionTimeoutMs < 2 * o.heartbeatMs) throw new Error('--election-timeout must be at least twice --heartbeat');
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
