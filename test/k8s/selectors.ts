/**
 * Label selectors (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`) and field
 * selectors (`metadata.name=x`, `metadata.namespace!=y`, `status.phase=Running`, `spec.nodeName=`)
 * as the API server parses them; a bad one is a 400.
 */
import type { KObject } from './store.js';

export class SelectorError extends Error {}

type Requirement = (labels: Record<string, string>) => boolean;

export function parseLabelSelector(s: string | null): (o: KObject) => boolean {
  if (!s) return () => true;
  const reqs: Requirement[] = [];
  for (const part of splitTopLevel(s)) {
    const p = part.trim();
    if (!p) continue;
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p))) {
      const [, key, op, list] = m;
      const values = new Set(list.split(',').map((v) => v.trim()));
      reqs.push(op === 'in' ? (l) => key in l && values.has(l[key]) : (l) => !(key in l) || !values.has(l[key]));
    } else if ((m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(p))) {
      const [, key, op, value] = m;
      reqs.push(op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value);
    } else if ((m = /^!([\w./-]+)$/.exec(p))) {
      const key = m[1];
      reqs.push((l) => !(key in l));
    } else if ((m = /^([\w./-]+)$/.exec(p))) {
      const key = m[1];
      reqs.push((l) => key in l);
    } else throw new SelectorError(`unable to parse requirement: ${JSON.stringify(p)}`);
  }
  return (o) => {
    const labels = (o.metadata.labels ?? {}) as Record<string, string>;
    return reqs.every((r) => r(labels));
  };
}

/** Matches a `matchLabels`/`matchExpressions` selector object (Deployments, PDBs, Services). */
export function matchesSelectorObject(sel: { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] } | undefined, labels: Record<string, string>): boolean {
  if (!sel) return false;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels;
    const inValues = has && (e.values ?? []).includes(labels[e.key]);
    if (e.operator === 'In' && !inValues) return false;
    if (e.operator === 'NotIn' && inValues) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

export function parseFieldSelector(s: string | null): (o: KObject) => boolean {
  if (!s) return () => true;
  const reqs: ((o: KObject) => boolean)[] = [];
  for (const part of s.split(',')) {
    const m = /^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(part);
    if (!m) throw new SelectorError(`invalid field selector: ${JSON.stringify(part)}`);
    const [, field, op, value] = m;
    const get = (o: KObject) => {
      let v: unknown = o;
      for (const seg of field.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[seg] : undefined;
      return v === undefined || v === null ? '' : String(v);
    };
    reqs.push(op === '!=' ? (o) => get(o) !== value : (o) => get(o) === value);
  }
  return (o) => reqs.every((r) => r(o));
}

/** Split on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}
