/**
 * Command-line flags of the benchmark scripts, through the front door every raftkv command uses
 * (util/cli.ts): --help prints the usage and exits 0; a wrong flag or value prints one line
 * naming it and exits 2, before anything starts; never a stack trace.
 */
import { commandLine } from '../util/cli.js';

type Options = Parameters<typeof commandLine>[3];

/** The parsed flags (typed by the caller as `T`), or exit 0 after --help, 2 after a mistake. */
export function benchFlags<T>(command: string, usage: string, options: Options, argv: string[] = process.argv.slice(2)): T {
  const cl = commandLine(command, `${usage}\n`, argv, options);
  if (!cl) process.exit(Number(process.exitCode ?? 0));
  return cl.values as T;
}

/** vs-etcd's flags: npm run bench passes its own flags on to it, and checks them first. */
export const VS_ETCD_FLAGS = {
  quick: { type: 'boolean', default: false },
  clients: { type: 'string' },
  seconds: { type: 'string' },
  warmup: { type: 'string' },
  'one-client-warmup': { type: 'string' },
  'one-client-runs': { type: 'string' },
  'value-size': { type: 'string', default: '1024' },
  keys: { type: 'string', default: '100000' },
  kills: { type: 'string' },
  'rss-keys': { type: 'string' },
  skip: { type: 'string', default: '' },
  route: { type: 'string', default: 'leader' },
  out: { type: 'string', default: 'bench-results' },
} as const;

export interface VsEtcdFlags {
  quick: boolean;
  clients?: string;
  seconds?: string;
  warmup?: string;
  'one-client-warmup'?: string;
  'one-client-runs'?: string;
  'value-size': string;
  keys: string;
  kills?: string;
  'rss-keys'?: string;
  skip: string;
  route: string;
  out: string;
}

export const VS_ETCD_USAGE = `usage: node dist/bench/vs-etcd.js [--quick] [--clients 1,8,32,128] [--seconds S] [--warmup S] [--one-client-warmup S] [--one-client-runs N]
  [--value-size B] [--keys N] [--kills N] [--rss-keys N] [--skip matrix,failover,memory,rss] [--route leader|member] [--out DIR]`;
