/**
 * `npm run sim -- --seeds N --from S [--trace] [--duration MS]`: run N simulated schedules
 * starting at seed S. Prints one summary line; on a violation prints the seed, the violation
 * and the trace of that schedule (replayed with tracing on), and exits 1.
 */
import { pathToFileURL } from 'node:url';
import { commandLine, reportUsage } from '../../util/cli.js';
import { runSchedule } from './cluster.js';

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
export function runSimCli(argv: string[]): void {
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

  const t0 = Date.now();
  const totals = { events: 0, elections: 0, ops: 0, reads: 0, faults: 0, snapshots: 0, confChanges: 0, transfers: 0, indeterminate: 0 };
  let violations = 0;
  for (let seed = from; seed < from + count; seed++) {
    const r = runSchedule({ seed, durationMs, trace: values.trace });
    totals.events += r.stats.events;
    totals.elections += r.stats.elections;
    totals.ops += r.stats.opsAcked;
    totals.reads += r.stats.readsOk;
    totals.faults += r.stats.faults;
    totals.snapshots += r.stats.snapshotsSent;
    totals.confChanges += r.stats.confChanges;
    totals.transfers += r.stats.transfers;
    totals.indeterminate += r.stats.opsIndeterminate;
    if (values.trace) for (const line of r.trace) console.log(line);
    if (r.violations.length > 0) {
      violations++;
      const replay = values.trace ? r : runSchedule({ seed, durationMs, trace: true });
      console.log(`\nVIOLATION in seed ${seed} (replay: npm run sim -- --seed ${seed} --trace)`);
      for (const v of r.violations) console.log(`  ${v}`);
      if (!values.trace) {
        console.log(`--- last ${traceLines} trace lines of seed ${seed} ---`);
        for (const line of replay.trace.slice(-traceLines)) console.log(line);
      }
      break;
    }
    if (!values.quiet && process.stdout.isTTY && seed % 10 === 0) process.stdout.write(`\rseed ${seed}...`);
  }
  if (process.stdout.isTTY && !values.quiet) process.stdout.write('\r');
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(
    `sim: ${totals.ops} writes acked, ${totals.indeterminate} indeterminate, ${totals.reads} reads, ${totals.faults} faults, ` +
      `${totals.elections} elections, ${totals.transfers} transfers, ${totals.confChanges} membership changes, ` +
      `${totals.snapshots} snapshots installed, ${totals.events} events in ${secs}s`,
  );
  console.log(`schedules: ${violations > 0 ? 'stopped at first violation' : count}, violations: ${violations}`);
  process.exit(violations > 0 ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) runSimCli(process.argv.slice(2));
