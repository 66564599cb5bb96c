/**
 * `kubectl apply -f deploys/operator.yaml` on the emulator: the operator runs as a pod under its
 * ServiceAccount (in-cluster config, RBAC enforced), forms a RaftCluster, and every request it
 * made was allowed by its ClusterRole, which grants nothing it does not use.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OPERATOR_FILE } from '../../scripts/gen.js';
import { OPERATOR_NAMESPACE, OPERATOR_RULES } from '../../operator/manifests.js';
import { TestBed } from '../k8s/testbed.js';

/** Grants used only in some situations, and when (so an unused grant is a decision, not drift). */
const CONDITIONAL: Record<string, string> = {
  'delete /pods': 'scaling down or replacing a failed pod',
  'patch /services': 'a Service edited by hand is put back',
  'patch policy/poddisruptionbudgets': 'the replica count crosses 3',
  'create /persistentvolumeclaims': 'storage.ephemeral: false',
  'delete /persistentvolumeclaims': 'storage.ephemeral: false, scaling down',
  'patch /serviceaccounts': 'a second RaftCluster in the namespace becomes an owner too',
  'patch rbac.authorization.k8s.io/roles': 'a second RaftCluster in the namespace becomes an owner too',
  'patch rbac.authorization.k8s.io/rolebindings': 'a second RaftCluster in the namespace becomes an owner too',
  'create coordination.k8s.io/leases': 'the first operator ever',
  'patch raftkv.io/raftloggergroups/status': 'a RaftLoggerGroup exists (test/operator/logger-group.test.ts)',
  'get monitoring.coreos.com/servicemonitors': 'spec.monitoring.serviceMonitor',
  'create monitoring.coreos.com/servicemonitors': 'spec.monitoring.serviceMonitor',
  'patch monitoring.coreos.com/servicemonitors': 'spec.monitoring.serviceMonitor, edited by hand',
};

describe('installing the operator with kubectl apply -f deploys/operator.yaml', () => {
  let bed: TestBed;
  before(async () => {
    bed = await TestBed.start({ kubelet: true, nodes: 3 });
  });
  after(async () => bed?.stop());

  it('runs as a pod under least-privilege RBAC, forms a RaftCluster and runs its load test', async () => {
    const r = await bed.apply(readFileSync(OPERATOR_FILE, 'utf8').replaceAll('image: raftkv:latest', 'image: raftkv:dev'));
    assert.equal(r.code, 0, r.err);
    const w = await bed.kubectl('rollout', 'status', 'deployment/raftkv-operator', '-n', OPERATOR_NAMESPACE, '--timeout=60s');
    assert.equal(w.code, 0, w.err + w.out);
    const kv = readFileSync(join(process.cwd(), 'deploys', 'kv-notlog.yaml'), 'utf8').replace(/^spec:\n/m, 'spec:\n  image: raftkv:dev\n');
    assert.equal((await bed.apply(kv)).code, 0);
    const logs = async () => (await bed.kubectl('logs', '-n', OPERATOR_NAMESPACE, 'deployment/raftkv-operator')).out;
    await bed.until('kv-notlog Available', async () => (await bed.jsonpath('rc kv-notlog', '{.status.phase}')) === 'Available', 90_000).catch(async (e) => assert.fail(`${e.message}\n${await logs()}`));
    // Its load test runs in a pod too (discovering the replicas under the members' account).
    await bed.until('the load test result', async () => (await bed.jsonpath('rc kv-notlog', '{.status.loadTest.spec}')) !== '', 60_000).catch(async (e) => assert.fail(`${e.message}\n${await logs()}`));
    assert.ok(Number(await bed.jsonpath('rc kv-notlog', '{.status.loadTest.throughput}')) > 0, await bed.jsonpath('rc kv-notlog', '{.status.loadTest}'));
    const user = `system:serviceaccount:${OPERATOR_NAMESPACE}:raftkv-operator`;
    const mine = bed.api.requests.filter((q) => q.user === user);
    assert.ok(mine.length > 10, 'the operator talked to the API as its ServiceAccount');
    const denied = mine.filter((q) => q.code === 403);
    assert.deepEqual(denied.map((q) => `${q.verb} ${q.group}/${q.resource}${q.subresource ? `/${q.subresource}` : ''}`), [], 'nothing it needs is missing from its ClusterRole');
    const used = new Set(mine.map((q) => `${q.verb} ${q.group}/${q.resource}${q.subresource ? `/${q.subresource}` : ''}`));
    const granted = OPERATOR_RULES.flatMap((rule) => rule.resources.flatMap((res) => rule.verbs.map((v) => `${v} ${rule.apiGroups[0]}/${res}`)));
    const unused = granted.filter((g) => !used.has(g) && !(g in CONDITIONAL));
    assert.deepEqual(unused, [], 'every grant is used (or listed as conditional, with the reason)');
  });
});
