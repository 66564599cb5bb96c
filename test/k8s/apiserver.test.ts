/**
 * The Kubernetes API emulator driven by the real clients: the kubectl on this machine, the real
 * helm (v4 and v3, from ../shared/tools/helm/get.sh when it is there) and @kubernetes/client-node.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { KubeConfig, CoreV1Api, CustomObjectsApi, Watch, ApiException } from '@kubernetes/client-node';
import type { ApiServer } from './apiserver.js';
import { helmBinary } from '../../scripts/helm.js';
import { TestBed } from './testbed.js';

const run = promisify(execFile);

const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget, shortNames: [wg], categories: [all] }
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {}
        scale: { specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas }
      additionalPrinterColumns:
        - { name: Replicas, type: integer, jsonPath: .spec.replicas }
        - { name: Phase, type: string, jsonPath: .status.phase }
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              description: What the widget should be.
              required: [app]
              properties:
                app: { type: string, enum: [kvstore, diskstorage], description: The application to run. }
                replicas: { type: integer, minimum: 1, maximum: 9, default: 3, description: How many replicas. }
                name: { type: string, pattern: '^[a-z]+$' }
            status:
              type: object
              properties:
                phase: { type: string }
                replicas: { type: integer }
`;

describe('Kubernetes API emulator with the real kubectl, helm and client-node', () => {
  let bed: TestBed;
  let api: ApiServer;
  let dir: string;
  let kubeconfig: string;
  const kubectl = (...args: string[]) => bed.kubectl(...args);
  const apply = (yaml: string, ...extra: string[]) => bed.apply(yaml, ...extra);
  const kc = () => {
    const k = new KubeConfig();
    k.loadFromFile(kubeconfig);
    return k;
  };

  before(async () => {
    bed = await TestBed.start({ bookmarkMs: 200 });
    ({ api, dir, kubeconfig } = bed);
  });
  after(async () => bed?.stop());

  it('kubectl: CRD applied at run time is served with short names, printer columns, defaults, explain and scale', async () => {
    assert.equal((await apply(CRD)).code, 0);
    const w = await apply('apiVersion: example.io/v1\nkind: Widget\nmetadata: { name: w1 }\nspec: { app: kvstore }\n');
    assert.equal(w.code, 0, w.err);
    const table = await kubectl('get', 'wg');
    assert.match(table.out, /^NAME\s+REPLICAS\s+PHASE\s+AGE\n/);
    assert.match(table.out, /\nw1\s+3\s+/, 'the default replicas from the schema');
    const yaml = await kubectl('get', 'widget', 'w1', '-o', 'jsonpath={.metadata.generation} {.metadata.uid} {.metadata.resourceVersion}');
    const [gen, uid, rv] = yaml.out.split(' ');
    assert.equal(gen, '1');
    assert.match(uid, /^[0-9a-f-]{36}$/);
    assert.ok(Number(rv) > 0);
    const explain = await kubectl('explain', 'widget.spec');
    assert.match(explain.out, /What the widget should be/);
    assert.match(explain.out, /app\s+<string> -required-/);
    assert.equal((await kubectl('scale', 'widget/w1', '--replicas=5')).code, 0);
    assert.equal((await kubectl('get', 'widget', 'w1', '-o', 'jsonpath={.spec.replicas} {.metadata.generation}')).out, '5 2');
    assert.match((await kubectl('get', 'all')).out, /widget\.example\.io\/w1/, 'category all');
  });

  it('kubectl: a wrong spec is refused with messages naming each field, and nothing is stored', async () => {
    const bad = await apply('apiVersion: example.io/v1\nkind: Widget\nmetadata: { name: w2 }\nspec: { app: nope, replicas: 12, name: "A1" }\n');
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /spec\.app: Unsupported value: "nope": supported values: "kvstore", "diskstorage"/);
    assert.match(bad.err, /spec\.replicas: Invalid value: 12/);
    assert.match(bad.err, /spec\.name: Invalid value: "A1"/);
    const missing = await apply('apiVersion: example.io/v1\nkind: Widget\nmetadata: { name: w3 }\nspec: { replicas: 2 }\n');
    assert.match(missing.err, /spec\.app: Required value/);
    const unknown = await apply('apiVersion: example.io/v1\nkind: Widget\nmetadata: { name: w4 }\nspec: { app: kvstore, colour: red }\n');
    assert.match(unknown.err, /unknown field "spec\.colour"/, 'kubectl asks for strict field validation');
    assert.match((await kubectl('get', 'wg', '-o', 'name')).out, /^widget\.example\.io\/w1\n$/);
  });

  it('kubectl: merge, JSON and status patches; a stale update is a 409; wait for a condition', async () => {
    assert.equal((await kubectl('patch', 'widget', 'w1', '--type', 'merge', '-p', '{"spec":{"replicas":2}}')).code, 0);
    assert.equal((await kubectl('patch', 'widget', 'w1', '--type', 'json', '-p', '[{"op":"replace","path":"/spec/replicas","value":4}]')).code, 0);
    const smp = await kubectl('patch', 'widget', 'w1', '-p', '{"spec":{"replicas":3}}');
    assert.match(smp.err, /strategic merge patch is not supported for custom resources/);
    const st = await kubectl('patch', 'widget', 'w1', '--subresource', 'status', '--type', 'merge', '-p', '{"status":{"phase":"Running","replicas":4}}');
    assert.equal(st.code, 0, st.err);
    assert.equal((await kubectl('get', 'widget', 'w1', '-o', 'jsonpath={.metadata.generation}')).out, '4', 'a status change does not bump the generation');
    assert.equal((await kubectl('wait', '--for=jsonpath={.status.phase}=Running', 'widget/w1', '--timeout=5s')).code, 0);
    const cur = JSON.parse((await kubectl('get', 'widget', 'w1', '-o', 'json')).out);
    cur.spec.replicas = 6;
    const f = join(dir, 'stale.json');
    writeFileSync(f, JSON.stringify(cur));
    assert.equal((await kubectl('replace', '-f', f)).code, 0);
    const again = await kubectl('replace', '-f', f);
    assert.match(again.err, /the object has been modified; please apply your changes to the latest version/);
  });

  it('kubectl: built-in kinds with strategic merge (containers and env merged by name), deletes with cascading', async () => {
    const dep = (v: string) => `apiVersion: apps/v1
kind: Deployment
metadata: { name: d1, labels: { app: d1 } }
spec:
  replicas: 1
  selector: { matchLabels: { app: d1 } }
  template:
    metadata: { labels: { app: d1 } }
    spec:
      containers:
        - name: main
          image: raftkv:dev
          env: [{ name: A, value: "${v}" }, { name: B, value: "b" }]
`;
    assert.equal((await apply(dep('1'))).code, 0);
    assert.equal((await kubectl('patch', 'deploy', 'd1', '-p', '{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"C","value":"c"}]}]}}}}')).code, 0);
    const env = JSON.parse((await kubectl('get', 'deploy', 'd1', '-o', 'jsonpath={.spec.template.spec.containers[0].env}')).out);
    assert.deepEqual(env.map((e: { name: string }) => e.name).sort(), ['A', 'B', 'C'], 'merged by name, not replaced');
    assert.equal((await apply(dep('2'))).code, 0);
    const env2 = JSON.parse((await kubectl('get', 'deploy', 'd1', '-o', 'jsonpath={.spec.template.spec.containers[0].env}')).out);
    assert.deepEqual(Object.fromEntries(env2.map((e: { name: string; value: string }) => [e.name, e.value])), { A: '2', B: 'b', C: 'c' });
    // An owned ConfigMap goes with its owner (background), unless orphaned.
    const uid = (await kubectl('get', 'deploy', 'd1', '-o', 'jsonpath={.metadata.uid}')).out;
    const owned = (name: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n  ownerReferences: [{ apiVersion: apps/v1, kind: Deployment, name: d1, uid: ${uid} }]\ndata: { a: "1" }\n`;
    assert.equal((await apply(owned('cm-owned'))).code, 0);
    assert.equal((await kubectl('delete', 'deploy', 'd1', '--cascade=foreground')).code, 0);
    assert.notEqual((await kubectl('get', 'cm', 'cm-owned')).code, 0, 'the dependent is gone');
    assert.notEqual((await kubectl('get', 'deploy', 'd1')).code, 0);
  });

  it('kubectl: finalizers hold a deleted object (deletionTimestamp) until removed; dry run changes nothing', async () => {
    assert.equal((await apply('apiVersion: v1\nkind: ConfigMap\nmetadata: { name: held, finalizers: [example.io/hold] }\ndata: { a: "1" }\n')).code, 0);
    assert.equal((await kubectl('delete', 'cm', 'held', '--wait=false')).code, 0);
    assert.match((await kubectl('get', 'cm', 'held', '-o', 'jsonpath={.metadata.deletionTimestamp}')).out, /^\d{4}-/);
    assert.equal((await kubectl('patch', 'cm', 'held', '--type', 'json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]')).code, 0);
    assert.notEqual((await kubectl('get', 'cm', 'held')).code, 0);
    assert.equal((await apply('apiVersion: v1\nkind: ConfigMap\nmetadata: { name: dry }\ndata: { a: "1" }\n', '--dry-run=server')).code, 0);
    assert.notEqual((await kubectl('get', 'cm', 'dry')).code, 0, 'a dry run stores nothing');
  });

  it('client-node: list then watch from its resourceVersion sees exactly the later changes; bookmarks; 410 Gone for a compacted version', async () => {
    const core = kc().makeApiClient(CoreV1Api);
    const list = await core.listNamespacedConfigMap({ namespace: 'default' });
    const from = list.metadata!.resourceVersion!;
    const seen: string[] = [];
    let bookmarks = 0;
    const w = new Watch(kc());
    const req = await w.watch('/api/v1/namespaces/default/configmaps', { resourceVersion: from, allowWatchBookmarks: true }, (type, obj) => {
      if (type === 'BOOKMARK') bookmarks++;
      else seen.push(`${type} ${obj.metadata.name}`);
    }, () => undefined);
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'watched' }, data: { x: '1' } } });
    await core.patchNamespacedConfigMap({ namespace: 'default', name: 'watched', body: [{ op: 'replace', path: '/data/x', value: '2' }] });
    await core.deleteNamespacedConfigMap({ namespace: 'default', name: 'watched' });
    for (let i = 0; i < 50 && (seen.length < 3 || bookmarks === 0); i++) await new Promise((r) => setTimeout(r, 50));
    req.abort();
    assert.deepEqual(seen, ['ADDED watched', 'MODIFIED watched', 'DELETED watched']);
    assert.ok(bookmarks > 0, 'bookmarks were sent');
    // Resuming from a version older than the kept history: 410 Gone (as after etcd compaction).
    api.store.compact();
    const errors: unknown[] = [];
    await new Promise<void>((resolve) => {
      void w.watch('/api/v1/namespaces/default/configmaps', { resourceVersion: from }, (type, obj) => {
        if (type === 'ERROR') errors.push(obj);
      }, () => resolve());
    });
    assert.equal((errors[0] as { code: number }).code, 410);
  });

  it('client-node: custom objects, label and field selectors, 409 on a conflicting update, 404 and 422 as ApiExceptions', async () => {
    const co = kc().makeApiClient(CustomObjectsApi);
    await co.createNamespacedCustomObject({ group: 'example.io', version: 'v1', namespace: 'default', plural: 'widgets', body: { apiVersion: 'example.io/v1', kind: 'Widget', metadata: { name: 'sel-a', labels: { tier: 'a' } }, spec: { app: 'kvstore' } } });
    await co.createNamespacedCustomObject({ group: 'example.io', version: 'v1', namespace: 'default', plural: 'widgets', body: { apiVersion: 'example.io/v1', kind: 'Widget', metadata: { name: 'sel-b', labels: { tier: 'b' } }, spec: { app: 'diskstorage' } } });
    const names = async (o: { labelSelector?: string; fieldSelector?: string }) =>
      ((await co.listNamespacedCustomObject({ group: 'example.io', version: 'v1', namespace: 'default', plural: 'widgets', ...o })) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name).sort();
    assert.deepEqual(await names({ labelSelector: 'tier=a' }), ['sel-a']);
    assert.deepEqual(await names({ labelSelector: 'tier in (a,b)' }), ['sel-a', 'sel-b']);
    assert.deepEqual(await names({ labelSelector: 'tier,tier!=a' }), ['sel-b']);
    assert.deepEqual(await names({ fieldSelector: 'metadata.name=sel-b' }), ['sel-b']);
    const got = (await co.getNamespacedCustomObject({ group: 'example.io', version: 'v1', namespace: 'default', plural: 'widgets', name: 'sel-a' })) as { metadata: { resourceVersion: string } };
    const upd = (replicas: number) => co.replaceNamespacedCustomObject({ group: 'example.io', version: 'v1', namespace: 'default', plural: 'widgets', name: 'sel-a', body: { ...got, spec: { app: 'kvstore', replicas } } });
    await upd(2);
    await assert.rejects(upd(4), (e: unknown) => e instanceof ApiException && e.code === 409);
    await assert.rejects(co.getNamespacedCustomObject({ group: 'example.io', version: 'v1', namespace: 'default', plural: 'widgets', name: 'nope' }), (e: unknown) => e instanceof ApiException && e.code === 404);
    await assert.rejects(
      co.createNamespacedCustomObject({ group: 'example.io', version: 'v1', namespace: 'default', plural: 'widgets', body: { apiVersion: 'example.io/v1', kind: 'Widget', metadata: { name: 'bad' }, spec: { app: 'kvstore', replicas: 0 } } }),
      (e: unknown) => e instanceof ApiException && e.code === 422 && /spec\.replicas/.test(String(e.body)),
    );
  });

  it('RBAC: a ServiceAccount token may do only what its Role grants, and every request is logged with its user', async () => {
    await apply(`apiVersion: v1
kind: ServiceAccount
metadata: { name: reader }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: pod-reader }
rules: [{ apiGroups: [""], resources: [pods], verbs: [get, list, watch] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: reader-pods }
subjects: [{ kind: ServiceAccount, name: reader, namespace: default }]
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader }
`);
    const token = api.serviceAccountToken('default', 'reader');
    const k = new KubeConfig();
    k.loadFromOptions({
      clusters: [{ name: 'c', server: api.url, caData: Buffer.from(api.caPem).toString('base64') }],
      users: [{ name: 'reader', token }],
      contexts: [{ name: 'c', cluster: 'c', user: 'reader' }],
      currentContext: 'c',
    });
    const core = k.makeApiClient(CoreV1Api);
    await core.listNamespacedPod({ namespace: 'default' });
    await assert.rejects(core.listNamespacedSecret({ namespace: 'default' }), (e: unknown) => e instanceof ApiException && e.code === 403 && /cannot list resource \\?"secrets/.test(String(e.body)));
    await assert.rejects(core.listNamespacedPod({ namespace: 'kube-system' }), (e: unknown) => e instanceof ApiException && e.code === 403);
    const mine = api.requests.filter((r) => r.user === 'system:serviceaccount:default:reader');
    assert.deepEqual(mine.map((r) => `${r.verb} ${r.resource} ${r.namespace} ${r.code}`), ['list pods default 200', 'list secrets default 403', 'list pods kube-system 403']);
  });

  for (const major of ['4', '3'] as const) {
    it(`helm v${major}: lint, install, upgrade, rollback and uninstall a chart, with release Secrets`, async () => {
      const bin = await helmBinary(Number(major) as 3 | 4);
      const chart = join(dir, `chart-${major}`);
      mkdirSync(join(chart, 'templates'), { recursive: true });
      writeFileSync(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: demo\nversion: 0.1.0\n');
      writeFileSync(join(chart, 'values.yaml'), 'replicas: 1\n');
      writeFileSync(join(chart, 'templates', 'all.yaml'), `apiVersion: v1
kind: ConfigMap
metadata: { name: {{ .Release.Name }}-cm }
data: { replicas: "{{ .Values.replicas }}" }
---
apiVersion: v1
kind: Service
metadata: { name: {{ .Release.Name }}-svc }
spec: { selector: { app: demo }, ports: [{ name: http, port: 80 }] }
`);
      const h = (...args: string[]) => run(bin, args, { env: { ...process.env, KUBECONFIG: kubeconfig, HOME: dir } });
      const rel = `r${major}`;
      assert.match((await h('lint', chart)).stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      await h('install', rel, chart);
      await h('upgrade', rel, chart, '--set', 'replicas=3');
      assert.equal((await kubectl('get', 'cm', `${rel}-cm`, '-o', 'jsonpath={.data.replicas}')).out, '3');
      await h('rollback', rel, '1');
      assert.equal((await kubectl('get', 'cm', `${rel}-cm`, '-o', 'jsonpath={.data.replicas}')).out, '1');
      assert.match((await h('list')).stdout, new RegExp(`${rel}\\s+default\\s+3\\s`));
      assert.match((await kubectl('get', 'secrets', '-l', `owner=helm,name=${rel}`, '-o', 'name')).out, new RegExp(`sh\\.helm\\.release\\.v1\\.${rel}\\.v3`));
      // --wait: helm 4 watches with sendInitialEvents (a streaming list) until the objects are gone.
      await h('uninstall', rel, '--wait', '--timeout', '60s');
      assert.notEqual((await kubectl('get', 'cm', `${rel}-cm`)).code, 0);
      assert.equal((await kubectl('get', 'secrets', '-l', `owner=helm,name=${rel}`, '-o', 'name')).out, '');
    });
  }

  it('npm run k8s:dev prints a kubeconfig that kubectl uses, and stops on SIGINT', async () => {
    const p = spawn(process.execPath, [join(process.cwd(), 'dist', 'test', 'k8s', 'dev.js')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 100 && !/Ctrl-C/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    const file = /^export KUBECONFIG=(.+)$/m.exec(out)?.[1];
    assert.ok(file, out);
    const r = await run('kubectl', ['get', 'ns', '-o', 'name'], { env: { ...process.env, KUBECONFIG: file, HOME: dir } });
    assert.match(r.stdout, /namespace\/default/);
    const code = new Promise((res) => p.once('exit', res));
    p.kill('SIGINT');
    assert.equal(await code, 0);
    assert.ok(!existsSync(file), 'its files are removed');
  });
});
