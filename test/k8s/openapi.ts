/**
 * OpenAPI documents for the served types: v3 per group-version (what kubectl uses to see that
 * server-side field validation is supported, and for `kubectl explain`) and v2 (the fallback).
 * CRDs carry their openAPIV3Schema; built-in kinds get an open object schema (the emulator
 * validates the fields raftkv relies on itself; see README).
 */
import { createHash } from 'node:crypto';
import { Registry, ResourceType, apiVersionOf } from './resources.js';

function schemaName(t: ResourceType): string {
  if (t.crd) return `${t.group.split('.').reverse().join('.')}.${t.version}.${t.kind}`;
  const group = t.group === '' ? 'core' : t.group.split('.')[0];
  return `io.k8s.api.${group}.${t.version}.${t.kind}`;
}

function gvk(t: ResourceType) {
  return [{ group: t.group, version: t.version, kind: t.kind }];
}

function schemaOf(t: ResourceType): Record<string, unknown> {
  const base = t.crd?.schema ? structuredClone(t.crd.schema) : { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
  const props = { ...((base.properties as Record<string, unknown>) ?? {}) };
  props.apiVersion ??= { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' };
  props.kind ??= { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' };
  props.metadata = { type: 'object', description: "Standard object's metadata.", 'x-kubernetes-preserve-unknown-fields': true };
  return { ...base, type: 'object', properties: props, description: (base.description as string) ?? `${t.kind} (${apiVersionOf(t)})`, 'x-kubernetes-group-version-kind': gvk(t) };
}

const QUERY = ['dryRun', 'fieldManager', 'fieldValidation', 'force', 'pretty'].map((name) => ({ name, in: 'query', schema: { type: name === 'force' ? 'boolean' : 'string' }, uniqueItems: true }));

function operations(t: ResourceType, ref: string) {
  const ext = { 'x-kubernetes-group-version-kind': gvk(t)[0] };
  const ok = { '200': { description: 'OK', content: { 'application/json': { schema: { $ref: ref } } } } };
  const one = {
    get: { operationId: `read${t.kind}`, ...ext, 'x-kubernetes-action': 'get', responses: ok },
    put: { operationId: `replace${t.kind}`, ...ext, 'x-kubernetes-action': 'put', parameters: QUERY, responses: ok },
    patch: { operationId: `patch${t.kind}`, ...ext, 'x-kubernetes-action': 'patch', parameters: QUERY, responses: ok },
    delete: { operationId: `delete${t.kind}`, ...ext, 'x-kubernetes-action': 'delete', parameters: QUERY, responses: ok },
  };
  const many = {
    get: { operationId: `list${t.kind}`, ...ext, 'x-kubernetes-action': 'list', responses: ok },
    post: { operationId: `create${t.kind}`, ...ext, 'x-kubernetes-action': 'post', parameters: QUERY, responses: ok },
  };
  return { one, many };
}

function prefix(t: ResourceType): string {
  return t.group ? `/apis/${t.group}/${t.version}` : '/api/v1';
}

function pathsOf(t: ResourceType, ref: string): Record<string, unknown> {
  const { one, many } = operations(t, ref);
  const ns = t.namespaced ? '/namespaces/{namespace}' : '';
  return { [`${prefix(t)}${ns}/${t.plural}`]: many, [`${prefix(t)}${ns}/${t.plural}/{name}`]: one };
}

export function openApiV3Doc(reg: Registry, gvPath: string): unknown {
  const types = reg.all().filter((t) => (t.group ? `apis/${t.group}/${t.version}` : 'api/v1') === gvPath);
  if (types.length === 0) return undefined;
  const schemas: Record<string, unknown> = {};
  let paths: Record<string, unknown> = {};
  for (const t of types) {
    schemas[schemaName(t)] = schemaOf(t);
    paths = { ...paths, ...pathsOf(t, `#/components/schemas/${schemaName(t)}`) };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes (raftkv emulator)', version: 'v1.32.0' }, paths, components: { schemas } };
}

export function openApiV3Root(reg: Registry): unknown {
  const paths: Record<string, unknown> = {};
  for (const t of reg.all()) {
    const p = t.group ? `apis/${t.group}/${t.version}` : 'api/v1';
    if (paths[p]) continue;
    const hash = createHash('sha256').update(JSON.stringify(openApiV3Doc(reg, p))).digest('hex').slice(0, 32).toUpperCase();
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hash}` };
  }
  return { paths };
}

export function openApiV2(reg: Registry): unknown {
  const definitions: Record<string, unknown> = {};
  let paths: Record<string, unknown> = {};
  for (const t of reg.all()) {
    definitions[schemaName(t)] = schemaOf(t);
    paths = { ...paths, ...pathsOf(t, `#/definitions/${schemaName(t)}`) };
  }
  return { swagger: '2.0', info: { title: 'Kubernetes (raftkv emulator)', version: 'v1.32.0' }, paths, definitions };
}
