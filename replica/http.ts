/**
 * HTTP/JSON API (fastify): keys, status, membership, leadership transfer, metrics and probes.
 * Bodies are validated with zod at the boundary; bad input gets a 4xx with a reason.
 */
import Fastify, { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { INCARNATION_PATTERN, RaftError } from '../raft/index.js';
import { Readable } from 'node:stream';
import { HostPort, dialHost, formatHostPort, listenHost } from './addr.js';
import { quoteKey } from './engines/engine.js';
import { Op, Response, Status, newCommand } from './proto.js';
import { bearer, sameSecret } from './secret.js';
import { requestJson } from './tls.js';
import type { Replica } from './server.js';

const JoinBody = z.object({
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'id must be 1-64 letters, digits, ".", "_" or "-"'),
  addr: z.string().min(3),
  voter: z.boolean().default(true),
  /** Set by a node that already belongs to a cluster: it may only rejoin that one. */
  clusterId: z.string().optional(),
  /** A logger: added as a non-voter and never promoted. */
  role: z.enum(['logger']).optional(),
  /** The joiner has no state of its own: if its id is a member already, that member lost its data. */
  fresh: z.boolean().default(false),
  /** A fresh joiner's incarnation: the configuration names this start of it. */
  incarnation: z.string().regex(INCARNATION_PATTERN, 'incarnation must be 1-64 letters, digits, ".", "#", "_" or "-"').optional(),
});
const PutBody = z.object({ value: z.string() });
/** Content types whose body is the value itself (`curl -d`, `--data-binary`, text, bytes). */
const RAW_VALUE_TYPES = ['application/octet-stream', 'application/x-www-form-urlencoded', 'text/plain'];
const TransferBody = z.object({ to: z.string().min(1) });

export class HttpApi {
  private apps: FastifyInstance[] = [];

  constructor(
    private readonly replica: Replica,
    private readonly maxValueBytes: number,
  ) {}

  /** Listen; returns the bound port of the main API. */
  async start(listen: HostPort, hjoin?: HostPort): Promise<number> {
    const main = this.build();
    await main.listen({ port: listen.port, host: listenHost(listen) });
    this.apps.push(main);
    const port = (main.server.address() as { port: number }).port;
    if (hjoin && hjoin.port !== listen.port) {
      // The seed's join address: the same API on a second port.
      const extra = this.build();
      await extra.listen({ port: hjoin.port, host: listenHost(hjoin) });
      this.apps.push(extra);
    }
    return port;
  }

  async stop(): Promise<void> {
    await Promise.all(this.apps.map((a) => a.close()));
  }

  private build(): FastifyInstance {
    const t = this.replica.tlsMaterial;
    const app = (t
      ? Fastify({ bodyLimit: this.maxValueBytes + (64 << 10), logger: false, https: { key: t.key, cert: t.cert } })
      : Fastify({ bodyLimit: this.maxValueBytes + (64 << 10), logger: false })) as unknown as FastifyInstance;
    const r = this.replica;
    // Any body that is not JSON is the value's bytes. `curl -d v` sends it as a form; a form of
    // exactly one field named value (etcd v2's `-d value=v`) means that field.
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
      const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      if (type === 'application/x-www-form-urlencoded') {
        const text = (body as Buffer).toString('utf8');
        if (text.startsWith('value=') && !text.includes('&')) return done(null, Buffer.from(new URLSearchParams(text).get('value')!));
      }
      done(null, body);
    });
    const opts = r.opts;
    // Membership and leadership changes need the cluster token; keys and status the client
    // token, when configured. Probes and metrics stay open for the orchestrator.
    app.addHook('onRequest', async (req, reply) => {
      const path = req.url.split('?')[0];
      const admin = path === '/join' || path.startsWith('/v1/members') || path.startsWith('/v1/leader') || path === '/v1/snapshot';
      if (admin && opts.token && !sameSecret(opts.token, (req.headers['x-raftkv-token'] as string | undefined) ?? bearer(req.headers.authorization))) {
        return reply.code(401).send({ error: 'this call needs the cluster token (x-raftkv-token header)' });
      }
      if (!admin && opts.clientToken && (path.startsWith('/v1/kv') || path === '/v1/status' || path === '/v1/digest') && !sameSecret(opts.clientToken, bearer(req.headers.authorization))) {
        return reply.code(401).send({ error: 'this call needs the client token (Authorization: Bearer ...)' });
      }
    });
    app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
      const code = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
      void reply.code(code).send({ error: err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? `body is over the ${this.maxValueBytes}-byte value limit` : err.message });
    });

    const answer = (reply: FastifyReply, key: string, res: Response) => {
      switch (res.status) {
        case Status.OK:
          return reply.send(res.value.length > 0 || reply.request.method === 'GET' ? { key, value: Buffer.from(res.value).toString() } : { ok: true });
        case Status.NOT_FOUND:
          return reply.code(404).send({ error: `key ${quoteKey(key)} not found` });
        case Status.ERROR:
          return reply.code(400).send({ error: res.error });
        case Status.UNKNOWN:
          // Not a failure to retry blindly: the write may have been applied.
          return reply.code(504).send({ error: res.error || 'outcome unknown', outcome: 'unknown' });
        default:
          return reply.code(503).send({ error: res.error || 'unavailable', leader: res.leader || undefined });
      }
    };
    const timed = async (op: Op, run: () => Promise<Response>) => {
      const t0 = performance.now();
      const res = await run();
      r.metrics.clientRequests.labels({ op: Op[op], protocol: 'http', status: Status[res.status] }).observe((performance.now() - t0) / 1000);
      return res;
    };

    // Keys are taken from the rest of the path (a wildcard, which the router's 100-character
    // parameter limit does not cover), so every legal key, up to MAX_KEY_BYTES and slashes
    // included, is reachable here as on the other protocols, and a longer one gets the same
    // clear error from the engine's validation.
    type KeyRoute = { Params: { '*': string } };
    app.get<KeyRoute & { Querystring: { stale?: string } }>('/v1/kv/*', async (req, reply) => {
      const key = req.params['*'];
      const stale = req.query.stale === '1' || req.query.stale === 'true';
      const res = await timed(Op.GET, () => r.execute(newCommand({ op: Op.GET, key, stale })));
      return answer(reply, key, res);
    });
    app.put<KeyRoute>('/v1/kv/*', async (req, reply) => {
      const key = req.params['*'];
      let value: Uint8Array;
      if (Buffer.isBuffer(req.body)) value = req.body;
      else if (typeof req.body === 'string') value = Buffer.from(req.body);
      else {
        const parsed = PutBody.safeParse(req.body);
        if (!parsed.success) return reply.code(400).send({ error: `a JSON body must be {"value": string}: ${parsed.error.issues[0]?.message}; or send the value itself as the body (${RAW_VALUE_TYPES.join(', ')} or any non-JSON type)` });
        value = Buffer.from(parsed.data.value);
      }
      const res = await timed(Op.SET, () => r.execute(newCommand({ op: Op.SET, key, value })));
      return answer(reply, key, res);
    });
    app.delete<KeyRoute>('/v1/kv/*', async (req, reply) => {
      const key = req.params['*'];
      const res = await timed(Op.DELETE, () => r.execute(newCommand({ op: Op.DELETE, key })));
      return answer(reply, key, res);
    });

    app.get('/v1/status', async (_req, reply) => (r.hasNode() ? r.status() : reply.code(503).send({ error: 'starting' })));

    const join = async (body: unknown, reply: FastifyReply) => {
      const parsed = JoinBody.safeParse(body);
      if (!parsed.success) return reply.code(400).send({ error: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
      const { id, addr, voter, clusterId, role, fresh, incarnation } = parsed.data;
      if (role === 'logger' && voter) return reply.code(400).send({ error: `${id} is a logger: loggers join as non-voters and are never promoted` });
      if (clusterId && r.getClusterId() && clusterId !== r.getClusterId()) {
        return reply.code(409).send({ error: `${id} belongs to cluster ${clusterId}, this is cluster ${r.getClusterId()}: it cannot join (wipe its data directory to add it as a new member)` });
      }
      if (!r.isLeader()) return this.toLeader(reply, '/v1/members', body);
      try {
        await r.addMember(id, addr, voter, { fresh, logger: role === 'logger', incarnation });
        // The incarnation echoed says it is in the configuration (a leader from before
        // incarnations leaves it out, and the joiner then goes without: MemberFiles.incarnation).
        return reply.send({ ok: true, id, addr, voter, ...(incarnation ? { incarnation } : {}) });
      } catch (e) {
        return this.raftFailure(reply, e);
      }
    };
    app.post('/v1/members', async (req, reply) => join(req.body, reply));
    app.post('/join', async (req, reply) => join(req.body, reply));
    app.delete<{ Params: { id: string } }>('/v1/members/:id', async (req, reply) => {
      if (!r.isLeader()) return this.toLeader(reply, `/v1/members/${encodeURIComponent(req.params.id)}`, undefined, 'DELETE');
      try {
        await r.removeMember(req.params.id);
        return reply.send({ ok: true, removed: req.params.id });
      } catch (e) {
        return this.raftFailure(reply, e);
      }
    });
    app.post('/v1/leader/transfer', async (req, reply) => {
      const parsed = TransferBody.safeParse(req.body);
      if (!parsed.success) return reply.code(400).send({ error: 'body must be {"to": "<node id>"}' });
      if (!r.isLeader()) return this.toLeader(reply, '/v1/leader/transfer', req.body);
      try {
        await r.transferLeadership(parsed.data.to);
        return reply.send({ ok: true, to: parsed.data.to });
      } catch (e) {
        return this.raftFailure(reply, e);
      }
    });

    // What the data is, in one hash: compare replicas, or a replica and a recovered state.
    app.get('/v1/digest', async (_req, reply) => {
      if (!r.hasNode()) return reply.code(503).send({ error: 'starting' });
      return r.digest();
    });
    // The whole state, for a logger's base or a state transfer: a cluster-token call.
    app.get('/v1/snapshot', async (_req, reply) => {
      if (!r.hasNode()) return reply.code(503).send({ error: 'starting' });
      const snap = await r.currentSnapshot();
      reply.header('content-type', 'application/octet-stream').header('x-raftkv-index', String(snap.meta.index)).header('x-raftkv-term', String(snap.meta.term));
      return reply.send(Readable.from(snap.bytes));
    });
    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', r.metrics.registry.contentType);
      return r.metrics.registry.metrics();
    });
    app.get('/healthz', async () => ({ ok: true }));
    app.get('/readyz', async (_req, reply) => (r.ready() ? { ready: true } : reply.code(503).send({ ready: false, reason: 'no leader known or not caught up' })));
    return app;
  }

  private async toLeader(reply: FastifyReply, path: string, body: unknown, method = 'POST'): Promise<FastifyReply> {
    const addr = this.replica.leaderHttpAddr();
    if (!addr) return reply.code(503).send({ error: 'no leader elected yet; retry' });
    const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
    try {
      const token = this.replica.opts.token;
      const ca = this.replica.tlsMaterial?.ca;
      const res = await requestJson(`${ca ? 'https' : 'http'}://${formatHostPort(dialHost({ host, port }), port)}${path}`, {
        method,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { 'x-raftkv-token': token } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        timeoutMs: 70_000,
        ca,
      });
      return reply.code(res.status).send(res.json ?? { error: res.text });
    } catch (e) {
      return reply.code(503).send({ error: `forwarding to the leader at ${addr} failed: ${(e as Error).message}` });
    }
  }

  private raftFailure(reply: FastifyReply, e: unknown): FastifyReply {
    if (e instanceof RaftError) {
      // Only a change that can never be made is a 409; anything else (leadership moved, the
      // entry was replaced by a new leader's, a change pending, the outcome unknown) is worth
      // asking again, and joiners do on a 503.
      const code = e.code === 'invalid-conf-change' ? 409 : 503;
      return reply.code(code).send({ error: e.message, code: e.code });
    }
    return reply.code(500).send({ error: (e as Error).message });
  }
}
