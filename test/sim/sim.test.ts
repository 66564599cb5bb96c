import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runSchedule } from './cluster.js';
import { checkHistory, Operation } from './linearizability.js';

describe('deterministic simulation', () => {
  it('the same seed replays the exact same schedule', () => {
    const a = runSchedule({ seed: 4242, trace: true });
    const b = runSchedule({ seed: 4242, trace: true });
    assert.deepEqual(a.stats, b.stats);
    assert.deepEqual(a.trace, b.trace);
    const c = runSchedule({ seed: 4243 });
    assert.notDeepEqual(a.stats, c.stats);
  });

  it('random schedules with faults keep every safety property (seed printed on failure)', () => {
    const from = Number(process.env.SIM_FROM ?? 90_000);
    for (let seed = from; seed < from + 40; seed++) {
      const r = runSchedule({ seed });
      assert.deepEqual(r.violations, [], `seed ${seed} (replay: npm run sim -- --seed ${seed} --trace)`);
      assert.ok(r.stats.opsAcked > 0, `seed ${seed} made progress`);
    }
  });
});

describe('linearizability checker', () => {
  const op = (id: number, kind: 'put' | 'get', value: string | null, call: number, ret: number, key = 'k'): Operation => ({
    id,
    client: `c${id}`,
    key,
    kind,
    value,
    call,
    ret,
  });

  it('accepts a history with concurrent operations that has a valid order', () => {
    const h = [op(1, 'put', 'a', 0, 5), op(2, 'get', 'a', 1, 3), op(3, 'get', null, 2, 4)];
    assert.equal(checkHistory(h).ok, true);
  });

  it('rejects a stale read', () => {
    const h = [op(1, 'put', 'a', 0, 1), op(2, 'put', 'b', 2, 3), op(3, 'get', 'a', 4, 5)];
    const r = checkHistory(h);
    assert.equal(r.ok, false);
  });

  it('rejects a lost acknowledged write', () => {
    const h = [op(1, 'put', 'a', 0, 1), op(2, 'get', null, 2, 3)];
    assert.equal(checkHistory(h).ok, false);
  });

  it('an indeterminate write may or may not have happened', () => {
    const h1 = [op(1, 'put', 'a', 0, Infinity), op(2, 'get', 'a', 2, 3), op(3, 'get', 'a', 4, 5)];
    const h2 = [op(1, 'put', 'a', 0, Infinity), op(2, 'get', null, 2, 3)];
    assert.equal(checkHistory(h1).ok, true);
    assert.equal(checkHistory(h2).ok, true);
    // ...but once observed it cannot un-happen.
    const h3 = [op(1, 'put', 'a', 0, Infinity), op(2, 'get', 'a', 2, 3), op(3, 'get', null, 4, 5)];
    assert.equal(checkHistory(h3).ok, false);
  });

  it('keys are independent', () => {
    const h = [op(1, 'put', 'a', 0, 1, 'x'), op(2, 'get', null, 2, 3, 'y'), op(3, 'get', 'a', 4, 5, 'x')];
    assert.equal(checkHistory(h).ok, true);
  });
});
