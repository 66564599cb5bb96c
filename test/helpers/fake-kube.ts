/**
 * Just enough of the Kubernetes API for discovery tests: GET .../namespaces/NS/pods with a
 * label selector, over real HTTP, so the real @kubernetes/client-node talks to it.
 */
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface FakePod {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  phase: string;
  ip?: string;
  ports?: { name: string; containerPort: number }[];
}

export class FakeKube {
  readonly requests: string[] = [];
  private server: http.Server;
  port = 0;
  constructor(public pods: FakePod[]) {
    this.server = http.createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      this.requests.push(`${req.method} ${url.pathname}?${url.searchParams}`);
      const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(url.pathname);
      if (req.method !== 'GET' || !m) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', status: 'Failure', code: 404 }));
        return;
      }
      const selector = (url.searchParams.get('labelSelector') ?? '').split(',').filter(Boolean).map((s) => s.split('='));
      const items = this.pods
        .filter((p) => p.namespace === m[1] && selector.every(([k, v]) => p.labels[k] === v))
        .map((p) => ({
          metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
          spec: { containers: [{ name: 'raftkv', image: 'raftkv', ports: p.ports ?? [] }] },
          status: { phase: p.phase, podIP: p.ip },
        }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '1' }, items }));
    });
  }
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
  }
  /** A kubeconfig file pointing at this server. */
  writeKubeconfig(dir: string, namespace = 'default'): string {
    const file = join(dir, 'kubeconfig');
    writeFileSync(
      file,
      `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:${this.port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\n    namespace: ${namespace}\ncurrent-context: fake\n`,
    );
    return file;
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}
