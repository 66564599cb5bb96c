/**
 * `npm run sim -- --seeds N --from S [--trace] [--duration MS]`: run N simulated schedules
 * starting at seed S. Prints one summary line; on a violation prints the seed, the violation
 * and the trace of that schedule (replayed with tracing on), and exits 1.
 */
import { pathToFileURL } from 'node:url';
import { commandLine, reportUsage } from '../../util/cli.js';
import { runSchedule } from './cluster.js';
import { runSeeds } from './seed-runner.js';

export const SIM_HELP = `usage: raftkv sim [flags]   (npm run sim -- [flags])

Runs seeded schedules of a simulated cluster (partitions, crashes, pauses, lossy links,
transfers, membership changes) and checks every safety property after each.
  --seeds N          how many schedules (default 100)
  --from S           first seed (default 1)
  --seed S           run exactly one schedule, seed S (replays it)
  --duration MS      simulated time per schedule (default 3000)
  --trace            print the schedule's trace
  --trace-lines N    trace lines printed on a violation (default 400)
  --quiet            no progress line

Example:
  raftkv sim --seeds 1000 --from 1
  raftkv sim --seed 42 --trace
`;

/** Exits the process: 0 when every schedule held, 1 on a violation, 2 on a usage error. */
export async function runSimCli(argv: string[]): Promise<void> {
  const cl = commandLine('sim', SIM_HELP, argv, {
    seeds: { type: 'string', default: '100' },
    from: { type: 'string', default: '1' },
    seed: { type: 'string' },
    duration: { type: 'string', default: '3000' },
    trace: { type: 'boolean', default: false },
    'trace-lines': { type: 'string', default: '400' },
    quiet: { type: 'boolean', default: false },
  });
  if (!cl) process.exit(process.exitCode ?? 0);
  const values = cl.values as { seeds: string; from: string; seed?: string; duration: string; trace: boolean; 'trace-lines': string; quiet: boolean };
  const intArg = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) {
      reportUsage('sim', `--${name} must be a non-negative integer, got '${String(v)}'`);
      process.exit(2);
    }
    return n;
  };

  const from = intArg('from', values.seed ?? values.from);
  const count = values.seed !== undefined ? 1 : intArg('seeds', values.seeds);
  const durationMs = intArg('duration', values.duration);
  const traceLines = intArg('trace-lines', values['trace-lines']);

  const { totals: t, violated, seconds } = await runSeeds({
    from,
    count,
    trace: values.trace,
    traceLines,
    quiet: values.quiet,
    replay: (seed) => `npm run sim -- --seed ${seed} --trace`,
    run: (seed, trace) => runSchedule({ seed, durationMs, trace }),
  });
  console.log(
    `sim: ${t.opsAcked ?? 0} writes acked, ${t.opsIndeterminate ?? 0} indeterminate, ${t.readsOk ?? 0} reads, ${t.faults ?? 0} faults, ` +
      `${t.elections ?? 0} elections, ${t.transfers ?? 0} transfers, ${t.confChanges ?? 0} membership changes, ` +
      `${t.snapshotsSent ?? 0} snapshots installed, ${t.entriesReadBack ?? 0} entries read back, ${t.events ?? 0} events in ${seconds.toFixed(1)}s`,
  );
  const violations = violated ? 1 : 0;
  console.log(`schedules: ${violations > 0 ? 'stopped at first violation' : count}, violations: ${violations}`);
  process.exit(violations > 0 ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await runSimCli(process.argv.slice(2));
