/**
 * The experiments on Kubernetes (`raftkv experiment NAME --k8s`): each cluster is a RaftCluster
 * and each shared logger a RaftLoggerGroup, made through the current kubeconfig and run by the
 * operator (which must be installed); the loads and checks talk to the pods at their IPs, so run
 * the command where pod IPs are routable (inside the cluster, e.g. from a pod of the raftkv
 * image; here, against the emulator, from the host). Everything made is labelled and deleted.
 */
import { ApiException, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { LABEL_CLUSTER, LABEL_GROUP, LABEL_ROLE } from '../operator/labels.js';
import { PORTS } from '../operator/resources.js';
import { groupLoggerName, groupMemberId } from '../operator/spec.js';
import { ClusterPlan, RunningCluster, RunningLogger, Topology, sleep } from './topology.js';

const GROUP = 'raftkv.io';
const VERSION = 'v1alpha1';
const EXPERIMENT_LABEL = 'raftkv.io/experiment';

export class KubeTopology extends Topology {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private made: { plural: 'raftclusters' | 'raftloggergroups'; name: string }[] = [];

  constructor(
    kc: KubeConfig,
    private readonly o: { namespace: string; image: string; timeoutMs?: number; progress?: (l: string) => void },
  ) {
    super();
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  private get timeoutMs(): number {
    return this.o.timeoutMs ?? 300_000;
  }

  private async get(plural: string, name: string): Promise<any> {
    return this.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.o.namespace, plural, name });
  }

  private async until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + this.timeoutMs;
    while (Date.now() < deadline) {
      const v = await check().catch(() => undefined);
      if (v !== undefined) return v;
      await sleep(500);
    }
    throw new Error(`timed out after ${this.timeoutMs / 1000} s waiting for ${what} (is the raftkv operator running?)`);
  }

  async startCluster(plan: ClusterPlan): Promise<RunningCluster> {
    const body = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'RaftCluster',
      metadata: { name: plan.name, labels: { [EXPERIMENT_LABEL]: 'true' } },
      spec: {
        app: plan.app, replicas: plan.replicas, applog: plan.applog, valueSize: plan.valueSize, keys: plan.keys, fsync: plan.fsync ?? 'batch', image: this.o.image,
        raft: { electionTimeoutMs: plan.electionTimeoutMs ?? 1000, heartbeatMs: plan.heartbeatMs ?? 100 },
      },
    };
    await this.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.o.namespace, plural: 'raftclusters', body });
    this.made.push({ plural: 'raftclusters', name: plan.name });
    this.o.progress?.(`RaftCluster ${plan.name}: waiting for the operator to form it`);
    await this.until(`RaftCluster ${plan.name} to be Available`, async () => {
      const rc = await this.get('raftclusters', plan.name);
      return rc.status?.phase === 'Available' && rc.status?.readyReplicas === plan.replicas ? true : undefined;
    });
    const pods = (await this.core.listNamespacedPod({ namespace: this.o.namespace, labelSelector: `${LABEL_CLUSTER}=${plan.name},${LABEL_ROLE}=replica` })).items;
    const replicas = pods
      .filter((p) => p.status?.podIP && !p.metadata?.deletionTimestamp)
      .map((p) => ({ id: p.metadata!.name!, host: p.status!.podIP!, client: PORTS.client, raft: PORTS.raft, http: PORTS.http, recov: plan.applog ? PORTS.recov : undefined }));
    const c: RunningCluster = { plan, replicas, targets: replicas.map((r) => `${r.host}:${r.client}`) };
    await this.leaderOf(c, 60_000);
    return c;
  }

  async startLogger(name: string, clusters: RunningCluster[]): Promise<RunningLogger> {
    const body = { apiVersion: `${GROUP}/${VERSION}`, kind: 'RaftLoggerGroup', metadata: { name, labels: { [EXPERIMENT_LABEL]: 'true' } }, spec: { loggers: 1, image: this.o.image } };
    await this.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.o.namespace, plural: 'raftloggergroups', body });
    this.made.push({ plural: 'raftloggergroups', name });
    for (const c of clusters) {
      await this.custom.patchNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace: this.o.namespace, plural: 'raftclusters', name: c.plan.name, body: { spec: { loggerGroup: name } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
    this.o.progress?.(`RaftLoggerGroup ${name}: waiting for its logger to join ${clusters.map((c) => c.plan.name).join(', ')}`);
    const ip = await this.until(`RaftLoggerGroup ${name} to join every cluster`, async () => {
      for (const c of clusters) if ((await this.get('raftclusters', c.plan.name)).status?.loggerGroup?.members !== 1) return undefined;
      const g = await this.get('raftloggergroups', name);
      if (g.status?.phase !== 'Available' || g.status?.clusters?.length !== clusters.length) return undefined;
      const pod = await this.core.readNamespacedPod({ name: groupLoggerName(name, 0), namespace: this.o.namespace });
      const addr = pod.status?.podIP;
      if (!addr) return undefined;
      return (await fetch(`http://${addr}:${PORTS.loggerHttp}/readyz`, { signal: AbortSignal.timeout(1000) })).ok ? addr : undefined;
    });
    return { ids: clusters.map((c) => groupMemberId(name, 0, c.plan.name)), clusters, httpAddr: `${ip}:${PORTS.loggerHttp}`, recovAddr: `${ip}:${PORTS.recov}` };
  }

  async stop(): Promise<void> {
    const made = this.made;
    this.made = [];
    for (const m of made) {
      await this.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.o.namespace, plural: m.plural, name: m.name }).catch((e: unknown) => {
        if (!(e instanceof ApiException && e.code === 404)) throw e;
      });
    }
    // Gone means their pods are gone too (the next step may reuse the names).
    for (const m of made) {
      const selector = m.plural === 'raftclusters' ? `${LABEL_CLUSTER}=${m.name}` : `${LABEL_GROUP}=${m.name}`;
      await this.until(`the pods of ${m.name} to go`, async () => ((await this.core.listNamespacedPod({ namespace: this.o.namespace, labelSelector: selector })).items.length === 0 ? true : undefined));
    }
  }
}
