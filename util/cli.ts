/**
 * Command-line parsing shared by every `raftkv` subcommand, so they all behave alike: `--help`
 * (or `-h`, `-help`) prints the usage and exits 0; a wrong flag or value prints one line naming
 * it plus "see --help" and exits 2; nothing ever ends in a stack trace.
 */
import { parseArgs, ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/** A mistake in the command line: reported as one line, exit code 2. */
export class UsageError extends Error {}

export function wantsHelp(argv: string[]): boolean {
  return argv.some((a) => a === '--help' || a === '-h' || a === '-help');
}

/** Go-style single-dash long flags (`-id x`, the seed's style) become `--id x`. */
export function normalizeArgs(argv: string[]): string[] {
  return argv.map((a) => (/^-[a-z][a-z-]+(=.*)?$/.test(a) ? `-${a}` : a));
}

/** Print `raftkv CMD: why (see raftkv CMD --help)` on stderr and set exit code 2. */
export function reportUsage(command: string, why: string): void {
  const oneLine = why.replace(/\s*\n\s*/g, '; ');
  console.error(`raftkv ${command}: ${oneLine} (see raftkv ${command} --help)`);
  process.exitCode = 2;
}

/** node's parseArgs errors, said in a line a person reads (its own messages run to three). */
function explain(e: Error & { code?: string }): string {
  const flag = /'(-[^']*)'/.exec(e.message)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${flag ?? e.message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /argument missing/.test(e.message) ? `flag ${flag?.split(' ')[0] ?? ''} needs a value` : `flag ${flag?.split(' ')[0] ?? ''} takes no value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${/'([^']*)'/.exec(e.message)?.[1] ?? ''}`.trim();
    default:
      return e.message;
  }
}

/** parseArgs with errors as UsageError (one clear line). */
export function parseFlags<O extends Options>(
  argv: string[],
  options: O,
  opts: { positionals?: number; singleDash?: boolean } = {},
): { values: Record<keyof O, string | boolean | undefined>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({
      args: opts.singleDash ? normalizeArgs(argv) : argv,
      options,
      allowPositionals: (opts.positionals ?? 0) > 0,
      strict: true,
    });
  } catch (e) {
    throw new UsageError(explain(e as Error));
  }
  if (parsed.positionals.length > (opts.positionals ?? 0)) throw new UsageError(`unexpected argument ${parsed.positionals[opts.positionals ?? 0]}`);
  return parsed as unknown as { values: Record<keyof O, string | boolean | undefined>; positionals: string[] };
}

/**
 * The whole front door of a subcommand: help, parsing, usage errors. Returns undefined when the
 * command must not run (help was printed, or a usage error was reported).
 */
export function commandLine<O extends Options>(
  command: string,
  help: string,
  argv: string[],
  options: O,
  opts: { positionals?: number; singleDash?: boolean } = {},
): { values: Record<keyof O, string | boolean | undefined>; positionals: string[] } | undefined {
  if (wantsHelp(argv)) {
    console.log(help.trimEnd());
    return undefined;
  }
  try {
    return parseFlags(argv, options, opts);
  } catch (e) {
    reportUsage(command, (e as Error).message);
    return undefined;
  }
}
