/**
 * `npm run bench`: every benchmark, one after the other in this session, so their ratios compare
 * runs on the same machine under the same conditions:
 *   core     the consensus core alone, in one process (committed entries/s)
 *   wal      what durability costs on this disk (fdatasync/s, appends/s)
 *   vs-etcd  raftkv against etcd: the matrix, failover, in-memory throughput, replica memory
 * `--quick` runs a short set; every other flag goes to vs-etcd (see its --help).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VS_ETCD_FLAGS, VS_ETCD_USAGE, benchFlags } from './flags.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

function run(script: string, argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [here(script), ...argv], { stdio: 'inherit' });
    const stop = (sig: NodeJS.Signals) => p.kill(sig);
    process.once('SIGINT', stop).once('SIGTERM', stop);
    p.on('exit', (code, sig) => {
      process.off('SIGINT', stop).off('SIGTERM', stop);
      if (code === 0) resolve();
      else reject(new Error(`${script} ${sig ? `was stopped by ${sig}` : `exited with ${code}`}`));
    });
  });
}

if (args.includes('--help') || args.includes('-h')) {
  console.log('usage: npm run bench [-- --quick] [-- vs-etcd flags]\nruns bench/core, bench/wal and bench/vs-etcd in one session; vs-etcd flags:');
  await run('./vs-etcd.js', ['--help']);
  process.exit(0);
}
// Checked before anything runs: a typo should not cost the minutes of core and wal first.
benchFlags('bench', `usage: npm run bench [-- --quick] [-- vs-etcd flags]\n${VS_ETCD_USAGE}`, VS_ETCD_FLAGS, args);

try {
  console.log('== core: the consensus core alone');
  await run('./core.js', quick ? ['--seconds', '2'] : []);
  console.log('\n== wal: durability on this disk');
  await run('./wal.js', quick ? ['--seconds', '1'] : []);
  console.log('\n== vs-etcd: raftkv and etcd, same machine, same generator');
  await run('./vs-etcd.js', args);
} catch (e) {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
}
