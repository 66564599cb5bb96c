/** Run `raftkv loadgen` as a child process (so the generator's CPU is not the bench's) and read its JSON result. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { LoadResult } from '../loadgen/run.js';
import { CLI } from '../test/helpers/cluster.js';

/** `signal` stops the generator early (the promise then rejects with an AbortError). */
export async function runLoadgen(args: string[], signal?: AbortSignal): Promise<LoadResult> {
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'loadgen', ...args, '--json', '-', '--quiet'], { maxBuffer: 64 << 20, signal });
  return JSON.parse(stdout.slice(stdout.indexOf('\n{') + 1)) as LoadResult;
}
