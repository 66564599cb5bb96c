/**
 * The loop both simulators' command lines share: run seeds in order, add up their numeric
 * stats, and on the first violation print the seed, what broke, the replay command and the end
 * of that schedule's trace (replayed with tracing on).
 */
export interface ScheduleOutcome {
  violations: string[];
  trace: string[];
  stats: object;
}

export interface SeedRunOptions<R extends ScheduleOutcome> {
  from: number;
  count: number;
  trace: boolean;
  traceLines: number;
  quiet: boolean;
  /** How a person replays one seed, e.g. `npm run sim -- --seed 7 --trace`. */
  replay: (seed: number) => string;
  run: (seed: number, trace: boolean) => R | Promise<R>;
}

/** Returns the summed stats, and whether a violation stopped the run. */
export async function runSeeds<R extends ScheduleOutcome>(o: SeedRunOptions<R>): Promise<{ totals: Record<string, number>; violated: boolean; seconds: number }> {
  const t0 = Date.now();
  const totals: Record<string, number> = {};
  let violated = false;
  for (let seed = o.from; seed < o.from + o.count; seed++) {
    const r = await o.run(seed, o.trace);
    for (const [k, v] of Object.entries(r.stats)) if (typeof v === 'number') totals[k] = (totals[k] ?? 0) + v;
    if (o.trace) for (const line of r.trace) console.log(line);
    if (r.violations.length > 0) {
      violated = true;
      console.log(`\nVIOLATION in seed ${seed} (replay: ${o.replay(seed)})`);
      for (const v of r.violations) console.log(`  ${v}`);
      if (!o.trace && o.traceLines > 0) {
        const replay = await o.run(seed, true);
        console.log(`--- last ${o.traceLines} trace lines of seed ${seed} ---`);
        for (const line of replay.trace.slice(-o.traceLines)) console.log(line);
      }
      break;
    }
    if (!o.quiet && process.stdout.isTTY && seed % 10 === 0) process.stdout.write(`\rseed ${seed}...`);
  }
  if (!o.quiet && process.stdout.isTTY) process.stdout.write('\r');
  return { totals, violated, seconds: (Date.now() - t0) / 1000 };
}
