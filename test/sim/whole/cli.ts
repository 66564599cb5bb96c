/**
 * `npm run sim:replica -- --seeds N --from S [--seed S --trace]`: whole-replica schedules (the
 * real driver, WAL, snapshot store, state machine and command path over a simulated disk and
 * network). Prints a summary; on a violation the seed, what broke and the trace, exit 1.
 */
import { pathToFileURL } from 'node:url';
import { commandLine, reportUsage } from '../../../util/cli.js';
import { runSeeds } from '../seed-runner.js';
import { runWholeSchedule } from './replica-sim.js';

export const WHOLE_SIM_HELP = `usage: npm run sim:replica -- [flags]

Runs seeded whole-replica schedules: the real RaftDriver, WAL and snapshot store over a
simulated disk (power cuts lose or tear unsynced writes, fsyncs fail), the real state machine
with client sessions, the real command path (forwarding, pooled sessions, retries) and, on even
seeds, a logger with the real command log, under partitions, pauses with lost ticks, drifting
clocks, transfers and membership changes.
  --seeds N          how many schedules (default 50)
  --from S           first seed (default 1)
  --seed S           run exactly one schedule (replays it)
  --duration MS      simulated time of faults per schedule (default 3000)
  --trace            print the trace of each schedule
  --trace-lines N    trace lines printed on a violation (default 300)

Example:
  npm run sim:replica -- --seeds 200 --from 1
  npm run sim:replica -- --seed 17 --trace
`;

export async function runWholeSimCli(argv: string[]): Promise<number> {
  const cl = commandLine('sim:replica', WHOLE_SIM_HELP, argv, {
    seeds: { type: 'string', default: '50' },
    from: { type: 'string', default: '1' },
    seed: { type: 'string' },
    duration: { type: 'string', default: '3000' },
    trace: { type: 'boolean', default: false },
    'trace-lines': { type: 'string', default: '300' },
  });
  if (!cl) return Number(process.exitCode ?? 0);
  const v = cl.values as { seeds: string; from: string; seed?: string; duration: string; trace: boolean; 'trace-lines': string };
  const nums = [v.seeds, v.from, v.seed ?? '0', v.duration, v['trace-lines']].map(Number);
  if (nums.some((n) => !Number.isSafeInteger(n) || n < 0)) {
    reportUsage('sim:replica', 'numbers must be non-negative integers');
    return 2;
  }
  const from = v.seed !== undefined ? Number(v.seed) : Number(v.from);
  const count = v.seed !== undefined ? 1 : Number(v.seeds);
  const { totals: t, violated, seconds } = await runSeeds({
    from,
    count,
    trace: v.trace,
    traceLines: Number(v['trace-lines']),
    quiet: false,
    replay: (seed) => `npm run sim:replica -- --seed ${seed} --trace`,
    run: (seed, trace) => runWholeSchedule({ seed, durationMs: Number(v.duration), trace }),
  });
  if (violated) return 1;
  console.log(
    `sim:replica: ${t.writesAcked ?? 0} writes acked, ${t.writesIndeterminate ?? 0} indeterminate, ${t.readsOk ?? 0} reads, ${t.faults ?? 0} faults, ` +
      `${t.powerCuts ?? 0} power cuts (${t.tornFiles ?? 0} files torn), ${t.fsyncErrors ?? 0} fsync failures, ${t.sessionsExpired ?? 0} sessions expired, ${t.entriesReadBack ?? 0} entries read back, ` +
      `${t.events ?? 0} events in ${seconds.toFixed(1)}s`,
  );
  console.log(`schedules: ${count} from seed ${from}, violations: 0`);
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = await runWholeSimCli(process.argv.slice(2));
