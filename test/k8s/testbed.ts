/**
 * A Kubernetes test bed for a test file: the API emulator, optionally its process kubelet, a
 * kubeconfig, and the real kubectl pointed at it.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApiServer } from './apiserver.js';
import { Kubelet } from './kubelet.js';

const run = promisify(execFile);

export interface KubectlResult {
  code: number;
  out: string;
  err: string;
}

export class TestBed {
  readonly api: ApiServer;
  kubelet: Kubelet | undefined;
  readonly dir: string;
  readonly kubeconfig: string;

  private constructor(api: ApiServer, dir: string) {
    this.api = api;
    this.dir = dir;
    this.kubeconfig = join(dir, 'kubeconfig');
  }

  static async start(o: { kubelet?: boolean; nodes?: number; bookmarkMs?: number } = {}): Promise<TestBed> {
    const dir = mkdtempSync(join(tmpdir(), 'raftkv-k8sbed-'));
    const api = new ApiServer({ bookmarkMs: o.bookmarkMs });
    await api.start();
    const bed = new TestBed(api, dir);
    writeFileSync(bed.kubeconfig, api.kubeconfig());
    if (o.kubelet) {
      bed.kubelet = new Kubelet({ api, dir, nodes: o.nodes ?? 3 });
      await bed.kubelet.start();
    }
    return bed;
  }

  /** Environment for a child process that should use this cluster. */
  env(): NodeJS.ProcessEnv {
    return { ...process.env, KUBECONFIG: this.kubeconfig, HOME: this.dir };
  }

  async kubectl(...args: string[]): Promise<KubectlResult> {
    try {
      const r = await run('kubectl', args, { env: this.env(), maxBuffer: 16 << 20 });
      return { code: 0, out: r.stdout, err: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, out: x.stdout, err: x.stderr };
    }
  }

  async apply(yaml: string, ...extra: string[]): Promise<KubectlResult> {
    const f = join(this.dir, `m${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(f, yaml);
    return this.kubectl('apply', '-f', f, ...extra);
  }

  async jsonpath(what: string, path: string): Promise<string> {
    return (await this.kubectl('get', ...what.split(' '), '-o', `jsonpath=${path}`)).out;
  }

  /** Poll `check` until it returns true (bounded), then return; throws with `what` otherwise. */
  async until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }

  async stop(): Promise<void> {
    await this.kubelet?.stop();
    await this.api.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
