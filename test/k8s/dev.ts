/**
 * `npm run k8s:dev`: the Kubernetes API emulator (and, once started, its kubelet) for trying the
 * operator, the chart and kubectl without a cluster. Prints the kubeconfig path and an export
 * line, and runs until Ctrl-C, stopping everything it started.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ApiServer } from './apiserver.js';
import { Kubelet } from './kubelet.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, kubeconfig: { type: 'string' }, nodes: { type: 'string', default: '3' }, 'no-kubelet': { type: 'boolean', default: false }, help: { type: 'boolean', default: false } } });
if (values.help) {
  console.log('usage: npm run k8s:dev -- [--port P] [--kubeconfig FILE] [--nodes N] [--no-kubelet]\n\nStarts the Kubernetes API emulator on 127.0.0.1 and a process kubelet with N nodes (pods of\nraftkv:* images run as local processes, each in its own network namespace), and writes a\nkubeconfig for it.');
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'raftkv-k8s-'));
const api = new ApiServer();
await api.start(Number(values.port));
const kubelet = values['no-kubelet'] ? undefined : new Kubelet({ api, dir, nodes: Number(values.nodes) });
await kubelet?.start();
const kubeconfig = values.kubeconfig ?? join(dir, 'kubeconfig');
writeFileSync(kubeconfig, api.kubeconfig(), { mode: 0o600 });
console.log(`Kubernetes API emulator at ${api.url}`);
if (kubelet) console.log(`kubelet: ${kubelet.nodes.length} nodes, pod network ${kubelet.net.mode === 'netns' ? `${kubelet.net.hostIp}/16 (a network namespace per pod)` : 'loopback addresses (no network namespaces here)'}`);
console.log(`kubeconfig: ${kubeconfig}`);
console.log(`export KUBECONFIG=${kubeconfig}`);
console.log('Ctrl-C to stop');
let stopping = false;
const stop = async (sig: string) => {
  if (stopping) return;
  stopping = true;
  console.log(`${sig}; stopping`);
  await kubelet?.stop();
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
};
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => void stop(s));
