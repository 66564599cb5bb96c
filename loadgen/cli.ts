/**
 * `raftkv loadgen`: closed-loop load against raftkv (protobuf, text, HTTP) or etcd, with live
 * progress, a final table, JSON/CSV output, several generator processes, and client sweeps
 * that draw the throughput-vs-latency curve.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { z } from 'zod';
import { parseFlags, reportUsage, wantsHelp } from '../util/cli.js';
import { loadSeedConfig } from './config.js';
import { DRIVERS, DriverName, ROUTES, Route } from './drivers.js';
import { sweepSvg } from './plot.js';
import { csv, table } from './report.js';
import { LoadOptions, LoadResult, mergeResults, runLoad } from './run.js';

export const LOADGEN_HELP = `usage: raftkv loadgen [flags]

Targets (one of):
  --targets HOST:PORT,...   replicas' client addresses (etcd: client URLs' host:port)
  --config FILE             the seed's client TOML: rep, svrIps, udpport, localip, thinkingTimeMsec
  --discover CLUSTER        a RaftCluster's running replica pods, through the Kubernetes API
                            (in-cluster account or KUBECONFIG); --namespace NS, --port-name NAME
Load:
  --driver NAME             protobuf (default) | text | http | etcd
  --route leader|member     protobuf: writes to the leader a replica names, when it is one of
                            the targets (default, as RaftKvClient does), or to each client's own
                            target, which passes them on (member)
  --clients N               closed-loop clients (default 4); each waits for its answer
  --duration S              seconds to run (default 10)   or   --requests N in total
  --warmup S                run the load S seconds first, unmeasured (default 0; with --duration)
  --keys N                  key space: keys 0..N-1 (default 1000)
  --data 0|1|2              value size as in the seed: 128 B, 1 KB, 4 KB
  --value-size BYTES        value size (default 128)
  --write-ratio R           fraction of writes, 0..1 (default 0.5)
  --think MS                think time after each answer (default 0; TOML thinkingTimeMsec)
  --timeout MS              per-request timeout (default 2000)
  --seed N                  key/op choice seed (default: time)
  --procs N                 generator processes, results merged (default 1)
Output:
  --json FILE|-             full results as JSON        --csv FILE   summary rows as CSV
  --sweep-clients 1,4,7     run once per client count, then draw throughput vs p90 latency
  --plot FILE               the sweep's plot (SVG; default loadgen-sweep.svg)
  --quiet                   no progress line

Example (16 clients for 10 s, half writes, against a local cluster):
  raftkv loadgen --targets 127.0.0.1:11000,127.0.0.1:11001,127.0.0.1:11002 --clients 16 --duration 10
`;

const Flags = z.object({
  targets: z.string().optional(),
  config: z.string().optional(),
  discover: z.string().optional(),
  namespace: z.string().optional(),
  'port-name': z.string().default('client'),
  driver: z.enum(DRIVERS as [DriverName, ...DriverName[]]).default('protobuf'),
  route: z.enum(ROUTES as [Route, ...Route[]]).default('leader'),
  clients: z.coerce.number().int().min(1).max(10_000).default(4),
  duration: z.coerce.number().positive().optional(),
  warmup: z.coerce.number().min(0).default(0),
  requests: z.coerce.number().int().positive().optional(),
  keys: z.coerce.number().int().min(1).default(1000),
  data: z.enum(['0', '1', '2']).optional(),
  'value-size': z.coerce.number().int().min(0).max(64 << 20).optional(),
  'write-ratio': z.coerce.number().min(0).max(1).default(0.5),
  think: z.coerce.number().min(0).optional(),
  timeout: z.coerce.number().int().min(1).default(2000),
  seed: z.coerce.number().int().min(0).optional(),
  procs: z.coerce.number().int().min(1).max(64).default(1),
  json: z.string().optional(),
  csv: z.string().optional(),
  'sweep-clients': z.string().optional(),
  plot: z.string().default('loadgen-sweep.svg'),
  quiet: z.boolean().default(false),
  child: z.boolean().default(false),
});

const SEED_SIZES = { '0': 128, '1': 1024, '2': 4096 } as const;

export async function parseLoadgenArgs(argv: string[]): Promise<{ load: Omit<LoadOptions, 'clients'>; flags: z.infer<typeof Flags>; sweep?: number[] }> {
  const booleans = new Set(['quiet', 'child']);
  const { values } = parseFlags(
    argv,
    Object.fromEntries(Object.keys(Flags.shape).map((k) => [k, { type: booleans.has(k) ? ('boolean' as const) : ('string' as const) }])),
    { singleDash: true },
  );
  const p = Flags.safeParse(values);
  if (!p.success) throw new Error(p.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('\n'));
  const f = p.data;
  let targets = f.targets?.split(',').map((t) => t.trim()).filter(Boolean);
  let think = f.think;
  if (f.config) {
    const cfg = loadSeedConfig(f.config);
    targets ??= cfg.svrIps;
    think ??= cfg.thinkingTimeMsec;
  }
  if (f.discover && !targets) {
    const { discoverMembers } = await import('../discovery/kubernetes.js');
    const found = await discoverMembers(f.discover, { namespace: f.namespace, portName: f.driver === 'http' ? 'http' : f['port-name'] });
    if (found.length === 0) throw new Error(`--discover ${f.discover}: no running replica pods found`);
    targets = found.map((m) => m.addr);
  }
  if (!targets || targets.length === 0) throw new Error('give --targets, --config or --discover');
  if (f.duration !== undefined && f.requests !== undefined) throw new Error('--duration and --requests are exclusive');
  if (f.warmup > 0 && f.requests !== undefined) throw new Error('--warmup needs --duration, not --requests');
  const sweep = f['sweep-clients']?.split(',').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--sweep-clients: '${s}' is not a positive integer`);
    return n;
  });
  return {
    flags: f,
    sweep,
    load: {
      driver: f.driver,
      route: f.route,
      targets,
      durationS: f.requests === undefined ? (f.duration ?? 10) : undefined,
      warmupS: f.warmup,
      requests: f.requests,
      keys: f.keys,
      valueSize: f['value-size'] ?? (f.data ? SEED_SIZES[f.data] : 128),
      writeRatio: f['write-ratio'],
      thinkMs: think ?? 0,
      timeoutMs: f.timeout,
      seed: f.seed ?? Date.now() % 2 ** 31,
    },
  };
}

/** Run one load point, in this process or split over `procs` child processes. */
async function runPoint(load: Omit<LoadOptions, 'clients'>, clients: number, procs: number, argv: string[], progress: boolean): Promise<LoadResult> {
  const onSecond = progress
    ? (s: number, n: number, p99: number) => process.stderr.write(`\r[${String(s).padStart(4)}s] ${String(n).padStart(7)} ops/s  p99 ${(p99 / 1000).toFixed(2)} ms   `)
    : undefined;
  if (procs <= 1) {
    const r = await runLoad({ ...load, clients, onSecond });
    if (progress) process.stderr.write('\n');
    return r;
  }
  const per = Array.from({ length: procs }, (_, i) => Math.floor(clients / procs) + (i < clients % procs ? 1 : 0)).filter((n) => n > 0);
  const strip = new Set(['--procs', '--clients', '--json', '--csv', '--sweep-clients', '--plot', '--seed', '--requests']);
  const base: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (strip.has(argv[i])) i++;
    else if (argv[i] !== '--quiet') base.push(argv[i]);
  }
  const results = await Promise.all(
    per.map(
      (n, i) =>
        new Promise<LoadResult>((resolve, reject) => {
          const args = [process.argv[1], 'loadgen', ...base, '--child', '--quiet', '--clients', String(n), '--seed', String(load.seed + i)];
          if (load.requests !== undefined) args.push('--requests', String(Math.max(1, Math.round((load.requests * n) / clients))));
          const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          child.stdout.on('data', (d) => (out += d.toString()));
          child.on('error', reject);
          child.on('exit', (code) => {
            if (code !== 0) return reject(new Error(`generator process ${i} exited with ${code}`));
            try {
              resolve(JSON.parse(out) as LoadResult);
            } catch {
              reject(new Error(`generator process ${i} printed no result`));
            }
          });
        }),
    ),
  );
  return mergeResults(results);
}

export async function runLoadgen(argv: string[]): Promise<void> {
  if (wantsHelp(argv)) {
    console.log(LOADGEN_HELP.trimEnd());
    return;
  }
  let parsed: Awaited<ReturnType<typeof parseLoadgenArgs>>;
  try {
    parsed = await parseLoadgenArgs(argv);
  } catch (e) {
    reportUsage('loadgen', (e as Error).message);
    return;
  }
  const { load, flags, sweep } = parsed;
  if (flags.child) {
    const r = await runLoad({ ...load, clients: flags.clients });
    process.stdout.write(JSON.stringify(r));
    return;
  }
  if (process.env.RAFTKV_EXIT_WITH_PARENT === '1') {
    process.stdin.on('end', () => process.exit(0));
    process.stdin.resume();
    // The lifeline must not keep a finished run alive.
    (process.stdin as unknown as { unref?: () => void }).unref?.();
  }
  const progress = !flags.quiet && process.stderr.isTTY;
  const points = sweep ?? [flags.clients];
  const results: LoadResult[] = [];
  for (const clients of points) {
    if (sweep && !flags.quiet) console.error(`-- ${clients} clients`);
    results.push(await runPoint(load, clients, flags.procs, argv, progress));
  }
  console.log(`driver ${load.driver}, targets ${load.targets.join(',')}, value ${load.valueSize} B, keys ${load.keys}, writes ${Math.round(load.writeRatio * 100)}%, seed ${load.seed}`);
  console.log(table(results));
  for (const r of results) if (r.errorSamples.length > 0) console.log(`errors with ${r.clients} clients, e.g.: ${r.errorSamples.join(' | ')}`);
  if (flags.json) {
    const text = JSON.stringify(sweep ? results : results[0], null, 2);
    if (flags.json === '-') console.log(text);
    else writeFileSync(flags.json, text);
  }
  if (flags.csv) writeFileSync(flags.csv, csv(results));
  if (sweep) {
    writeFileSync(flags.plot, sweepSvg([{ name: `${load.driver} (${load.targets.length} targets)`, points: results }], `raftkv: throughput vs p90 latency, ${load.valueSize} B values, ${Math.round(load.writeRatio * 100)}% writes`));
    console.log(`plot written to ${flags.plot}`);
  }
}
