/**
 * `npm run sim:replica -- --seeds N --from S [--seed S --trace]`: whole-replica schedules (the
 * real driver, WAL, snapshot store, state machine and command path over a simulated disk and
 * network). Prints a summary; on a violation the seed, what broke and the trace, exit 1.
 */
import { pathToFileURL } from 'node:url';
import { commandLine, reportUsage } from '../../../util/cli.js';
import { runWholeSchedule } from './replica-sim.js';

export const WHOLE_SIM_HELP = `usage: npm run sim:replica -- [flags]

Runs seeded whole-replica schedules: the real RaftDriver, WAL and snapshot store over a
simulated disk (power cuts lose or tear unsynced writes, fsyncs fail), the real state machine
with client sessions, and the real command path (forwarding, pooled sessions, retries), under
partitions, pauses with lost ticks, drifting clocks, transfers and membership changes.
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
  const t0 = Date.now();
  const total = { acked: 0, unknown: 0, reads: 0, faults: 0, cuts: 0, torn: 0, fsyncErrors: 0, expired: 0, events: 0 };
  for (let seed = from; seed < from + count; seed++) {
    const r = await runWholeSchedule({ seed, durationMs: Number(v.duration), trace: v.trace });
    total.acked += r.stats.writesAcked;
    total.unknown += r.stats.writesIndeterminate;
    total.reads += r.stats.readsOk;
    total.faults += r.stats.faults;
    total.cuts += r.stats.powerCuts;
    total.torn += r.stats.tornFiles;
    total.fsyncErrors += r.stats.fsyncErrors;
    total.expired += r.stats.sessionsExpired;
    total.events += r.stats.events;
    if (v.trace) for (const line of r.trace) console.log(line);
    if (r.violations.length > 0) {
      const replay = v.trace ? r : await runWholeSchedule({ seed, durationMs: Number(v.duration), trace: true });
      console.log(`\nVIOLATION in seed ${seed} (replay: npm run sim:replica -- --seed ${seed} --trace)`);
      for (const x of r.violations) console.log(`  ${x}`);
      console.log(`--- last ${v['trace-lines']} trace lines of seed ${seed} ---`);
      for (const line of replay.trace.slice(-Number(v['trace-lines']))) console.log(line);
      return 1;
    }
    if (process.stdout.isTTY && seed % 10 === 0) process.stdout.write(`\rseed ${seed}...`);
  }
  if (process.stdout.isTTY) process.stdout.write('\r');
  console.log(
    `sim:replica: ${total.acked} writes acked, ${total.unknown} indeterminate, ${total.reads} reads, ${total.faults} faults, ` +
      `${total.cuts} power cuts (${total.torn} files torn), ${total.fsyncErrors} fsync failures, ${total.expired} sessions expired, ` +
      `${total.events} events in ${((Date.now() - t0) / 1000).toFixed(1)}s`,
  );
  console.log(`schedules: ${count} from seed ${from}, violations: 0`);
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = await runWholeSimCli(process.argv.slice(2));
