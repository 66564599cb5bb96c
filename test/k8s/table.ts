/**
 * Server-side printing (meta.k8s.io/v1 Table), which kubectl asks for on `get`: the CRD's
 * additionalPrinterColumns, or the usual columns of the built-in kinds.
 */
import type { KObject } from './store.js';
import type { PrinterColumn, ResourceType } from './resources.js';
import { getPath } from './apiserver.js';

export function tableOf(t: ResourceType, items: KObject[], resourceVersion: string) {
  const columns: PrinterColumn[] = [{ name: 'Name', type: 'string', jsonPath: '.metadata.name', description: 'Name must be unique within a namespace.' }, ...(t.crd ? t.crd.printerColumns : builtinColumns(t))];
  if (!columns.some((c) => c.name.toLowerCase() === 'age')) columns.push({ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' });
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: columns.map((c) => ({ name: c.name, type: c.type, format: c.format ?? (c.name === 'Name' ? 'name' : ''), description: c.description ?? '', priority: c.priority ?? 0 })),
    rows: items.map((o) => ({ cells: columns.map((c) => cell(o, c)), object: o })),
  };
}

function cell(o: KObject, c: PrinterColumn): unknown {
  if (c.jsonPath.startsWith('fn:')) return BUILTIN_CELLS[c.jsonPath.slice(3)](o);
  const v = getPath(o, c.jsonPath);
  if (c.type === 'date') return typeof v === 'string' ? age(v) : '<unknown>';
  if (v === undefined || v === null) return c.type === 'integer' || c.type === 'number' ? null : '';
  return typeof v === 'object' ? JSON.stringify(v) : v;
}

function age(ts: string): string {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

const BUILTIN_CELLS: Record<string, (o: KObject) => unknown> = {
  podReady: (o) => `${(o.status?.containerStatuses ?? []).filter((c: any) => c.ready).length}/${(o.spec?.containers ?? []).length}`,
  podStatus: (o) => (o.metadata.deletionTimestamp ? 'Terminating' : (o.status?.containerStatuses ?? []).map((c: any) => c.state?.waiting?.reason).find(Boolean) ?? o.status?.phase ?? 'Pending'),
  podRestarts: (o) => (o.status?.containerStatuses ?? []).reduce((a: number, c: any) => a + (c.restartCount ?? 0), 0),
  deployReady: (o) => `${o.status?.readyReplicas ?? 0}/${o.spec?.replicas ?? 0}`,
  servicePorts: (o) => (o.spec?.ports ?? []).map((p: any) => `${p.port}/${p.protocol ?? 'TCP'}`).join(',') || '<none>',
  dataCount: (o) => Object.keys(o.data ?? {}).length + Object.keys(o.binaryData ?? {}).length,
};

function builtinColumns(t: ResourceType): PrinterColumn[] {
  const fn = (name: string, type: string, f: string, priority = 0): PrinterColumn => ({ name, type, jsonPath: `fn:${f}`, priority });
  switch (`${t.group}/${t.kind}`) {
    case '/Pod':
      return [fn('Ready', 'string', 'podReady'), fn('Status', 'string', 'podStatus'), fn('Restarts', 'integer', 'podRestarts'), { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }, { name: 'IP', type: 'string', jsonPath: '.status.podIP', priority: 1 }, { name: 'Node', type: 'string', jsonPath: '.spec.nodeName', priority: 1 }];
    case 'apps/Deployment':
      return [fn('Ready', 'string', 'deployReady'), { name: 'Up-to-date', type: 'integer', jsonPath: '.status.updatedReplicas' }, { name: 'Available', type: 'integer', jsonPath: '.status.availableReplicas' }];
    case '/Service':
      return [{ name: 'Type', type: 'string', jsonPath: '.spec.type' }, { name: 'Cluster-IP', type: 'string', jsonPath: '.spec.clusterIP' }, fn('Port(s)', 'string', 'servicePorts')];
    case '/ConfigMap':
    case '/Secret':
      return [fn('Data', 'integer', 'dataCount')];
    case '/Namespace':
      return [{ name: 'Status', type: 'string', jsonPath: '.status.phase' }];
    case 'apiextensions.k8s.io/CustomResourceDefinition':
      return [{ name: 'Created At', type: 'string', jsonPath: '.metadata.creationTimestamp' }];
    default:
      return [];
  }
}
