import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SessionTable } from '../../raft/index.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe('client sessions (dissertation §6.3)', () => {
  it('a retried command is not applied again and gets the original answer', () => {
    const t = new SessionTable();
    const c = t.register(5);
    assert.equal(t.check(c, 1, 0, 10).kind, 'new');
    t.record(c, 1, enc('answer-1'), 10);
    const again = t.check(c, 1, 0, 11);
    assert.equal(again.kind, 'duplicate');
    assert.equal(again.kind === 'duplicate' && dec(again.response), 'answer-1');
    assert.equal(t.check(c, 2, 1, 12).kind, 'new');
  });

  it('answers the client acknowledged are forgotten; a retry of one is reported expired, not re-applied', () => {
    const t = new SessionTable();
    const c = t.register(1);
    t.record(c, 1, enc('a'), 2);
    t.record(c, 2, enc('b'), 3);
    assert.equal(t.check(c, 3, 2, 4).kind, 'new');
    assert.equal(t.check(c, 1, 2, 5).kind, 'expired');
  });

  it('a session id is the index of its registration: never handed out twice, and unknown ids are never treated as new', () => {
    const t = new SessionTable();
    assert.equal(t.check('c1', 1, 0, 1).kind, 'unknown-session', 'an id nobody registered');
    const a = t.register(7);
    const b = t.register(9);
    assert.notEqual(a, b);
    assert.equal(a, '7');
  });

  it('with more clients than the table holds, the evicted session answers "session expired" and its retry is never applied again', () => {
    const t = new SessionTable({ maxSessions: 2 });
    const x = t.register(1);
    t.record(x, 1, enc('x1'), 2); // x's write 1 applied; its answer is lost on the way back
    const y = t.register(3);
    t.record(y, 1, enc('y1'), 4);
    const z = t.register(5); // the least recently active, x, is evicted
    assert.equal(t.size(), 2);
    assert.equal(t.check(x, 1, 0, 6).kind, 'unknown-session', 'x retries write 1: refused, not re-applied');
    assert.equal(t.check(y, 2, 1, 7).kind, 'new');
    assert.equal(t.check(z, 1, 0, 8).kind, 'new');
  });

  it('sessions idle longer than the TTL in log time expire, the same way on every replica', () => {
    const replicas = [new SessionTable({ ttlMs: 1000 }), new SessionTable({ ttlMs: 1000 })];
    for (const t of replicas) {
      t.advance(10_000);
      t.register(1); // '1'
      t.advance(10_500);
      t.register(2); // '2'
      t.record('2', 1, enc('ok'), 3);
      t.advance(11_200); // '1' idle 1200 ms: gone; '2' idle 700 ms: kept
      t.advance(11_100); // a slower leader's clock never moves log time back
    }
    const [a, b] = replicas;
    assert.deepEqual(a.toJSON(), b.toJSON());
    assert.equal(a.has('1'), false);
    assert.equal(a.has('2'), true);
    assert.equal(a.check('1', 1, 0, 4).kind, 'unknown-session');
  });

  it('survives a snapshot round trip, with its order and log time', () => {
    const t = new SessionTable({ maxSessions: 2 });
    t.advance(500);
    const c = t.register(3);
    t.record(c, 7, enc('seven'), 4);
    const d = t.register(5);
    const back = SessionTable.fromJSON(JSON.parse(JSON.stringify(t.toJSON())), { maxSessions: 2 });
    const r = back.check(c, 7, 0, 6);
    assert.equal(r.kind === 'duplicate' && dec(r.response), 'seven');
    back.register(8); // evicts d, now the least recently active
    assert.equal(back.has(d), false);
    assert.equal(back.has(c), true);
    assert.throws(() => SessionTable.fromJSON([['old', 1, 0, []]]), /malformed/);
  });

  it('keeps sessions in order of last activity through any mix of registrations, commands, expiries and snapshots (seeded; RAFTKV_SEED replays)', () => {
    const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
    type Op = { kind: 'register' } | { kind: 'command'; pick: number; seq: number } | { kind: 'time'; by: number } | { kind: 'roundtrip' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.constant({ kind: 'register' as const }),
      fc.record({ kind: fc.constant('command' as const), pick: fc.nat(20), seq: fc.integer({ min: 1, max: 5 }) }),
      fc.record({ kind: fc.constant('time' as const), by: fc.integer({ min: 0, max: 400 }) }),
      fc.constant({ kind: 'roundtrip' as const }),
    );
    const opts = { maxSessions: 4, ttlMs: 1000 };
    fc.assert(
      fc.property(fc.array(op, { minLength: 10, maxLength: 120, size: 'max' }), (ops) => {
        let t = new SessionTable(opts);
        // The model: ids in order of last activity, with their last log time.
        let model: { id: string; time: number }[] = [];
        let time = 0;
        let index = 0;
        const touch = (id: string) => (model = [...model.filter((m) => m.id !== id), { id, time }]);
        for (const o of ops) {
          index++;
          if (o.kind === 'register') {
            touch(t.register(index));
            model = model.slice(Math.max(0, model.length - opts.maxSessions));
          } else if (o.kind === 'command') {
            // Mostly a live session, sometimes one that never was.
            const id = o.pick < model.length * 3 ? model[o.pick % model.length].id : `x${o.pick}`;
            const known = model.some((m) => m.id === id);
            const r = t.check(id, o.seq, 0, index);
            assert.equal(r.kind === 'unknown-session', !known);
            if (r.kind === 'new') t.record(id, o.seq, enc('ok'), index);
            if (known) touch(id);
          } else if (o.kind === 'time') {
            time += o.by;
            t.advance(time);
            model = model.filter((m) => m.time + opts.ttlMs >= time);
          } else t = SessionTable.fromJSON(JSON.parse(JSON.stringify(t.toJSON())), opts);
          const ids = (t.toJSON() as { sessions: [string][] }).sessions.map(([id]) => id);
          assert.deepEqual(ids, model.map((m) => m.id));
        }
      }),
      { seed, numRuns: 300 },
    );
  });

  it('answers duplicates, expired and new commands like a plain model through pipelined, reordered and acknowledged sequence numbers (seeded; RAFTKV_SEED replays)', () => {
    const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
    type Op = { kind: 'command'; seq: number; ack: number } | { kind: 'roundtrip' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 12, arbitrary: fc.record({ kind: fc.constant('command' as const), seq: fc.integer({ min: 1, max: 40 }), ack: fc.integer({ min: 0, max: 40 }) }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'roundtrip' as const }) },
    );
    const opts = { maxResponsesPerSession: 4 };
    fc.assert(
      fc.property(fc.array(op, { minLength: 5, maxLength: 150, size: 'max' }), fc.boolean(), (ops, climbing) => {
        let t = new SessionTable(opts);
        const id = t.register(1);
        // The model: every answer kept, forgotten below the acknowledgement, oldest evicted past the bound.
        const kept = new Map<number, string>();
        let acked = 0;
        let index = 1;
        let next = 1;
        for (const o of ops) {
          index++;
          if (o.kind === 'roundtrip') {
            t = SessionTable.fromJSON(JSON.parse(JSON.stringify(t.toJSON())), opts);
            continue;
          }
          // Mostly a pipelining client (ascending seqs, acks trailing), sometimes anything.
          const seq = climbing && o.seq % 5 !== 0 ? next++ : o.seq;
          const ack = climbing ? Math.max(0, Math.min(seq - 1, next - 1 - (o.ack % 6))) : o.ack;
          if (ack > acked) {
            acked = ack;
            for (const k of [...kept.keys()]) if (k <= acked) kept.delete(k);
          }
          const want = kept.has(seq) ? 'duplicate' : seq <= acked ? 'expired' : 'new';
          const got = t.check(id, seq, ack, index);
          assert.equal(got.kind, want, `seq ${seq} ack ${ack}`);
          if (got.kind === 'duplicate') assert.equal(dec(got.response), kept.get(seq));
          if (got.kind === 'new') {
            t.record(id, seq, enc(`a${index}`), index);
            kept.set(seq, `a${index}`);
            if (kept.size > opts.maxResponsesPerSession) {
              const oldest = Math.min(...kept.keys());
              kept.delete(oldest);
              acked = Math.max(acked, oldest);
            }
          }
        }
      }),
      { seed, numRuns: 300 },
    );
  });
});
