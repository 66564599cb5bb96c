/**
 * Command-line flags of the benchmark scripts: a flag a script does not know gets one line and
 * its usage (exit 2) and --help the usage (exit 0), before anything starts; never a stack trace.
 */
import { ParseArgsConfig, parseArgs } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<T extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>>['values'];

/** vs-etcd's flags (npm run bench passes its own flags on to it, and checks them first). */
export const VS_ETCD_FLAGS = {
  quick: { type: 'boolean', default: false },
  clients: { type: 'string' },
  seconds: { type: 'string' },
  warmup: { type: 'string' },
  'value-size': { type: 'string', default: '1024' },
  keys: { type: 'string', default: '100000' },
  kills: { type: 'string' },
  'rss-keys': { type: 'string' },
  skip: { type: 'string', default: '' },
  out: { type: 'string', default: 'bench-results' },
} as const;

export const VS_ETCD_USAGE = `usage: node dist/bench/vs-etcd.js [--quick] [--clients 1,8,32,128] [--seconds S] [--warmup S] [--value-size B]
  [--keys N] [--kills N] [--rss-keys N] [--skip matrix,failover,memory,rss] [--out DIR]`;

export function flagsOrUsage<T extends Options>(options: T, usage: string, argv: string[] = process.argv.slice(2)): Values<T> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage);
    process.exit(0);
  }
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n${usage}`);
    process.exit(2);
  }
}
