/**
 * The three patch formats of the Kubernetes API: JSON patch (RFC 6902), JSON merge patch
 * (RFC 7386) and strategic merge patch (lists merged by their patch merge key, `$patch`,
 * `$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList` directives). The strategic merge
 * keys are those of the built-in types raftkv uses, looked up by field name (what kubectl and
 * helm send for Pods, Deployments, Services, ConfigMaps, Secrets, RBAC and PDBs).
 */

export class PatchError extends Error {}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

// ---- JSON patch

function unescape(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

function parsePointer(p: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw new PatchError(`invalid JSON pointer ${JSON.stringify(p)}`);
  return p.slice(1).split('/').map(unescape);
}

function parentOf(doc: Json, path: string[]): { parent: any; key: string } {
  let cur: any = doc;
  for (const seg of path.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object') throw new PatchError(`path /${path.join('/')} does not exist`);
    cur = Array.isArray(cur) ? cur[Number(seg)] : cur[seg];
    if (cur === undefined) throw new PatchError(`path /${path.join('/')} does not exist`);
  }
  if (cur === null || typeof cur !== 'object') throw new PatchError(`path /${path.join('/')} does not exist`);
  return { parent: cur, key: path[path.length - 1] };
}

function getAt(doc: Json, path: string[]): Json {
  let cur: any = doc;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') throw new PatchError(`path /${path.join('/')} does not exist`);
    cur = Array.isArray(cur) ? cur[Number(seg)] : cur[seg];
    if (cur === undefined) throw new PatchError(`path /${path.join('/')} does not exist`);
  }
  return cur;
}

export function applyJsonPatch(doc: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw new PatchError('a JSON patch must be an array of operations');
  let out = structuredClone(doc);
  for (const op of ops as Record<string, any>[]) {
    if (!op || typeof op.op !== 'string' || typeof op.path !== 'string') throw new PatchError(`invalid JSON patch operation ${JSON.stringify(op)}`);
    const path = parsePointer(op.path);
    const add = (p: string[], value: Json) => {
      if (p.length === 0) {
        out = value;
        return;
      }
      const { parent, key } = parentOf(out, p);
      if (Array.isArray(parent)) {
        const i = key === '-' ? parent.length : Number(key);
        if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new PatchError(`index ${key} out of range at ${op.path}`);
        parent.splice(i, 0, value);
      } else parent[key] = value;
    };
    const remove = (p: string[]) => {
      const { parent, key } = parentOf(out, p);
      if (Array.isArray(parent)) {
        const i = Number(key);
        if (!(i >= 0 && i < parent.length)) throw new PatchError(`index ${key} out of range at /${p.join('/')}`);
        return parent.splice(i, 1)[0];
      }
      if (!(key in parent)) throw new PatchError(`path /${p.join('/')} does not exist`);
      const v = parent[key];
      delete parent[key];
      return v;
    };
    switch (op.op) {
      case 'add':
        add(path, structuredClone(op.value));
        break;
      case 'remove':
        remove(path);
        break;
      case 'replace':
        getAt(out, path);
        if (path.length === 0) out = structuredClone(op.value);
        else {
          const { parent, key } = parentOf(out, path);
          parent[Array.isArray(parent) ? Number(key) : key] = structuredClone(op.value);
        }
        break;
      case 'move': {
        const v = remove(parsePointer(op.from));
        add(path, v);
        break;
      }
      case 'copy':
        add(path, structuredClone(getAt(out, parsePointer(op.from))));
        break;
      case 'test':
        if (JSON.stringify(getAt(out, path)) !== JSON.stringify(op.value)) throw new PatchError(`test failed at ${op.path}`);
        break;
      default:
        throw new PatchError(`unknown JSON patch operation ${JSON.stringify(op.op)}`);
    }
  }
  return out;
}

// ---- JSON merge patch

export function applyMergePatch(target: Json, patch: Json): Json {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, Json> = target !== null && typeof target === 'object' && !Array.isArray(target) ? structuredClone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k] ?? null, v);
  }
  return out;
}

// ---- Strategic merge patch

const MERGE_KEYS: Record<string, string | ((items: any[]) => string)> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  imagePullSecrets: 'name',
  ownerReferences: 'uid',
  conditions: 'type',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
  // Container ports merge on containerPort, Service ports on port.
  ports: (items) => (items.some((i) => i && typeof i === 'object' && 'containerPort' in i) ? 'containerPort' : 'port'),
};
/** Lists of scalars that merge as sets. */
const PRIMITIVE_MERGE = new Set(['finalizers']);

function mergeKeyOf(field: string, items: any[]): string | undefined {
  const k = MERGE_KEYS[field];
  return typeof k === 'function' ? k(items) : k;
}

export function applyStrategicMergePatch(target: Json, patch: Json): Json {
  return smpObject(target, patch);
}

function smpObject(target: Json, patch: Json): Json {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const p = patch as Record<string, Json>;
  if (p.$patch === 'replace') {
    const { $patch: _, ...rest } = p;
    return structuredClone(rest);
  }
  if (p.$patch === 'delete') return null;
  let out: Record<string, Json> = target !== null && typeof target === 'object' && !Array.isArray(target) ? structuredClone(target) : {};
  if (Array.isArray(p.$retainKeys)) {
    const keep = new Set(p.$retainKeys as string[]);
    out = Object.fromEntries(Object.entries(out).filter(([k]) => keep.has(k)));
  }
  for (const [k, v] of Object.entries(p)) {
    if (k === '$patch' || k === '$retainKeys' || k.startsWith('$setElementOrder/')) continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length);
      const drop = new Set((v as Json[]).map((x) => JSON.stringify(x)));
      if (Array.isArray(out[field])) out[field] = (out[field] as Json[]).filter((x) => !drop.has(JSON.stringify(x)));
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    if (Array.isArray(v)) {
      out[k] = smpList(k, Array.isArray(out[k]) ? (out[k] as Json[]) : [], v);
      continue;
    }
    out[k] = typeof v === 'object' ? smpObject(out[k] ?? null, v) : v;
  }
  for (const [k, order] of Object.entries(p)) {
    if (!k.startsWith('$setElementOrder/') || !Array.isArray(order)) continue;
    const field = k.slice('$setElementOrder/'.length);
    const list = out[field];
    if (!Array.isArray(list)) continue;
    const key = mergeKeyOf(field, list);
    const pos = (x: Json) => {
      const i = order.findIndex((o) => (key && o && typeof o === 'object' && x && typeof x === 'object' ? (o as any)[key] === (x as any)[key] : JSON.stringify(o) === JSON.stringify(x)));
      return i < 0 ? order.length : i;
    };
    out[field] = [...list].sort((a, b) => pos(a) - pos(b));
  }
  return out;
}

function smpList(field: string, target: Json[], patch: Json[]): Json[] {
  if (PRIMITIVE_MERGE.has(field)) {
    const out = [...target];
    for (const x of patch) if (!out.some((y) => JSON.stringify(y) === JSON.stringify(x))) out.push(x);
    return out;
  }
  const key = mergeKeyOf(field, [...target, ...patch]);
  if (patch.some((x) => x && typeof x === 'object' && (x as any).$patch === 'replace')) {
    return patch.filter((x) => !(x && typeof x === 'object' && (x as any).$patch === 'replace')).map((x) => structuredClone(x));
  }
  if (!key || !patch.every((x) => x && typeof x === 'object' && !Array.isArray(x))) return structuredClone(patch);
  const out = structuredClone(target) as Record<string, Json>[];
  for (const item of patch as Record<string, Json>[]) {
    const i = out.findIndex((x) => x && x[key] === item[key]);
    if (item.$patch === 'delete') {
      if (i >= 0) out.splice(i, 1);
      continue;
    }
    if (i >= 0) out[i] = smpObject(out[i], item) as Record<string, Json>;
    else out.push(smpObject(null, item) as Record<string, Json>);
  }
  return out;
}
