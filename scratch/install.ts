// scratch: time applyToEngine for 1M commands (not committed)
import { KvStateMachine } from '../replica/kv-machine.js';
import { MemoryEngine } from '../replica/engines/memory.js';
import { encodeKvCommand, Op } from '../replica/proto.js';
import { EntryType, Entry } from '../raft/index.js';
const N = 1_000_000;
const value = new Uint8Array(512).fill(7);
const entries: Entry[] = [];
const clients = Array.from({ length: 64 }, (_, i) => String(i + 1));
const seqs = new Array(64).fill(0);
for (let i = 1; i <= 64; i++) entries.push({ index: i, term: 1, type: EntryType.Normal, data: encodeKvCommand({ op: Op.REGISTER, key: '', value: new Uint8Array(), client: '', seq: 0, acked: 0, time: 1 }) });
for (let i = 65; i <= N; i++) {
  const c = i % 64;
  seqs[c]++;
  entries.push({ index: i, term: 1, type: EntryType.Normal, data: encodeKvCommand({ op: Op.SET, key: String(i % 1000000), value, client: clients[c], seq: seqs[c], acked: seqs[c] - 1, time: 1000 + i }) });
}
const sm = new KvStateMachine(new MemoryEngine(Number.MAX_SAFE_INTEGER), { nodeId: 'x' });
const t = performance.now();
for (let i = 0; i < entries.length; i += 1000) sm.applyToEngine(entries.slice(i, i + 1000));
console.log(`install ${N}: ${((performance.now() - t) / 1000).toFixed(2)} s`);
