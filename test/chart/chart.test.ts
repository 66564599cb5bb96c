/**
 * charts/raftkv with the real helm (v4 and v3): lint, every rendering validated against the
 * Kubernetes OpenAPI schemas, wrong values refused by values.schema.json naming the value, and on
 * the API emulator with its process kubelet: install forms the clusters, upgrade scales one,
 * uninstall removes everything the release made.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { dashboardMetrics } from '../../operator/dashboard.js';
import { OPERATOR_RULES } from '../../operator/manifests.js';
import { PORTS } from '../../operator/resources.js';
import { CHART } from '../../scripts/gen.js';
import { helm } from '../../scripts/helm.js';
import { validateObject } from '../helpers/k8s-schema.js';
import { TestBed } from '../k8s/testbed.js';

const EXAMPLES = join(CHART, 'examples');
const examples = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml'));

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any };
const objectsOf = (yaml: string): K8sObject[] => YAML.parseAllDocuments(yaml).map((d) => d.toJS()).filter(Boolean);

describe('the Helm chart, rendered by the real helm', () => {
  for (const major of [4, 3] as const) {
    it(`helm v${major}: lint passes, and every rendering (defaults and each example) validates against the Kubernetes schemas`, async () => {
      const renderings: [string, string[]][] = [['defaults', []], ...examples.map((f): [string, string[]] => [f, ['-f', join(EXAMPLES, f)]])];
      for (const [name, args] of renderings) {
        const lint = await helm(['lint', CHART, ...args], { major });
        assert.match(lint, /1 chart\(s\) linted, 0 chart\(s\) failed/, `${name}: ${lint}`);
        const objects = objectsOf(await helm(['template', 'rel', CHART, '--namespace', 'ns1', '--include-crds', ...args], { major }));
        assert.ok(objects.length >= 6, `${name}: rendered ${objects.length} objects`);
        const problems = (await Promise.all(objects.map(validateObject))).flat();
        assert.deepEqual(problems, [], `${name}: every object is valid`);
        const clusters = objects.filter((o) => o.kind === 'RaftCluster');
        for (const c of clusters) assert.equal(c.spec.image, 'raftkv:latest', 'clusters run the chart\'s image unless told otherwise');
        if (name === 'apps-6.yaml') assert.deepEqual(clusters.map((c) => c.metadata.name), ['app-0', 'app-1', 'app-2', 'app-3', 'app-4', 'app-5']);
        if (name === 'logging-compared.yaml') {
          // The seed's multi-cluster logger: one group, named by two clusters.
          const groups = objects.filter((o) => o.kind === 'RaftLoggerGroup');
          assert.deepEqual(groups.map((g) => [g.metadata.name, g.spec.image, g.spec.storage.ephemeral]), [['shared', 'raftkv:latest', false]]);
          assert.deepEqual(clusters.filter((c) => c.spec.loggerGroup === 'shared').map((c) => c.metadata.name), ['kv-shared-a', 'kv-shared-b']);
          assert.ok(objects.some((o) => o.kind === 'CustomResourceDefinition' && o.metadata.name === 'raftloggergroups.raftkv.io'), 'the chart installs the group CRD');
        }
      }
    });
  }

  it('every object in deploys/ validates against the Kubernetes schemas and the RaftCluster spec', async () => {
    const dir = join(CHART, '..', '..', 'deploys');
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml'))) {
      const objects = objectsOf(readFileSync(join(dir, f), 'utf8'));
      assert.ok(objects.length > 0, f);
      assert.deepEqual((await Promise.all(objects.map(validateObject))).flat(), [], f);
    }
  });

  it('grants the operator exactly the rules it uses (operator/manifests.ts, checked against the request log by the install test)', async () => {
    const role = objectsOf(await helm(['template', 'rel', CHART])).find((o) => o.kind === 'ClusterRole')!;
    assert.deepEqual(role.rules, OPERATOR_RULES);
  });

  it('applies clusterDefaults under each cluster\'s own spec, and placement values become affinity', async () => {
    const values = join(CHART, 'examples', 'production.yaml');
    const c = objectsOf(await helm(['template', 'rel', CHART, '-f', values, '--set', 'clusterDefaults.valueSize=4096,clusterDefaults.replicas=9'])).find((o) => o.kind === 'RaftCluster')!;
    assert.equal(c.spec.valueSize, 4096, 'a default the cluster does not set');
    assert.equal(c.spec.replicas, 5, 'the cluster\'s own value wins');
    assert.deepEqual(c.spec.placement, { replicaSpread: 'required', loggersApart: 'required' });
  });

  it('refuses wrong values at install, naming the value, and renders nothing', async () => {
    const wrong: [string[], RegExp][] = [
      [['--set', 'clusters[0].name=kv,clusters[0].spec.replcas=3'], /clusters\/0\/spec.*additional properties 'replcas' not allowed/],
      [['--set', 'clusters[0].name=kv,clusters[0].spec.replicas=three'], /clusters\/0\/spec\/replicas.*want integer/],
      [['--set', 'clusters[0].name=Bad_Name'], /clusters\/0\/name.*does not match pattern/],
      [['--set', 'clusters[0].name=kv,clusters[0].spec.app=redis'], /clusters\/0\/spec\/app.*(must be one of|value must be one of)/],
      [['--set', 'clusters[0].name=kv,clusters[0].spec.storage.size=lots'], /clusters\/0\/spec\/storage\/size.*does not match pattern/],
      [['--set', 'operator.replicas=-1'], /operator\/replicas.*minimum/],
      [['--set', 'image.pullPolicy=Sometimes'], /image\/pullPolicy/],
      [['--set', 'loggerGroups[0].name=shared,loggerGroups[0].spec.loggers=0'], /loggerGroups\/0\/spec\/loggers.*minimum/],
      [['--set', 'loggerGroups[0].name=shared,loggerGroups[0].spec.replicas=3'], /loggerGroups\/0\/spec.*additional properties 'replicas' not allowed/],
    ];
    for (const [args, message] of wrong) {
      const r = await helm(['template', 'rel', CHART, ...args]).then(
        (out) => ({ ok: true, out }),
        (e: Error) => ({ ok: false, out: e.message }),
      );
      assert.equal(r.ok, false, `${args.join(' ')} must be refused`);
      assert.match(r.out, message);
    }
  });
});

describe('helm install, upgrade and uninstall on the Kubernetes API emulator', () => {
  let bed: TestBed;
  before(async () => {
    bed = await TestBed.start({ kubelet: true, nodes: 3 });
  });
  after(async () => bed?.stop());

  it('install runs the operator and forms the clusters; upgrade scales one; the dashboard\'s metrics exist; uninstall removes everything', async () => {
    const ns = 'raftkv-system';
    const h = (...args: string[]) => helm(args, { env: { KUBECONFIG: bed.kubeconfig } });
    const values = (b: number) => {
      const f = join(bed.dir, `values-${b}.yaml`);
      writeFileSync(f, YAML.stringify({
        clusters: [{ name: 'kv-a', spec: { replicas: 3, loggers: 1 } }, { name: 'kv-b', spec: { replicas: b, loggerGroup: 'shared', placement: { replicaSpread: 'required' } } }],
        loggerGroups: [{ name: 'shared' }],
      }));
      return f;
    };
    const logs = async () => (await bed.kubectl('logs', '-n', ns, 'deployment/raftkv-operator')).out;
    const phase = (c: string) => bed.jsonpath(`rc ${c} -n ${ns}`, '{.status.phase}');
    await h('install', 'raftkv', CHART, '--namespace', ns, '--create-namespace', '-f', values(1));
    for (const c of ['kv-a', 'kv-b']) await bed.until(`${c} Available`, async () => (await phase(c)) === 'Available', 120_000).catch(async (e) => assert.fail(`${e.message}\n${await logs()}`));
    assert.match(await h('status', 'raftkv', '--namespace', ns), /kubectl -n raftkv-system get raftcluster kv-a/, 'NOTES tell how to see the clusters');

    await h('upgrade', 'raftkv', CHART, '--namespace', ns, '-f', values(3));
    const voters = async (c: string) => JSON.parse((await bed.jsonpath(`rc ${c} -n ${ns}`, '{.status.members}')) || '[]').filter((m: { role: string; ready: boolean }) => m.role === 'voter' && m.ready).length;
    await bed.until('kv-b scaled to 3 voters', async () => (await voters('kv-b')) === 3 && (await phase('kv-b')) === 'Available', 120_000).catch(async (e) => assert.fail(`${e.message}\n${await logs()}`));
    const nodes = new Set((await bed.jsonpath(`pods -n ${ns} -l raftkv.io/cluster=kv-b,raftkv.io/role=replica`, '{.items[*].spec.nodeName}')).split(' '));
    assert.equal(nodes.size, 3, 'placement.replicaSpread: required puts each replica on its own node');
    await bed.until('kv-b logged by the group shared', async () => (await bed.jsonpath(`rc kv-b -n ${ns}`, '{.status.loggerGroup.members}')) === '1', 60_000).catch(async (e) => assert.fail(`${e.message}\n${await logs()}`));

    // Every metric the dashboard shows is exported by a replica, a logger or the operator.
    const ip = async (sel: string) => (await bed.jsonpath(`pods -n ${ns} ${sel}`, '{.items[0].status.podIP}')).trim();
    const scraped = await Promise.all([
      [await ip('-l raftkv.io/cluster=kv-a,raftkv.io/role=replica'), PORTS.http],
      [await ip('-l raftkv.io/cluster=kv-a,raftkv.io/role=logger'), PORTS.loggerHttp],
      [await ip('-l app.kubernetes.io/component=operator'), 8080],
    ].map(async ([host, port]) => (await fetch(`http://${host}:${port}/metrics`)).text()));
    const missing = dashboardMetrics().filter((m) => !scraped.some((text) => new RegExp(`^# TYPE ${m} `, 'm').test(text)));
    assert.deepEqual(missing, [], 'the dashboard queries only metrics the processes export');

    await h('uninstall', 'raftkv', '--namespace', ns, '--wait', '--timeout', '120s');
    await bed.until('everything the release made is gone', async () => {
      const left = (await bed.kubectl('get', 'rc,rlg,pods,services,pdb,serviceaccounts,roles,rolebindings,deployments,configmaps', '-n', ns, '-l', 'app.kubernetes.io/name=raftkv', '-o', 'name')).out.trim();
      const cluster = (await bed.kubectl('get', 'clusterroles,clusterrolebindings', '-l', 'app.kubernetes.io/name=raftkv', '-o', 'name')).out.trim();
      return left === '' && cluster === '';
    }, 60_000).catch(async (e) => assert.fail(`${e.message}\n${(await bed.kubectl('get', 'all,sa,roles,rolebindings', '-n', ns)).out}`));
    assert.equal((await bed.kubectl('get', 'crd', 'raftclusters.raftkv.io', '-o', 'name')).out.trim(), 'customresourcedefinition.apiextensions.k8s.io/raftclusters.raftkv.io', 'the CRD stays, as Helm does with CRDs');
  });
});
