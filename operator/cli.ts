/** `raftkv operator`: the RaftCluster controller, in a pod (in-cluster account) or anywhere (KUBECONFIG). */
import { hostname } from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import { AddrFlag, IntFlag } from '../util/flags.js';
import { parseHostPort } from '../replica/addr.js';
import { commandLine, reportUsage } from '../util/cli.js';
import { stopOnSignals } from '../util/signals.js';
import { Operator } from './controller.js';

export const OPERATOR_HELP = `usage: raftkv operator [flags]

Runs RaftClusters (raftkv.io/v1alpha1): creates their replica and logger pods, Services and
PodDisruptionBudget, forms the cluster, scales it one member at a time, replaces lost members and
reports status and Events. Two operators may run: the one holding the Lease acts.

  --namespace NS         watch one namespace (default: all namespaces)
  --metrics ADDR         Prometheus /metrics, /healthz and /readyz (default :8080)
  --id ID                identity in the Lease (default: $POD_NAME or the host name + pid)
  --lease-namespace NS   where the Lease lives (default: $POD_NAMESPACE, --namespace, or default)
  --lease-seconds S      Lease duration (default 15)

The Kubernetes API is found in-cluster (ServiceAccount) or through KUBECONFIG / ~/.kube/config.

Example (against the emulator: npm run k8s:dev, then its export line):
  kubectl apply -f crds/raftclusters.raftkv.io.yaml
  raftkv operator --metrics 127.0.0.1:8080 &
  kubectl apply -f deploys/kv-notlog.yaml && kubectl get rc -w
`;

const Flags = z.object({
  namespace: z.string().optional(),
  metrics: AddrFlag.default(':8080'),
  id: z.string().optional(),
  'lease-namespace': z.string().optional(),
  'lease-seconds': IntFlag(2).max(3600).default(15),
});

export async function runOperator(argv: string[]): Promise<void> {
  const cl = commandLine('operator', OPERATOR_HELP, argv, Object.fromEntries(Object.keys(Flags.shape).map((k) => [k, { type: 'string' as const }])), { singleDash: true });
  if (!cl) return;
  const parsed = Flags.safeParse(cl.values);
  if (!parsed.success) return reportUsage('operator', parsed.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('\n'));
  const f = parsed.data;
  const metrics = parseHostPort(f.metrics, '--metrics');
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const op = new Operator({
    kubeConfig: kc,
    namespace: f.namespace,
    id: f.id ?? process.env.POD_NAME ?? `${hostname()}-${process.pid}`,
    leaseNamespace: f['lease-namespace'] ?? process.env.POD_NAMESPACE ?? f.namespace ?? 'default',
    leaseSeconds: f['lease-seconds'],
    metricsPort: metrics.port,
    metricsHost: metrics.host || '0.0.0.0',
  });
  try {
    await op.start();
  } catch (e) {
    console.error(`raftkv operator: ${(e as Error).message}`);
    process.exit(1);
  }
  console.log(`raftkv operator: watching ${f.namespace ? `namespace ${f.namespace}` : 'all namespaces'}; metrics on ${metrics.host || '0.0.0.0'}:${op.metricsPort}`);
  // The operator never stops by itself: only a signal ends it.
  stopOnSignals('operator', () => op.stop(), new Promise<Error | undefined>(() => undefined));
}
