/**
 * The RaftCluster and RaftLoggerGroup CRDs: generated from the zod spec (stale = a failing test), served by the API
 * emulator through the real kubectl: printer columns, short names, explain, the scale
 * subresource, server-side defaults equal to zod's, and wrong specs refused naming the field.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { raftClusterCrdYaml, raftLoggerGroupCrdYaml } from '../../operator/crd.js';
import { CHART_CRD_FILE, CHART_GROUP_CRD_FILE, CRD_FILE, DASHBOARD_FILE, GROUP_CRD_FILE, OPERATOR_FILE, VALUES_SCHEMA_FILE, dashboardJson, operatorYaml, valuesSchemaJson } from '../../scripts/gen.js';
import { parseRaftCluster, parseRaftLoggerGroup } from '../../operator/spec.js';
import { TestBed } from '../k8s/testbed.js';

const DEPLOYS = join(process.cwd(), 'deploys');

describe('the RaftCluster CRD', () => {
  let bed: TestBed;
  const kubectl = (...args: string[]) => bed.kubectl(...args);
  const applyText = (yaml: string, ...extra: string[]) => bed.apply(yaml, ...extra);

  before(async () => {
    bed = await TestBed.start();
  });
  after(async () => bed?.stop());

  it('the committed CRD, chart schema, dashboard and deploys/operator.yaml are the ones generated from the code (npm run gen after changing them)', async () => {
    assert.equal(readFileSync(CRD_FILE, 'utf8'), raftClusterCrdYaml(), 'crds/raftclusters.raftkv.io.yaml is stale: run npm run gen');
    assert.equal(readFileSync(CHART_CRD_FILE, 'utf8'), raftClusterCrdYaml(), 'charts/raftkv/crds/ is stale: run npm run gen');
    assert.equal(readFileSync(GROUP_CRD_FILE, 'utf8'), raftLoggerGroupCrdYaml(), 'crds/raftloggergroups.raftkv.io.yaml is stale: run npm run gen');
    assert.equal(readFileSync(CHART_GROUP_CRD_FILE, 'utf8'), raftLoggerGroupCrdYaml(), 'charts/raftkv/crds/raftloggergroups.raftkv.io.yaml is stale: run npm run gen');
    assert.equal(readFileSync(VALUES_SCHEMA_FILE, 'utf8'), valuesSchemaJson(), 'charts/raftkv/values.schema.json is stale: run npm run gen');
    assert.equal(readFileSync(DASHBOARD_FILE, 'utf8'), dashboardJson(), 'the chart\'s Grafana dashboard is stale: run npm run gen');
    assert.equal(readFileSync(OPERATOR_FILE, 'utf8'), await operatorYaml(), 'deploys/operator.yaml is stale (it is rendered from charts/raftkv): run npm run gen');
  });

  it('is served: every shipped manifest is accepted, kubectl get rc shows the printer columns, explain shows the spec', async () => {
    for (const file of [CRD_FILE, GROUP_CRD_FILE]) {
      const crd = await kubectl('apply', '-f', file);
      assert.equal(crd.code, 0, crd.err);
    }
    for (const f of readdirSync(DEPLOYS).filter((x) => x.endsWith('.yaml'))) {
      const docs = YAML.parseAllDocuments(readFileSync(join(DEPLOYS, f), 'utf8')).map((d) => d.toJS());
      if (!docs.some((d) => d?.kind === 'RaftCluster')) continue;
      const r = await kubectl('apply', '-f', join(DEPLOYS, f));
      assert.equal(r.code, 0, `${f}: ${r.err}`);
    }
    const table = await kubectl('get', 'rc');
    assert.match(table.out, /^NAME\s+APP\s+REPLICAS\s+READY\s+LEADER\s+PHASE\s+AGE\n/);
    assert.match(table.out, /\nkv-notlog\s+kvstore\s+3\s/);
    const explain = await kubectl('explain', 'raftcluster.spec');
    assert.match(explain.out, /replicas\s+<integer>/);
    assert.match(explain.out, /Voting replicas/);
    assert.match((await kubectl('explain', 'rc.spec.app')).out, /kvstore \(in memory\)/);
    assert.match((await kubectl('get', 'rlg')).out, /^NAME\s+LOGGERS\s+READY\s+CLUSTERS\s+PHASE\s+AGE\nloggers\s+1\s/);
    assert.match((await kubectl('explain', 'raftloggergroup.spec.loggers')).out, /each keeps the log of every cluster of the group/);
  });

  it('the API server fills the same defaults as the zod spec', async () => {
    assert.equal((await applyText('apiVersion: raftkv.io/v1alpha1\nkind: RaftCluster\nmetadata: { name: bare }\n')).code, 0);
    const stored = JSON.parse((await kubectl('get', 'rc', 'bare', '-o', 'json')).out);
    const zod = parseRaftCluster({ apiVersion: 'raftkv.io/v1alpha1', kind: 'RaftCluster', metadata: { name: 'bare' } });
    assert.deepEqual(stored.spec, JSON.parse(JSON.stringify(zod.spec)));
    assert.equal((await applyText('apiVersion: raftkv.io/v1alpha1\nkind: RaftLoggerGroup\nmetadata: { name: bare }\n')).code, 0);
    const group = JSON.parse((await kubectl('get', 'rlg', 'bare', '-o', 'json')).out);
    assert.deepEqual(group.spec, JSON.parse(JSON.stringify(parseRaftLoggerGroup({ apiVersion: 'raftkv.io/v1alpha1', kind: 'RaftLoggerGroup', metadata: { name: 'bare' } }).spec)));
  });

  it('kubectl scale changes spec.replicas through the scale subresource', async () => {
    assert.equal((await kubectl('scale', 'rc/bare', '--replicas=5')).code, 0);
    assert.equal((await kubectl('get', 'rc', 'bare', '-o', 'jsonpath={.spec.replicas}')).out, '5');
  });

  it('a wrong spec is refused by the API server with a message naming each field', async () => {
    const bad = await applyText('apiVersion: raftkv.io/v1alpha1\nkind: RaftCluster\nmetadata: { name: bad }\nspec: { app: redis, replicas: 0, storage: { size: lots }, raft: { heartbeatMs: 0 } }\n');
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /spec\.app: Unsupported value: "redis"/);
    assert.match(bad.err, /spec\.replicas: Invalid value: 0/);
    assert.match(bad.err, /spec\.storage\.size: Invalid value: "lots"/);
    assert.match(bad.err, /spec\.raft\.heartbeatMs: Invalid value: 0/);
    const unknown = await applyText('apiVersion: raftkv.io/v1alpha1\nkind: RaftCluster\nmetadata: { name: bad2 }\nspec: { replica: 3 }\n');
    assert.match(unknown.err, /unknown field "spec\.replica"/);
    assert.notEqual((await kubectl('get', 'rc', 'bad')).code, 0, 'nothing stored');
  });
});
