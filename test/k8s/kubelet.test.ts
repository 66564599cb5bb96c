/**
 * The process kubelet behind the API emulator, driven through the real kubectl: raftkv pods as
 * real processes with their own IPs and the seed's ports, the downward API, volumes at their
 * mountPath, probes, restarts, graceful deletion, logs, Deployments, Services' endpoints and
 * anti-affinity.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { Kubelet } from './kubelet.js';
import { TestBed } from './testbed.js';

const run = promisify(execFile);

const replicaPod = (name: string, extra = '') => `apiVersion: v1
kind: Pod
metadata: { name: ${name}, labels: { app: kv, who: ${name} } }
spec:
  terminationGracePeriodSeconds: 10
  containers:
    - name: replica
      image: raftkv:dev
      args: [replica, --id, $(POD_NAME), --port, ":11000", --raft, ":12000", --http, ":13000", --data-dir, /data/$(POD_NAME)]
      ports: [{ name: client, containerPort: 11000 }, { name: http, containerPort: 13000 }]
      env:
        - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
        - { name: POD_IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }
        - { name: APP_LABEL, valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }
      readinessProbe: { httpGet: { path: /readyz, port: http }, periodSeconds: 1 }
      volumeMounts: [{ name: data, mountPath: /data }, { name: conf, mountPath: /etc/raftkv-test }]
${extra}  volumes:
    - { name: data, emptyDir: {} }
    - { name: conf, configMap: { name: conf } }
`;

describe('process kubelet (pods as real processes, each with its own IP)', () => {
  let bed: TestBed;
  let kubelet: Kubelet;
  const kubectl = (...args: string[]) => bed.kubectl(...args);
  const apply = async (yaml: string) => {
    const r = await bed.apply(yaml);
    assert.equal(r.code, 0, r.err);
  };
  const jsonpath = (what: string, path: string) => bed.jsonpath(what, path);

  before(async () => {
    bed = await TestBed.start({ kubelet: true, nodes: 3 });
    kubelet = bed.kubelet!;
    await apply('apiVersion: v1\nkind: ConfigMap\nmetadata: { name: conf }\ndata: { greeting: hello-from-configmap }\n');
  });
  after(async () => bed?.stop());

  it('runs a raftkv replica pod at its own IP on the seed ports, with the downward API, volumes and readiness', async () => {
    await apply(replicaPod('kv-0'));
    assert.equal((await kubectl('wait', '--for=condition=Ready', 'pod/kv-0', '--timeout=30s')).code, 0);
    const ip = await jsonpath('pod kv-0', '{.status.podIP}');
    assert.match(ip, /^(10\.\d+|127\.\d+)\.\d+\.\d+$/);
    const status = await (await fetch(`http://${ip}:13000/v1/status`)).json();
    assert.equal(status.id, 'kv-0', 'the downward API named it');
    const put = await fetch(`http://${ip}:13000/v1/kv/k`, { method: 'PUT', body: 'v' });
    assert.equal(put.status, 200);
    assert.match((await kubectl('logs', 'kv-0')).out, /kv-0: bootstrapped a cluster of 1/);
    if (kubelet.net.mode === 'netns') {
      // The volumes are at their mountPath inside the pod and nowhere else.
      const ns = (await run('ip', ['netns', 'identify', String(Number((await run('pgrep', ['-f', 'data-dir /data/kv-0'])).stdout.trim().split('\n')[0]))])).stdout.trim();
      assert.match(ns, /^rkv-/);
    }
    const describe = (await kubectl('describe', 'pod', 'kv-0')).out;
    assert.match(describe, /Normal\s+Scheduled\s+.*Successfully assigned default\/kv-0 to node-\d/);
    assert.match(describe, /Normal\s+Started\s+.*Started container replica/);
    assert.match((await kubectl('get', 'pod', 'kv-0', '-o', 'yaml')).out, /podIP: /);
    const get = await kubectl('get', 'pods', '-o', 'wide');
    assert.match(get.out, /kv-0\s+1\/1\s+Running\s+0\s+\S+\s+\S+\s+node-\d/);
  });

  it('a Service gets endpoints from ready pods only; a pod whose readiness fails leaves them', async () => {
    await apply('apiVersion: v1\nkind: Service\nmetadata: { name: kv }\nspec: { clusterIP: None, selector: { app: kv }, ports: [{ name: http, port: 13000, targetPort: http }] }\n');
    const ip = await jsonpath('pod kv-0', '{.status.podIP}');
    for (let i = 0; i < 40 && !(await jsonpath('endpoints kv', '{.subsets[0].addresses[0].ip}')); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await jsonpath('endpoints kv', '{.subsets[0].addresses[0].ip}'), ip);
    assert.equal(await jsonpath('endpoints kv', '{.subsets[0].ports[0].port}'), '13000', 'the named targetPort resolved');
    assert.equal(await jsonpath('endpointslices kv-rkv', '{.endpoints[0].conditions.ready}'), 'true');
  });

  it('graceful deletion: SIGTERM, the replica stops cleanly, the pod goes; a foreign image is refused with a reason', async () => {
    const del = await kubectl('delete', 'pod', 'kv-0', '--timeout=30s');
    assert.equal(del.code, 0, del.err);
    assert.notEqual((await kubectl('get', 'pod', 'kv-0')).code, 0);
    assert.equal((await run('pgrep', ['-f', 'data-dir /data/kv-0']).catch(() => ({ stdout: '' }))).stdout, '', 'its process is gone');
    await apply('apiVersion: v1\nkind: Pod\nmetadata: { name: nginx }\nspec: { containers: [{ name: web, image: nginx:1.27 }] }\n');
    for (let i = 0; i < 40 && !(await jsonpath('pod nginx', '{.status.containerStatuses[0].state.waiting.reason}')); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await jsonpath('pod nginx', '{.status.containerStatuses[0].state.waiting.reason}'), 'ErrImagePull');
    assert.match(await jsonpath('pod nginx', '{.status.containerStatuses[0].state.waiting.message}'), /only raftkv:\* images/);
    await kubectl('delete', 'pod', 'nginx', '--wait=false');
  });

  it('a failing liveness probe restarts the container; restartPolicy Never lets it finish', async () => {
    await apply(`apiVersion: v1
kind: Pod
metadata: { name: sick }
spec:
  containers:
    - name: r
      image: raftkv:dev
      args: [replica, --id, sick, --port, ":11000", --raft, ":12000", --http, ":13000", --data-dir, /tmp/sick-$(POD_UID)]
      env: [{ name: POD_UID, valueFrom: { fieldRef: { fieldPath: metadata.uid } } }]
      livenessProbe: { httpGet: { path: /no-such-path, port: 13000 }, periodSeconds: 1, failureThreshold: 2, initialDelaySeconds: 1 }
---
apiVersion: v1
kind: Pod
metadata: { name: once }
spec:
  restartPolicy: Never
  containers: [{ name: v, image: raftkv:dev, args: [--version] }]
`);
    for (let i = 0; i < 100 && Number((await jsonpath('pod sick', '{.status.containerStatuses[0].restartCount}')) || 0) < 1; i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(Number(await jsonpath('pod sick', '{.status.containerStatuses[0].restartCount}')) >= 1, 'restarted after failing its liveness probe');
    for (let i = 0; i < 50 && (await jsonpath('pod once', '{.status.phase}')) !== 'Succeeded'; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await jsonpath('pod once', '{.status.phase}'), 'Succeeded');
    await kubectl('delete', 'pod', 'sick', 'once', '--wait=false');
  });

  it('a Deployment keeps its pods, spread by required anti-affinity; a pod that fits nowhere stays Pending with the reason', async () => {
    await apply(`apiVersion: apps/v1
kind: Deployment
metadata: { name: spread }
spec:
  replicas: 4
  selector: { matchLabels: { app: spread } }
  template:
    metadata: { labels: { app: spread } }
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - { topologyKey: kubernetes.io/hostname, labelSelector: { matchLabels: { app: spread } } }
      containers:
        - name: r
          image: raftkv:dev
          args: [replica, --id, $(POD_NAME), --port, ":11000", --raft, ":12000", --http, ":13000", --data-dir, /tmp/$(POD_NAME)]
          env: [{ name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]
`);
    for (let i = 0; i < 100 && (await jsonpath('deploy spread', '{.status.readyReplicas}')) !== '3'; i++) await new Promise((r) => setTimeout(r, 100));
    const nodes = (await jsonpath('pods -l app=spread', '{.items[*].spec.nodeName}')).split(' ').filter(Boolean);
    assert.equal(nodes.length, 3);
    assert.equal(new Set(nodes).size, 3, 'one per node');
    assert.match(await jsonpath('pods -l app=spread --field-selector=status.phase=Pending', '{.items[0].status.conditions[0].message}'), /0\/3 nodes are available: 3 node\(s\) didn't match pod anti-affinity rules/);
    const pending = (await jsonpath('pods -l app=spread --field-selector=status.phase=Pending', '{.items[0].metadata.name}'));
    assert.match((await kubectl('describe', 'pod', pending)).out, /Warning\s+FailedScheduling/);
    assert.equal((await kubectl('scale', 'deploy/spread', '--replicas=2')).code, 0);
    for (let i = 0; i < 100 && (await jsonpath('pods -l app=spread', '{.items[*].metadata.name}')).split(' ').filter(Boolean).length !== 2; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await jsonpath('pods -l app=spread', '{.items[*].metadata.name}')).split(' ').filter(Boolean).length, 2);
    assert.equal((await kubectl('delete', 'deploy', 'spread', '--timeout=30s')).code, 0);
    for (let i = 0; i < 100 && (await jsonpath('pods -l app=spread', '{.items[*].metadata.name}')) !== ''; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await jsonpath('pods -l app=spread', '{.items[*].metadata.name}'), '', 'its ReplicaSet and pods went with it');
  });
});
