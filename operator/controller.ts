/**
 * `raftkv operator`: watches RaftClusters (and the pods they own) with informers, queues each
 * cluster by key (a failing cluster backs off alone, never blocking another), reconciles while it
 * holds the Lease (two operators never both act), records Events, and serves Prometheus metrics
 * and health probes.
 */
import http from 'node:http';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, makeInformer, ApiException, KubernetesObject, KubernetesListObject, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import client from 'prom-client';
import { LABEL_CLUSTER, LABEL_GROUP } from './labels.js';
import { GroupReconciler } from './logger-group.js';
import { LoggerGroupView, Reconciler } from './reconcile.js';
import { ClusterRef, Obj } from './resources.js';
import { RaftClusterSpec, RaftLoggerGroupSpec } from './spec.js';

/** Work-queue keys: `ns/name` for a RaftCluster, `group:ns/name` for a RaftLoggerGroup. */
const GROUP_KEY = 'group:';

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  /** Watch one namespace, or all when undefined. */
  namespace?: string;
  /** This process's identity in the Lease. */
  id: string;
  leaseNamespace: string;
  leaseName?: string;
  leaseSeconds?: number;
  metricsPort?: number;
  metricsHost?: string;
  log?: (l: string) => void;
}

export class Operator {
  readonly registry = new client.Registry();
  private readonly reconciles = new client.Counter({ name: 'raftkv_operator_reconciles_total', help: 'Reconcile passes', labelNames: ['result'], registers: [this.registry] });
  private readonly duration = new client.Histogram({ name: 'raftkv_operator_reconcile_seconds', help: 'Time of one reconcile pass', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry] });
  private readonly depth = new client.Gauge({ name: 'raftkv_operator_queue_depth', help: 'Clusters waiting to be reconciled', registers: [this.registry] });
  private readonly leading = new client.Gauge({ name: 'raftkv_operator_leader', help: '1 while this operator holds the Lease', registers: [this.registry] });
  private readonly reconciler: Reconciler;
  private readonly groupReconciler: GroupReconciler;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly leases: CoordinationV1Api;
  private readonly queue = new Map<string, NodeJS.Timeout | 'running' | 'again'>();
  private readonly failures = new Map<string, number>();
  private informers: { stop(): Promise<void> }[] = [];
  private leaseTimer: NodeJS.Timeout | undefined;
  private server: http.Server | undefined;
  private stopping = false;
  isLeader = false;
  ready = false;
  private readonly log: (l: string) => void;
  private clusters!: ReturnType<typeof makeInformer<Obj>>;
  private groups!: ReturnType<typeof makeInformer<Obj>>;
  private pods!: ReturnType<typeof makeInformer<Obj>>;

  constructor(private readonly o: OperatorOptions) {
    this.log = o.log ?? ((l) => console.log(l));
    this.core = o.kubeConfig.makeApiClient(CoreV1Api);
    this.custom = o.kubeConfig.makeApiClient(CustomObjectsApi);
    this.leases = o.kubeConfig.makeApiClient(CoordinationV1Api);
    this.reconciler = new Reconciler(o.kubeConfig, (c, type, reason, message) => this.event(c, type, reason, message), this.log);
    this.groupReconciler = new GroupReconciler(o.kubeConfig, (c, type, reason, message) => this.event(c, type, reason, message), this.log);
  }

  async start(): Promise<void> {
    if (this.o.metricsPort !== undefined) await this.serveMetrics();
    const ns = this.o.namespace;
    this.clusters = this.informerOf('raftclusters');
    // A cluster's change may change which clusters a group serves: its groups look again too.
    const clusterChanged = (o: KubernetesObject) => {
      this.enqueue(`${o.metadata!.namespace}/${o.metadata!.name}`, 0);
      this.enqueueGroupsOf(o.metadata!.namespace!, 200);
    };
    this.clusters.on('add', clusterChanged);
    this.clusters.on('update', clusterChanged);
    this.clusters.on('delete', (o) => {
      this.forget(`${o.metadata!.namespace}/${o.metadata!.name}`);
      this.enqueueGroupsOf(o.metadata!.namespace!, 200);
    });
    this.groups = this.informerOf('raftloggergroups');
    // A group's change (its loggers, or the group going) matters to the clusters it serves.
    const groupChanged = (o: KubernetesObject) => {
      this.enqueue(`${GROUP_KEY}${o.metadata!.namespace}/${o.metadata!.name}`, 0);
      this.enqueueClustersOf(o.metadata!.namespace!, o.metadata!.name!, 500);
    };
    this.groups.on('add', groupChanged);
    this.groups.on('update', groupChanged);
    this.groups.on('delete', (o) => {
      this.forget(`${GROUP_KEY}${o.metadata!.namespace}/${o.metadata!.name}`);
      this.enqueueClustersOf(o.metadata!.namespace!, o.metadata!.name!, 0);
    });
    const podPath = ns ? `/api/v1/namespaces/${ns}/pods` : '/api/v1/pods';
    const managed = 'app.kubernetes.io/managed-by=raftkv-operator';
    const listPods = async () => (ns ? await this.core.listNamespacedPod({ namespace: ns, labelSelector: managed }) : await this.core.listPodForAllNamespaces({ labelSelector: managed })) as unknown as KubernetesListObject<Obj>;
    const pods = (this.pods = makeInformer<Obj>(this.o.kubeConfig, podPath, listPods, managed));
    const podChanged = (p: KubernetesObject) => {
      const cluster = p.metadata?.labels?.[LABEL_CLUSTER];
      if (cluster) this.enqueue(`${p.metadata!.namespace}/${cluster}`, 200);
      const group = p.metadata?.labels?.[LABEL_GROUP];
      if (group) {
        this.enqueue(`${GROUP_KEY}${p.metadata!.namespace}/${group}`, 200);
        this.enqueueClustersOf(p.metadata!.namespace!, group, 500);
      }
    };
    pods.on('add', podChanged);
    pods.on('update', podChanged);
    pods.on('delete', podChanged);
    for (const inf of [this.clusters, this.groups, pods]) {
      // A watch that fails is restarted with a backoff, resuming from a fresh list.
      inf.on('error', (e) => {
        if (this.stopping) return;
        this.log(`operator: watch failed (${(e as Error)?.message ?? e}); restarting in 2 s`);
        setTimeout(() => void inf.start().catch(() => undefined), 2000);
      });
    }
    await this.clusters.start();
    await this.groups.start();
    await pods.start();
    this.informers = [this.clusters, this.groups, pods];
    await this.campaign();
    this.ready = true;
  }

  /** An informer on one of our kinds, in the watched namespace or all of them. */
  private informerOf(plural: 'raftclusters' | 'raftloggergroups') {
    const ns = this.o.namespace;
    const path = ns ? `/apis/raftkv.io/v1alpha1/namespaces/${ns}/${plural}` : `/apis/raftkv.io/v1alpha1/${plural}`;
    const list = async () =>
      (ns
        ? await this.custom.listNamespacedCustomObject({ group: 'raftkv.io', version: 'v1alpha1', namespace: ns, plural })
        : await this.custom.listClusterCustomObject({ group: 'raftkv.io', version: 'v1alpha1', plural })) as KubernetesListObject<Obj>;
    return makeInformer<Obj>(this.o.kubeConfig, path, list);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.leaseTimer);
    for (const t of this.queue.values()) if (typeof t !== 'string') clearTimeout(t);
    this.queue.clear();
    for (const i of this.informers) await i.stop().catch(() => undefined);
    if (this.isLeader) await this.releaseLease().catch(() => undefined);
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  // ---- leader election (coordination.k8s.io Lease)

  private get leaseName(): string {
    return this.o.leaseName ?? 'raftkv-operator';
  }

  private async campaign(): Promise<void> {
    if (this.stopping) return;
    const seconds = this.o.leaseSeconds ?? 15;
    try {
      const won = await this.tryLease(seconds);
      if (won && !this.isLeader) {
        this.log(`operator ${this.o.id}: leading (Lease ${this.o.leaseNamespace}/${this.leaseName})`);
        this.isLeader = true;
        this.leading.set(1);
        for (const c of this.clusters.list()) this.enqueue(`${c.metadata!.namespace}/${c.metadata!.name}`, 0);
        for (const g of this.groups.list()) this.enqueue(`${GROUP_KEY}${g.metadata!.namespace}/${g.metadata!.name}`, 0);
      } else if (!won && this.isLeader) {
        this.log(`operator ${this.o.id}: lost the Lease; standing by`);
        this.isLeader = false;
        this.leading.set(0);
      }
    } catch (e) {
      this.log(`operator ${this.o.id}: Lease: ${(e as Error).message}`);
      if (this.isLeader) {
        this.isLeader = false;
        this.leading.set(0);
      }
    }
    this.leaseTimer = setTimeout(() => void this.campaign(), (seconds * 1000) / 3);
  }

  private async tryLease(seconds: number): Promise<boolean> {
    const now = new Date();
    const micro = now.toISOString().replace('Z', '000Z');
    let lease: any;
    try {
      lease = await this.leases.readNamespacedLease({ name: this.leaseName, namespace: this.o.leaseNamespace });
    } catch (e) {
      if (!(e instanceof ApiException && e.code === 404)) throw e;
      try {
        await this.leases.createNamespacedLease({ namespace: this.o.leaseNamespace, body: { metadata: { name: this.leaseName }, spec: { holderIdentity: this.o.id, leaseDurationSeconds: seconds, acquireTime: micro as never, renewTime: micro as never, leaseTransitions: 0 } } });
        return true;
      } catch (e2) {
        if (e2 instanceof ApiException && e2.code === 409) return false;
        throw e2;
      }
    }
    const holder = lease.spec?.holderIdentity;
    const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
    const expired = !holder || renewed + (lease.spec?.leaseDurationSeconds ?? seconds) * 1000 < now.getTime();
    if (holder !== this.o.id && !expired) return false;
    lease.spec = {
      ...lease.spec,
      holderIdentity: this.o.id,
      leaseDurationSeconds: seconds,
      renewTime: micro,
      ...(holder !== this.o.id ? { acquireTime: micro, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 } : {}),
    };
    try {
      // The resourceVersion makes this a compare-and-swap: of two operators, one wins.
      await this.leases.replaceNamespacedLease({ name: this.leaseName, namespace: this.o.leaseNamespace, body: lease });
      return true;
    } catch (e) {
      if (e instanceof ApiException && e.code === 409) return false;
      throw e;
    }
  }

  private async releaseLease(): Promise<void> {
    const lease: any = await this.leases.readNamespacedLease({ name: this.leaseName, namespace: this.o.leaseNamespace });
    if (lease.spec?.holderIdentity !== this.o.id) return;
    lease.spec.holderIdentity = '';
    await this.leases.replaceNamespacedLease({ name: this.leaseName, namespace: this.o.leaseNamespace, body: lease });
  }

  // ---- the work queue: one pass per cluster at a time, backoff per cluster

  private enqueue(key: string, delayMs: number): void {
    if (this.stopping) return;
    const cur = this.queue.get(key);
    if (cur === 'running' || cur === 'again') {
      this.queue.set(key, 'again');
      return;
    }
    if (cur) clearTimeout(cur);
    this.queue.set(key, setTimeout(() => void this.process(key), delayMs));
    this.depth.set(this.queue.size);
  }

  private enqueueGroupsOf(namespace: string, delayMs: number): void {
    for (const g of this.groups?.list(namespace) ?? []) this.enqueue(`${GROUP_KEY}${namespace}/${g.metadata!.name}`, delayMs);
  }

  private enqueueClustersOf(namespace: string, group: string, delayMs: number): void {
    for (const c of this.clusters.list(namespace)) if (c.spec?.loggerGroup === group) this.enqueue(`${namespace}/${c.metadata!.name}`, delayMs);
  }

  private forget(key: string): void {
    const cur = this.queue.get(key);
    if (cur && typeof cur !== 'string') clearTimeout(cur);
    this.queue.delete(key);
    this.failures.delete(key);
  }

  private async process(key: string): Promise<void> {
    if (!this.isLeader || this.stopping) {
      this.queue.delete(key);
      return;
    }
    this.queue.set(key, 'running');
    const isGroup = key.startsWith(GROUP_KEY);
    const [namespace, name] = key.slice(isGroup ? GROUP_KEY.length : 0).split('/');
    const end = this.duration.startTimer();
    let next: number | undefined;
    try {
      const rc = isGroup ? this.groups.get(name, namespace) : this.clusters.get(name, namespace);
      if (!rc) {
        this.queue.delete(key);
        return;
      }
      const parsed = isGroup ? undefined : RaftClusterSpec.safeParse(rc.spec ?? {});
      if (!parsed) {
        next = await this.reconcileGroup(rc, namespace, name);
      } else if (!parsed.success) {
        const message = parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; ');
        await this.event({ name, namespace, uid: rc.metadata!.uid! }, 'Warning', 'InvalidSpec', message);
        await this.custom.patchNamespacedCustomObjectStatus({ group: 'raftkv.io', version: 'v1alpha1', namespace, plural: 'raftclusters', name, body: [{ op: 'add', path: '/status', value: { ...(rc.status ?? {}), phase: 'Invalid', conditions: [{ type: 'Degraded', status: 'True', reason: 'InvalidSpec', message }] } }] });
        this.reconciles.inc({ result: 'invalid' });
      } else {
        let group: LoggerGroupView | undefined;
        if (parsed.data.loggerGroup) {
          const g = this.groups.get(parsed.data.loggerGroup, namespace);
          const gs = g ? RaftLoggerGroupSpec.safeParse(g.spec ?? {}) : undefined;
          const pods = this.pods.list(namespace).filter((p) => p.metadata?.labels?.[LABEL_GROUP] === parsed.data.loggerGroup && !p.metadata?.deletionTimestamp);
          group = { name: parsed.data.loggerGroup, spec: gs?.success ? gs.data : undefined, pods };
        }
        const r = await this.reconciler.reconcile(rc, parsed.data, group);
        next = r.requeueMs;
        this.reconciles.inc({ result: 'ok' });
      }
      this.failures.delete(key);
    } catch (e) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      next = Math.min(60_000, 500 * 2 ** Math.min(n, 7));
      this.reconciles.inc({ result: 'error' });
      this.log(`operator: ${key}: ${(e as Error).message?.split('\n')[0]} (retry in ${next} ms)`);
    } finally {
      end();
    }
    const again = this.queue.get(key) === 'again';
    this.queue.delete(key);
    if (again) this.enqueue(key, 100);
    else if (next !== undefined) this.enqueue(key, next);
    this.depth.set(this.queue.size);
  }

  /** One pass for a RaftLoggerGroup; the delay before the next, if one is wanted. */
  private async reconcileGroup(g: Obj, namespace: string, name: string): Promise<number | undefined> {
    const parsed = RaftLoggerGroupSpec.safeParse(g.spec ?? {});
    if (!parsed.success) {
      const message = parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; ');
      if (g.status?.phase !== 'Invalid') await this.event({ name, namespace, uid: g.metadata.uid, kind: 'RaftLoggerGroup' }, 'Warning', 'InvalidSpec', message);
      await this.custom.patchNamespacedCustomObjectStatus({ group: 'raftkv.io', version: 'v1alpha1', namespace, plural: 'raftloggergroups', name, body: { status: { phase: 'Invalid', message } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      this.reconciles.inc({ result: 'invalid' });
      return undefined;
    }
    const r = await this.groupReconciler.reconcile(g, parsed.data, this.clusters.list(namespace) as Obj[]);
    this.reconciles.inc({ result: 'ok' });
    return r.requeueMs;
  }

  private async event(c: ClusterRef, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    this.log(`${c.namespace}/${c.name}: ${reason}: ${message}`);
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    await this.core
      .createNamespacedEvent({
        namespace: c.namespace,
        body: {
          metadata: { generateName: `${c.name}.` },
          involvedObject: { apiVersion: 'raftkv.io/v1alpha1', kind: c.kind ?? 'RaftCluster', name: c.name, namespace: c.namespace, uid: c.uid },
          type,
          reason,
          message,
          source: { component: 'raftkv-operator' },
          firstTimestamp: now as never,
          lastTimestamp: now as never,
          count: 1,
        },
      })
      .catch(() => undefined);
  }

  private async serveMetrics(): Promise<void> {
    this.server = http.createServer((req, res) => {
      if (req.url === '/metrics') {
        void this.registry.metrics().then((m) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(m));
      } else if (req.url === '/healthz') res.writeHead(200).end('ok');
      else if (req.url === '/readyz') res.writeHead(this.ready ? 200 : 503).end(this.ready ? 'ok' : 'starting');
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => this.server!.listen(this.o.metricsPort, this.o.metricsHost ?? '127.0.0.1', () => r()));
  }

  get metricsPort(): number {
    return (this.server?.address() as { port: number } | null)?.port ?? 0;
  }
}
