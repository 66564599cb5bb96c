/**
 * `raftkv experiment NAME`: one of the seed's experiments, set up, swept, checked and torn down,
 * its table written as CSV and JSON and its figure as SVG into --out.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { commandLine, reportUsage } from '../util/cli.js';
import { lineChart } from './chart.js';
import { EXPERIMENTS, ExperimentResult, Row } from './experiments.js';
import { LocalTopology } from './local-topology.js';
import type { Topology } from './topology.js';

export const EXPERIMENT_HELP = `usage: raftkv experiment NAME [--out DIR] [--scale F] [--duration S] [--k8s]

Runs one of the seed's experiments: sets up the topology it needs (local processes on 127.0.0.1,
or with --k8s RaftClusters and RaftLoggerGroups through the current kubeconfig), sweeps the
seed's parameters, checks correctness as it goes, tears everything down, and writes
DIR/NAME.csv, DIR/NAME.json and DIR/NAME.svg. Exits 1 if a check failed.

Experiments:
${EXPERIMENTS.map((e) => `  ${e.name.padEnd(16)} ${e.summary}`).join('\n')}

  --out DIR        where the table and figure go (default ./results)
  --scale F        fraction of the seed's parameters: 1 = 1,000,000 keys of 1 KB and every client
                   step (hours here); default 0.1 (a few minutes); 0.001 for a smoke run
  --duration S     seconds of load per measured point (default 5)
  --k8s            on Kubernetes: the raftkv operator must be running; the load generators and
                   checks run here and reach the pods at their IPs, so run it where pod IPs are
                   routable (in a pod of the raftkv image on a real cluster; from this host with
                   the emulator, npm run k8s:dev)
  --namespace NS   with --k8s (default: the kubeconfig context's, or default)
  --image IMAGE    with --k8s: the pods' image (default raftkv:latest)

Checked in every run: no acknowledged write lost (canary writes during the load, read back from
every replica), replicas converge to one digest, the logger's log equals the committed sequence
(the state rebuilt from it has the replicas' digest), recovered state equals the source's.

Example:
  raftkv experiment saturation-kv --out results --scale 0.1 --duration 5
`;

const Flags = z.object({
  k8s: z.boolean().default(false),
  namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label').optional(),
  image: z.string().min(1).default('raftkv:latest'),
  out: z.string().default('results'),
  scale: z.coerce.number().positive().max(10).default(0.1),
  duration: z.coerce.number().min(1).max(3600).default(5),
});

export function machine(): { host: string; cpu: string; cores: number; memoryGiB: number; node: string } {
  const c = cpus();
  return { host: hostname(), cpu: c[0]?.model.trim() ?? 'unknown', cores: c.length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
}

export function toCsv(columns: string[], rows: Row[]): string {
  const cell = (v: string | number | undefined) => {
    const s = v === undefined ? '' : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return `${[columns.join(','), ...rows.map((r) => columns.map((c) => cell(r[c])).join(','))].join('\n')}\n`;
}

/** Write NAME.csv, NAME.json and NAME.svg; the paths written. */
export function writeResult(dir: string, r: ExperimentResult, extra: Record<string, unknown> = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const m = machine();
  const files = [join(dir, `${r.name}.csv`), join(dir, `${r.name}.json`), join(dir, `${r.name}.svg`)];
  writeFileSync(files[0], toCsv(r.columns, r.rows));
  writeFileSync(files[1], `${JSON.stringify({ ...r, machine: m, ...extra }, null, 2)}\n`);
  const subtitle = `${m.cores} cores (${m.cpu}), scale ${r.params.scale}, ${r.params.duration} s per point; the seed: ${r.seed}`;
  writeFileSync(files[2], lineChart(r.figure.series, { ...r.figure.options, subtitle }));
  return files;
}

export async function runExperiment(argv: string[]): Promise<void> {
  const cl = commandLine(
    'experiment',
    EXPERIMENT_HELP,
    argv,
    { out: { type: 'string' }, scale: { type: 'string' }, duration: { type: 'string' }, k8s: { type: 'boolean' }, namespace: { type: 'string' }, image: { type: 'string' } },
    { positionals: 1 },
  );
  if (!cl) return;
  const name = cl.positionals[0];
  const e = EXPERIMENTS.find((x) => x.name === name);
  if (!e) return reportUsage('experiment', name ? `no experiment ${name}; one of ${EXPERIMENTS.map((x) => x.name).join(', ')}` : `which one? ${EXPERIMENTS.map((x) => x.name).join(', ')}`);
  const parsed = Flags.safeParse(cl.values);
  if (!parsed.success) return reportUsage('experiment', parsed.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('\n'));
  const f = parsed.data;
  const t0 = Date.now();
  const tty = process.stdout.isTTY;
  const progress = (line: string) => {
    const s = `[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${line}`;
    if (tty) process.stdout.write(`\r\x1b[K${s}`);
    else console.log(s);
  };
  const root = mkdtempSync(join(tmpdir(), `raftkv-experiment-${e.name}-`));
  let topo: Topology;
  if (f.k8s) {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const { KubeTopology } = await import('./kube-topology.js');
    const kc = new KubeConfig();
    kc.loadFromDefault();
    const namespace = f.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
    topo = new KubeTopology(kc, { namespace, image: f.image, progress });
  } else topo = new LocalTopology(root);
  let stopping = false;
  const cleanup = async (why: string) => {
    if (stopping) return;
    stopping = true;
    if (tty) process.stdout.write('\n');
    console.error(`raftkv experiment: ${why}; stopping`);
    await topo.stop();
    rmSync(root, { recursive: true, force: true });
    process.exit(130);
  };
  const onSignal = (s: string) => void cleanup(s);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const r = await e.run(topo, { scale: f.scale, duration: f.duration, progress });
    if (tty) process.stdout.write('\n');
    const files = writeResult(resolve(f.out), r, { seconds: Math.round((Date.now() - t0) / 1000), topology: f.k8s ? 'kubernetes' : 'local' });
    console.log(`${r.title} (${Math.round((Date.now() - t0) / 1000)} s):`);
    console.log(toCsv(r.columns, r.rows).trimEnd().replace(/,/g, '\t'));
    for (const c of r.checks) console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.what}: ${c.detail}`);
    console.log(`wrote ${files.join(', ')}`);
    if (r.checks.some((c) => !c.ok)) process.exitCode = 1;
  } catch (err) {
    if (tty) process.stdout.write('\n');
    console.error(`raftkv experiment ${e.name}: ${(err as Error).message}`);
    process.exitCode = 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!stopping) {
      await topo.stop();
      rmSync(root, { recursive: true, force: true });
    }
  }
}
