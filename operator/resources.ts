/**
 * The objects a RaftCluster owns, built from its spec: replica and logger pods, the headless
 * peer Service, the client Service and the PodDisruptionBudget. Pure functions, so the
 * reconciler and the tests build exactly the same objects.
 */
import { createHash } from 'node:crypto';
import { LABEL_CLUSTER, LABEL_GROUP, LABEL_ROLE, groupLabels, memberLabels } from './labels.js';
import { RaftClusterSpec, RaftLoggerGroupSpec, groupLoggerName, groupMemberId, loggerName, replicaName } from './spec.js';

export const PORTS = { client: 11000, raft: 12000, http: 13000, recov: 14000, loggerHttp: 14001 } as const;

export interface ClusterRef {
  name: string;
  namespace: string;
  uid: string;
  /** RaftCluster unless said otherwise (events and owner references name the kind). */
  kind?: 'RaftCluster' | 'RaftLoggerGroup';
}

/** A Kubernetes object as JSON (what the API sends and takes). */
export type Obj = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [k: string]: any };

export function ownerReference(c: ClusterRef) {
  return { apiVersion: 'raftkv.io/v1alpha1', kind: c.kind ?? 'RaftCluster', name: c.name, uid: c.uid, controller: true, blockOwnerDeletion: true };
}

export function replicaSelector(cluster: string): Record<string, string> {
  return { [LABEL_CLUSTER]: cluster, [LABEL_ROLE]: 'replica' };
}

export function selectorString(sel: Record<string, string>): string {
  return Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(',');
}

const downward = [
  { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
  { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
  { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
];

function scrape(spec: RaftClusterSpec, port: number): Record<string, string> {
  return spec.monitoring.enabled ? { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' } : {};
}

function dataVolume(spec: RaftClusterSpec, pod: string) {
  return spec.storage.ephemeral ? { name: 'data', emptyDir: {} } : { name: 'data', persistentVolumeClaim: { claimName: `data-${pod}` } };
}

export function pvcFor(c: ClusterRef, spec: RaftClusterSpec, pod: string, role: 'replica' | 'logger', ordinal: number): Obj {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: `data-${pod}`, namespace: c.namespace, labels: memberLabels(c.name, role, ordinal), ownerReferences: [ownerReference(c)] },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: spec.storage.size } }, ...(spec.storage.storageClassName ? { storageClassName: spec.storage.storageClassName } : {}) },
  };
}

/**
 * Anti-affinity to the pods of one role of this cluster, as strong as `spread` says: the seed's
 * placement (replicas of a cluster on different nodes; loggers apart from its replicas).
 */
function apart(cluster: string, role: string, spread: 'required' | 'preferred' | 'none') {
  const term = { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { [LABEL_CLUSTER]: cluster, [LABEL_ROLE]: role } } };
  if (spread === 'none') return undefined;
  if (spread === 'required') return { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term] } };
  return { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: term }] } };
}

/** Affinity, node selector and tolerations of a pod of `role`. */
function placement(c: ClusterRef, spec: RaftClusterSpec, role: 'replica' | 'logger') {
  const p = spec.placement;
  const affinity = role === 'replica' ? apart(c.name, 'replica', p.replicaSpread) : apart(c.name, 'replica', p.loggersApart);
  return { ...(affinity ? { affinity } : {}), ...(p.nodeSelector ? { nodeSelector: p.nodeSelector } : {}), ...(p.tolerations ? { tolerations: p.tolerations } : {}) };
}

/**
 * A replica pod. `initialSize` makes it a first-generation member that bootstraps with ordinals
 * 0..initialSize-1; without it the pod joins the running members.
 */
/**
 * What a running replica pod was made from: a spec change here (image, resources, Raft timings,
 * durability, engine settings) means its pods are replaced, one at a time.
 */
export function templateHash(spec: RaftClusterSpec): string {
  const { image, resources, raft, fsync, applog, valueSize, keys, preload, storage, placement } = spec;
  return createHash('sha256').update(JSON.stringify({ image, resources, raft, fsync, applog, valueSize, keys, preload, storage, placement })).digest('hex').slice(0, 10);
}

export const TEMPLATE_ANNOTATION = 'raftkv.io/template';

export function replicaPod(c: ClusterRef, spec: RaftClusterSpec, ordinal: number, initialSize?: number): Obj {
  const name = replicaName(c.name, ordinal);
  const args = [
    'replica', '--discover', 'kubernetes', '--id', '$(POD_NAME)',
    '--port', `:${PORTS.client}`, '--raft', `:${PORTS.raft}`, '--http', `:${PORTS.http}`,
    '--data-dir', '/data/raft', '--app', spec.app, '--fsync', spec.fsync,
    '--election-timeout', String(spec.raft.electionTimeoutMs), '--heartbeat', String(spec.raft.heartbeatMs), '--snapshot-every', String(spec.raft.snapshotEvery),
    '--value-size', String(spec.valueSize), '--keys', String(spec.keys), '--preload', String(spec.preload),
    ...(spec.applog ? ['--logfolder', '/data/applog', '--recov', `:${PORTS.recov}`] : []),
    ...(initialSize !== undefined ? ['--initial-size', String(initialSize)] : []),
  ];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: c.namespace,
      labels: memberLabels(c.name, 'replica', ordinal),
      annotations: { ...scrape(spec, PORTS.http), [TEMPLATE_ANNOTATION]: templateHash(spec), ...(initialSize !== undefined ? { 'raftkv.io/initial-size': String(initialSize) } : {}) },
      ownerReferences: [ownerReference(c)],
    },
    spec: {
      serviceAccountName: 'raftkv-member',
      terminationGracePeriodSeconds: 30,
      restartPolicy: 'Always',
      ...placement(c, spec, 'replica'),
      containers: [
        {
          name: 'replica',
          image: spec.image,
          args,
          env: downward,
          ports: [
            { name: 'client', containerPort: PORTS.client },
            { name: 'raft', containerPort: PORTS.raft },
            { name: 'http', containerPort: PORTS.http },
            ...(spec.applog ? [{ name: 'recov', containerPort: PORTS.recov }] : []),
          ],
          readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 2, failureThreshold: 3 },
          livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 6, initialDelaySeconds: 10 },
          resources: spec.resources,
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        },
      ],
      volumes: [dataVolume(spec, name)],
    },
  };
}

/** A logger pod: joins the cluster as a non-voter, through the replicas it finds by discovery. */
export function loggerPod(c: ClusterRef, spec: RaftClusterSpec, ordinal: number): Obj {
  const name = loggerName(c.name, ordinal);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: c.namespace, labels: memberLabels(c.name, 'logger', ordinal), annotations: scrape(spec, PORTS.loggerHttp), ownerReferences: [ownerReference(c)] },
    spec: {
      serviceAccountName: 'raftkv-member',
      ...placement(c, spec, 'logger'),
      containers: [
        {
          name: 'logger',
          image: spec.image,
          args: ['logger', '--discover', 'kubernetes', '--id', '$(POD_NAME)', '--raft', `:${PORTS.raft}`, '--logfolder', '/data/logger', '--recov', `:${PORTS.recov}`, '--http', `:${PORTS.loggerHttp}`, '--election-timeout', String(spec.raft.electionTimeoutMs), '--heartbeat', String(spec.raft.heartbeatMs)],
          env: downward,
          ports: [{ name: 'raft', containerPort: PORTS.raft }, { name: 'recov', containerPort: PORTS.recov }, { name: 'http', containerPort: PORTS.loggerHttp }],
          readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 2 },
          resources: spec.resources,
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        },
      ],
      volumes: [dataVolume(spec, name)],
    },
  };
}

export function peerService(c: ClusterRef): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `${c.name}-peers`, namespace: c.namespace, labels: memberLabels(c.name, 'replica'), ownerReferences: [ownerReference(c)] },
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: replicaSelector(c.name),
      ports: [{ name: 'raft', port: PORTS.raft, targetPort: 'raft' }, { name: 'http', port: PORTS.http, targetPort: 'http' }],
    },
  };
}

export function clientService(c: ClusterRef): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: c.name, namespace: c.namespace, labels: memberLabels(c.name, 'replica'), ownerReferences: [ownerReference(c)] },
    spec: { selector: replicaSelector(c.name), ports: [{ name: 'client', port: PORTS.client, targetPort: 'client' }, { name: 'http', port: PORTS.http, targetPort: 'http' }] },
  };
}

/** At most one replica down by choice at a time; with fewer than 3, none (there is no spare). */
export function disruptionBudget(c: ClusterRef, replicas: number): Obj {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: c.name, namespace: c.namespace, labels: memberLabels(c.name, 'replica'), ownerReferences: [ownerReference(c)] },
    spec: { ...(replicas >= 3 ? { maxUnavailable: 1 } : { maxUnavailable: 0 }), selector: { matchLabels: replicaSelector(c.name) } },
  };
}

/** A load test: one run of the generator against the cluster's replicas (found by discovery). */
export function loadgenPod(c: ClusterRef, spec: RaftClusterSpec, name: string, generation: number): Obj {
  const l = spec.loadgen!;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: c.namespace, labels: memberLabels(c.name, 'loadgen'), annotations: { 'raftkv.io/generation': String(generation) }, ownerReferences: [ownerReference(c)] },
    spec: {
      serviceAccountName: 'raftkv-member',
      restartPolicy: 'Never',
      containers: [
        {
          name: 'loadgen',
          image: spec.image,
          args: [
            'loadgen', '--discover', c.name, '--namespace', '$(POD_NAMESPACE)', '--driver', l.driver, '--clients', String(l.clients), '--duration', String(l.duration),
            '--keys', String(l.keys), '--value-size', String(l.valueSize), '--write-ratio', String(l.writeRatio), '--think', String(l.thinkMs), '--procs', String(l.parallel),
            '--json', '-', '--quiet',
          ],
          env: downward,
          resources: spec.resources,
        },
      ],
    },
  };
}

/** For the Prometheus operator, when spec.monitoring.serviceMonitor: scrape every replica's /metrics. */
export function serviceMonitor(c: ClusterRef): Obj {
  return {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'ServiceMonitor',
    metadata: { name: c.name, namespace: c.namespace, labels: memberLabels(c.name, 'replica'), ownerReferences: [ownerReference(c)] },
    spec: { selector: { matchLabels: replicaSelector(c.name) }, endpoints: [{ port: 'http', path: '/metrics', interval: '15s' }] },
  };
}

// ---- RaftLoggerGroup: logger pods shared by several clusters

/** A cluster a group serves, with the raft port its member listens on in every group pod. */
export interface GroupCluster {
  name: string;
  raftPort: number;
}

/** What a group pod was made from: a change (a cluster added or gone included) rolls the pods. */
export function groupTemplateHash(spec: RaftLoggerGroupSpec, clusters: GroupCluster[]): string {
  const { image, resources, raft, storage, placement } = spec;
  return createHash('sha256').update(JSON.stringify({ image, resources, raft, storage, placement, clusters })).digest('hex').slice(0, 10);
}

export function groupPvc(g: ClusterRef, spec: RaftLoggerGroupSpec, ordinal: number): Obj {
  const pod = groupLoggerName(g.name, ordinal);
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: `data-${pod}`, namespace: g.namespace, labels: groupLabels(g.name, ordinal), ownerReferences: [ownerReference(g)] },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: spec.storage.size } }, ...(spec.storage.storageClassName ? { storageClassName: spec.storage.storageClassName } : {}) },
  };
}

/**
 * One pod of a logger group: one logger process with a non-voting member in each cluster
 * (member <group>-<ordinal>-<cluster>, its own raft port per cluster), finding each cluster's
 * replicas through the API. Apart from the group's other pods and, preferably, from the replicas
 * of the clusters it logs (the seed's placement).
 */
export function groupLoggerPod(g: ClusterRef, spec: RaftLoggerGroupSpec, ordinal: number, clusters: GroupCluster[]): Obj {
  const name = groupLoggerName(g.name, ordinal);
  const p = spec.placement;
  const own = { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { [LABEL_GROUP]: g.name } } };
  const replicas = {
    topologyKey: 'kubernetes.io/hostname',
    labelSelector: { matchLabels: { [LABEL_ROLE]: 'replica' }, matchExpressions: [{ key: LABEL_CLUSTER, operator: 'In', values: clusters.map((c) => c.name) }] },
  };
  const preferred = [{ weight: 50, podAffinityTerm: replicas }, ...(p.loggersApart === 'preferred' ? [{ weight: 100, podAffinityTerm: own }] : [])];
  const affinity = { podAntiAffinity: { ...(p.loggersApart === 'required' ? { requiredDuringSchedulingIgnoredDuringExecution: [own] } : {}), preferredDuringSchedulingIgnoredDuringExecution: preferred } };
  const hash = groupTemplateHash(spec, clusters);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: g.namespace,
      labels: groupLabels(g.name, ordinal),
      annotations: { ...(spec.monitoring.enabled ? { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(PORTS.loggerHttp), 'prometheus.io/path': '/metrics' } : {}), [TEMPLATE_ANNOTATION]: hash, 'raftkv.io/clusters': clusters.map((c) => c.name).join(',') },
      ownerReferences: [ownerReference(g)],
    },
    spec: {
      serviceAccountName: 'raftkv-member',
      affinity,
      ...(p.nodeSelector ? { nodeSelector: p.nodeSelector } : {}),
      ...(p.tolerations ? { tolerations: p.tolerations } : {}),
      containers: [
        {
          name: 'logger',
          image: spec.image,
          args: [
            'logger', '--discover', 'kubernetes',
            '--clusters', clusters.map((c) => c.name).join(','),
            '--id', clusters.map((c) => groupMemberId(g.name, ordinal, c.name)).join(','),
            '--raft', clusters.map((c) => `:${c.raftPort}`).join(','),
            '--logfolder', '/data/logger', '--recov', `:${PORTS.recov}`, '--http', `:${PORTS.loggerHttp}`,
            '--election-timeout', String(spec.raft.electionTimeoutMs), '--heartbeat', String(spec.raft.heartbeatMs),
          ],
          env: downward,
          ports: [...clusters.map((c, k) => ({ name: `raft-${k}`, containerPort: c.raftPort })), { name: 'recov', containerPort: PORTS.recov }, { name: 'http', containerPort: PORTS.loggerHttp }],
          readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 2 },
          resources: spec.resources,
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        },
      ],
      volumes: [spec.storage.ephemeral ? { name: 'data', emptyDir: {} } : { name: 'data', persistentVolumeClaim: { claimName: `data-${name}` } }],
    },
  };
}

/**
 * The raft port of each cluster in the group's pods: a cluster keeps the port it was given
 * (a port change would change its members' addresses); a new one takes the lowest free port.
 */
export function assignGroupPorts(names: string[], before: GroupCluster[]): GroupCluster[] {
  const kept = before.filter((c) => names.includes(c.name));
  const used = new Set(kept.map((c) => c.raftPort));
  const out = [...kept];
  for (const name of names) {
    if (out.some((c) => c.name === name)) continue;
    let port: number = PORTS.raft;
    while (used.has(port) || port === PORTS.recov || port === PORTS.loggerHttp) port++;
    used.add(port);
    out.push({ name, raftPort: port });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
