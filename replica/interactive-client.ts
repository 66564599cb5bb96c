/**
 * `raftkv client`: the seed's interactive client. Reads `set-k-v` / `get-k` / `delete-k` lines
 * from stdin, sends each to the cluster (any replica; it finds the leader) and prints the answer.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { parseTextCommand } from './client-server.js';
import { RaftKvClient } from './client.js';
import { Op } from './proto.js';

export async function runInteractiveClient(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { targets: { type: 'string', default: '127.0.0.1:11000' }, stale: { type: 'boolean', default: false } } });
  const client = new RaftKvClient({ targets: values.targets!.split(',') });
  const rl = createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    const text = line.trim();
    if (!text) continue;
    const cmd = parseTextCommand(text);
    if (typeof cmd === 'string') {
      console.log(`ERR ${cmd}`);
      continue;
    }
    try {
      if (cmd.op === Op.GET) {
        const v = await client.getString(cmd.key, { stale: values.stale });
        console.log(v === undefined ? 'NOT_FOUND' : `VALUE ${v}`);
      } else if (cmd.op === Op.SET) {
        await client.set(cmd.key, cmd.value);
        console.log('OK');
      } else {
        await client.delete(cmd.key);
        console.log('OK');
      }
    } catch (e) {
      console.log(`ERR ${(e as Error).message}`);
    }
  }
  client.close();
}
