/**
 * What the leader proposes for a joiner (joinSteps): loggers are added marked as loggers, and a
 * logger that joined before the mark existed is marked when it joins again.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfChange, ConfChangeType, Membership, applyConfChange, validateConfChange } from '../../raft/index.js';
import { joinSteps } from '../../replica/join.js';

/** The membership after taking `steps` one by one, each of which the leader must accept. */
function taken(m: Membership, steps: ConfChange[]): Membership {
  for (const cc of steps) {
    const refused = validateConfChange(m, cc);
    assert.equal(refused, undefined, `step ${JSON.stringify(cc)} refused`);
    m = applyConfChange(m, cc);
  }
  return m;
}

const base: Membership = { voters: ['a', 'b', 'c'], learners: [], addrs: { a: 'h:1', b: 'h:2', c: 'h:3' } };

describe('joinSteps', () => {
  it('a new replica is added as a non-voter, then promoted', () => {
    const steps = joinSteps(base, { id: 'd', addr: 'h:4', voter: true, fresh: true });
    assert.deepEqual(steps, [
      { type: ConfChangeType.AddLearner, node: 'd', addr: 'h:4' },
      { type: ConfChangeType.AddVoter, node: 'd' },
    ]);
    assert.deepEqual(taken(base, steps).voters, ['a', 'b', 'c', 'd']);
  });

  it('a new logger is added marked as a logger', () => {
    const steps = joinSteps(base, { id: 'log1', addr: 'h:9', voter: false, fresh: true, logger: true });
    assert.deepEqual(steps, [{ type: ConfChangeType.AddLearner, node: 'log1', addr: 'h:9', logger: true }]);
    assert.deepEqual(taken(base, steps).loggers, ['log1']);
  });

  it('a logger already in the configuration unmarked is marked; a marked one needs nothing', () => {
    const old: Membership = { ...base, learners: ['log1'], addrs: { ...base.addrs, log1: 'h:9' } };
    const steps = joinSteps(old, { id: 'log1', addr: 'h:9', voter: false, fresh: false, logger: true });
    assert.deepEqual(steps, [{ type: ConfChangeType.AddLearner, node: 'log1', logger: true }]);
    const after = taken(old, steps);
    assert.deepEqual(after.loggers, ['log1']);
    assert.equal(after.addrs.log1, 'h:9');
    assert.deepEqual(joinSteps({ ...old, loggers: ['log1'] }, { id: 'log1', addr: 'h:9', voter: false, fresh: false, logger: true }), []);
  });

  it('a logger that lost its data is removed and added back, marked', () => {
    const m: Membership = { ...base, learners: ['log1'], addrs: { ...base.addrs, log1: 'h:9' }, loggers: ['log1'] };
    const steps = joinSteps(m, { id: 'log1', addr: 'h:9', voter: false, fresh: true, logger: true });
    assert.deepEqual(steps, [
      { type: ConfChangeType.RemoveNode, node: 'log1' },
      { type: ConfChangeType.AddLearner, node: 'log1', addr: 'h:9', logger: true },
    ]);
    assert.deepEqual(taken(m, steps).loggers, ['log1']);
  });
});
