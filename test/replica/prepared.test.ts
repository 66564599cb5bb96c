/**
 * Commands prepared on a recovery's receiving thread (replica/prepared.ts) install exactly as
 * the same entries applied one by one: same keys and values, same sessions, same answers to
 * retries afterwards, for the kvstore engine adopting the slabs and for an engine that copies.
 * Seeded (RAFTKV_SEED replays a failure): registrations, writes with and without sessions,
 * duplicates, unknown sessions, deletes, keys in any script, empty values and values larger
 * than a slab, membership changes, no-ops and bytes that are not a plain command.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ConfChangeType, Entry, EntryType, encodeConfChange } from '../../raft/index.js';
import { encodeRecord } from '../../logger/command-log.js';
import { MemoryEngine } from '../../replica/engines/memory.js';
import { stateDigest } from '../../replica/engines/engine.js';
import { KvStateMachine } from '../../replica/kv-machine.js';
import { Op, encodeKvCommand } from '../../replica/proto.js';
import { FIELDS, F_INDEX, PreparedBatchBuilder, PreparedKvBatch, unpreparedEntry } from '../../replica/prepared.js';

type Step =
  | { kind: 'register' }
  | { kind: 'set'; key: number; size: number; session: number; seq: number }
  | { kind: 'delete'; key: number; session: number; seq: number }
  | { kind: 'conf' }
  | { kind: 'noop' }
  | { kind: 'junk'; bytes: number[] };

const KEYS = ['a', 'key-0001', 'ключ', '鍵', 'k'.repeat(300), 'x y', 'zz'];
const SLAB = 256;

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ kind: 'register' as const }) },
  {
    weight: 14,
    arbitrary: fc.record({
      kind: fc.constant('set' as const),
      key: fc.nat(KEYS.length - 1),
      size: fc.oneof({ weight: 10, arbitrary: fc.integer({ min: 0, max: 120 }) }, { weight: 1, arbitrary: fc.integer({ min: SLAB - 8, max: SLAB * 3 }) }),
      session: fc.integer({ min: -1, max: 4 }),
      seq: fc.integer({ min: 1, max: 12 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.nat(KEYS.length - 1), session: fc.integer({ min: -1, max: 4 }), seq: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'conf' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'noop' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('junk' as const), bytes: fc.array(fc.nat(255), { maxLength: 12 }) }) },
);

/** The log the steps make: sessions are the indexes of their registrations, -1 none, others unknown. */
function entriesOf(steps: Step[]): Entry[] {
  const registered: number[] = [];
  return steps.map((s, i): Entry => {
    const index = i + 1;
    const term = 1 + (i >> 4);
    const client = (n: number) => (n < 0 ? '' : n < registered.length ? String(registered[n]) : `gone-${n}`);
    const time = 1000 + i;
    switch (s.kind) {
      case 'register':
        registered.push(index);
        return { index, term, type: EntryType.Normal, data: encodeKvCommand({ op: Op.REGISTER, key: '', value: new Uint8Array(0), client: '', seq: 0, acked: 0, time }) };
      case 'set': {
        const value = Buffer.alloc(s.size, index & 0xff);
        if (s.size > 0) value[s.size - 1] = 0xee;
        return { index, term, type: EntryType.Normal, data: encodeKvCommand({ op: Op.SET, key: KEYS[s.key], value, client: client(s.session), seq: s.seq, acked: s.seq > 3 ? s.seq - 3 : 0, time }) };
      }
      case 'delete':
        return { index, term, type: EntryType.Normal, data: encodeKvCommand({ op: Op.DELETE, key: KEYS[s.key], value: new Uint8Array(0), client: client(s.session), seq: s.seq, acked: 0, time }) };
      case 'conf':
        return { index, term, type: EntryType.ConfChange, data: encodeConfChange({ type: ConfChangeType.AddLearner, node: `n${index}`, addr: `127.0.0.1:${10000 + index}` }) };
      case 'noop':
        return { index, term, type: EntryType.Noop, data: new Uint8Array(0) };
      case 'junk':
        return { index, term, type: EntryType.Normal, data: Uint8Array.from(s.bytes) };
    }
  });
}

function prepare(entries: Entry[], slabBytes: number, recordsPerPush: number): PreparedKvBatch[] {
  const out: PreparedKvBatch[] = [];
  const builder = new PreparedBatchBuilder(slabBytes, (b) => out.push(b));
  for (let i = 0; i < entries.length; i += recordsPerPush) builder.add(Buffer.concat(entries.slice(i, i + recordsPerPush).map(encodeRecord)));
  builder.flush();
  return out;
}

/** Everything a replica's state machine answers with: data, sessions, applied index. */
function stateOf(sm: KvStateMachine) {
  return { digest: stateDigest(sm.engine), keys: sm.engine.size(), sessions: JSON.stringify(sm.sessions.toJSON()), applied: sm.appliedIndex };
}

describe('commands prepared on the receiving thread', () => {
  it('install exactly as the entries applied one by one, adopted or copied (seeded)', () => {
    const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (steps, perPush) => {
        const entries = entriesOf(steps);
        const want = new KvStateMachine(new MemoryEngine(1 << 20, { slabBytes: SLAB }), { nodeId: 'want' });
        want.applyToEngine(entries);

        const batches = prepare(entries, SLAB, perPush);
        // In order, every entry once.
        const indexes = batches.flatMap((b) => Array.from({ length: b.count }, (_, i) => b.fields[i * FIELDS + F_INDEX]));
        assert.deepEqual(indexes, entries.map((e) => e.index));
        // Entries that were not prepared as commands come back whole.
        for (const b of batches)
          for (let i = 0; i < b.count; i++) {
            const e = entries[b.fields[i * FIELDS + F_INDEX] - 1];
            if (e.type !== EntryType.Normal) assert.deepEqual(Buffer.from(unpreparedEntry(b, i).data), Buffer.from(e.data));
          }

        const adopted = new MemoryEngine(1 << 20, { slabBytes: SLAB, sweepAbove: 1, sweepSlackSlabs: 0 });
        const viaSlabs = new KvStateMachine(adopted, { nodeId: 'adopted' });
        const copied = new KvStateMachine(new MemoryEngine(1 << 20, { slabBytes: SLAB * 2 }), { nodeId: 'copied' });
        for (const b of prepare(entries, SLAB, perPush)) viaSlabs.applyPrepared(b);
        for (const b of batches) copied.applyPrepared(b);
        assert.deepEqual(stateOf(viaSlabs), stateOf(want));
        assert.deepEqual(stateOf(copied), stateOf(want));

        // The engine's accounting holds: live bytes are exactly the values kept.
        let live = 0;
        for (const [, v] of adopted.entries()) live += 4 + v.length;
        assert.equal(adopted.memory().live, live);

        // Afterwards the machines go on alike: retries get the same answers, writes land the same.
        const more = entriesOf([...steps, ...steps.filter((s) => s.kind !== 'register')]).slice(steps.length);
        assert.deepEqual(viaSlabs.applyToEngine(more).map((r) => Buffer.from(r).toString('hex')), want.applyToEngine(more).map((r) => Buffer.from(r).toString('hex')));
        assert.deepEqual(stateOf(viaSlabs), stateOf(want));
      }),
      { seed, numRuns: 150 },
    );
  });

  it('a slab size too small to hold a length is refused', () => {
    assert.throws(() => new PreparedBatchBuilder(8, () => undefined), /too small/);
  });
});
