/**
 * A process "kubelet" (with the scheduler and the few controllers a cluster needs) for the API
 * emulator: pods of the `raftkv:*` image run as local processes of this checkout's dist/cli.js,
 * each in its own network namespace (see network.ts) and mount namespace (volumes bind-mounted
 * at their mountPath), with the downward API in their environment, readiness and liveness
 * probes driving their conditions, restartPolicy, graceful deletion (SIGTERM, grace, SIGKILL)
 * and `kubectl logs`. Several emulated nodes, so anti-affinity can be checked; a pod that fits
 * nowhere stays Pending with the reason. What is not emulated: test/k8s/README.md.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiServer } from './apiserver.js';
import { PodNet, PodNetwork } from './network.js';
import { matchesSelectorObject } from './selectors.js';
import type { KObject } from './store.js';

const CLI = fileURLToPath(new URL('../../cli.js', import.meta.url));

interface Running {
  pod: KObject;
  net: PodNet;
  dir: string;
  containers: Map<string, ContainerRun>;
  stopping?: Promise<void>;
}

interface ContainerRun {
  name: string;
  proc?: ChildProcess;
  restarts: number;
  ready: boolean;
  started?: string;
  exit?: { code: number | null; signal: string | null; at: string };
  waiting?: { reason: string; message: string };
  probeFailures: number;
  livenessFailures: number;
  restartAt?: number;
}

export interface KubeletOptions {
  api: ApiServer;
  /** Where pods' logs, volumes and PVC directories live. */
  dir: string;
  nodes?: number;
  network?: 'netns' | 'loopback';
}

export class Kubelet {
  readonly net: PodNetwork;
  readonly nodes: string[];
  private readonly running = new Map<string, Running>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private stopped = false;

  constructor(readonly o: KubeletOptions) {
    this.net = PodNetwork.create(o.network ?? 'netns');
    this.nodes = Array.from({ length: o.nodes ?? 3 }, (_, i) => `node-${i + 1}`);
  }

  async start(): Promise<void> {
    const api = this.o.api;
    if (this.net.mode === 'netns') await api.listenAlso(this.net.hostIp);
    for (const name of this.nodes) {
      api.create(api.target('', 'v1', 'nodes'), {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'topology.kubernetes.io/zone': `zone-${name.slice(-1)}` } },
        status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'process kubelet is posting ready status' }], addresses: [{ type: 'InternalIP', address: this.net.hostIp }] },
      });
    }
    api.kubeletFor = (node) => this.nodes.includes(node);
    api.podLog = (pod) => this.logOf(pod);
    api.onChange.push(() => this.kick());
    this.timer = setInterval(() => this.kick(), 250);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await Promise.all([...this.running.values()].map((r) => this.stopPod(r, 2)));
    this.net.destroy();
  }

  private kick(): void {
    if (this.busy || this.stopped) return;
    this.busy = true;
    setImmediate(() => {
      try {
        this.reconcile();
      } catch (e) {
        console.error(`kubelet: ${(e as Error).stack}`);
      } finally {
        this.busy = false;
      }
    });
  }

  private reconcile(): void {
    const api = this.o.api;
    reconcileControllers(api, this.o.dir);
    const pods = api.listObjects('', 'v1', 'pods');
    for (const pod of pods) {
      const key = `${pod.metadata.namespace}/${pod.metadata.name}/${pod.metadata.uid}`;
      const r = this.running.get(key);
      if (pod.metadata.deletionTimestamp) {
        if (r) {
          if (!r.stopping) recordEvent(api, pod, 'Normal', 'Killing', `Stopping container(s) ${pod.spec.containers.map((c: any) => c.name).join(', ')} (grace ${pod.metadata.deletionGracePeriodSeconds ?? 30} s)`, 'kubelet');
          if (!r.stopping) r.stopping = this.stopPod(r, pod.metadata.deletionGracePeriodSeconds ?? 30).then(() => this.forget(key, pod));
        } else if (pod.spec?.nodeName && this.nodes.includes(pod.spec.nodeName)) this.forget(key, pod);
        continue;
      }
      if (!pod.spec?.nodeName) {
        this.schedule(pod, pods);
        continue;
      }
      if (!this.nodes.includes(pod.spec.nodeName)) continue;
      if (!r) this.startPod(key, pod);
      else this.tend(r);
    }
    // Pods removed without a graceful delete (force, namespace gone): stop their processes.
    const live = new Set(pods.map((p) => `${p.metadata.namespace}/${p.metadata.name}/${p.metadata.uid}`));
    for (const [key, r] of this.running) if (!live.has(key) && !r.stopping) r.stopping = this.stopPod(r, 0).then(() => void this.running.delete(key));
  }

  // ---- scheduling

  private schedule(pod: KObject, all: KObject[]): void {
    const reasons: string[] = [];
    const fits = this.nodes.filter((node) => {
      const sel = pod.spec.nodeSelector as Record<string, string> | undefined;
      const labels: Record<string, string> = { 'kubernetes.io/hostname': node, 'kubernetes.io/os': 'linux' };
      if (sel && Object.entries(sel).some(([k, v]) => labels[k] !== v)) {
        reasons.push(`${node}: node(s) didn't match Pod's node affinity/selector`);
        return false;
      }
      for (const term of pod.spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []) {
        if (term.topologyKey !== 'kubernetes.io/hostname') continue;
        const namespaces: string[] = term.namespaces ?? [pod.metadata.namespace];
        const clash = all.some((o) => o !== pod && o.spec?.nodeName === node && !o.metadata.deletionTimestamp && namespaces.includes(o.metadata.namespace) && matchesSelectorObject(term.labelSelector, o.metadata.labels ?? {}));
        if (clash) {
          reasons.push(`${node}: node(s) didn't match pod anti-affinity rules`);
          return false;
        }
      }
      return true;
    });
    const api = this.o.api;
    const t = api.target('', 'v1', 'pods', pod.metadata.namespace, pod.metadata.name);
    if (fits.length === 0) {
      const msg = `0/${this.nodes.length} nodes are available: ${reasons.length} ${reasons[0]?.split(': ')[1] ?? 'no node fits'}.`;
      if (pod.status?.conditions?.[0]?.message === msg) return;
      recordEvent(api, pod, 'Warning', 'FailedScheduling', msg, 'default-scheduler');
      api.update({ ...t, subresource: 'status' }, { ...pod, status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: msg, lastTransitionTime: now() }] } });
      return;
    }
    // Spread: the node running the fewest pods.
    const load = (n: string) => all.filter((o) => o.spec?.nodeName === n && !o.metadata.deletionTimestamp).length;
    const node = fits.sort((a, b) => load(a) - load(b))[0];
    api.update(t, { ...pod, metadata: { ...pod.metadata, resourceVersion: undefined }, spec: { ...pod.spec, nodeName: node } });
    // The next pod scheduled in this pass must see this one where it now is.
    pod.spec.nodeName = node;
    recordEvent(api, pod, 'Normal', 'Scheduled', `Successfully assigned ${pod.metadata.namespace}/${pod.metadata.name} to ${node}`, 'default-scheduler');
  }

  // ---- running pods

  private startPod(key: string, pod: KObject): void {
    const dir = join(this.o.dir, 'pods', pod.metadata.uid);
    mkdirSync(join(dir, 'logs'), { recursive: true });
    let net: PodNet;
    try {
      net = this.net.attach(key);
    } catch (e) {
      this.setWaiting(pod, 'NetworkNotReady', `could not make the pod's network: ${(e as Error).message}`);
      return;
    }
    const r: Running = { pod, net, dir, containers: new Map() };
    this.running.set(key, r);
    for (const c of pod.spec.containers) r.containers.set(c.name, { name: c.name, restarts: 0, ready: false, probeFailures: 0, livenessFailures: 0 });
    for (const c of pod.spec.containers) this.launch(r, c);
    this.publish(r);
  }

  private launch(r: Running, c: Record<string, any>): void {
    const run = r.containers.get(c.name)!;
    const image: string = c.image ?? '';
    if (!/^(?:[\w./-]*\/)?raftkv(?::[\w.-]+)?$/.test(image)) {
      run.waiting = { reason: 'ErrImagePull', message: `image ${JSON.stringify(image)} cannot run in the emulator: only raftkv:* images map to this checkout's dist/cli.js` };
      recordEvent(this.o.api, r.pod, 'Warning', 'Failed', `Failed to pull image "${image}": ${run.waiting.message}`, 'kubelet');
      return;
    }
    let env: Record<string, string>;
    let mounts: { src: string; path: string }[];
    try {
      env = this.envOf(r, c);
      mounts = this.mountsOf(r, c);
    } catch (e) {
      run.waiting = { reason: 'CreateContainerConfigError', message: (e as Error).message };
      return;
    }
    const command: string[] = c.command ?? ['raftkv'];
    const argv = command[0] === 'raftkv' || command[0].endsWith('/raftkv') ? [process.execPath, CLI, ...command.slice(1), ...(c.args ?? [])] : [...command, ...(c.args ?? [])];
    const expanded = argv.map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m: string, k: string) => env[k] ?? m));
    // A mount namespace per container: its volumes appear at their mountPath.
    const script = [...mounts.map((m) => `mkdir -p '${m.path}' && mount --bind '${m.src}' '${m.path}'`), 'exec "$@"'].join(' && ');
    const wrapped = this.net.mode === 'netns' ? [...r.net.exec, 'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', ...expanded] : expanded;
    const log = join(r.dir, 'logs', `${c.name}.log`);
    const p = spawn(wrapped[0], wrapped.slice(1), { env, cwd: c.workingDir && existsSync(c.workingDir) ? c.workingDir : r.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const write = (d: Buffer) => appendFileSync(log, d);
    p.stdout!.on('data', write);
    p.stderr!.on('data', write);
    run.proc = p;
    run.started = now();
    recordEvent(this.o.api, r.pod, 'Normal', 'Started', `Started container ${c.name}`, 'kubelet');
    run.waiting = undefined;
    run.exit = undefined;
    run.ready = false;
    run.probeFailures = 0;
    run.livenessFailures = 0;
    p.on('exit', (code, signal) => {
      if (run.proc !== p) return;
      run.proc = undefined;
      run.ready = false;
      run.exit = { code, signal, at: now() };
      const policy = r.pod.spec.restartPolicy ?? 'Always';
      if (!r.stopping && (policy === 'Always' || (policy === 'OnFailure' && code !== 0))) {
        run.restartAt = performance.now() + Math.min(10_000, 500 * 2 ** Math.min(run.restarts, 5));
        run.waiting = { reason: 'CrashLoopBackOff', message: `back-off restarting failed container ${c.name}` };
      }
      this.publish(r);
    });
  }

  private envOf(r: Running, c: Record<string, any>): Record<string, string> {
    const pod = r.pod;
    const api = this.o.api;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: r.dir,
      HOSTNAME: pod.metadata.name,
      KUBERNETES_SERVICE_HOST: this.net.hostIp,
      KUBERNETES_SERVICE_PORT: String(api.port),
      KUBERNETES_SERVICE_PORT_HTTPS: String(api.port),
    };
    const field = (path: string): string => {
      const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
      if (m) return pod.metadata[m[1]]?.[m[2]] ?? '';
      switch (path) {
        case 'metadata.name': return pod.metadata.name;
        case 'metadata.namespace': return pod.metadata.namespace;
        case 'metadata.uid': return pod.metadata.uid;
        case 'spec.nodeName': return pod.spec.nodeName;
        case 'spec.serviceAccountName': return pod.spec.serviceAccountName ?? 'default';
        case 'status.podIP': return r.net.ip;
        case 'status.hostIP': return this.net.hostIp;
        default: throw new Error(`fieldRef ${path} is not supported by the emulator`);
      }
    };
    for (const from of c.envFrom ?? []) {
      const src = from.configMapRef ? api.getObject('', 'v1', 'configmaps', pod.metadata.namespace, from.configMapRef.name) : api.getObject('', 'v1', 'secrets', pod.metadata.namespace, from.secretRef?.name);
      for (const [k, v] of Object.entries<string>(src?.data ?? {})) env[`${from.prefix ?? ''}${k}`] = from.secretRef ? Buffer.from(v, 'base64').toString() : v;
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined) env[e.name] = String(e.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, k) => env[k] ?? m);
      else if (e.valueFrom?.fieldRef) env[e.name] = field(e.valueFrom.fieldRef.fieldPath);
      else if (e.valueFrom?.configMapKeyRef) {
        const cm = api.getObject('', 'v1', 'configmaps', pod.metadata.namespace, e.valueFrom.configMapKeyRef.name);
        const v = cm?.data?.[e.valueFrom.configMapKeyRef.key];
        if (v === undefined && !e.valueFrom.configMapKeyRef.optional) throw new Error(`configmap ${e.valueFrom.configMapKeyRef.name} key ${e.valueFrom.configMapKeyRef.key} not found`);
        if (v !== undefined) env[e.name] = v;
      } else if (e.valueFrom?.secretKeyRef) {
        const s = api.getObject('', 'v1', 'secrets', pod.metadata.namespace, e.valueFrom.secretKeyRef.name);
        const v = s?.data?.[e.valueFrom.secretKeyRef.key];
        if (v === undefined && !e.valueFrom.secretKeyRef.optional) throw new Error(`secret ${e.valueFrom.secretKeyRef.name} key ${e.valueFrom.secretKeyRef.key} not found`);
        if (v !== undefined) env[e.name] = Buffer.from(v, 'base64').toString();
      }
    }
    return env;
  }

  private mountsOf(r: Running, c: Record<string, any>): { src: string; path: string }[] {
    const pod = r.pod;
    const api = this.o.api;
    const volumes = new Map<string, string>();
    const vdir = (name: string) => {
      const d = join(r.dir, 'volumes', name);
      mkdirSync(d, { recursive: true });
      return d;
    };
    for (const v of pod.spec.volumes ?? []) {
      if (v.emptyDir) volumes.set(v.name, vdir(v.name));
      else if (v.persistentVolumeClaim) {
        const claim = api.getObject('', 'v1', 'persistentvolumeclaims', pod.metadata.namespace, v.persistentVolumeClaim.claimName);
        if (!claim) throw new Error(`persistentvolumeclaim "${v.persistentVolumeClaim.claimName}" not found`);
        volumes.set(v.name, pvcDir(this.o.dir, claim));
      } else if (v.configMap || v.secret) {
        const src = v.configMap ? api.getObject('', 'v1', 'configmaps', pod.metadata.namespace, v.configMap.name) : api.getObject('', 'v1', 'secrets', pod.metadata.namespace, v.secret.secretName);
        if (!src && !(v.configMap ?? v.secret).optional) throw new Error(`${v.configMap ? 'configmap' : 'secret'} "${v.configMap?.name ?? v.secret.secretName}" not found`);
        const d = vdir(v.name);
        const data: Record<string, string> = src?.data ?? {};
        const items: { key: string; path: string }[] = (v.configMap ?? v.secret).items ?? Object.keys(data).map((key) => ({ key, path: key }));
        for (const it of items) if (data[it.key] !== undefined) writeFileSync(join(d, it.path), v.secret ? Buffer.from(data[it.key], 'base64') : data[it.key]);
        volumes.set(v.name, d);
      } else throw new Error(`volume ${v.name}: only emptyDir, persistentVolumeClaim, configMap and secret volumes are emulated`);
    }
    const mounts = (c.volumeMounts ?? []).map((m: any) => {
      const src = volumes.get(m.name);
      if (!src) throw new Error(`volumeMount ${m.name}: no such volume`);
      return { src: m.subPath ? join(src, m.subPath) : src, path: m.mountPath };
    });
    if (pod.spec.automountServiceAccountToken !== false) {
      const d = vdir('kube-api-access');
      writeFileSync(join(d, 'token'), api.serviceAccountToken(pod.metadata.namespace, pod.spec.serviceAccountName ?? 'default'));
      writeFileSync(join(d, 'ca.crt'), api.caPem);
      writeFileSync(join(d, 'namespace'), pod.metadata.namespace);
      mounts.push({ src: d, path: '/var/run/secrets/kubernetes.io/serviceaccount' });
    }
    return mounts;
  }

  /** Probes, restarts, status: once per reconcile for each running pod. */
  private tend(r: Running): void {
    if (r.stopping) return;
    for (const c of r.pod.spec.containers) {
      const run = r.containers.get(c.name)!;
      if (!run.proc && run.restartAt !== undefined && performance.now() >= run.restartAt) {
        run.restartAt = undefined;
        run.restarts++;
        this.launch(r, c);
        this.publish(r);
        continue;
      }
      if (!run.proc) continue;
      const since = (Date.now() - Date.parse(run.started!)) / 1000;
      const due = (p: any, key: 'last' | 'lastLive') => {
        if (!p || since < (p.initialDelaySeconds ?? 0)) return false;
        const at = ((run as any)[key] as number | undefined) ?? 0;
        if (Date.now() - at < (p.periodSeconds ?? 10) * 1000) return false;
        (run as any)[key] = Date.now();
        return true;
      };
      if (!c.readinessProbe) {
        if (!run.ready) {
          run.ready = true;
          this.publish(r);
        }
      } else if (due(c.readinessProbe, 'last')) {
        void this.probe(r, c, c.readinessProbe).then((ok) => {
          run.probeFailures = ok ? 0 : run.probeFailures + 1;
          const ready = ok || (run.ready && run.probeFailures < (c.readinessProbe.failureThreshold ?? 3));
          if (ready !== run.ready) {
            run.ready = ready && run.proc !== undefined;
            this.publish(r);
          }
        });
      }
      if (c.livenessProbe && due(c.livenessProbe, 'lastLive')) {
        void this.probe(r, c, c.livenessProbe).then((ok) => {
          run.livenessFailures = ok ? 0 : run.livenessFailures + 1;
          if (run.livenessFailures >= (c.livenessProbe.failureThreshold ?? 3) && run.proc) {
            appendFileSync(join(r.dir, 'logs', `${c.name}.log`), `[kubelet] liveness probe failed ${run.livenessFailures} times: killing the container\n`);
            recordEvent(this.o.api, r.pod, 'Warning', 'Unhealthy', `Liveness probe failed ${run.livenessFailures} times; container ${c.name} will be restarted`, 'kubelet');
            run.proc.kill('SIGKILL');
          }
        });
      }
    }
  }

  private probe(r: Running, c: Record<string, any>, p: Record<string, any>): Promise<boolean> {
    const timeout = (p.timeoutSeconds ?? 1) * 1000;
    const port = (spec: unknown) => (typeof spec === 'number' ? spec : Number((c.ports ?? []).find((x: any) => x.name === spec)?.containerPort ?? spec));
    if (p.httpGet) {
      return new Promise((resolve) => {
        const req = http.get({ host: r.net.ip, port: port(p.httpGet.port), path: p.httpGet.path ?? '/', timeout }, (res) => {
          res.resume();
          resolve((res.statusCode ?? 500) >= 200 && (res.statusCode ?? 500) < 400);
        });
        req.on('error', () => resolve(false));
        req.on('timeout', () => {
          req.destroy();
          resolve(false);
        });
      });
    }
    if (p.tcpSocket) {
      return new Promise((resolve) => {
        const s = net.connect(port(p.tcpSocket.port), r.net.ip, () => {
          s.destroy();
          resolve(true);
        });
        s.setTimeout(timeout, () => {
          s.destroy();
          resolve(false);
        });
        s.on('error', () => resolve(false));
      });
    }
    if (p.exec) {
      const cmd: string[] = p.exec.command;
      const argv = cmd[0] === 'raftkv' ? [process.execPath, CLI, ...cmd.slice(1)] : cmd;
      const full = [...r.net.exec, ...argv];
      return new Promise((resolve) => execFile(full[0], full.slice(1), { timeout }, (e) => resolve(!e)));
    }
    return Promise.resolve(true);
  }

  private stopPod(r: Running, graceSeconds: number): Promise<void> {
    const procs = [...r.containers.values()].map((c) => c.proc).filter((p): p is ChildProcess => p !== undefined && p.exitCode === null);
    for (const c of r.containers.values()) c.restartAt = undefined;
    return new Promise<void>((resolve) => {
      let left = procs.length;
      if (left === 0) return resolve();
      const kill = setTimeout(() => {
        for (const p of procs) p.kill('SIGKILL');
      }, Math.max(0, graceSeconds) * 1000);
      for (const p of procs) {
        p.once('exit', () => {
          if (--left === 0) {
            clearTimeout(kill);
            resolve();
          }
        });
        // ip/unshare/sh exec into the container's process: the pid is the process itself.
        p.kill(graceSeconds === 0 ? 'SIGKILL' : 'SIGTERM');
      }
    }).then(() => r.net.release());
  }

  private forget(key: string, pod: KObject): void {
    this.running.delete(key);
    const api = this.o.api;
    try {
      api.delete(api.target('', 'v1', 'pods', pod.metadata.namespace, pod.metadata.name), { gracePeriodSeconds: 0 }, undefined);
    } catch {
      // already gone
    }
  }

  private publish(r: Running): void {
    const api = this.o.api;
    const current = api.getObject('', 'v1', 'pods', r.pod.metadata.namespace, r.pod.metadata.name);
    if (!current || current.metadata.uid !== r.pod.metadata.uid) return;
    r.pod = current;
    const runs = [...r.containers.values()];
    const allReady = runs.every((c) => c.ready && c.proc);
    const policy = current.spec.restartPolicy ?? 'Always';
    const finished = runs.every((c) => !c.proc && c.exit && c.restartAt === undefined);
    const phase = finished && policy !== 'Always' ? (runs.every((c) => c.exit!.code === 0) ? 'Succeeded' : 'Failed') : runs.some((c) => c.proc || c.exit) ? 'Running' : 'Pending';
    const cond = (type: string, ok: boolean) => ({ type, status: ok ? 'True' : 'False', lastTransitionTime: now() });
    const status = {
      phase,
      hostIP: this.net.hostIp,
      podIP: r.net.ip,
      podIPs: [{ ip: r.net.ip }],
      startTime: current.status?.startTime ?? now(),
      conditions: [cond('PodScheduled', true), cond('Initialized', true), cond('ContainersReady', allReady), cond('Ready', allReady)],
      containerStatuses: runs.map((c) => ({
        name: c.name,
        image: current.spec.containers.find((x: any) => x.name === c.name)?.image,
        imageID: '',
        ready: c.ready && c.proc !== undefined,
        started: c.proc !== undefined,
        restartCount: c.restarts,
        state: c.proc
          ? { running: { startedAt: c.started } }
          : c.waiting
            ? { waiting: c.waiting }
            : c.exit
              ? { terminated: { exitCode: c.exit.code ?? 137, signal: c.exit.signal ?? undefined, reason: c.exit.code === 0 ? 'Completed' : 'Error', finishedAt: c.exit.at } }
              : { waiting: { reason: 'ContainerCreating' } },
      })),
    };
    // Keep lastTransitionTime stable when a condition did not change.
    for (const c of status.conditions) {
      const old = current.status?.conditions?.find((x: any) => x.type === c.type);
      if (old && old.status === c.status) c.lastTransitionTime = old.lastTransitionTime;
    }
    if (JSON.stringify(current.status) === JSON.stringify(status)) return;
    api.update(api.target('', 'v1', 'pods', current.metadata.namespace, current.metadata.name, 'status'), { ...current, status });
  }

  private setWaiting(pod: KObject, reason: string, message: string): void {
    const api = this.o.api;
    api.update(api.target('', 'v1', 'pods', pod.metadata.namespace, pod.metadata.name, 'status'), { ...pod, status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }], containerStatuses: pod.spec.containers.map((c: any) => ({ name: c.name, ready: false, restartCount: 0, state: { waiting: { reason, message } } })) } });
  }

  private logOf(pod: KObject): string {
    const c = pod.spec?.containers?.[0]?.name;
    const f = join(this.o.dir, 'pods', pod.metadata.uid, 'logs', `${c}.log`);
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  }
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Record an Event about `o` (what `kubectl describe` and `kubectl get events` show). */
export function recordEvent(api: ApiServer, o: KObject, type: 'Normal' | 'Warning', reason: string, message: string, component: string): void {
  try {
    api.create(api.target('', 'v1', 'events', o.metadata.namespace ?? 'default'), {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${o.metadata.name}.`, namespace: o.metadata.namespace ?? 'default' },
      involvedObject: { apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, namespace: o.metadata.namespace, uid: o.metadata.uid },
      type,
      reason,
      message,
      source: { component },
      firstTimestamp: now(),
      lastTimestamp: now(),
      count: 1,
    });
  } catch {
    // the namespace is going away: no event
  }
}

function pvcDir(root: string, claim: KObject): string {
  const d = join(root, 'pvc', claim.metadata.namespace, `${claim.metadata.name}-${claim.metadata.uid}`);
  mkdirSync(d, { recursive: true });
  return d;
}

// ---------------------------------------------------------------------------------------
// Controllers: Deployment -> ReplicaSet -> Pods, Service endpoints, PVC binding

function reconcileControllers(api: ApiServer, root: string): void {
  for (const d of api.listObjects('apps', 'v1', 'deployments')) deployment(api, d);
  for (const rs of api.listObjects('apps', 'v1', 'replicasets')) replicaSet(api, rs);
  const pods = api.listObjects('', 'v1', 'pods');
  for (const svc of api.listObjects('', 'v1', 'services')) endpoints(api, svc, pods);
  for (const pvc of api.listObjects('', 'v1', 'persistentvolumeclaims')) {
    if (pvc.status?.phase === 'Bound' || pvc.metadata.deletionTimestamp) continue;
    pvcDir(root, pvc);
    api.update(api.target('', 'v1', 'persistentvolumeclaims', pvc.metadata.namespace, pvc.metadata.name, 'status'), { ...pvc, status: { phase: 'Bound', accessModes: pvc.spec?.accessModes, capacity: pvc.spec?.resources?.requests } });
  }
}

function owned(o: KObject, owner: KObject): boolean {
  return (o.metadata.ownerReferences ?? []).some((r: any) => r.uid === owner.metadata.uid);
}

function ownerRef(o: KObject) {
  return { apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, uid: o.metadata.uid, controller: true, blockOwnerDeletion: true };
}

function putStatus(api: ApiServer, group: string, plural: string, o: KObject, status: Record<string, unknown>): void {
  if (JSON.stringify(o.status ?? {}) === JSON.stringify(status)) return;
  api.update(api.target(group, 'v1', plural, o.metadata.namespace, o.metadata.name, 'status'), { ...o, status });
}

function deployment(api: ApiServer, d: KObject): void {
  if (d.metadata.deletionTimestamp) return;
  const hash = createHash('sha256').update(JSON.stringify(d.spec.template)).digest('hex').slice(0, 10);
  const sets = api.listObjects('apps', 'v1', 'replicasets', d.metadata.namespace).filter((rs) => owned(rs, d));
  let current = sets.find((rs) => rs.metadata.labels?.['pod-template-hash'] === hash);
  if (!current) {
    const template = structuredClone(d.spec.template);
    template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, 'pod-template-hash': hash } };
    current = api.create(api.target('apps', 'v1', 'replicasets', d.metadata.namespace), {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: { name: `${d.metadata.name}-${hash}`, namespace: d.metadata.namespace, labels: { ...d.spec.template.metadata?.labels, 'pod-template-hash': hash }, ownerReferences: [ownerRef(d)] },
      spec: { replicas: d.spec.replicas ?? 1, selector: { matchLabels: { ...d.spec.selector?.matchLabels, 'pod-template-hash': hash } }, template },
    });
  } else if (current.spec.replicas !== (d.spec.replicas ?? 1)) {
    api.update(api.target('apps', 'v1', 'replicasets', d.metadata.namespace, current.metadata.name), { ...current, metadata: { ...current.metadata, resourceVersion: undefined }, spec: { ...current.spec, replicas: d.spec.replicas ?? 1 } });
  }
  // Old templates go away once the new one is fully ready (a Recreate-like rollout).
  for (const rs of sets) {
    if (rs.metadata.name === current.metadata.name || rs.spec.replicas === 0) continue;
    api.update(api.target('apps', 'v1', 'replicasets', d.metadata.namespace, rs.metadata.name), { ...rs, metadata: { ...rs.metadata, resourceVersion: undefined }, spec: { ...rs.spec, replicas: 0 } });
  }
  const all = api.listObjects('apps', 'v1', 'replicasets', d.metadata.namespace).filter((rs) => owned(rs, d));
  const sum = (f: (rs: KObject) => number) => all.reduce((a, rs) => a + f(rs), 0);
  const ready = current.status?.readyReplicas ?? 0;
  const want = d.spec.replicas ?? 1;
  putStatus(api, 'apps', 'deployments', d, {
    observedGeneration: d.metadata.generation,
    replicas: sum((rs) => rs.status?.replicas ?? 0),
    updatedReplicas: current.status?.replicas ?? 0,
    readyReplicas: sum((rs) => rs.status?.readyReplicas ?? 0),
    availableReplicas: sum((rs) => rs.status?.readyReplicas ?? 0),
    ...(sum((rs) => rs.status?.replicas ?? 0) - ready > 0 ? { unavailableReplicas: sum((rs) => rs.status?.replicas ?? 0) - ready } : {}),
    conditions: [
      { type: 'Available', status: ready >= want ? 'True' : 'False', reason: ready >= want ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable' },
      { type: 'Progressing', status: 'True', reason: ready >= want ? 'NewReplicaSetAvailable' : 'ReplicaSetUpdated', message: `ReplicaSet "${current.metadata.name}" ${ready >= want ? 'has successfully progressed' : 'is progressing'}.` },
    ],
  });
}

function replicaSet(api: ApiServer, rs: KObject): void {
  if (rs.metadata.deletionTimestamp) return;
  const pods = api.listObjects('', 'v1', 'pods', rs.metadata.namespace).filter((p) => owned(p, rs) && !p.metadata.deletionTimestamp);
  const want = rs.spec.replicas ?? 1;
  for (let i = pods.length; i < want; i++) {
    const t = rs.spec.template;
    api.create(api.target('', 'v1', 'pods', rs.metadata.namespace), { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: `${rs.metadata.name}-`, namespace: rs.metadata.namespace, labels: t.metadata?.labels, annotations: t.metadata?.annotations, ownerReferences: [ownerRef(rs)] }, spec: structuredClone(t.spec) });
  }
  const extra = pods.sort((a, b) => b.metadata.creationTimestamp.localeCompare(a.metadata.creationTimestamp)).slice(0, Math.max(0, pods.length - want));
  for (const p of extra) api.delete(api.target('', 'v1', 'pods', p.metadata.namespace, p.metadata.name), undefined, undefined);
  const live = api.listObjects('', 'v1', 'pods', rs.metadata.namespace).filter((p) => owned(p, rs) && !p.metadata.deletionTimestamp);
  const ready = live.filter((p) => p.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True')).length;
  putStatus(api, 'apps', 'replicasets', rs, { replicas: live.length, readyReplicas: ready, availableReplicas: ready, observedGeneration: rs.metadata.generation });
}

function endpoints(api: ApiServer, svc: KObject, pods: KObject[]): void {
  const selector = svc.spec?.selector as Record<string, string> | undefined;
  if (!selector || svc.metadata.deletionTimestamp) return;
  const matching = pods.filter((p) => p.metadata.namespace === svc.metadata.namespace && p.status?.podIP && Object.entries(selector).every(([k, v]) => p.metadata.labels?.[k] === v));
  const isReady = (p: KObject) => !p.metadata.deletionTimestamp && p.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True');
  const addr = (p: KObject) => ({ ip: p.status.podIP, nodeName: p.spec.nodeName, targetRef: { kind: 'Pod', namespace: p.metadata.namespace, name: p.metadata.name, uid: p.metadata.uid } });
  const portOf = (sp: any, p?: KObject) => (typeof sp.targetPort === 'string' ? Number(p?.spec.containers.flatMap((c: any) => c.ports ?? []).find((x: any) => x.name === sp.targetPort)?.containerPort ?? 0) : (sp.targetPort ?? sp.port));
  const ports = (svc.spec.ports ?? []).map((sp: any) => ({ name: sp.name, port: portOf(sp, matching[0]), protocol: sp.protocol ?? 'TCP' }));
  const ready = matching.filter(isReady);
  const notReady = matching.filter((p) => !isReady(p));
  const subsets = matching.length === 0 ? [] : [{ ...(ready.length ? { addresses: ready.map(addr) } : {}), ...(notReady.length ? { notReadyAddresses: notReady.map(addr) } : {}), ports }];
  const body = { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: svc.metadata.name, namespace: svc.metadata.namespace, labels: svc.metadata.labels, ownerReferences: [ownerRef(svc)] }, subsets };
  const cur = api.getObject('', 'v1', 'endpoints', svc.metadata.namespace, svc.metadata.name);
  if (!cur) api.create(api.target('', 'v1', 'endpoints', svc.metadata.namespace), body);
  else if (JSON.stringify(cur.subsets ?? []) !== JSON.stringify(subsets)) api.update(api.target('', 'v1', 'endpoints', svc.metadata.namespace, svc.metadata.name), { ...cur, subsets, metadata: { ...cur.metadata, resourceVersion: undefined } });
  const sliceName = `${svc.metadata.name}-rkv`;
  const slice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: sliceName, namespace: svc.metadata.namespace, labels: { 'kubernetes.io/service-name': svc.metadata.name }, ownerReferences: [ownerRef(svc)] },
    addressType: 'IPv4',
    endpoints: matching.map((p) => ({ addresses: [p.status.podIP], conditions: { ready: isReady(p), serving: isReady(p), terminating: !!p.metadata.deletionTimestamp }, nodeName: p.spec.nodeName, targetRef: addr(p).targetRef })),
    ports,
  };
  const curSlice = api.getObject('discovery.k8s.io', 'v1', 'endpointslices', svc.metadata.namespace, sliceName);
  if (!curSlice) api.create(api.target('discovery.k8s.io', 'v1', 'endpointslices', svc.metadata.namespace), slice);
  else if (JSON.stringify(curSlice.endpoints) !== JSON.stringify(slice.endpoints) || JSON.stringify(curSlice.ports) !== JSON.stringify(slice.ports)) {
    api.update(api.target('discovery.k8s.io', 'v1', 'endpointslices', svc.metadata.namespace, sliceName), { ...curSlice, ...slice, metadata: { ...curSlice.metadata, resourceVersion: undefined } });
  }
}
