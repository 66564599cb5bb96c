/**
 * The key-value state machine's snapshots: a background snapshot (captureSnapshot) holds the
 * state at the moment it was taken however many entries are applied while it is serialized in
 * slices, and reads back, through restore, to the same keys, values and sessions; the
 * synchronous snapshot() writes the same content.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CapturedSnapshot } from '../../raft/index.js';
import { EntryType } from '../../raft/index.js';
import { MemoryEngine } from '../../replica/engines/memory.js';
import { stateDigest } from '../../replica/engines/engine.js';
import { KvStateMachine } from '../../replica/kv-machine.js';
import { Op, encodeKvCommand } from '../../replica/proto.js';

let index = 0;
const set = (key: string, value: string, client = '', seq = 0) => ({
  index: ++index,
  term: 1,
  type: EntryType.Normal,
  data: encodeKvCommand({ op: Op.SET, key, value: Buffer.from(value), client, seq, acked: 0, time: 1000 + index }),
});
const register = () => ({ index: ++index, term: 1, type: EntryType.Normal, data: encodeKvCommand({ op: Op.REGISTER, key: '', value: new Uint8Array(0), client: '', seq: 0, acked: 0, time: 1000 + index }) });

function restored(data: Uint8Array, at: number): KvStateMachine {
  const sm = new KvStateMachine(new MemoryEngine(1 << 20), { nodeId: 'r' });
  sm.restoreState({ meta: { index: at, term: 1, membership: { voters: ['a'], learners: [], addrs: {} } }, data });
  return sm;
}

/** Serialize a captured snapshot as the driver does: its size first, then its chunks. */
async function serialize(captured: CapturedSnapshot, pause: () => Promise<void>): Promise<Buffer> {
  const size = await captured.size(pause);
  const chunks: Uint8Array[] = [];
  for await (const c of captured.chunks(pause)) chunks.push(Buffer.from(c));
  const data = Buffer.concat(chunks);
  assert.equal(data.length, size, 'the chunks add up to the size announced');
  return data;
}

describe('key-value snapshots', () => {
  it('a background snapshot holds the state it was taken at, while writes go on between its slices', async () => {
    const sm = new KvStateMachine(new MemoryEngine(1 << 20), { nodeId: 'a', snapshotSlice: 3 });
    sm.applyToEngine([register()]);
    const client = '1';
    sm.applyToEngine(Array.from({ length: 50 }, (_, i) => set(`k${i}`, `v${i}`, client, i + 1)));
    const at = sm.appliedIndex;
    const expected = stateDigest(sm.engine);
    const expectedSessions = JSON.stringify(sm.sessions.toJSON());
    const captured = sm.captureSnapshot();
    let pauses = 0;
    const data = await serialize(captured, async () => {
      pauses++;
      // Overwrite, add and delete keys while the snapshot is being written.
      sm.applyToEngine([set(`k${pauses % 50}`, `changed-${pauses}`, client, 100 + pauses), set(`new${pauses}`, 'x')]);
    });
    assert.ok(pauses >= 16, `serialized in slices (${pauses} pauses)`);
    const back = restored(data, at);
    assert.equal(stateDigest(back.engine), expected);
    assert.equal(JSON.stringify(back.sessions.toJSON()), expectedSessions);
    assert.notEqual(stateDigest(sm.engine), expected, 'the live state did move on');
    // The synchronous snapshot writes the same content as the background one.
    const now = restored(sm.snapshot(), sm.appliedIndex);
    assert.equal(stateDigest(now.engine), stateDigest(sm.engine));
  });

  it('keys of any UTF-8 length and empty values survive the round trip', async () => {
    const sm = new KvStateMachine(new MemoryEngine(1 << 20), { nodeId: 'a', snapshotSlice: 1 });
    const keys = ['a', 'ключ', '鍵🔑', 'x'.repeat(1024), 'ü'.repeat(300)];
    sm.applyToEngine(keys.map((k, i) => set(k, i === 0 ? '' : `value of ${k.slice(0, 5)}`)));
    const data = await serialize(sm.captureSnapshot(), async () => undefined);
    const back = restored(data, sm.appliedIndex);
    assert.equal(stateDigest(back.engine), stateDigest(sm.engine));
    assert.equal(back.engine.size(), keys.length);
  });

  it('a state larger than a chunk, with a value larger than a chunk, is handed over in pieces that add up to it', async () => {
    const sm = new KvStateMachine(new MemoryEngine(8 << 20), { nodeId: 'a', snapshotSlice: 1000 });
    sm.applyToEngine([set('big', 'b'.repeat(2 << 20))]);
    sm.applyToEngine(Array.from({ length: 10_000 }, (_, i) => set(`key-${i}`, `${i}`.repeat(200).slice(0, 1000))));
    const captured = sm.captureSnapshot();
    const size = await captured.size(async () => undefined);
    let pieces = 0;
    for await (const c of captured.chunks(async () => undefined)) {
      pieces++;
      assert.ok(c.length <= 2 << 20, `a piece of ${c.length} bytes`);
    }
    assert.ok(size > 9e6 && pieces >= 8, `${size} bytes in ${pieces} pieces`);
    const back = restored(await serialize(sm.captureSnapshot(), async () => undefined), sm.appliedIndex);
    assert.equal(stateDigest(back.engine), stateDigest(sm.engine));
    assert.deepEqual(Buffer.from(sm.snapshot()), await serialize(sm.captureSnapshot(), async () => undefined), 'the synchronous snapshot is the same bytes');
  });
  it('chunks handed over for reuse come in one buffer, each overwritten by the next, and read back the same', async () => {
    const sm = new KvStateMachine(new MemoryEngine(1 << 20), { nodeId: 'a', snapshotSlice: 1000 });
    // 40 values of 300 KB: a dozen 1 MB chunks, and values that do not fit the rest of one.
    const big = (i: number) => String.fromCharCode(97 + (i % 26)).repeat(300_000);
    sm.applyToEngine(Array.from({ length: 40 }, (_, i) => set(`big${i}`, big(i))));
    const pause = async () => undefined;
    const plain = await serialize(sm.captureSnapshot(), pause);
    const captured = sm.captureSnapshot();
    const copies: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const c of captured.chunks(pause, true)) {
      copies.push(Buffer.from(c));
      if (c.length >= 512 << 10) buffers.add(c.buffer);
    }
    assert.ok(copies.length >= 3, `${copies.length} chunks`);
    assert.equal(buffers.size, 1, 'every full chunk was written into the same buffer');
    assert.ok(Buffer.concat(copies).equals(plain), 'the same bytes as chunks that are not reused');
  });
});
