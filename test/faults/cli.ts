/**
 * `npm run test:faults -- --time S --seed N [--nodes 3|5] [--read-mode safe|lease] [--loggers N] [--scenarios K] [--contend C] [--verbose]`: run K
 * fault-injection scenarios (seeds N, N+1, ...) of S seconds each against real processes.
 * Prints a summary per scenario and exits 1 on any violation, with the seed and the nemesis log.
 * `--contend C` runs C busy processes beside the scenarios: orderings that an idle machine
 * seldom produces (a hello arriving late, two requests racing) then happen, as in a CI run
 * beside other tests. Two of the logger bugs of 2026-12-06 showed only that way.
 */
import { spawn } from 'node:child_process';
import { commandLine } from '../../util/cli.js';
import { runScenario } from './scenario.js';

const HELP = `usage: npm run test:faults -- [flags]

Fault-injection scenarios against real processes on 127.0.0.1 (kill -9, partitions through
proxies, pauses, disk faults), checked for linearizability and lost acknowledged writes.
  --time S          seconds of faults per scenario (default 30)
  --seed N          first seed (default: from the clock); scenario k uses seed N+k
  --scenarios K     how many scenarios (default 1)
  --nodes 3|5       replicas (default 5)
  --loggers N       loggers beside them, 0-5 (default 1)
  --read-mode M     safe or lease (default: from the seed)
  --contend C       busy processes beside the scenarios, 0-8 (default 0)
  --verbose         print the nemesis log as it runs

Example:
  npm run test:faults -- --time 15 --seed 602 --nodes 3 --loggers 1 --read-mode lease --contend 2
`;

const cl = commandLine('test:faults', HELP, process.argv.slice(2), {
  time: { type: 'string', default: '30' },
  seed: { type: 'string' },
  nodes: { type: 'string', default: '5' },
  scenarios: { type: 'string', default: '1' },
  verbose: { type: 'boolean', default: false },
  'read-mode': { type: 'string' },
  loggers: { type: 'string', default: '1' },
  contend: { type: 'string', default: '0' },
});
if (!cl) process.exit(Number(process.exitCode ?? 0));
const values = cl.values as { time: string; seed?: string; nodes: string; scenarios: string; verbose: boolean; 'read-mode'?: string; loggers: string; contend: string };
const readMode = values['read-mode'];
if (readMode !== undefined && readMode !== 'safe' && readMode !== 'lease') {
  console.error('--read-mode must be safe or lease');
  process.exit(2);
}
const time = Number(values.time);
const seed0 = values.seed !== undefined ? Number(values.seed) : Date.now() % 100_000;
const nodes = Number(values.nodes);
const scenarios = Number(values.scenarios);
const loggers = Number(values.loggers);
if (!Number.isInteger(loggers) || loggers < 0 || loggers > 5) {
  console.error('--loggers must be a whole number from 0 to 5');
  process.exit(2);
}
if (!(time > 0) || !Number.isInteger(seed0) || (nodes !== 3 && nodes !== 5) || !(scenarios >= 1)) {
  console.error('usage: --time SECONDS --seed N --nodes 3|5 --scenarios K');
  process.exit(2);
}
const contend = Number(values.contend);
if (!Number.isInteger(contend) || contend < 0 || contend > 8) {
  console.error('--contend must be a whole number from 0 to 8');
  process.exit(2);
}
const busy = Array.from({ length: contend }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
const stopBusy = () => {
  for (const b of busy) b.kill('SIGKILL');
};
process.once('exit', stopBusy);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
let violations = 0;
const totals = { ops: 0, acked: 0, indeterminate: 0, reads: 0, faults: 0 };
for (let s = seed0; s < seed0 + scenarios; s++) {
  let printed = 0;
  const r = await runScenario({ seed: s, timeS: time, nodes: nodes as 3 | 5, readMode, loggers, log: values.verbose ? (l) => (printed++, console.log(l)) : undefined });
  const nFaults = Object.values(r.faults).reduce((a, b) => a + b, 0);
  totals.ops += r.ops;
  totals.acked += r.writesAcked;
  totals.indeterminate += r.writesIndeterminate;
  totals.reads += r.readsOk;
  totals.faults += nFaults;
  console.log(`seed ${s}: ${r.ops} ops (${r.writesAcked} writes acked, ${r.writesIndeterminate} indeterminate, ${r.readsOk} reads), faults ${JSON.stringify(r.faults)}, violations ${r.violations.length}`);
  if (r.violations.length > 0) {
    violations++;
    console.log(`VIOLATION with seed ${s} (rerun: npm run test:faults -- --time ${time} --seed ${s} --nodes ${nodes} --loggers ${loggers} --verbose)`);
    for (const v of r.violations) console.log(v);
    // --verbose printed the nemesis log as it went; the cluster dump and the loggers' output
    // that follow it on a failure were not.
    for (const l of r.log.slice(printed)) console.log(l);
  }
}
console.log(`faults: ${scenarios} scenarios, ${totals.ops} ops, ${totals.acked} writes acked, ${totals.indeterminate} indeterminate, ${totals.reads} reads, ${totals.faults} faults; violations: ${violations}`);
process.exit(violations > 0 ? 1 : 0);
