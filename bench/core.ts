/**
 * `npm run bench:core`: throughput of the consensus core alone. A 3-node cluster in one
 * process, in-memory storage (no fsync), messages handed over directly, 128-byte proposals
 * pipelined in batches. Prints `committed entries/s: N` as its last line.
 *
 * Options: --seconds N (default 5), --batch N proposals per leader round (default 512),
 * --profile FILE to write a V8 CPU profile and print where the time goes.
 */
import { Message, RaftNode, bootstrapEntries } from '../raft/index.js';
import { benchFlags } from './flags.js';
import { withProfile } from './profile.js';

const values = benchFlags<{ seconds: string; batch: string; size: string; profile?: string }>(
  'bench:core',
  'usage: node dist/bench/core.js [--seconds S] [--batch N] [--size B] [--profile DIR]',
  {
    seconds: { type: 'string', default: '5' },
    batch: { type: 'string', default: '512' },
    size: { type: 'string', default: '128' },
    profile: { type: 'string' },
  },
);
const seconds = Number(values.seconds);
const batch = Number(values.batch);
const size = Number(values.size);
if (!(seconds > 0) || !(batch > 0) || !(size >= 0)) {
  console.error('--seconds, --batch and --size must be positive numbers');
  process.exit(2);
}

function run(): { committed: number; elapsed: number } {
  const ids = ['n1', 'n2', 'n3'];
  const boot = bootstrapEntries(ids.map((id) => ({ id, addr: id })));
  const nodes = new Map(
    ids.map((id) => [id, new RaftNode({ id, maxInflight: 64, maxAppendBytes: 1 << 20 }, { hardState: { term: 1, vote: '', commit: boot.length }, entries: boot.slice() })]),
  );
  const inbox = new Map<string, Message[]>(ids.map((id) => [id, []]));
  const leader = nodes.get('n1')!;
  leader.campaign();
  const payload = new Uint8Array(size).fill(42);
  let committed = 0;
  const pump = () => {
    let busy = true;
    while (busy) {
      busy = false;
      for (const [id, node] of nodes) {
        const box = inbox.get(id)!;
        if (box.length > 0) {
          inbox.set(id, []);
          for (const m of box) node.step(m);
        }
        const rd = node.ready();
        if (!rd) continue;
        busy = true;
        // "Persisting" to memory is free here: the benchmark isolates the core's own cost.
        for (const m of rd.messages) inbox.get(m.to)!.push(m);
        if (id === 'n1') committed += rd.committed.length;
        node.advance();
      }
    }
  };
  pump();
  if (!leader.isLeader()) throw new Error('bench: n1 did not become leader');
  committed = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let rounds = 0;
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < batch; i++) leader.propose(payload);
    pump();
    if (++rounds % 64 === 0) for (const n of nodes.values()) n.tick();
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  return { committed, elapsed };
}

const { committed, elapsed } = await withProfile(values.profile, run);
console.log(`cluster: 3 nodes in one process, storage: memory (fsync: never), entry: ${size} B, batch: ${batch}`);
console.log(`committed ${committed} entries in ${elapsed.toFixed(2)}s`);
console.log(`committed entries/s: ${Math.round(committed / elapsed)}`);
