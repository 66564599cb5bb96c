/**
 * Finding a cluster's members through the Kubernetes API: the pods labelled
 * raftkv.io/cluster=NAME and raftkv.io/role=ROLE that are running and have an IP, in ordinal
 * order. Pod IPs change across restarts, so callers resolve at connect time.
 */
import { CoreV1Api, KubeConfig, V1Pod } from '@kubernetes/client-node';
import { LABEL_CLUSTER, LABEL_ORDINAL, LABEL_ROLE, MemberRole } from '../operator/labels.js';

export interface DiscoveredMember {
  pod: string;
  ordinal: number;
  ip: string;
  /** host:port of the named container port (e.g. 'client'), or of the fallback port. */
  addr: string;
}

export interface DiscoveryOptions {
  namespace?: string;
  role?: MemberRole;
  /** Container port name to use (default 'client'); `fallbackPort` when the pod does not name it. */
  portName?: string;
  fallbackPort?: number;
  /** Defaults to the in-cluster service account, or KUBECONFIG / ~/.kube/config. */
  kubeConfig?: KubeConfig;
}

export function defaultKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}

export async function discoverMembers(cluster: string, opts: DiscoveryOptions = {}): Promise<DiscoveredMember[]> {
  const kc = opts.kubeConfig ?? defaultKubeConfig();
  const namespace = opts.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  const api = kc.makeApiClient(CoreV1Api);
  const list = await api.listNamespacedPod({ namespace, labelSelector: `${LABEL_CLUSTER}=${cluster},${LABEL_ROLE}=${opts.role ?? 'replica'}` });
  const portName = opts.portName ?? 'client';
  const out: DiscoveredMember[] = [];
  for (const pod of list.items as V1Pod[]) {
    const ip = pod.status?.podIP;
    if (pod.status?.phase !== 'Running' || !ip || pod.metadata?.deletionTimestamp) continue;
    const port =
      pod.spec?.containers.flatMap((c) => c.ports ?? []).find((p) => p.name === portName)?.containerPort ?? opts.fallbackPort ?? 11000;
    const ordinal = Number(pod.metadata?.labels?.[LABEL_ORDINAL] ?? Number.MAX_SAFE_INTEGER);
    out.push({ pod: pod.metadata?.name ?? '', ordinal, ip, addr: ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}` });
  }
  return out.sort((a, b) => a.ordinal - b.ordinal || a.pod.localeCompare(b.pod));
}
