/**
 * `raftkv replica --discover kubernetes`: a replica pod finds its cluster through the Kubernetes
 * API by the label convention, with its own name, namespace and IP from the downward API
 * (POD_NAME, POD_NAMESPACE, POD_IP). A first-generation pod (`--initial-size N`) waits until the
 * pods of ordinals 0..N-1 are running and bootstraps with exactly them, so every initial member
 * computes the same configuration and no two clusters can form; any later pod joins through the
 * members that are running. Only get/list on pods in its namespace is needed.
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LABEL_CLUSTER } from '../operator/labels.js';
import { discoverMembers } from './kubernetes.js';

export interface PodMembership {
  peers?: { id: string; addr: string }[];
  join?: string[];
}

export async function membershipFromKubernetes(o: {
  dataDir: string;
  initialSize?: number;
  raftPort: number;
  httpPort: number;
  log: (l: string) => void;
  timeoutMs?: number;
  /** The cluster to find (a group logger serves several); default: the pod's raftkv.io/cluster label. */
  cluster?: string;
}): Promise<PodMembership> {
  // A restart: its data says who it is; unless it was still joining, and must ask again.
  if (existsSync(o.dataDir) && readdirSync(o.dataDir).length > 0 && !existsSync(join(o.dataDir, 'joining'))) return {};
  const name = process.env.POD_NAME;
  const namespace = process.env.POD_NAMESPACE;
  if (!name || !namespace) throw new Error('--discover kubernetes needs POD_NAME and POD_NAMESPACE from the downward API');
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const core = kc.makeApiClient(CoreV1Api);
  const cluster = o.cluster ?? (await core.readNamespacedPod({ name, namespace })).metadata?.labels?.[LABEL_CLUSTER];
  if (!cluster) throw new Error(`pod ${namespace}/${name} has no ${LABEL_CLUSTER} label`);
  const deadline = Date.now() + (o.timeoutMs ?? 600_000);
  let said = '';
  const say = (l: string) => {
    if (l !== said) o.log(l);
    said = l;
  };
  while (Date.now() < deadline) {
    const raft = await discoverMembers(cluster, { namespace, kubeConfig: kc, portName: 'raft', fallbackPort: o.raftPort });
    if (o.initialSize !== undefined) {
      const initial = raft.filter((m) => m.ordinal < o.initialSize!);
      if (initial.length === o.initialSize) {
        o.log(`${name}: the ${o.initialSize} initial members of ${cluster} are running: bootstrapping with ${initial.map((m) => m.pod).join(', ')}`);
        return { peers: initial.map((m) => ({ id: m.pod, addr: m.addr })) };
      }
      say(`${name}: waiting for the initial members of ${cluster} (${initial.length} of ${o.initialSize} running)`);
    } else {
      const http = (await discoverMembers(cluster, { namespace, kubeConfig: kc, portName: 'http', fallbackPort: o.httpPort })).filter((m) => m.pod !== name);
      if (http.length > 0) {
        o.log(`${name}: joining ${cluster} through ${http.map((m) => m.pod).join(', ')}`);
        return { join: http.map((m) => m.addr) };
      }
      say(`${name}: waiting for a running member of ${cluster} to join through`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`no members of ${cluster} found within ${Math.round((o.timeoutMs ?? 600_000) / 1000)} s`);
}
