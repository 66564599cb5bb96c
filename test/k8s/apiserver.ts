/**
 * A Kubernetes API server emulator over real HTTP, enough for the real kubectl, helm and
 * @kubernetes/client-node with their default flags: discovery, OpenAPI v2/v3 for the served
 * types, CRUD with resourceVersion/generation/uid, 409 on stale updates, list and watch (resume
 * by resourceVersion, bookmarks, 410 Gone), label and field selectors, JSON/merge/strategic merge
 * patch and server-side apply, status and scale subresources, finalizers, owner references with
 * background/foreground cascading deletion, dry run, Table output with CRD printer columns,
 * CustomResourceDefinitions validated/defaulted/pruned, bearer-token users with RBAC, and a log
 * of every request (verb, resource, user) so tests can check least privilege.
 * What is and is not emulated: test/k8s/README.md.
 */
import http from 'node:http';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { makePki } from '../helpers/certs.js';
import { randomUUID } from 'node:crypto';
import { AddressInfo } from 'node:net';
import YAML from 'yaml';
import { applyJsonPatch, applyMergePatch, applyStrategicMergePatch, PatchError } from './patch.js';
import { ADMIN, Authorizer, RequestAttributes } from './rbac.js';
import { Registry, ResourceType, apiVersionOf, JsonSchema, PrinterColumn } from './resources.js';
import { pruneAndDefault, structuralErrors, validate } from './schema.js';
import { SelectorError, parseFieldSelector, parseLabelSelector } from './selectors.js';
import { GoneError, KObject, Store, WatchType } from './store.js';
import { openApiV2, openApiV3Doc, openApiV3Root } from './openapi.js';
import { tableOf } from './table.js';
import { decodeK8sProtobuf } from './protobuf.js';

/** One request as the log keeps it: what RBAC judged, and the answer's status code. */
export type ApiRequestLog = RequestAttributes & { code: number };

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

interface Target {
  type: ResourceType;
  typeKey: string;
  namespace?: string;
  name?: string;
  subresource?: string;
}


export class ApiServer {
  readonly store = new Store();
  readonly registry = new Registry();
  readonly requests: ApiRequestLog[] = [];
  readonly rbac: Authorizer;
  /** Bearer token -> user name. The admin token is in the kubeconfig. */
  readonly tokens = new Map<string, string>();
  readonly adminToken = `admin-${randomUUID()}`;
  private server!: http.Server | https.Server;
  /** The CA that signed the server's certificate (PEM), for kubeconfigs and pods. */
  caPem = '';
  private pkiDir: string | undefined;
  private tls: { cert: Buffer; key: Buffer } | undefined;
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private readonly openWatches = new Set<http.ServerResponse>();
  port = 0;
  /** Called after every stored change (the kubelet and controllers react to these). */
  onChange: ((typeKey: string, type: WatchType, o: KObject) => void)[] = [];

  /**
   * `sans`: extra names and addresses for the serving certificate (e.g. `IP:10.244.0.1` where
   * pods reach the API). Plain HTTP only with `insecure` (kubectl sends no token over it).
   */
  constructor(readonly o: { bookmarkMs?: number; sans?: string[]; insecure?: boolean } = {}) {
    this.tokens.set(this.adminToken, ADMIN);
    this.rbac = new Authorizer(this);
    for (const ns of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
      this.create(this.target('', 'v1', 'namespaces'), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    }
  }

  get url(): string {
    return `${this.o.insecure ? 'http' : 'https'}://127.0.0.1:${this.port}`;
  }

  async start(port = 0, host = '127.0.0.1'): Promise<void> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.handle(req, res);
    if (this.o.insecure) this.server = http.createServer(handler);
    else {
      this.pkiDir = mkdtempSync(joinPath(tmpdir(), 'raftkv-k8s-pki-'));
      // Every address a kubelet's pod network may give the host (network.ts), so pods can verify it.
      const podNetworks = Array.from({ length: 50 }, (_, n) => `IP:10.${200 + n}.0.1`);
      const pki = makePki(this.pkiDir, 'apiserver', ['DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:localhost', ...podNetworks, ...(this.o.sans ?? [])]);
      this.caPem = readFileSync(pki.ca, 'utf8');
      this.tls = { cert: readFileSync(pki.cert), key: readFileSync(pki.key) };
      this.server = https.createServer(this.tls, handler);
    }
    this.server.keepAliveTimeout = 30_000;
    await new Promise<void>((r) => this.server.listen(port, host, () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    this.bookmarkTimer = setInterval(() => this.sendBookmarks(), this.o.bookmarkMs ?? 5000);
    this.bookmarkTimer.unref();
  }

  private readonly extra: (http.Server | https.Server)[] = [];

  /** Serve on another address too, same port (the pods' network reaches the API there). */
  async listenAlso(host: string): Promise<void> {
    const server = this.o.insecure ? http.createServer(this.server.listeners('request')[0] as http.RequestListener) : https.createServer({ cert: this.tls!.cert, key: this.tls!.key }, this.server.listeners('request')[0] as http.RequestListener);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, host, () => resolve());
    });
    this.extra.push(server);
  }

  async stop(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    for (const s of this.extra) {
      s.closeAllConnections();
      s.close();
    }
    for (const r of this.openWatches) r.end();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
    if (this.pkiDir) rmSync(this.pkiDir, { recursive: true, force: true });
  }

  /** A kubeconfig for the admin user (what `npm run k8s:dev` prints). */
  kubeconfig(namespace = 'default'): string {
    return YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'raftkv-emulator', cluster: { server: this.url, ...(this.caPem ? { 'certificate-authority-data': Buffer.from(this.caPem).toString('base64') } : {}) } }],
      users: [{ name: 'admin', user: { token: this.adminToken } }],
      contexts: [{ name: 'raftkv-emulator', context: { cluster: 'raftkv-emulator', user: 'admin', namespace } }],
      'current-context': 'raftkv-emulator',
    });
  }

  /** A token for a ServiceAccount (what the kubelet mounts into a pod). */
  serviceAccountToken(namespace: string, name: string): string {
    const user = `system:serviceaccount:${namespace}:${name}`;
    for (const [t, u] of this.tokens) if (u === user) return t;
    const t = `sa-${randomUUID()}`;
    this.tokens.set(t, user);
    return t;
  }

  // ---------------------------------------------------------------------------------------
  // Programmatic access (the kubelet and controllers use these as the admin)

  target(group: string, version: string, plural: string, namespace?: string, name?: string, subresource?: string): Target {
    const type = this.registry.byPlural(group, version, plural);
    if (!type) throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${plural}.${group || 'core'}/${version})`);
    return { type, typeKey: typeKeyOf(type), namespace: type.namespaced ? namespace : undefined, name, subresource };
  }

  getObject(group: string, version: string, plural: string, namespace: string | undefined, name: string): KObject | undefined {
    const t = this.target(group, version, plural, namespace, name);
    return this.store.get(t.typeKey, t.namespace ?? '', name);
  }

  listObjects(group: string, version: string, plural: string, namespace?: string): KObject[] {
    const t = this.target(group, version, plural, namespace);
    return this.store.list(t.typeKey, t.namespace);
  }

  // ---------------------------------------------------------------------------------------
  // HTTP

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const user = this.authenticate(req);
    let log: ApiRequestLog | undefined;
    try {
      if (user === undefined) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
      const body = await readBody(req);

      const path = url.pathname.replace(/\/+$/, '') || '/';
      const discovery = this.discovery(path);
      if (discovery !== undefined) return sendJson(res, 200, discovery);
      const t = this.route(path);
      if (!t) throw new ApiError(404, 'NotFound', `the server could not find the requested resource`);
      const verb = verbOf(req.method!, t, url);
      log = { user, verb, group: t.type.group, resource: t.type.plural, subresource: t.subresource, namespace: t.namespace, name: t.name, code: 0 };
      this.requests.push(log);
      if (!this.rbac.allowed(log)) {
        throw new ApiError(403, 'Forbidden', `${t.type.plural}${t.type.group ? `.${t.type.group}` : ''}${t.name ? ` "${t.name}"` : ''} is forbidden: User "${user}" cannot ${verb} resource "${t.type.plural}${t.subresource ? `/${t.subresource}` : ''}" in API group "${t.type.group}"${t.namespace ? ` in the namespace "${t.namespace}"` : ' at the cluster scope'}`);
      }
      const dryRun = url.searchParams.getAll('dryRun').includes('All');
      const strict = url.searchParams.get('fieldValidation') === 'Strict';
      let out: { code: number; body: unknown } | undefined;
      switch (verb) {
        case 'get':
          out = { code: 200, body: this.getSub(t) };
          break;
        case 'list': {
          const list = this.list(t, url);
          out = { code: 200, body: wantsTable(req) ? tableOf(t.type, list.items, list.metadata.resourceVersion) : list };
          break;
        }
        case 'watch':
          log.code = 200;
          return this.watch(t, url, req, res);
        case 'create':
          out = { code: 201, body: this.create(t, parseBody(body, req), { dryRun, strict }) };
          break;
        case 'update':
          out = { code: 200, body: this.update(t, parseBody(body, req), { dryRun, strict }) };
          break;
        case 'patch':
          out = this.patch(t, body, req.headers['content-type'] ?? '', { dryRun, strict, force: url.searchParams.get('force') === 'true' });
          break;
        case 'delete':
          out = { code: 200, body: this.delete(t, parseOptionalBody(body, req), url, dryRun) };
          break;
        case 'deletecollection':
          out = { code: 200, body: this.deleteCollection(t, url, dryRun) };
          break;
        default:
          throw new ApiError(405, 'MethodNotAllowed', `method ${req.method} not allowed`);
      }
      log.code = out.code;
      if (wantsTable(req) && verb === 'get' && !t.subresource) return sendJson(res, out.code, tableOf(t.type, [out.body as KObject], String(this.store.resourceVersion)));
      return sendJson(res, out.code, out.body);
    } catch (e) {
      const err = e instanceof ApiError ? e : e instanceof PatchError || e instanceof SelectorError ? new ApiError(400, 'BadRequest', e.message) : new ApiError(500, 'InternalError', (e as Error).stack ?? String(e));
      if (log) log.code = err.code;
      if (!res.headersSent) sendJson(res, err.code, statusOf(err));
    }
  }

  private authenticate(req: http.IncomingMessage): string | undefined {
    const h = req.headers.authorization;
    if (!h) return 'system:anonymous';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    return m ? this.tokens.get(m[1].trim()) : undefined;
  }

  // ---- discovery

  private discovery(path: string): unknown {
    if (path === '/version') return { major: '1', minor: '32', gitVersion: 'v1.32.0-raftkv-emulator', gitCommit: 'emulator', gitTreeState: 'clean', buildDate: '2026-01-01T00:00:00Z', goVersion: 'none', compiler: 'none', platform: 'linux/amd64' };
    if (path === '/healthz' || path === '/readyz' || path === '/livez') return 'ok';
    if (path === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${this.port}` }] };
    if (path === '/api/v1') return this.resourceList('', 'v1');
    if (path === '/apis') {
      return { kind: 'APIGroupList', apiVersion: 'v1', groups: [...this.registry.groups()].map(([name, versions]) => groupOf(name, versions)) };
    }
    if (path === '/openapi/v2') return openApiV2(this.registry);
    if (path === '/openapi/v3') return openApiV3Root(this.registry);
    let m = /^\/openapi\/v3\/(api\/v1|apis\/[^/]+\/[^/]+)$/.exec(path);
    if (m) {
      const doc = openApiV3Doc(this.registry, m[1]);
      if (!doc) throw new ApiError(404, 'NotFound', `no OpenAPI document for ${m[1]}`);
      return doc;
    }
    m = /^\/apis\/([^/]+)$/.exec(path);
    if (m) {
      const versions = this.registry.groups().get(m[1]);
      if (!versions) throw new ApiError(404, 'NotFound', `the server could not find the requested resource`);
      return { kind: 'APIGroup', apiVersion: 'v1', ...groupOf(m[1], versions) };
    }
    m = /^\/apis\/([^/]+)\/([^/]+)$/.exec(path);
    if (m && this.registry.groups().get(m[1])?.includes(m[2])) return this.resourceList(m[1], m[2]);
    return undefined;
  }

  private resourceList(group: string, version: string): unknown {
    const resources: unknown[] = [];
    for (const t of this.registry.all().filter((x) => x.group === group && x.version === version)) {
      resources.push({ name: t.plural, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: t.verbs, shortNames: t.shortNames.length ? t.shortNames : undefined, categories: t.categories.length ? t.categories : undefined });
      if (t.status) resources.push({ name: `${t.plural}/status`, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'patch', 'update'] });
      if (t.scale) resources.push({ name: `${t.plural}/scale`, singularName: '', namespaced: t.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
      if (t.kind === 'Pod' && !t.group) resources.push({ name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] });
    }
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: apiVersionOf({ group, version }), resources };
  }

  private route(path: string): Target | undefined {
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))\/(.+)$/.exec(path);
    if (!m) return undefined;
    const group = m[2] ?? '';
    const version = m[1] ?? m[3];
    const segs = m[4].split('/').map(decodeURIComponent);
    let namespace: string | undefined;
    if (segs[0] === 'namespaces' && segs.length >= 3) {
      namespace = segs[1];
      segs.splice(0, 2);
    }
    const [plural, name, subresource, ...rest] = segs;
    if (rest.length > 0) return undefined;
    const type = this.registry.byPlural(group, version, plural);
    if (!type) throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${plural}${group ? `.${group}` : ''})`);
    if (namespace !== undefined && !type.namespaced) throw new ApiError(404, 'NotFound', `${plural} is not namespaced`);
    if (subresource && !(subresource === 'status' && type.status) && !(subresource === 'scale' && type.scale) && !(subresource === 'log' && type.kind === 'Pod')) {
      throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${plural}/${subresource})`);
    }
    return { type, typeKey: typeKeyOf(type), namespace, name, subresource };
  }

  // ---- reads

  private getSub(t: Target): unknown {
    const o = this.mustGet(t);
    if (t.subresource === 'scale') return scaleOf(t.type, o);
    if (t.subresource === 'log') return this.podLog?.(o) ?? '';
    return o;
  }

  /** Set by the kubelet: the log of a pod's container. */
  podLog: ((pod: KObject) => string) | undefined;

  private mustGet(t: Target): KObject {
    const o = this.store.get(t.typeKey, t.namespace ?? '', t.name!);
    if (!o) throw notFound(t);
    return o;
  }

  private list(t: Target, url: URL) {
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
    let items = this.store.list(t.typeKey, t.namespace).filter((o) => labels(o) && fields(o));
    const limit = Number(url.searchParams.get('limit') ?? 0);
    const start = Number(url.searchParams.get('continue') || 0);
    let cont: string | undefined;
    if (limit > 0) {
      items = items.slice(start, start + limit);
      if (start + limit < this.store.list(t.typeKey, t.namespace).filter((o) => labels(o) && fields(o)).length) cont = String(start + limit);
    }
    return { kind: t.type.listKind, apiVersion: apiVersionOf(t.type), metadata: { resourceVersion: String(this.store.resourceVersion), ...(cont ? { continue: cont } : {}) }, items };
  }

  private watch(t: Target, url: URL, req: http.IncomingMessage, res: http.ServerResponse): void {
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
    const nameFilter = t.name;
    const accept = (o: KObject) => labels(o) && fields(o) && (nameFilter === undefined || o.metadata.name === nameFilter);
    const rvParam = url.searchParams.get('resourceVersion');
    const bookmarks = url.searchParams.get('allowWatchBookmarks') === 'true';
    // Streaming lists (client-go's WatchListClient, used by helm 4's waiter): the current objects
    // as ADDED, then a bookmark marking the end of the initial events, then changes.
    const initialEvents = url.searchParams.get('sendInitialEvents') === 'true';
    if (initialEvents && !bookmarks) throw new ApiError(422, 'Invalid', 'sendInitialEvents: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true');
    if (initialEvents && url.searchParams.get('resourceVersionMatch') !== 'NotOlderThan') throw new ApiError(422, 'Invalid', "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
    let backlog: { type: WatchType | 'BOOKMARK'; object: KObject }[];
    if (initialEvents) {
      const listedAt = String(this.store.resourceVersion);
      backlog = this.store.list(t.typeKey, t.namespace).filter(accept).map((object) => ({ type: 'ADDED' as const, object }));
      backlog.push({ type: 'BOOKMARK', object: { kind: t.type.kind, apiVersion: apiVersionOf(t.type), metadata: { resourceVersion: listedAt, annotations: { 'k8s.io/initial-events-end': 'true' } } } as KObject });
    } else if (!rvParam || rvParam === '0') {
      backlog = this.store.list(t.typeKey, t.namespace).filter(accept).map((object) => ({ type: 'ADDED', object }));
    } else {
      const rv = Number(rvParam);
      if (!Number.isInteger(rv)) throw new ApiError(400, 'BadRequest', `invalid resourceVersion ${JSON.stringify(rvParam)}`);
      try {
        backlog = this.store.since(rv, t.typeKey, t.namespace).filter((e) => accept(e.object)).map((e) => ({ type: e.type, object: e.object }));
      } catch (e) {
        if (!(e instanceof GoneError)) throw e;
        // As the real server: a 200 stream with one ERROR event carrying the 410 Status.
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        res.end(JSON.stringify({ type: 'ERROR', object: statusOf(new ApiError(410, 'Expired', e.message)) }) + '\n');
        return;
      }
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' });
    res.flushHeaders();
    // kubectl get -w asks for Tables: each event then carries a one-row Table.
    const asTable = wantsTable(req);
    const send = (type: string, object: unknown) =>
      res.write(JSON.stringify({ type, object: asTable && type !== 'BOOKMARK' && type !== 'ERROR' ? tableOf(t.type, [object as KObject], (object as KObject).metadata.resourceVersion) : object }) + '\n');
    for (const e of backlog) send(e.type, e.object);
    const watcher = { typeKey: t.typeKey, namespace: t.namespace, accept, send, bookmarks, kind: t.type.kind, apiVersion: apiVersionOf(t.type) };
    this.store.watchers.add(watcher);
    this.openWatches.add(res);
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    const done = () => {
      clearTimeout(timer);
      this.store.watchers.delete(watcher);
      this.openWatches.delete(res);
    };
    req.on('close', done);
    res.on('close', done);
  }

  private sendBookmarks(): void {
    for (const w of this.store.watchers as Set<any>) {
      if (w.bookmarks) w.send('BOOKMARK', { kind: w.kind, apiVersion: w.apiVersion, metadata: { resourceVersion: String(this.store.resourceVersion) } });
    }
  }

  // ---- writes

  create(t: Target, obj: KObject, o: { dryRun?: boolean; strict?: boolean } = {}): KObject {
    if (t.subresource) throw new ApiError(405, 'MethodNotAllowed', `create is not supported on ${t.type.plural}/${t.subresource}`);
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new ApiError(400, 'BadRequest', 'the body must be an object');
    obj.metadata ??= {};
    const ns = t.type.namespaced ? (t.namespace ?? obj.metadata.namespace ?? 'default') : undefined;
    if (t.type.namespaced && obj.metadata.namespace && obj.metadata.namespace !== ns) {
      throw new ApiError(400, 'BadRequest', `the namespace of the provided object (${obj.metadata.namespace}) does not match the namespace sent on the request (${ns})`);
    }
    if (!obj.metadata.name && obj.metadata.generateName) obj.metadata.name = `${obj.metadata.generateName}${randomUUID().slice(0, 5)}`;
    checkName(t.type, obj.metadata.name);
    checkKind(t.type, obj);
    if (ns !== undefined) {
      obj.metadata.namespace = ns;
      const nsObj = this.store.get('/namespaces', '', ns);
      if (!nsObj) throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`);
      if (nsObj.metadata.deletionTimestamp) throw new ApiError(403, 'Forbidden', `unable to create new content in namespace ${ns} because it is being terminated`);
    }
    if (this.store.get(t.typeKey, ns ?? '', obj.metadata.name)) {
      throw new ApiError(409, 'AlreadyExists', `${resourceName(t.type)} "${obj.metadata.name}" already exists`, { name: obj.metadata.name, group: t.type.group, kind: t.type.plural });
    }
    delete obj.metadata.resourceVersion;
    obj.metadata.uid = randomUUID();
    obj.metadata.creationTimestamp = now();
    obj.metadata.generation = 1;
    delete obj.metadata.deletionTimestamp;
    if (t.type.status && t.type.crd) delete obj.status;
    this.admit(t, obj, undefined, o.strict ?? false);
    if (o.dryRun) return { ...obj, metadata: { ...obj.metadata, resourceVersion: '' } };
    const stored = this.store.put(t.typeKey, obj, 'ADDED');
    this.afterWrite(t, 'ADDED', stored);
    return stored;
  }

  update(t: Target, obj: KObject, o: { dryRun?: boolean; strict?: boolean } = {}): KObject {
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new ApiError(400, 'BadRequest', 'the body must be an object');
    const current = this.store.get(t.typeKey, t.namespace ?? '', t.name!);
    if (!current) {
      if (t.subresource) throw notFound(t);
      // PUT to a missing object creates it (allowCreateOnUpdate, as for most built-in kinds).
      return this.create({ ...t }, obj, o);
    }
    if (t.subresource === 'scale') {
      const replicas = obj.spec?.replicas;
      if (!Number.isInteger(replicas) || replicas < 0) throw invalid(t, current.metadata.name, [{ field: 'spec.replicas', message: `Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0` }]);
      const next = structuredClone(current);
      setPath(next, t.type.scale!.specReplicasPath, replicas);
      this.commitUpdate(t, current, next, obj.metadata?.resourceVersion, false, o);
      return scaleOf(t.type, this.mustGet(t));
    }
    if (obj.metadata?.name !== undefined && obj.metadata.name !== t.name) throw new ApiError(400, 'BadRequest', `the name of the object (${obj.metadata.name}) does not match the name on the URL (${t.name})`);
    checkKind(t.type, obj);
    let next: KObject;
    if (t.subresource === 'status') {
      next = structuredClone(current);
      next.status = obj.status;
    } else {
      next = structuredClone(obj);
      next.metadata = { ...next.metadata, name: current.metadata.name, uid: current.metadata.uid, creationTimestamp: current.metadata.creationTimestamp, generation: current.metadata.generation, deletionTimestamp: current.metadata.deletionTimestamp };
      if (current.metadata.namespace) next.metadata.namespace = current.metadata.namespace;
      if (t.type.status) {
        if (current.status === undefined) delete next.status;
        else next.status = current.status;
      }
    }
    return this.commitUpdate(t, current, next, obj.metadata?.resourceVersion, t.subresource === 'status', o);
  }

  private commitUpdate(t: Target, current: KObject, next: KObject, rv: string | undefined, statusOnly: boolean, o: { dryRun?: boolean; strict?: boolean }): KObject {
    if (rv && rv !== current.metadata.resourceVersion) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${resourceName(t.type)} "${current.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`, { name: current.metadata.name, group: t.type.group, kind: t.type.plural });
    }
    if (!statusOnly) this.admit(t, next, current, o.strict ?? false);
    if (specOf(next) !== specOf(current)) next.metadata.generation = (current.metadata.generation ?? 1) + 1;
    if (o.dryRun) return next;
    // Finalizers gone from an object being deleted: it goes now.
    if (next.metadata.deletionTimestamp && !(next.metadata.finalizers ?? []).length) {
      const gone = this.store.remove(t.typeKey, next);
      this.afterWrite(t, 'DELETED', gone);
      return gone;
    }
    if (JSON.stringify(next) === JSON.stringify({ ...current, metadata: { ...current.metadata, resourceVersion: next.metadata.resourceVersion } })) return current;
    const stored = this.store.put(t.typeKey, next, 'MODIFIED');
    this.afterWrite(t, 'MODIFIED', stored);
    return stored;
  }

  private patch(t: Target, body: Buffer, contentType: string, o: { dryRun?: boolean; strict?: boolean; force?: boolean }): { code: number; body: unknown } {
    const type = contentType.split(';')[0].trim();
    let patch: unknown;
    try {
      patch = type === 'application/apply-patch+yaml' ? YAML.parse(body.toString()) : JSON.parse(body.toString() || 'null');
    } catch (e) {
      throw new ApiError(400, 'BadRequest', `the patch body is not valid ${type.includes('yaml') ? 'YAML' : 'JSON'}: ${(e as Error).message}`);
    }
    const current = this.store.get(t.typeKey, t.namespace ?? '', t.name!);
    if (type === 'application/apply-patch+yaml') {
      // Server-side apply, without field ownership: the applied configuration is merged into
      // the live object (or creates it). See README: managedFields are not tracked.
      if (!current) {
        if (t.subresource) throw notFound(t);
        return { code: 201, body: this.create(t, patch as KObject, o) };
      }
      const base = t.subresource === 'scale' ? scaleOf(t.type, current) : current;
      const merged = applyStrategicMergePatch(base as never, stripForApply(patch as KObject) as never) as KObject;
      return { code: 200, body: this.update(t, { ...merged, metadata: { ...merged.metadata, resourceVersion: undefined } }, o) };
    }
    if (!current) throw notFound(t);
    const base = t.subresource === 'scale' ? scaleOf(t.type, current) : current;
    let next: KObject;
    if (type === 'application/json-patch+json') next = applyJsonPatch(base as never, patch) as KObject;
    else if (type === 'application/merge-patch+json') next = applyMergePatch(base as never, patch as never) as KObject;
    else if (type === 'application/strategic-merge-patch+json') {
      if (t.type.crd) throw new ApiError(415, 'UnsupportedMediaType', 'strategic merge patch is not supported for custom resources: use a merge patch (--type merge) or a JSON patch');
      next = applyStrategicMergePatch(base as never, patch as never) as KObject;
    } else throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`);
    // A patch carries a precondition only when it names a resourceVersion.
    const rv = (patch as KObject)?.metadata?.resourceVersion;
    return { code: 200, body: this.update(t, { ...next, metadata: { ...next.metadata, resourceVersion: rv } }, o) };
  }

  delete(t: Target, opts: Record<string, any> | undefined, url: URL | undefined, dryRun = false): unknown {
    const current = this.mustGet(t);
    const policy = opts?.propagationPolicy ?? url?.searchParams.get('propagationPolicy') ?? (opts?.orphanDependents ? 'Orphan' : 'Background');
    const grace = opts?.gracePeriodSeconds ?? (url?.searchParams.get('gracePeriodSeconds') !== null && url?.searchParams.get('gracePeriodSeconds') !== undefined ? Number(url.searchParams.get('gracePeriodSeconds')) : undefined);
    const pre = opts?.preconditions;
    if (pre?.uid && pre.uid !== current.metadata.uid) throw new ApiError(409, 'Conflict', `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${current.metadata.uid}`);
    if (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion) throw new ApiError(409, 'Conflict', `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`);
    if (dryRun) return current;
    const finalizers: string[] = [...(current.metadata.finalizers ?? [])];
    if (policy === 'Foreground' && this.dependentsOf(current).length > 0 && !finalizers.includes('foregroundDeletion')) finalizers.push('foregroundDeletion');
    if (policy === 'Orphan' && this.dependentsOf(current).length > 0 && !finalizers.includes('orphan')) finalizers.push('orphan');
    // A pod on a node is deleted gracefully: the kubelet stops it and then removes it.
    const graceful = t.type.kind === 'Pod' && !t.type.group && current.spec?.nodeName && this.kubeletFor?.(current.spec.nodeName) && grace !== 0;
    if (finalizers.length > 0 || graceful) {
      if (current.metadata.deletionTimestamp) return current;
      const next = structuredClone(current);
      next.metadata.deletionTimestamp = now();
      next.metadata.deletionGracePeriodSeconds = graceful ? (grace ?? current.spec?.terminationGracePeriodSeconds ?? 30) : 0;
      next.metadata.finalizers = finalizers;
      const stored = this.store.put(t.typeKey, next, 'MODIFIED');
      this.afterWrite(t, 'MODIFIED', stored);
      if (finalizers.includes('foregroundDeletion')) this.collectGarbage();
      if (finalizers.includes('orphan')) this.orphan(stored, t);
      return stored;
    }
    const gone = this.store.remove(t.typeKey, current);
    this.afterWrite(t, 'DELETED', gone);
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: current.metadata.name, group: t.type.group, kind: t.type.plural, uid: current.metadata.uid } };
  }

  /** Set by the kubelet: whether a node has a kubelet that will finish graceful pod deletion. */
  kubeletFor: ((node: string) => boolean) | undefined;

  private deleteCollection(t: Target, url: URL, dryRun: boolean): unknown {
    const { items } = this.list(t, url);
    for (const o of items) this.delete({ ...t, name: o.metadata.name, namespace: o.metadata.namespace }, undefined, url, dryRun);
    return { kind: t.type.listKind, apiVersion: apiVersionOf(t.type), metadata: {}, items };
  }

  /** Validation and defaulting on create and update (CRD schemas; CRDs themselves; names). */
  private admit(t: Target, obj: KObject, old: KObject | undefined, strict: boolean): void {
    const schema = t.type.crd?.schema;
    if (t.type.crd) {
      if (schema) {
        if (strict) {
          const unknown = unknownFields(obj, schema, true);
          if (unknown.length > 0) throw new ApiError(400, 'BadRequest', `${t.type.kind} in version "${t.type.version}" cannot be handled as a ${t.type.kind}: strict decoding error: ${unknown.map((f) => `unknown field "${f}"`).join(', ')}`);
        }
        pruneAndDefault(obj, schema, true);
        const errs = validate(withoutMeta(obj), schema).filter((e) => !e.field.startsWith('metadata') && !e.field.startsWith('apiVersion') && !e.field.startsWith('kind'));
        if (errs.length > 0) throw invalid(t, obj.metadata.name, errs);
      }
    }
    if (t.type.kind === 'CustomResourceDefinition') this.admitCrd(obj);
    if (t.type.kind === 'Namespace' && old === undefined) obj.status = { phase: 'Active' };
    if (t.type.kind === 'Service' && !t.type.group) {
      obj.spec ??= {};
      obj.spec.type ??= 'ClusterIP';
      if (old?.spec?.clusterIP) obj.spec.clusterIP = old.spec.clusterIP;
      obj.spec.clusterIP ??= `10.96.${(this.store.resourceVersion >> 8) & 255}.${this.store.resourceVersion & 255}`;
      obj.spec.clusterIPs = [obj.spec.clusterIP];
      for (const p of obj.spec.ports ?? []) {
        p.protocol ??= 'TCP';
        p.targetPort ??= p.port;
      }
    }
    if (t.type.kind === 'Pod' && !t.type.group && old === undefined) {
      obj.spec ??= {};
      obj.spec.restartPolicy ??= 'Always';
      obj.spec.terminationGracePeriodSeconds ??= 30;
      obj.spec.serviceAccountName ??= 'default';
      obj.status = { phase: 'Pending', conditions: [] };
      if (!Array.isArray(obj.spec.containers) || obj.spec.containers.length === 0) throw invalid(t, obj.metadata.name, [{ field: 'spec.containers', message: 'Required value' }]);
    }
    if (t.type.kind === 'Deployment' && old === undefined) {
      obj.spec ??= {};
      obj.spec.replicas ??= 1;
    }
  }

  private admitCrd(crd: KObject): void {
    const spec = crd.spec ?? {};
    const names = spec.names ?? {};
    const errs: { field: string; message: string }[] = [];
    if (!spec.group) errs.push({ field: 'spec.group', message: 'Required value' });
    if (!names.plural) errs.push({ field: 'spec.names.plural', message: 'Required value' });
    if (!names.kind) errs.push({ field: 'spec.names.kind', message: 'Required value' });
    if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') errs.push({ field: 'spec.scope', message: `Unsupported value: ${JSON.stringify(spec.scope)}: supported values: "Cluster", "Namespaced"` });
    if (crd.metadata.name !== `${names.plural}.${spec.group}`) errs.push({ field: 'metadata.name', message: `Invalid value: ${JSON.stringify(crd.metadata.name)}: must be spec.names.plural+"."+spec.group` });
    const versions: any[] = spec.versions ?? [];
    if (versions.length === 0) errs.push({ field: 'spec.versions', message: 'Invalid value: must have exactly one version marked as storage version' });
    if (versions.filter((v) => v.storage).length !== 1) errs.push({ field: 'spec.versions', message: 'Invalid value: must have exactly one version marked as storage version' });
    versions.forEach((v, i) => {
      const s = v.schema?.openAPIV3Schema;
      if (!s) errs.push({ field: `spec.versions[${i}].schema.openAPIV3Schema`, message: 'Required value: schemas are required' });
      for (const e of structuralErrors(s)) errs.push({ field: `spec.versions[${i}].schema.openAPIV3Schema`, message: e });
    });
    if (errs.length > 0) throw new ApiError(422, 'Invalid', `CustomResourceDefinition.apiextensions.k8s.io "${crd.metadata.name}" is invalid: ${errs.map((e) => `${e.field}: ${e.message}`).join(', ')}`, { causes: errs });
    crd.status = {
      conditions: [
        { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts', message: 'no conflicts found', lastTransitionTime: now() },
        { type: 'Established', status: 'True', reason: 'InitialNamesAccepted', message: 'the initial names have been accepted', lastTransitionTime: now() },
      ],
      acceptedNames: names,
      storedVersions: versions.filter((v) => v.storage).map((v) => v.name),
    };
  }

  // ---- side effects: CRD registration, garbage collection, namespace deletion, watchers

  private afterWrite(t: Target, type: WatchType, o: KObject): void {
    if (t.type.kind === 'CustomResourceDefinition') {
      if (type === 'DELETED') {
        for (const rt of this.registry.all().filter((x) => x.crd?.crdName === o.metadata.name)) for (const obj of this.store.list(typeKeyOf(rt))) this.store.remove(typeKeyOf(rt), obj);
        this.registry.removeCrd(o.metadata.name);
      } else this.registry.setCrd(o.metadata.name, typesOfCrd(o));
    }
    if (t.type.kind === 'Namespace' && !t.type.group && type === 'MODIFIED' && o.metadata.deletionTimestamp) this.emptyNamespace(o);
    // An object whose owners are already gone (made by a controller that raced the owner's
    // deletion) is collected too, as the real garbage collector does.
    if (type === 'DELETED' || (type === 'ADDED' && (o.metadata.ownerReferences ?? []).length > 0)) this.collectGarbage();
    for (const f of this.onChange) f(t.typeKey, type, o);
  }

  private dependentsOf(owner: KObject): { type: ResourceType; o: KObject }[] {
    const out: { type: ResourceType; o: KObject }[] = [];
    for (const type of this.registry.all()) {
      for (const o of this.store.list(typeKeyOf(type))) {
        if ((o.metadata.ownerReferences ?? []).some((r: any) => r.uid === owner.metadata.uid)) out.push({ type, o });
      }
    }
    return out;
  }

  /**
   * The garbage collector: an object whose owners are all gone is deleted (background); an owner
   * waiting in foreground deletion goes once its blocking dependents are gone.
   */
  private collecting = false;

  private collectGarbage(): void {
    // Deletions made here call back into this; one collector runs, the outer loop sees them.
    if (this.collecting) return;
    this.collecting = true;
    try {
      this.collectRounds();
    } finally {
      this.collecting = false;
    }
  }

  private collectRounds(): void {
    for (let round = 0; round < 20; round++) {
      let changed = false;
      const live = new Map<string, KObject>();
      for (const type of this.registry.all()) for (const o of this.store.list(typeKeyOf(type))) live.set(o.metadata.uid, o);
      for (const type of this.registry.all()) {
        for (const o of this.store.list(typeKeyOf(type))) {
          const refs: any[] = o.metadata.ownerReferences ?? [];
          if (refs.length === 0) continue;
          const owners = refs.map((r) => live.get(r.uid));
          const foregroundOwner = owners.find((w) => w && w.metadata.deletionTimestamp && (w.metadata.finalizers ?? []).includes('foregroundDeletion'));
          if (owners.every((w) => !w) || foregroundOwner) {
            if (o.metadata.deletionTimestamp || !this.store.get(typeKeyOf(type), o.metadata.namespace ?? '', o.metadata.name)) continue;
            this.delete({ type, typeKey: typeKeyOf(type), namespace: o.metadata.namespace, name: o.metadata.name }, { propagationPolicy: foregroundOwner ? 'Foreground' : 'Background' }, undefined);
            changed = true;
          }
        }
      }
      // Owners in foreground deletion whose dependents are all gone lose the finalizer.
      for (const type of this.registry.all()) {
        for (const o of this.store.list(typeKeyOf(type))) {
          if (!o.metadata.deletionTimestamp || !(o.metadata.finalizers ?? []).includes('foregroundDeletion')) continue;
          if (this.dependentsOf(o).length > 0) continue;
          const next = structuredClone(o);
          next.metadata.finalizers = next.metadata.finalizers.filter((f: string) => f !== 'foregroundDeletion');
          this.commitUpdate({ type, typeKey: typeKeyOf(type), namespace: o.metadata.namespace, name: o.metadata.name }, o, next, undefined, true, {});
          changed = true;
        }
      }
      if (!changed) return;
    }
  }

  private orphan(owner: KObject, t: Target): void {
    for (const { type, o } of this.dependentsOf(owner)) {
      const next = structuredClone(o);
      next.metadata.ownerReferences = next.metadata.ownerReferences.filter((r: any) => r.uid !== owner.metadata.uid);
      this.commitUpdate({ type, typeKey: typeKeyOf(type), namespace: o.metadata.namespace, name: o.metadata.name }, o, next, undefined, true, {});
    }
    const next = structuredClone(this.store.get(t.typeKey, owner.metadata.namespace ?? '', owner.metadata.name)!);
    next.metadata.finalizers = next.metadata.finalizers.filter((f: string) => f !== 'orphan');
    this.commitUpdate({ ...t, name: owner.metadata.name }, owner, next, undefined, true, {});
  }

  private emptyNamespace(ns: KObject): void {
    for (const type of this.registry.all().filter((x) => x.namespaced)) {
      for (const o of this.store.list(typeKeyOf(type), ns.metadata.name)) {
        if (!o.metadata.deletionTimestamp) this.delete({ type, typeKey: typeKeyOf(type), namespace: ns.metadata.name, name: o.metadata.name }, { gracePeriodSeconds: 0 }, undefined);
      }
    }
    const next = structuredClone(ns);
    next.metadata.finalizers = (next.metadata.finalizers ?? []).filter((f: string) => f !== 'kubernetes');
    next.spec = { finalizers: [] };
    const nsType = this.registry.byPlural('', 'v1', 'namespaces')!;
    this.commitUpdate({ type: nsType, typeKey: typeKeyOf(nsType), name: ns.metadata.name }, ns, next, undefined, true, {});
  }

  /** Deleting a namespace: it is emptied, then removed (its "kubernetes" finalizer). */
  deleteNamespace(name: string): void {
    const t = this.target('', 'v1', 'namespaces', undefined, name);
    const ns = this.mustGet(t);
    const next = structuredClone(ns);
    next.metadata.finalizers = [...(next.metadata.finalizers ?? []), 'kubernetes'];
    next.metadata.deletionTimestamp = now();
    next.status = { phase: 'Terminating' };
    const stored = this.store.put(t.typeKey, next, 'MODIFIED');
    this.afterWrite(t, 'MODIFIED', stored);
  }
}

// ---------------------------------------------------------------------------------------
// helpers

export function typeKeyOf(t: Pick<ResourceType, 'group' | 'plural'>): string {
  return `${t.group}/${t.plural}`;
}

function groupOf(name: string, versions: string[]) {
  const vs = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
  return { name, versions: vs, preferredVersion: vs[0] };
}

function verbOf(method: string, t: Target, url: URL): string {
  const watch = url.searchParams.get('watch');
  switch (method) {
    case 'GET':
      if (watch === 'true' || watch === '1') return 'watch';
      return t.name ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return t.name ? 'delete' : 'deletecollection';
    default:
      return method.toLowerCase();
  }
}

function wantsTable(req: http.IncomingMessage): boolean {
  return /as=Table/.test(req.headers.accept ?? '');
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > 8 << 20) {
        reject(new ApiError(413, 'RequestEntityTooLarge', 'request entity too large: limit is 8 MiB'));
        req.destroy();
        return;
      }
      parts.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function parseBody(body: Buffer, req: http.IncomingMessage): KObject {
  const type = req.headers['content-type'] ?? '';
  if (type.includes('protobuf')) {
    try {
      return decodeK8sProtobuf(body) as KObject;
    } catch (e) {
      throw new ApiError(415, 'UnsupportedMediaType', (e as Error).message);
    }
  }
  const text = body.toString();
  try {
    return (req.headers['content-type'] ?? '').includes('yaml') ? YAML.parse(text) : JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, 'BadRequest', `the body is not valid JSON: ${(e as Error).message}`);
  }
}

function parseOptionalBody(body: Buffer, req: http.IncomingMessage): Record<string, any> | undefined {
  if (body.length === 0) return undefined;
  if ((req.headers['content-type'] ?? '').includes('protobuf')) return parseBody(body, req);
  try {
    return JSON.parse(body.toString());
  } catch {
    throw new ApiError(400, 'BadRequest', 'the DeleteOptions body is not valid JSON');
  }
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(code, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function statusOf(e: ApiError) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: e.message, reason: e.reason, code: e.code, ...(e.details ? { details: e.details } : {}) };
}

function notFound(t: Target): ApiError {
  return new ApiError(404, 'NotFound', `${resourceName(t.type)} "${t.name}" not found`, { name: t.name, group: t.type.group, kind: t.type.plural });
}

function invalid(t: Target, name: string, errs: { field: string; message: string }[]): ApiError {
  return new ApiError(422, 'Invalid', `${t.type.kind}${t.type.group ? `.${t.type.group}` : ''} "${name}" is invalid: ${errs.map((e) => `${e.field}: ${e.message}`).join(', ')}`, {
    name,
    group: t.type.group,
    kind: t.type.kind,
    causes: errs.map((e) => ({ reason: 'FieldValueInvalid', message: e.message, field: e.field })),
  });
}

function resourceName(t: ResourceType): string {
  return t.group ? `${t.plural}.${t.group}` : t.plural;
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function checkName(t: ResourceType, name: unknown): void {
  if (typeof name !== 'string' || name === '') throw new ApiError(422, 'Invalid', `${t.kind} "" is invalid: metadata.name: Required value: name or generateName is required`);
  if (name.length > 253 || !NAME.test(name)) {
    throw new ApiError(422, 'Invalid', `${t.kind} "${name}" is invalid: metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`);
  }
}

function checkKind(t: ResourceType, obj: KObject): void {
  obj.apiVersion ??= apiVersionOf(t);
  obj.kind ??= t.kind;
  if (obj.kind !== t.kind || obj.apiVersion !== apiVersionOf(t)) {
    throw new ApiError(400, 'BadRequest', `the API version in the data (${obj.apiVersion}) does not match the expected API version (${apiVersionOf(t)}) or the kind (${obj.kind}) is not ${t.kind}`);
  }
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Everything but metadata and status: a change here bumps metadata.generation. */
function specOf(o: KObject): string {
  const { metadata: _m, status: _s, ...rest } = o;
  return JSON.stringify(rest);
}

function withoutMeta(o: KObject): KObject {
  const { metadata: _m, ...rest } = o;
  return rest as KObject;
}

function stripForApply(o: KObject): KObject {
  const copy = structuredClone(o);
  if (copy.metadata) {
    delete copy.metadata.managedFields;
    delete copy.metadata.resourceVersion;
  }
  return copy;
}

function unknownFields(obj: KObject, schema: JsonSchema, top: boolean, path = ''): string[] {
  const out: string[] = [];
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    if (Array.isArray(obj) && schema.items) obj.forEach((x, i) => out.push(...unknownFields(x, schema.items!, false, `${path}[${i}]`)));
    return out;
  }
  if (schema['x-kubernetes-preserve-unknown-fields'] || schema.additionalProperties === true) return out;
  const additional = typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined;
  for (const [k, v] of Object.entries(obj)) {
    if (top && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) continue;
    const s = schema.properties?.[k] ?? additional;
    if (!s) out.push(path ? `${path}.${k}` : k);
    else out.push(...unknownFields(v, s, false, path ? `${path}.${k}` : k));
  }
  return out;
}

export function getPath(o: unknown, jsonPath: string): unknown {
  let v: any = o;
  for (const seg of jsonPath.replace(/^\./, '').split('.')) {
    if (v === undefined || v === null) return undefined;
    v = v[seg];
  }
  return v;
}

function setPath(o: any, jsonPath: string, value: unknown): void {
  const segs = jsonPath.replace(/^\./, '').split('.');
  let v = o;
  for (const s of segs.slice(0, -1)) v = v[s] ??= {};
  v[segs[segs.length - 1]] = value;
}

function scaleOf(t: ResourceType, o: KObject) {
  const sel = t.scale?.labelSelectorPath ? getPath(o, t.scale.labelSelectorPath) : undefined;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name: o.metadata.name, namespace: o.metadata.namespace, uid: o.metadata.uid, resourceVersion: o.metadata.resourceVersion, creationTimestamp: o.metadata.creationTimestamp },
    spec: { replicas: getPath(o, t.scale!.specReplicasPath) ?? 0 },
    status: { replicas: getPath(o, t.scale!.statusReplicasPath) ?? 0, ...(typeof sel === 'string' ? { selector: sel } : {}) },
  };
}

function typesOfCrd(crd: KObject): ResourceType[] {
  const spec = crd.spec;
  const names = spec.names;
  return (spec.versions as any[])
    .filter((v) => v.served !== false)
    .map((v) => ({
      group: spec.group,
      version: v.name,
      kind: names.kind,
      listKind: names.listKind ?? `${names.kind}List`,
      plural: names.plural,
      singular: names.singular ?? names.kind.toLowerCase(),
      namespaced: spec.scope === 'Namespaced',
      shortNames: names.shortNames ?? [],
      categories: names.categories ?? [],
      verbs: ['delete', 'deletecollection', 'get', 'list', 'patch', 'create', 'update', 'watch'],
      status: v.subresources?.status !== undefined,
      scale: v.subresources?.scale,
      crd: { schema: v.schema?.openAPIV3Schema, printerColumns: (v.additionalPrinterColumns ?? []) as PrinterColumn[], crdName: crd.metadata.name },
    }));
}
