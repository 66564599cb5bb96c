/**
 * The RaftCluster CustomResourceDefinition, generated from the one zod spec (operator/spec.ts)
 * so the API server validates and defaults exactly what the operator and `raftkv local` accept.
 * `npm run gen` writes crds/raftclusters.raftkv.io.yaml; a test fails when it is stale.
 */
import { z } from 'zod';
import YAML from 'yaml';
import { RaftClusterSpec, RaftLoggerGroupSpec } from './spec.js';

export type OpenApiSchema = Record<string, unknown>;

/** The structural OpenAPI v3 schema of a zod type (the subset the spec uses). */
export function openApiOf(t: z.ZodTypeAny): OpenApiSchema {
  const def = t._def as { typeName: string; description?: string } & Record<string, any>;
  const withDesc = (s: OpenApiSchema) => (t.description ? { ...s, description: t.description } : s);
  switch (def.typeName) {
    case 'ZodDefault': {
      const inner = openApiOf(def.innerType);
      return { ...inner, default: def.defaultValue() };
    }
    case 'ZodOptional':
      return openApiOf(def.innerType);
    case 'ZodEffects':
      // refinements are checked by the operator (zod) and reported in status
      return openApiOf(def.schema);
    case 'ZodObject': {
      const shape = (t as z.AnyZodObject).shape as Record<string, z.ZodTypeAny>;
      const properties: Record<string, OpenApiSchema> = {};
      const required: string[] = [];
      for (const [k, v] of Object.entries(shape)) {
        properties[k] = openApiOf(v);
        if (!v.isOptional() && (v._def as { typeName: string }).typeName !== 'ZodDefault') required.push(k);
      }
      return withDesc({ type: 'object', properties, ...(required.length ? { required } : {}) });
    }
    case 'ZodRecord':
      return withDesc({ type: 'object', additionalProperties: openApiOf(def.valueType) });
    case 'ZodArray':
      return withDesc({ type: 'array', items: openApiOf(def.type) });
    case 'ZodEnum':
      return withDesc({ type: 'string', enum: def.values });
    case 'ZodLiteral':
      return withDesc({ type: typeof def.value, enum: [def.value] });
    case 'ZodBoolean':
      return withDesc({ type: 'boolean' });
    case 'ZodString': {
      const s: OpenApiSchema = { type: 'string' };
      for (const c of def.checks as { kind: string; regex?: RegExp; value?: number }[]) {
        if (c.kind === 'regex') s.pattern = c.regex!.source;
        if (c.kind === 'min') s.minLength = c.value;
        if (c.kind === 'max') s.maxLength = c.value;
      }
      return withDesc(s);
    }
    case 'ZodNumber': {
      const checks = def.checks as { kind: string; value?: number; inclusive?: boolean }[];
      const s: OpenApiSchema = { type: checks.some((c) => c.kind === 'int') ? 'integer' : 'number' };
      for (const c of checks) {
        if (c.kind === 'min') {
          s.minimum = c.value;
          if (!c.inclusive) s.exclusiveMinimum = true;
        }
        if (c.kind === 'max') {
          s.maximum = c.value;
          if (!c.inclusive) s.exclusiveMaximum = true;
        }
      }
      return withDesc(s);
    }
    default:
      throw new Error(`openApiOf: zod type ${def.typeName} is not mapped; extend operator/crd.ts`);
  }
}

const STATUS: OpenApiSchema = {
  type: 'object',
  description: 'What the operator observed.',
  properties: {
    phase: { type: 'string', description: 'Forming, Available, Scaling, Degraded, Electing, QuorumLost, Restoring or Invalid.' },
    bootstrapped: { type: 'boolean', description: 'The initial members formed the cluster; every later pod joins it.' },
    initialSize: { type: 'integer', description: 'How many members the cluster was formed with.' },
    app: { type: 'string', description: 'The engine the cluster was formed with (spec.app cannot change afterwards).' },
    noLeaderSince: { type: 'string', description: 'When the operator last started seeing no leader.' },
    serviceMonitor: { type: 'string', description: '"unavailable" when one was asked for but could not be made.' },
    observedGeneration: { type: 'integer' },
    replicas: { type: 'integer', description: 'Replica pods that exist.' },
    readyReplicas: { type: 'integer', description: 'Replica pods that are ready.' },
    selector: { type: 'string', description: 'Label selector of the replica pods (for the scale subresource).' },
    loggerGroup: {
      type: 'object',
      description: 'The RaftLoggerGroup of spec.loggerGroup: whether it exists and how many of its loggers are members.',
      properties: { name: { type: 'string' }, found: { type: 'boolean' }, members: { type: 'integer' } },
    },
    leader: { type: 'string' },
    members: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          role: { type: 'string' },
          ready: { type: 'boolean' },
          raftId: { type: 'string' },
          appliedIndex: { type: 'integer' },
        },
      },
    },
    conditions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['type', 'status'],
        properties: {
          type: { type: 'string' },
          status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
          reason: { type: 'string' },
          message: { type: 'string' },
          lastTransitionTime: { type: 'string', format: 'date-time' },
          observedGeneration: { type: 'integer' },
        },
      },
    },
    restore: {
      type: 'object',
      description: 'The last restore from a logger (annotation raftkv.io/restore-from-logger).',
      properties: { request: { type: 'string' }, from: { type: 'string' }, index: { type: 'integer' }, at: { type: 'string' } },
    },
    loadTest: {
      type: 'object',
      description: 'The last load test run by the operator.',
      properties: {
        spec: { type: 'string', description: 'Hash of the loadgen block it ran (a new block runs a new test).' },
        generation: { type: 'integer', description: 'The resource generation when it ran.' },
        finishedAt: { type: 'string' },
        throughput: { type: 'number', description: 'Answered requests per second.' },
        p50Ms: { type: 'number' },
        p99Ms: { type: 'number' },
        errors: { type: 'integer', description: 'Errors and timeouts.' },
        answered: { type: 'integer' },
        error: { type: 'string', description: 'Why there is no result.' },
      },
    },
  },
};

interface CrdOptions {
  kind: string;
  plural: string;
  shortNames: string[];
  description: string;
  spec: OpenApiSchema;
  status: OpenApiSchema;
  subresources: Record<string, unknown>;
  columns: { name: string; type: string; jsonPath: string }[];
}

/** A namespaced raftkv.io/v1alpha1 CRD: the one shape both kinds share. */
function crdOf(o: CrdOptions): Record<string, unknown> {
  const singular = o.kind.toLowerCase();
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${o.plural}.raftkv.io`, labels: { 'app.kubernetes.io/name': 'raftkv', 'app.kubernetes.io/component': 'crd' } },
    spec: {
      group: 'raftkv.io',
      scope: 'Namespaced',
      names: { plural: o.plural, singular, kind: o.kind, listKind: `${o.kind}List`, shortNames: o.shortNames, categories: ['all', 'raftkv'] },
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: o.subresources,
          additionalPrinterColumns: [...o.columns, { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: o.description,
              properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec: { ...o.spec, default: {} }, status: o.status },
            },
          },
        },
      ],
    },
  };
}

const generated = (crd: Record<string, unknown>) => `# Generated from operator/spec.ts by \`npm run gen\`: do not edit by hand.\n${YAML.stringify(crd, { lineWidth: 0 })}`;

export function raftClusterCrd(): Record<string, unknown> {
  return crdOf({
    kind: 'RaftCluster',
    plural: 'raftclusters',
    shortNames: ['rc', 'raft'],
    description: 'A Raft-replicated key-value store: its replicas, loggers and load generator, run by the raftkv operator.',
    spec: openApiOf(RaftClusterSpec),
    status: STATUS,
    subresources: { status: {}, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } },
    columns: [
      { name: 'App', type: 'string', jsonPath: '.spec.app' },
      { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicas' },
      { name: 'Ready', type: 'integer', jsonPath: '.status.readyReplicas' },
      { name: 'Leader', type: 'string', jsonPath: '.status.leader' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
    ],
  });
}

export function raftClusterCrdYaml(): string {
  return generated(raftClusterCrd());
}

const GROUP_STATUS: OpenApiSchema = {
  type: 'object',
  description: 'What the operator observed.',
  properties: {
    phase: { type: 'string', description: 'Idle (no formed cluster names it), Progressing, Rolling, Available or Invalid.' },
    message: { type: 'string' },
    observedGeneration: { type: 'integer' },
    loggers: { type: 'integer', description: 'Logger pods that exist.' },
    readyLoggers: { type: 'integer', description: 'Logger pods that are ready (joined every cluster they serve).' },
    clusters: {
      type: 'array',
      description: 'The clusters the group serves, each with the raft port its members listen on (kept for as long as the cluster stays).',
      items: { type: 'object', properties: { name: { type: 'string' }, raftPort: { type: 'integer' } } },
    },
    clusterNames: { type: 'string', description: 'The names of status.clusters, comma-separated (a printer column).' },
    waiting: { type: 'array', description: 'Clusters that name the group but have not formed yet.', items: { type: 'string' } },
  },
};

export function raftLoggerGroupCrd(): Record<string, unknown> {
  return crdOf({
    kind: 'RaftLoggerGroup',
    plural: 'raftloggergroups',
    shortNames: ['rlg'],
    description: "Logger processes shared by several RaftClusters (those whose spec.loggerGroup names it): each keeps every such cluster's committed log as a non-voter.",
    spec: openApiOf(RaftLoggerGroupSpec),
    status: GROUP_STATUS,
    subresources: { status: {} },
    columns: [
      { name: 'Loggers', type: 'integer', jsonPath: '.spec.loggers' },
      { name: 'Ready', type: 'integer', jsonPath: '.status.readyLoggers' },
      { name: 'Clusters', type: 'string', jsonPath: '.status.clusterNames' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
    ],
  });
}

export function raftLoggerGroupCrdYaml(): string {
  return generated(raftLoggerGroupCrd());
}
