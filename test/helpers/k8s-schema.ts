/**
 * Every object the project ships or renders, checked against the Kubernetes OpenAPI schemas (the
 * `kubernetes-models` package, generated from them) and RaftClusters against our own spec. A
 * kind with no schema here is an error, not a pass.
 */
import { parseRaftCluster, parseRaftLoggerGroup } from '../../operator/spec.js';

type Model = new (data: unknown) => { validate(): void };

async function modelOf(apiVersion: string, kind: string): Promise<Model | undefined> {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const path = group === 'monitoring.coreos.com' ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}` : `kubernetes-models/${group ? `${group}/` : ''}${version}/${kind}`;
  try {
    const m = (await import(path)) as Record<string, Model>;
    return m[kind];
  } catch {
    return undefined;
  }
}

/** Problems of one object, each naming it; empty when it is valid. */
export async function validateObject(o: { apiVersion?: string; kind?: string; metadata?: { name?: string } }): Promise<string[]> {
  const what = `${o.kind ?? '?'} ${o.metadata?.name ?? '?'}`;
  if (!o.apiVersion || !o.kind) return [`${what}: no apiVersion or kind`];
  if (o.kind === 'RaftCluster' || o.kind === 'RaftLoggerGroup') {
    try {
      if (o.kind === 'RaftCluster') parseRaftCluster(o, what);
      else parseRaftLoggerGroup(o, what);
      return [];
    } catch (e) {
      return [(e as Error).message];
    }
  }
  const M = await modelOf(o.apiVersion, o.kind);
  if (!M) return [`${what}: no schema for ${o.apiVersion} ${o.kind}`];
  try {
    new M(o).validate();
    return [];
  } catch (e) {
    return [`${what}: ${(e as Error).message}`];
  }
}
