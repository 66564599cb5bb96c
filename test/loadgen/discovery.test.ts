import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { discoverMembers } from '../../discovery/kubernetes.js';
import { memberLabels } from '../../operator/labels.js';
import { CLI, TestCluster } from '../helpers/cluster.js';
import { FakeKube } from '../helpers/fake-kube.js';

describe('Kubernetes discovery', () => {
  it('finds the running replica pods of a cluster by label, in ordinal order, and the loadgen uses them', async () => {
    const c = await TestCluster.create('discover');
    const ids = ['d1', 'd2', 'd3'];
    const kube = new FakeKube([]);
    try {
      for (const id of ids) await c.define(id);
      for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
      kube.pods = [
        ...ids.map((id, i) => ({
          name: `kv-${2 - i}`,
          namespace: 'exp',
          labels: memberLabels('kv', 'replica', 2 - i),
          phase: 'Running',
          ip: '127.0.0.1',
          ports: [{ name: 'client', containerPort: c.nodes.get(id)!.client }],
        })),
        { name: 'kv-3', namespace: 'exp', labels: memberLabels('kv', 'replica', 3), phase: 'Pending' },
        { name: 'kv-log-0', namespace: 'exp', labels: memberLabels('kv', 'logger', 0), phase: 'Running', ip: '127.0.0.9' },
        { name: 'other-0', namespace: 'exp', labels: memberLabels('other', 'replica', 0), phase: 'Running', ip: '127.0.0.8' },
      ];
      await kube.start();
      const file = kube.writeKubeconfig(c.dir, 'exp');
      const kc = new KubeConfig();
      kc.loadFromFile(file);
      const found = await discoverMembers('kv', { kubeConfig: kc });
      assert.deepEqual(found.map((m) => m.pod), ['kv-0', 'kv-1', 'kv-2']);
      assert.deepEqual(found.map((m) => m.addr), [...ids].reverse().map((id) => c.clientAddr(id)));
      assert.ok(kube.requests.some((r) => r.includes('/api/v1/namespaces/exp/pods') && r.includes('raftkv.io%2Fcluster%3Dkv')));
      await c.waitLeader(ids);
      const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'loadgen', '--discover', 'kv', '--requests', '60', '--clients', '3', '--quiet'], {
        env: { ...process.env, KUBECONFIG: file },
        timeout: 30_000,
      });
      assert.match(stdout, new RegExp(`targets ${[...ids].reverse().map((id) => c.clientAddr(id)).join(',')}`));
      assert.match(stdout, /protobuf\s+3\s+1\s+60\s+60\s+0\s+0/);
    } finally {
      await kube.stop();
      await c.destroy();
    }
  });
});
