/**
 * What the leader proposes for a joiner (joinSteps): loggers are added marked as loggers, and a
 * logger that joined before the mark existed is marked when it joins again.
 * How the leader takes them (admitJoiner): one at a time, each computed from the configuration
 * as it is then, a newer start of the member superseding an older one still joining.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfChange, ConfChangeType, Membership, applyConfChange, validateConfChange } from '../../raft/index.js';
import { JoinInterruptedError, JoinsInFlight, admitJoiner, joinSteps } from '../../replica/join.js';

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

/**
 * The leader's side of consensus, reduced to what admission sees: one configuration change
 * pending at a time (a second proposer waits for it, as RaftServer.retryConfChange does on
 * 'conf-change-pending'), each validated when proposed and applied when the test lets it.
 */
class Configuration {
  private pending: Promise<void> | undefined;
  private readonly gates: Array<() => void> = [];
  constructor(public m: Membership) {}

  change = async (cc: ConfChange): Promise<void> => {
    while (this.pending) await this.pending;
    const refused = validateConfChange(this.m, cc);
    if (refused) throw new Error(refused);
    this.pending = new Promise<void>((r) => this.gates.push(r)).then(() => {
      this.m = applyConfChange(this.m, cc);
      this.pending = undefined;
    });
    await this.pending;
  };

  /** Let the pending change apply, and everything that follows from it run. */
  async applyNext(): Promise<void> {
    const gate = this.gates.shift();
    assert.ok(gate, 'a change is pending');
    gate();
    await new Promise((r) => setImmediate(r));
  }

  async applyAll(): Promise<void> {
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setImmediate(r));
      if (this.gates.length === 0) return;
      await this.applyNext();
    }
  }
}

const lost: Membership = { voters: ['a', 'b', 'c', 'd'], learners: [], addrs: { ...base.addrs, d: 'h:4' }, incarnations: { d: 'd.1' } };

describe('admitJoiner', () => {
  it('a fresh joiner whose incarnation the configuration names already is not removed again (its join asked again)', async () => {
    const cfg = new Configuration({ ...lost, incarnations: { d: 'd.2' } });
    assert.deepEqual(joinSteps(cfg.m, { id: 'd', addr: 'h:4', voter: true, fresh: true, incarnation: 'd.2' }), []);
    await admitJoiner({ id: 'd', addr: 'h:4', voter: true, fresh: true, incarnation: 'd.2' }, { membership: () => cfg.m, change: cfg.change });
    assert.deepEqual(cfg.m, { ...lost, incarnations: { d: 'd.2' } });
  });

  it('two starts of a member join at once (its disk lost twice): the configuration ends naming the later one, a voter', async () => {
    // Start d.2 joins: its old member is removed, and its AddLearner is proposed. Then d.2 is
    // gone too, and start d.3 joins while that AddLearner is still pending: d.3's steps,
    // computed with no d in the configuration, are to add it, which is refused once d.2's
    // AddLearner has applied. Steps computed once left d a voter under d.2: a start that no
    // longer exists, whose acknowledgments nobody sends.
    const cfg = new Configuration(lost);
    const joins = new JoinsInFlight();
    const join = (incarnation: string) => {
      const j = { id: 'd', addr: 'h:4', voter: true, fresh: true, incarnation };
      const flight = joins.begin(j);
      return admitJoiner(j, { membership: () => cfg.m, change: cfg.change, superseded: flight.superseded }).finally(flight.end);
    };
    const first = join('d.2');
    first.catch(() => undefined);
    await cfg.applyNext(); // d.1 removed
    assert.equal(cfg.m.addrs.d, undefined);
    const second = join('d.3'); // d.2's AddLearner pending
    await cfg.applyAll();
    await second;
    await assert.rejects(first, JoinInterruptedError);
    assert.deepEqual(cfg.m.voters, ['a', 'b', 'c', 'd']);
    assert.deepEqual(cfg.m.incarnations, { d: 'd.3' });
  });

  it('a fresh joiner without an incarnation is removed once, not again after its own re-add', async () => {
    const cfg = new Configuration({ ...lost, incarnations: undefined });
    const done = admitJoiner({ id: 'd', addr: 'h:4', voter: true, fresh: true }, { membership: () => cfg.m, change: cfg.change });
    await cfg.applyAll();
    await done;
    assert.deepEqual(cfg.m.voters, ['a', 'b', 'c', 'd']);
    assert.equal(cfg.m.incarnations, undefined);
  });

  it('a refusal that no other change explains stands', async () => {
    const cfg = new Configuration(base);
    const done = admitJoiner({ id: 'd', addr: 'h:1', voter: false, fresh: true }, { membership: () => cfg.m, change: cfg.change });
    await assert.rejects(done, /address h:1 already belongs to another member/);
    assert.deepEqual(cfg.m, base);
  });
});
