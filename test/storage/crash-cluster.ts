/**
 * Child process for the kill -9 test: a 3-node cluster in one process, each node with its own
 * DiskStorage (real files, real fdatasync), in-process message passing. `run` proposes numbered
 * commands and prints `ack N` once command N is applied on the leader; `verify` restarts the
 * cluster from disk, waits for it to converge and prints each node's state as JSON.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  DiskStorage,
  Entry,
  Message,
  RaftDriver,
  RaftNode,
  Snapshot,
  StateMachine,
  crc32c,
  loadOrBootstrap,
} from '../../raft/index.js';

const { values } = parseArgs({ options: { dir: { type: 'string' }, mode: { type: 'string', default: 'run' } } });
const dir = values.dir!;
const ids = ['n1', 'n2', 'n3'];

class CounterMachine implements StateMachine {
  count = 0;
  hash = 0;
  apply(e: Entry): Uint8Array {
    const n = Number(new TextDecoder().decode(e.data).slice(4));
    if (n !== this.count + 1) {
      console.error(`GAP: applied command ${n} after ${this.count} at index ${e.index}`);
      process.exit(3);
    }
    this.count = n;
    this.hash = crc32c(e.data, this.hash);
    return new Uint8Array(0);
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ count: this.count, hash: this.hash }));
  }
  restore(s: Snapshot): void {
    const v = JSON.parse(new TextDecoder().decode(s.data)) as { count: number; hash: number };
    this.count = v.count;
    this.hash = v.hash;
  }
}

const drivers = new Map<string, RaftDriver>();
const machines = new Map<string, CounterMachine>();
for (const id of ids) {
  const storage = await DiskStorage.open(join(dir, id), { fsync: 'batch', segmentBytes: 32 << 10 });
  const initial = await loadOrBootstrap(storage, ids.map((i) => ({ id: i, addr: i })));
  const sm = new CounterMachine();
  if (initial.snapshot) sm.restore(initial.snapshot);
  const node = new RaftNode({ id, electionTicks: 10, heartbeatTicks: 1 }, initial);
  const driver = new RaftDriver({
    node,
    storage,
    stateMachine: sm,
    tickMs: 10,
    snapshotEvery: 150,
    keepEntries: 20,
    transport: {
      send: (msgs: Message[]) => {
        for (const m of msgs) setImmediate(() => drivers.get(m.to)?.step(m));
      },
    },
    onFatal: (e) => {
      console.error(`FATAL ${id}: ${e.message}`);
      process.exit(4);
    },
  });
  drivers.set(id, driver);
  machines.set(id, sm);
}
for (const d of drivers.values()) d.start();

async function leader(): Promise<RaftDriver> {
  for (let i = 0; i < 500; i++) {
    for (const d of drivers.values()) if (d.node.isLeader()) return d;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no leader within 5 s');
}

let lead = await leader();
await lead.readBarrier(); // everything in the log before this term is applied on the leader
const leadId = lead.node.id;

if (values.mode === 'verify') {
  const target = lead.node.log.committed;
  for (let i = 0; i < 500 && ids.some((id) => drivers.get(id)!.appliedIndex < target); i++) await new Promise((r) => setTimeout(r, 10));
  console.log(JSON.stringify(ids.map((id) => ({ id, applied: drivers.get(id)!.appliedIndex, count: machines.get(id)!.count, hash: machines.get(id)!.hash }))));
  process.exit(0);
}

let next = machines.get(leadId)!.count + 1;
console.log(`ready ${next - 1}`);
const inFlight = new Set<Promise<void>>();
for (;;) {
  while (inFlight.size < 64) {
    const n = next++;
    const p: Promise<void> = lead
      .propose(new TextEncoder().encode(`cmd-${String(n).padStart(8, '0')}`))
      .then(() => {
        process.stdout.write(`ack ${n}\n`);
      })
      .catch((e: Error) => {
        console.error(`proposal ${n} failed: ${e.message}`);
        process.exit(5);
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.race(inFlight);
  if (!lead.node.isLeader()) lead = await leader();
}
