/**
 * The kvstore engine keeps values in append-only slabs with an incremental compaction: checked
 * against a plain Map as the model (seeded; RAFTKV_SEED replays a failure), including values
 * larger than a slab, views handed out before later writes, a capture taken mid-sequence, and
 * the memory bound under overwrites.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MemoryEngine } from '../../replica/engines/memory.js';

const SLAB = 1 << 20;
/** Small slabs in the model test, so new slabs, big values and the sweep happen all the time. */
const SMALL = 4096;

type Op = { kind: 'put'; key: number; size: number; fill: number } | { kind: 'delete'; key: number } | { kind: 'capture' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ kind: fc.constant('put' as const), key: fc.integer({ min: 0, max: 40 }), size: fc.oneof({ weight: 20, arbitrary: fc.integer({ min: 0, max: 1500 }) }, { weight: 1, arbitrary: fc.integer({ min: SMALL - 8, max: SMALL + 5000 }) }), fill: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 40 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'capture' as const }) },
);

const valueOf = (size: number, fill: number) => {
  const v = Buffer.alloc(size, fill);
  if (size > 0) v[size - 1] = (fill + 1) & 0xff; // the last byte differs: a value cut short shows
  return v;
};

describe('kvstore engine (slabs)', () => {
  it('answers as a Map would, through overwrites, deletes, big values, views kept and captures (seeded)', () => {
    const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 600 }), (ops) => {
        const engine = new MemoryEngine(4 << 20, { slabBytes: SMALL });
        const model = new Map<string, Buffer>();
        const handedOut: { view: Uint8Array; want: Buffer }[] = [];
        const captures: { captured: ReturnType<MemoryEngine['capture']>; want: Map<string, Buffer> }[] = [];
        for (const o of ops) {
          if (o.kind === 'put') {
            const v = valueOf(o.size, o.fill);
            engine.put(`k${o.key}`, v);
            v.fill(7); // the engine copied it: changing the caller's buffer changes nothing
            model.set(`k${o.key}`, valueOf(o.size, o.fill));
            handedOut.push({ view: engine.get(`k${o.key}`)!, want: valueOf(o.size, o.fill) });
          } else if (o.kind === 'delete') {
            engine.delete(`k${o.key}`);
            model.delete(`k${o.key}`);
          } else {
            captures.push({ captured: engine.capture(), want: new Map(model) });
          }
        }
        assert.equal(engine.size(), model.size);
        for (const [k, v] of model) assert.deepEqual(Buffer.from(engine.get(k)!), v, `value of ${k}`);
        for (let i = 0; i <= 40; i++) if (!model.has(`k${i}`)) assert.equal(engine.get(`k${i}`), undefined);
        assert.deepEqual(
          [...engine.entries()].map(([k, v]) => [k, Buffer.from(v).toString('hex')]),
          [...model.keys()].sort().map((k) => [k, model.get(k)!.toString('hex')]),
        );
        // A view handed out earlier still reads what it read then.
        for (const h of handedOut) assert.deepEqual(Buffer.from(h.view), h.want);
        // A capture still holds the state of its moment.
        for (const { captured, want } of captures) {
          assert.equal(captured.keys.length, want.size);
          captured.keys.forEach((k, i) => {
            assert.deepEqual(Buffer.from(captured.value(i)), want.get(k), `captured ${k}`);
            assert.equal(captured.valueLength(i), want.get(k)!.length);
          });
        }
        const { allocated, live } = engine.memory();
        let bytes = 0;
        for (const v of model.values()) bytes += 4 + v.length;
        assert.equal(live, bytes, 'live bytes are the values and their headers');
        assert.ok(allocated >= live);
        assert.ok(allocated <= 2 * live + 4 * SMALL + 2 * (SMALL + 5000) + ops.length * 1504, `allocated ${allocated} for ${live} live`);
      }),
      { seed, numRuns: 60 },
    );
  });

  it('overwrites do not grow memory without bound: slabs stay within about twice the live bytes', () => {
    const engine = new MemoryEngine(1 << 20);
    for (let round = 0; round < 200; round++) for (let k = 0; k < 1000; k++) engine.put(`key-${k}`, Buffer.alloc(1000, (round + k) & 0xff));
    for (let k = 0; k < 1000; k++) assert.deepEqual(Buffer.from(engine.get(`key-${k}`)!), Buffer.alloc(1000, (199 + k) & 0xff));
    const { allocated, live } = engine.memory();
    assert.equal(live, 1000 * 1004);
    assert.ok(allocated <= 2 * live + 6 * SLAB, `allocated ${allocated} for ${live} live bytes`);
    for (let k = 0; k < 1000; k++) engine.delete(`key-${k}`);
    assert.ok(engine.memory().allocated <= 6 * SLAB, `after deleting everything: ${engine.memory().allocated}`);
  });

  it('the sweep moves survivors out of sparse slabs; values, old views and an earlier capture stay right', () => {
    const engine = new MemoryEngine(1 << 20, { slabBytes: SMALL });
    const val = (k: string, round: number) => Buffer.alloc(300, (k.length * 7 + round) & 0xff);
    // Each slab gets one value that stays and a dozen that are overwritten at once: without the
    // sweep every slab would stay allocated for its one survivor.
    let captured: ReturnType<MemoryEngine['capture']> | undefined;
    let early: Uint8Array | undefined;
    for (let i = 0; i < 2000; i++) {
      engine.put(`keep-${i}`, val(`keep-${i}`, i));
      for (let j = 0; j < 12; j++) engine.put(`hot-${j}`, val(`hot-${j}`, i));
      if (i === 500) {
        captured = engine.capture();
        early = engine.get('keep-3');
      }
    }
    for (let i = 0; i < 2000; i++) assert.deepEqual(Buffer.from(engine.get(`keep-${i}`)!), val(`keep-${i}`, i), `keep-${i}`);
    for (let j = 0; j < 12; j++) assert.deepEqual(Buffer.from(engine.get(`hot-${j}`)!), val(`hot-${j}`, 1999));
    const { allocated, live } = engine.memory();
    // Without the sweep: about 2000 slabs (8 MB) for 0.6 MB live.
    assert.ok(allocated <= 3 * live + 8 * SMALL, `allocated ${allocated} for ${live} live bytes: the sweep ran`);
    assert.deepEqual(Buffer.from(early!), val('keep-3', 3));
    assert.equal(captured!.keys.length, 501 + 12);
    captured!.keys.forEach((k, i) => assert.deepEqual(Buffer.from(captured!.value(i)), val(k, k.startsWith('hot') ? 500 : Number(k.slice(5))), `captured ${k}`));
  });

  it('a slab whose values all went while it was being filled is dropped when the next one starts', () => {
    const engine = new MemoryEngine(1 << 20, { slabBytes: SMALL });
    for (let i = 0; i < 10_000; i++) {
      engine.put('k', Buffer.alloc(500, i & 0xff));
      engine.delete('k');
    }
    assert.ok(engine.memory().allocated <= SMALL, `allocated ${engine.memory().allocated}`);
  });
});
