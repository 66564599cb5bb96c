/**
 * What the leader proposes for a joiner (joinSteps): loggers are added marked as loggers, and a
 * logger that joined before the mark existed is marked when it joins again.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfChangeType, Membership } from '../../raft/index.js';
import { joinSteps } from '../../replica/join.js';

const base: Membership = { voters: ['a', 'b', 'c'], learners: [], addrs: { a: 'h:1', b: 'h:2', c: 'h:3' } };

describe('joinSteps', () => {
  it('a new replica is added as a non-voter, then promoted', () => {
    assert.deepEqual(joinSteps(base, { id: 'd', addr: 'h:4', voter: true, fresh: true }), [
      { type: ConfChangeType.AddLearner, node: 'd', addr: 'h:4' },
      { type: ConfChangeType.AddVoter, node: 'd' },
    ]);
  });

  it('a new logger is added marked as a logger', () => {
    assert.deepEqual(joinSteps(base, { id: 'log1', addr: 'h:9', voter: false, fresh: true, logger: true }), [{ type: ConfChangeType.AddLearner, node: 'log1', addr: 'h:9', logger: true }]);
  });

  it('a logger already in the configuration unmarked is marked; a marked one needs nothing', () => {
    const old: Membership = { ...base, learners: ['log1'], addrs: { ...base.addrs, log1: 'h:9' } };
    assert.deepEqual(joinSteps(old, { id: 'log1', addr: 'h:9', voter: false, fresh: false, logger: true }), [{ type: ConfChangeType.AddLearner, node: 'log1', logger: true }]);
    assert.deepEqual(joinSteps({ ...old, loggers: ['log1'] }, { id: 'log1', addr: 'h:9', voter: false, fresh: false, logger: true }), []);
  });

  it('a logger that lost its data is removed and added back, marked', () => {
    const m: Membership = { ...base, learners: ['log1'], addrs: { ...base.addrs, log1: 'h:9' }, loggers: ['log1'] };
    assert.deepEqual(joinSteps(m, { id: 'log1', addr: 'h:9', voter: false, fresh: true, logger: true }), [
      { type: ConfChangeType.RemoveNode, node: 'log1' },
      { type: ConfChangeType.AddLearner, node: 'log1', addr: 'h:9', logger: true },
    ]);
  });
});
