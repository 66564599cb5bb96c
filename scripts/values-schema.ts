/**
 * charts/raftkv/values.schema.json: JSON Schema (draft-07) of the chart's values. The clusters'
 * spec is the RaftCluster spec (operator/spec.ts, via the CRD's OpenAPI), closed to unknown
 * fields, so a misspelt or wrong value fails `helm install` naming it instead of reaching the API.
 */
import { openApiOf, type OpenApiSchema } from '../operator/crd.js';
import { RaftClusterSpec, RaftLoggerGroupSpec } from '../operator/spec.js';

/** OpenAPI v3.0 → JSON Schema draft-07: closed objects, numeric exclusive bounds, no defaults (helm does not apply them). */
function draft7(s: OpenApiSchema): OpenApiSchema {
  const out: OpenApiSchema = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === 'default') continue;
    if (k === 'properties') out.properties = Object.fromEntries(Object.entries(v as Record<string, OpenApiSchema>).map(([p, ps]) => [p, draft7(ps)]));
    else if (k === 'items' || (k === 'additionalProperties' && typeof v === 'object')) out[k] = draft7(v as OpenApiSchema);
    else out[k] = v;
  }
  if (s.exclusiveMinimum === true) {
    out.exclusiveMinimum = s.minimum;
    delete out.minimum;
  }
  if (s.exclusiveMaximum === true) {
    out.exclusiveMaximum = s.maximum;
    delete out.maximum;
  }
  // Required fields all have defaults in the operator; in values every spec field is optional.
  delete out.required;
  if (out.type === 'object' && out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

const str = { type: 'string' };
const bool = { type: 'boolean' };
const obj = (properties: Record<string, unknown>, required: string[] = []) => ({ type: 'object', additionalProperties: false, properties, ...(required.length ? { required } : {}) });
const anyObject = { type: 'object' };
const stringMap = { type: 'object', additionalProperties: { type: 'string' } };
const resources = obj({ requests: stringMap, limits: stringMap });

export function valuesSchema(): Record<string, unknown> {
  const spec = draft7(openApiOf(RaftClusterSpec));
  const groupSpec = draft7(openApiOf(RaftLoggerGroupSpec));
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'raftkv chart values',
    ...obj({
      global: anyObject,
      image: obj({ repository: { type: 'string', minLength: 1 }, tag: { type: ['string', 'number'] }, pullPolicy: { type: 'string', enum: ['Always', 'IfNotPresent', 'Never'] } }),
      imagePullSecrets: { type: 'array', items: obj({ name: str }, ['name']) },
      operator: obj({
        enabled: bool,
        replicas: { type: 'integer', minimum: 0, maximum: 2, description: 'Operators; the one holding the Lease acts.' },
        watchNamespace: str,
        leaseSeconds: { type: 'integer', minimum: 2, maximum: 3600 },
        resources,
        nodeSelector: stringMap,
        tolerations: { type: 'array', items: anyObject },
        affinity: anyObject,
        podAnnotations: stringMap,
      }),
      serviceAccount: obj({ create: bool, name: str }),
      rbac: obj({ create: bool }),
      monitoring: obj({
        scrapeAnnotations: bool,
        serviceMonitor: bool,
        dashboard: obj({ enabled: bool, labels: stringMap, annotations: stringMap }),
      }),
      clusterDefaults: { ...spec, description: 'RaftCluster spec fields applied to every cluster (its own spec wins).' },
      clusters: {
        type: 'array',
        description: 'The RaftClusters of the release.',
        items: obj(
          {
            name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 50, description: 'DNS-1123 label.' },
            namespace: str,
            spec,
          },
          ['name'],
        ),
      },
      loggerGroups: {
        type: 'array',
        description: 'RaftLoggerGroups of the release: loggers shared by the clusters whose spec.loggerGroup names them.',
        items: obj(
          {
            name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 50, description: 'DNS-1123 label.' },
            namespace: str,
            spec: groupSpec,
          },
          ['name'],
        ),
      },
    }),
  };
}
