/**
 * `npm run gen`: everything generated from the code, written where it is committed (a test fails
 * when any of it is stale):
 * - the RaftCluster and RaftLoggerGroup CRDs, from operator/spec.ts: crds/ and the chart's crds/ (the same files);
 * - the chart's values.schema.json (the clusters' spec is the same zod schema);
 * - the chart's Grafana dashboard;
 * - deploys/operator.yaml, rendered from the chart by the real helm (so the two never drift).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { raftClusterCrdYaml, raftLoggerGroupCrdYaml } from '../operator/crd.js';
import { grafanaDashboard } from '../operator/dashboard.js';
import { OPERATOR_NAMESPACE } from '../operator/manifests.js';
import { valuesSchema } from './values-schema.js';
import { REPO, helm } from './helm.js';
import { commandLine } from '../util/cli.js';

export const CHART = join(REPO, 'charts', 'raftkv');
export const CRD_FILE = join(REPO, 'crds', 'raftclusters.raftkv.io.yaml');
export const CHART_CRD_FILE = join(CHART, 'crds', 'raftclusters.raftkv.io.yaml');
export const GROUP_CRD_FILE = join(REPO, 'crds', 'raftloggergroups.raftkv.io.yaml');
export const CHART_GROUP_CRD_FILE = join(CHART, 'crds', 'raftloggergroups.raftkv.io.yaml');
export const VALUES_SCHEMA_FILE = join(CHART, 'values.schema.json');
export const DASHBOARD_FILE = join(CHART, 'files', 'grafana-dashboard.json');
export const OPERATOR_FILE = join(REPO, 'deploys', 'operator.yaml');

export function valuesSchemaJson(): string {
  return `${JSON.stringify(valuesSchema(), null, 2)}\n`;
}

export function dashboardJson(): string {
  return `${JSON.stringify(grafanaDashboard(), null, 2)}\n`;
}

/** deploys/operator.yaml: the chart's operator part (no clusters), release raftkv in raftkv-system, plus that namespace. */
export async function operatorYaml(): Promise<string> {
  const rendered = await helm(['template', 'raftkv', CHART, '--namespace', OPERATOR_NAMESPACE, '--include-crds', '--set', 'monitoring.dashboard.enabled=false']);
  const ns = YAML.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: OPERATOR_NAMESPACE, labels: { 'app.kubernetes.io/name': 'raftkv' } } });
  return `# Rendered from charts/raftkv by \`npm run gen\` (helm template raftkv charts/raftkv -n ${OPERATOR_NAMESPACE} --include-crds): do not edit.\n# kubectl apply -f deploys/operator.yaml   then   kubectl apply -f deploys/kv-notlog.yaml\n---\n${ns}${rendered.replace(/^---\n/, '---\n')}`;
}

const GEN_HELP = `usage: npm run gen
Writes the CRDs (crds/ and the chart's crds/), the chart's values.schema.json and Grafana
dashboard, and deploys/operator.yaml, from the code. Takes no flags.
`;

// Anything on the command line is a mistake (a flag meant for something else): refused before a
// file is written.
if (process.argv[1] === fileURLToPath(import.meta.url) && commandLine('gen', GEN_HELP, process.argv.slice(2), {})) {
  mkdirSync(join(REPO, 'crds'), { recursive: true });
  mkdirSync(join(CHART, 'crds'), { recursive: true });
  mkdirSync(join(CHART, 'files'), { recursive: true });
  writeFileSync(CRD_FILE, raftClusterCrdYaml());
  writeFileSync(CHART_CRD_FILE, raftClusterCrdYaml());
  writeFileSync(GROUP_CRD_FILE, raftLoggerGroupCrdYaml());
  writeFileSync(CHART_GROUP_CRD_FILE, raftLoggerGroupCrdYaml());
  writeFileSync(VALUES_SCHEMA_FILE, valuesSchemaJson());
  writeFileSync(DASHBOARD_FILE, dashboardJson());
  writeFileSync(OPERATOR_FILE, await operatorYaml());
  for (const f of [CRD_FILE, CHART_CRD_FILE, GROUP_CRD_FILE, CHART_GROUP_CRD_FILE, VALUES_SCHEMA_FILE, DASHBOARD_FILE, OPERATOR_FILE]) console.log(`wrote ${f.slice(REPO.length)}`);
}
