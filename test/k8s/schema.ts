/**
 * What the API server does with a custom resource against its CRD's structural openAPIV3Schema:
 * prune unknown fields (unless x-kubernetes-preserve-unknown-fields), apply defaults, and
 * validate (types, required, enum, minimum/maximum, length, items, pattern, int-or-string). The
 * messages name the field the way kube-apiserver does: `spec.replicas: Invalid value: ...`.
 */
import type { JsonSchema } from './resources.js';

export interface FieldError {
  field: string;
  message: string;
}

const join = (path: string, key: string) => (path ? `${path}.${key}` : key);

/** Prune and default in place; returns the (possibly replaced) value. */
export function pruneAndDefault(value: unknown, schema: JsonSchema | undefined, topLevel = false): unknown {
  if (!schema || value === null || value === undefined) return value;
  if (Array.isArray(value)) {
    if (schema.items) for (let i = 0; i < value.length; i++) value[i] = pruneAndDefault(value[i], schema.items);
    return value;
  }
  if (typeof value !== 'object') return value;
  const obj = value as Record<string, unknown>;
  const props = schema.properties;
  if (props) {
    for (const [k, s] of Object.entries(props)) {
      // The resource's own metadata is the server's business, whatever the schema says of it.
      if (topLevel && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) continue;
      if (obj[k] === undefined && s.default !== undefined) obj[k] = structuredClone(s.default);
      if (obj[k] !== undefined) obj[k] = pruneAndDefault(obj[k], s);
    }
  }
  const additional = typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined;
  if (additional) for (const k of Object.keys(obj)) obj[k] = pruneAndDefault(obj[k], additional);
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true || schema.additionalProperties === true || additional !== undefined;
  if (!preserve && (props || schema.type === 'object')) {
    for (const k of Object.keys(obj)) {
      // apiVersion, kind and metadata of the resource itself are the server's business.
      if (topLevel && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) continue;
      if (!props || !(k in props)) delete obj[k];
    }
  }
  return obj;
}

export function validate(value: unknown, schema: JsonSchema | undefined, path = ''): FieldError[] {
  if (!schema) return [];
  const errs: FieldError[] = [];
  const where = path || '<root>';
  if (value === null) {
    if (!schema.nullable) errs.push({ field: where, message: `Invalid value: "null": ${where} in body must be of type ${schema.type ?? 'object'}: "null"` });
    return errs;
  }
  const t = typeOf(value);
  if (schema['x-kubernetes-int-or-string']) {
    if (t !== 'integer' && t !== 'string') errs.push({ field: where, message: `Invalid value: ${show(value)}: ${where} in body must be of type integer-or-string` });
  } else if (schema.type && !(schema.type === t || (schema.type === 'number' && t === 'integer'))) {
    errs.push({ field: where, message: `Invalid value: "${t}": ${where} in body must be of type ${schema.type}: "${t}"` });
    return errs;
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    errs.push({ field: where, message: `Unsupported value: ${show(value)}: supported values: ${schema.enum.map(show).join(', ')}` });
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && (schema.exclusiveMinimum ? value <= schema.minimum : value < schema.minimum)) {
      errs.push({ field: where, message: `Invalid value: ${value}: ${where} in body should be greater than or equal to ${schema.minimum}` });
    }
    if (schema.maximum !== undefined && (schema.exclusiveMaximum ? value >= schema.maximum : value > schema.maximum)) {
      errs.push({ field: where, message: `Invalid value: ${value}: ${where} in body should be less than or equal to ${schema.maximum}` });
    }
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) errs.push({ field: where, message: `Invalid value: ${show(value)}: ${where} in body should be at least ${schema.minLength} chars long` });
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errs.push({ field: where, message: `Too long: may not be longer than ${schema.maxLength}` });
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) errs.push({ field: where, message: `Invalid value: ${show(value)}: ${where} in body should match '${schema.pattern}'` });
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errs.push({ field: where, message: `Invalid value: ${value.length}: ${where} in body should have at least ${schema.minItems} items` });
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errs.push({ field: where, message: `Too many: ${value.length}: must have at most ${schema.maxItems} items` });
    if (schema.items) value.forEach((v, i) => errs.push(...validate(v, schema.items, `${path}[${i}]`)));
  } else if (t === 'object') {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (obj[r] === undefined) errs.push({ field: join(path, r), message: 'Required value' });
    for (const [k, v] of Object.entries(obj)) {
      if (v === undefined) continue;
      const s = schema.properties?.[k] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
      if (s) errs.push(...validate(v, s, join(path, k)));
    }
  }
  for (const sub of schema.allOf ?? []) errs.push(...validate(value, sub, path));
  if (schema.anyOf && !schema.anyOf.some((s) => validate(value, s, path).length === 0)) errs.push({ field: where, message: `Invalid value: ${show(value)}: ${where} in body must match at least one schema (anyOf)` });
  if (schema.oneOf && schema.oneOf.filter((s) => validate(value, s, path).length === 0).length !== 1) errs.push({ field: where, message: `Invalid value: ${show(value)}: ${where} in body must match exactly one schema (oneOf)` });
  return errs;
}

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v);
}

/**
 * Is this a structural schema (every node has a type, or preserves unknown fields / is
 * int-or-string)? Non-structural CRDs are refused in apiextensions.k8s.io/v1.
 */
export function structuralErrors(s: JsonSchema | undefined, path = 'spec.validation.openAPIV3Schema'): string[] {
  if (!s) return [];
  const errs: string[] = [];
  if (!s.type && !s['x-kubernetes-preserve-unknown-fields'] && !s['x-kubernetes-int-or-string'] && !s.anyOf && !s.allOf && !s.oneOf) errs.push(`${path}.type: Required value: must not be empty for specified object fields`);
  for (const [k, v] of Object.entries(s.properties ?? {})) errs.push(...structuralErrors(v, `${path}.properties[${k}]`));
  if (s.items) errs.push(...structuralErrors(s.items, `${path}.items`));
  if (typeof s.additionalProperties === 'object') errs.push(...structuralErrors(s.additionalProperties, `${path}.additionalProperties`));
  return errs;
}
