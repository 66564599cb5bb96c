/**
 * `raftkv client`: the seed's interactive client. Reads `set-k-v` / `get-k` / `delete-k` lines
 * from stdin, sends each to the cluster (any replica; it finds the leader) and prints the answer.
 */
import { createInterface } from 'node:readline';
import { commandLine, reportUsage } from '../util/cli.js';
import { parseTextCommand } from './client-server.js';
import { RaftKvClient, RaftKvError } from './client.js';
import { Op, Status } from './proto.js';

export const CLIENT_HELP = `usage: raftkv client [flags]

Reads commands from stdin, one per line, sends each to the cluster and prints the answer:
  set-KEY-VALUE   ->  OK
  get-KEY         ->  VALUE <value> | NOT_FOUND
  delete-KEY      ->  OK
Any replica will do: followers forward writes to the leader. A failed command prints ERR <why>.
Exits 1 when no command could be served (for example, no replica reachable).

  --targets HOST:PORT,...  replicas' client addresses (default 127.0.0.1:11000); a refused
                           connection moves on to the next at once
  --timeout MS             give up on one command after this long (default 10000)
  --stale                  serve reads from the contacted replica's state, without ReadIndex

Example:
  printf 'set-hello-world\\nget-hello\\n' | raftkv client --targets 127.0.0.1:11000,127.0.0.1:11001
`;

export async function runInteractiveClient(argv: string[]): Promise<void> {
  const cl = commandLine('client', CLIENT_HELP, argv, {
    targets: { type: 'string', default: '127.0.0.1:11000' },
    timeout: { type: 'string', default: '10000' },
    stale: { type: 'boolean', default: false },
  });
  if (!cl) return;
  const { targets, timeout, stale } = cl.values as { targets: string; timeout: string; stale: boolean };
  const deadlineMs = Number(timeout);
  if (!Number.isInteger(deadlineMs) || deadlineMs < 1) return reportUsage('client', `--timeout must be a positive integer of milliseconds, got '${timeout}'`);
  let client: RaftKvClient;
  try {
    client = new RaftKvClient({ targets: targets.split(',').map((t) => t.trim()).filter(Boolean), deadlineMs, giveUpWhenAllRefuse: true });
  } catch (e) {
    return reportUsage('client', (e as Error).message);
  }
  let served = 0;
  let attempted = 0;
  const rl = createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    const text = line.trim();
    if (!text) continue;
    const cmd = parseTextCommand(text);
    if (typeof cmd === 'string') {
      console.log(`ERR ${cmd}`);
      continue;
    }
    attempted++;
    try {
      if (cmd.op === Op.GET) {
        const v = await client.getString(cmd.key, { stale });
        console.log(v === undefined ? 'NOT_FOUND' : `VALUE ${v}`);
      } else if (cmd.op === Op.SET) {
        await client.set(cmd.key, cmd.value);
        console.log('OK');
      } else {
        await client.delete(cmd.key);
        console.log('OK');
      }
      served++;
    } catch (e) {
      // A refusal by the cluster (a bad key, a value too large) was still an answer.
      if (e instanceof RaftKvError && e.status === Status.ERROR) served++;
      console.log(`ERR ${(e as Error).message}`);
    }
  }
  client.close();
  if (attempted > 0 && served === 0) {
    console.error(`raftkv client: none of ${attempted} command(s) could be served by ${targets}`);
    process.exitCode = 1;
  }
}
