/**
 * The driver's bookkeeping of proposals and reads (issue 10), with the core replaced by a
 * scripted stand-in so each case is exact.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EntryType, MemoryStorage, Message, MessageType, RaftDriver, RaftError, RaftNode, Ready, Role, loadOrBootstrap } from '../../raft/index.js';

/** A core that hands out the indexes and terms a test scripts, and never has work. */
function scriptedCore(proposals: { index: number; term: number }[]): RaftNode {
  const core = {
    id: 'me',
    leader: 'me',
    isLeader: () => true,
    log: { applied: 0, snapshotIndex: 0 },
    membership: { voters: ['me'], learners: [], addrs: {} },
    propose: () => proposals.shift()!,
    ready: () => undefined,
    hasReady: () => false,
    tick: () => undefined,
    heldIndex: () => 0,
    clockMs: () => 0,
  };
  return core as unknown as RaftNode;
}

/** A core that hands out `readies`, one per turn, and takes whatever it is told; `more` overrides. */
function readyCore(readies: Ready[], more: Record<string, unknown> = {}): RaftNode {
  return {
    ...(scriptedCore([]) as unknown as object),
    step: () => undefined,
    ready: () => readies.shift(),
    hasReady: () => readies.length > 0,
    accept: () => undefined,
    persisted: () => undefined,
    ...more,
  } as unknown as RaftNode;
}

/** A normal entry of term 1 at `index`. */
const entry = (index: number) => ({ index, term: 1, type: EntryType.Normal, data: new Uint8Array([index]) });

const noTransport = { send: () => undefined };
const noMachine = { apply: () => new Uint8Array(0), snapshot: () => new Uint8Array(0), restore: () => undefined };

describe('RaftDriver', () => {
  it('a leader that reuses an index (it lost that entry) fails the earlier proposal at once as dropped, not after a timeout', async () => {
    const driver = new RaftDriver({
      node: scriptedCore([
        { index: 5, term: 2 },
        { index: 5, term: 4 },
      ]),
      storage: new MemoryStorage(),
      stateMachine: noMachine,
      transport: noTransport,
    });
    driver.start();
    try {
      const first = driver.propose(new Uint8Array([1]), 3_000);
      const outcome = first.then(
        () => 'applied',
        (e: unknown) => (e instanceof RaftError ? e.code : String(e)),
      );
      await new Promise((r) => setImmediate(r));
      const second = driver.propose(new Uint8Array([2]), 3_000);
      second.catch(() => undefined);
      assert.equal(await outcome, 'dropped', 'the entry of term 2 at index 5 is gone: never applied, safe to retry');
    } finally {
      await driver.stop();
    }
  });

  it('ReadIndex contexts differ between two processes of the same node', async () => {
    const contexts: string[] = [];
    for (let boot = 0; boot < 2; boot++) {
      const core = { ...(scriptedCore([]) as unknown as object), readIndex: (ctx: string) => contexts.push(ctx) } as unknown as RaftNode;
      const driver = new RaftDriver({ node: core, storage: new MemoryStorage(), stateMachine: noMachine, transport: noTransport });
      driver.start();
      driver.readBarrier(2000).catch(() => undefined);
      // The request reaches the core on the driver's next turn; wait for it, however busy the machine.
      for (let i = 0; i < 2000 && contexts.length <= boot; i++) await new Promise((r) => setTimeout(r, 1));
      await driver.stop();
    }
    assert.equal(contexts.length, 2);
    assert.notEqual(contexts[0], contexts[1], 'an answer to the first process\'s read can never complete the second\'s');
  });
});

describe('RaftDriver: pipelined persistence', () => {
  it('takes new work while a save is synced, joins what comes meanwhile into the next save, and sends an ack only after its save', async () => {
    const msg = (to: string, type: MessageType) => ({ type, from: 'me', to, term: 1 }) as unknown as Message;
    // What the core hands out, one Ready per turn: the leader's appends go before persisting,
    // a follower's ack (sendBeforePersist false) after.
    const readies: Ready[] = [
      { entries: [entry(1)], committed: [], messages: [msg('b', MessageType.App)], readStates: [], sendBeforePersist: true },
      { entries: [entry(2)], committed: [], messages: [msg('b', MessageType.App)], readStates: [], sendBeforePersist: true },
      { entries: [entry(3)], committed: [], messages: [msg('b', MessageType.AppResp)], readStates: [], sendBeforePersist: false },
    ];
    const persisted: number[] = [];
    const core = readyCore(readies, { persisted: (last: { index: number }) => persisted.push(last.index) });
    const saves: { entries: number[]; release: () => void }[] = [];
    const storage = Object.assign(new MemoryStorage(), {
      save: (rd: { entries: { index: number }[] }) => new Promise<void>((release) => saves.push({ entries: rd.entries.map((x) => x.index), release })),
    });
    const sent: MessageType[] = [];
    const driver = new RaftDriver({ node: core, storage, stateMachine: noMachine, transport: { send: (ms) => sent.push(...ms.map((m) => m.type)) } });
    driver.start();
    try {
      const turns = async (n = 20) => {
        for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
      };
      await turns();
      assert.deepEqual(saves.map((s) => s.entries), [[1]], 'one save in flight; the later Readies wait to join the next');
      assert.deepEqual(sent, [MessageType.App, MessageType.App], 'the second append went out during the first save');
      saves[0].release();
      await turns();
      assert.deepEqual(saves.map((s) => s.entries), [[1], [2, 3]], 'what came meanwhile is one save');
      assert.deepEqual(persisted, [1]);
      assert.ok(!sent.includes(MessageType.AppResp), 'no ack before its entry is durable');
      saves[1].release();
      await turns();
      assert.deepEqual(sent, [MessageType.App, MessageType.App, MessageType.AppResp]);
      assert.deepEqual(persisted, [1, 2, 3], 'each Ready is reported durable, in order');
    } finally {
      for (const s of saves) s.release();
      await driver.stop();
    }
  });
});

describe('RaftDriver: where a save syncs', () => {
  it('a member that is not leading lets its saves sync on the calling thread; a leader does not', async () => {
    let leading = false;
    const readies: Ready[] = [];
    const core = readyCore(readies, { isLeader: () => leading });
    const asked: (boolean | undefined)[] = [];
    const storage = Object.assign(new MemoryStorage(), {
      save: async (rd: { syncOnCaller?: boolean }) => {
        asked.push(rd.syncOnCaller);
        return true;
      },
    });
    const driver = new RaftDriver({ node: core, storage, stateMachine: noMachine, transport: noTransport });
    driver.start();
    try {
      const saved = async (n: number) => {
        for (let i = 0; i < 200 && asked.length < n; i++) await new Promise((r) => setImmediate(r));
      };
      readies.push({ entries: [entry(1)], committed: [], messages: [], readStates: [], sendBeforePersist: false });
      const poke = () => driver.step({ type: MessageType.Heartbeat, from: 'b', to: 'me', term: 1 } as unknown as Message);
      poke();
      await saved(1);
      leading = true;
      readies.push({ entries: [entry(2)], committed: [], messages: [], readStates: [], sendBeforePersist: true });
      poke();
      await saved(2);
      assert.deepEqual(asked, [true, false], 'a follower waits only for its save; a leader keeps taking acks and requests meanwhile');
    } finally {
      await driver.stop();
    }
  });

  it('a leader serving one client syncs on the calling thread once its saves come one entry at a time, after sending its appends; not under load', async () => {
    const app = { type: MessageType.App, from: 'me', to: 'b', term: 1 } as unknown as Message;
    const readies: Ready[] = [];
    const log = { applied: 0, snapshotIndex: 0, committed: 0 };
    const core = readyCore(readies, { log });
    const events: string[] = [];
    let queued = 0;
    const transport = {
      // As PeerTransport: what is sent goes out at the end of the loop turn, or when flushed.
      send: (ms: Message[]) => {
        queued += ms.length;
        setImmediate(() => (queued = 0));
      },
      flush: () => {
        if (queued > 0) events.push(`flush ${queued}`);
        queued = 0;
      },
    };
    let release: (() => void) | undefined;
    const storage = Object.assign(new MemoryStorage(), {
      save: async (rd: { entries: { index: number }[]; syncOnCaller?: boolean }) => {
        events.push(`save ${rd.entries.map((x) => x.index).join(',')} ${rd.syncOnCaller ? 'on caller' : 'in pool'}`);
        if (release === undefined && rd.entries.length === 2) await new Promise<void>((r) => (release = r));
        return true;
      },
    });
    const driver = new RaftDriver({ node: core, storage, stateMachine: noMachine, transport });
    driver.start();
    const poke = () => driver.step({ type: MessageType.Heartbeat, from: 'b', to: 'me', term: 1 } as unknown as Message);
    const saved = async (n: number) => {
      for (let i = 0; i < 200 && events.filter((x) => x.startsWith('save')).length < n; i++) await new Promise((r) => setImmediate(r));
    };
    try {
      // One client: each write is committed before the next comes.
      for (let i = 1; i <= 4; i++) {
        readies.push({ entries: [entry(i)], committed: [], messages: [app, app], readStates: [], sendBeforePersist: true });
        poke();
        await saved(i);
        log.committed = i;
      }
      assert.deepEqual(events, ['save 1 in pool', 'save 2 in pool', 'flush 2', 'save 3 on caller', 'flush 2', 'save 4 on caller'], 'from the third lone save on, the appends go out first, then the leader syncs itself');
      // Load: a save of two entries, and one that begins while it is in flight.
      events.length = 0;
      readies.push({ entries: [entry(5), entry(6)], committed: [], messages: [app], readStates: [], sendBeforePersist: true });
      poke();
      await saved(1);
      readies.push({ entries: [entry(7)], committed: [], messages: [app], readStates: [], sendBeforePersist: true });
      poke();
      for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
      release!();
      await saved(2);
      log.committed = 7;
      readies.push({ entries: [entry(8)], committed: [], messages: [app], readStates: [], sendBeforePersist: true });
      poke();
      await saved(3);
      assert.deepEqual(events, ['save 5,6 in pool', 'save 7 in pool', 'save 8 in pool'], 'a leader with requests joining its saves keeps taking them while it syncs');
    } finally {
      await driver.stop();
    }
  });
});

describe('RaftDriver: when to snapshot', () => {
  it('members whose thresholds are all the memory cap (a large state) snapshot a third of it apart, not at the same index every time', async () => {
    const ids = ['m1', 'm2', 'm3'];
    const capBytes = 2 << 20;
    const entryBytes = 64 << 10;
    // A state of 3 MB: over the cap divided by the largest spread (1.5), so every member's
    // bytes threshold is the cap; the count rule is out of reach.
    const stateBytes = 3 << 20;
    const snapshots = new Map<string, number[]>(ids.map((id) => [id, []]));
    const drivers = new Map<string, RaftDriver>();
    for (const id of ids) {
      const storage = new MemoryStorage();
      const initial = await loadOrBootstrap(storage, ids.map((i) => ({ id: i, addr: i })));
      const node = new RaftNode({ id, electionTicks: 4, heartbeatTicks: 1 }, initial);
      drivers.set(id, new RaftDriver({
        node,
        storage,
        tickMs: 5,
        snapshotEvery: 1_000_000,
        snapshotLogBytes: capBytes,
        keepEntries: 1,
        stateMachine: { apply: () => new Uint8Array(0), snapshot: () => new Uint8Array(stateBytes), restore: () => undefined },
        transport: { send: (msgs: Message[]) => { for (const m of msgs) setImmediate(() => drivers.get(m.to)?.step(m)); } },
        onSnapshot: (index) => snapshots.get(id)!.push(index),
      }));
    }
    for (const d of drivers.values()) d.start();
    try {
      let leader: RaftDriver | undefined;
      for (let i = 0; i < 2000 && !leader; i++) {
        leader = [...drivers.values()].find((d) => d.node.isLeader());
        if (!leader) await new Promise((r) => setTimeout(r, 5));
      }
      assert.ok(leader, 'a leader is elected');
      const entry = new Uint8Array(entryBytes);
      const perCap = capBytes / entryBytes;
      const base = leader.node.log.lastIndex(); // the configuration and the leader's empty entry
      // One at a time, so each member's snapshot decision sees every entry's index.
      for (let i = 0; i < 4 * perCap && ids.some((id) => snapshots.get(id)!.length < 3); i++) await leader.propose(entry);
      for (let i = 0; i < 200 && ids.some((id) => snapshots.get(id)!.length < 3); i++) await new Promise((r) => setTimeout(r, 5));
      const taken = ids.map((id) => snapshots.get(id)!.slice(0, 3));
      for (const [i, s] of taken.entries()) assert.equal(s.length, 3, `${ids[i]} took three snapshots (${s.join(', ')})`);
      // Each member's first comes at (its rank + 1) / 3 of the cap, the rest every cap after it.
      for (let i = 0; i < ids.length; i++) {
        const [first, second, third] = taken[i];
        const want = base + ((i + 1) * perCap) / ids.length;
        assert.ok(Math.abs(first - want) <= 4, `${ids[i]}'s first snapshot at ${first}, about ${want} entries in (snapshots: ${taken.map((s) => s.join('/')).join(' ')})`);
        for (const gap of [second - first, third - second]) assert.ok(Math.abs(gap - perCap) <= 3, `${ids[i]} snapshotted again after ${gap} entries, not ${perCap}`);
      }
      const apart = Math.min(...taken[1].map((s, k) => Math.abs(s - taken[0][k])), ...taken[2].map((s, k) => Math.abs(s - taken[1][k])));
      assert.ok(apart >= perCap / 3 - 5, `members snapshotted within ${apart} entries of each other (snapshots: ${taken.map((s) => s.join('/')).join(' ')})`);
    } finally {
      for (const d of drivers.values()) await d.stop();
    }
  });

  it('once the state is large, waits for as much log as the snapshot is big: a snapshot writes no more than the log did', async () => {
    const storage = new MemoryStorage();
    const initial = await loadOrBootstrap(storage, [{ id: 'solo', addr: 'solo' }]);
    const node = new RaftNode({ id: 'solo', electionTicks: 2, heartbeatTicks: 1 }, initial);
    const stateBytes = 9 << 20; // over the 8 MB above which the log's size counts
    const entryBytes = 64 << 10;
    const snapshots: number[] = [];
    const driver = new RaftDriver({
      node,
      storage,
      tickMs: 5,
      snapshotEvery: 10,
      keepEntries: 1,
      stateMachine: { apply: () => new Uint8Array(0), snapshot: () => new Uint8Array(stateBytes), restore: () => undefined },
      transport: noTransport,
      onSnapshot: (index) => snapshots.push(index),
    });
    driver.start();
    try {
      for (let i = 0; i < 2000 && !node.isLeader(); i++) await new Promise((r) => setTimeout(r, 5));
      assert.ok(node.isLeader(), 'a single voter elects itself');
      const entry = new Uint8Array(entryBytes);
      // One at a time, so the snapshot decision sees every entry's index.
      for (let i = 0; i < 600 && snapshots.length < 3; i++) await driver.propose(entry);
      assert.ok(snapshots.length >= 3, `three snapshots over 600 entries of 64 KB (took ${snapshots.length})`);
      const gaps = snapshots.slice(1).map((s, i) => s - snapshots[i]);
      // Each member waits its own multiple (1 to 1.5) of the state's size, so members spread out.
      const least = Math.ceil(stateBytes / entryBytes);
      for (const gap of gaps) {
        assert.ok(gap >= least, `a 9 MB snapshot came after ${gap} entries of 64 KB: less log than it writes (${least})`);
        assert.ok(gap <= Math.ceil(1.5 * least) + 1, `a 9 MB snapshot waited ${gap} entries of 64 KB, over 1.5 times its size`);
      }
    } finally {
      await driver.stop();
    }
  });
});

describe('RaftDriver: lanes', () => {
  it('a Ready with work for one lane only still keeps order: sends before persisting go at once, applies wait for their save, a role change is told after the save before it', async () => {
    const app = { type: MessageType.App, from: 'me', to: 'b', term: 1 } as unknown as Message;
    // Each Ready has work for one lane (or none): the driver queues no step for the other.
    const readies: Ready[] = [
      { entries: [entry(1)], committed: [], messages: [app], readStates: [], sendBeforePersist: true },
      { entries: [], committed: [entry(1)], messages: [], readStates: [], sendBeforePersist: true },
      { entries: [], committed: [], messages: [], readStates: [], sendBeforePersist: true, softState: { leader: 'b', role: Role.Follower, term: 2 } },
      { entries: [], committed: [], messages: [app], readStates: [], sendBeforePersist: true },
    ];
    const core = readyCore(readies, { membershipAt: () => ({ voters: ['me', 'b'], learners: [] }) });
    const saves: (() => void)[] = [];
    const storage = Object.assign(new MemoryStorage(), {
      save: () => new Promise<void>((release) => saves.push(release)),
    });
    const events: string[] = [];
    const machine = { ...noMachine, apply: (x: { index: number }) => (events.push(`apply ${x.index}`), new Uint8Array(0)) };
    const driver = new RaftDriver({
      node: core,
      storage,
      stateMachine: machine,
      transport: { send: (ms) => events.push(...ms.map((m) => `send ${MessageType[m.type]}`)) },
      onSoftState: (s) => events.push(`role ${s.role}`),
    });
    driver.start();
    try {
      const turns = async (n = 20) => {
        for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
      };
      await turns();
      assert.equal(saves.length, 1);
      assert.deepEqual(events, ['send App', 'send App'], 'both appends went out while the save was in flight; nothing applied, no role told');
      saves[0]();
      await turns();
      // The lanes are independent of each other: each came once, after the save.
      assert.deepEqual(events.slice(0, 2), ['send App', 'send App']);
      assert.deepEqual(events.slice(2).sort(), ['apply 1', `role ${Role.Follower}`], 'the role change after the save it followed; the entry applied once durable');
    } finally {
      for (const s of saves) s();
      await driver.stop();
    }
  });
});

describe('RaftDriver: thrifty replication', () => {
  it('checks an entry held back from a voter after hedgeMs on the core clock, and hedges only if it is still not committed', async () => {
    // Timers under the test's hand: a timeout is recorded, and fired when the test says.
    const timeouts: { fn: () => void; ms: number }[] = [];
    const timers = {
      setTimeout: (fn: () => void, ms: number) => timeouts.push({ fn, ms }),
      clearTimeout: () => undefined,
      setInterval: () => 0,
      clearInterval: () => undefined,
      setImmediate: (fn: () => void) => void setImmediate(fn),
    };
    let clock = 100;
    const log = { applied: 0, snapshotIndex: 0, committed: 5 };
    let held = 7;
    const hedges: number[] = [];
    const node = readyCore([], { log, clockMs: () => clock, heldIndex: () => held, hedge: (i: number) => hedges.push(i) });
    const driver = new RaftDriver({ node, storage: new MemoryStorage(), stateMachine: noMachine, transport: noTransport, timers, hedgeMs: 2 });
    driver.start();
    const turn = () => new Promise<void>((r) => setImmediate(r));
    await turn();
    assert.equal(timeouts.length, 1, 'entries 6-7 are held and not committed: one timer');
    assert.equal(timeouts[0].ms, 2);
    // The timer fires early by the core's clock (timers count whole, truncated milliseconds).
    clock = 101.5;
    timeouts.shift()!.fn();
    assert.equal(timeouts.length, 1, 'not due yet: armed again for the rest');
    assert.equal(timeouts[0].ms, 1);
    await turn();
    assert.deepEqual(hedges, []);
    clock = 102.2;
    timeouts.shift()!.fn();
    await turn();
    assert.deepEqual(hedges, [7], 'due and still not committed: hedge');
    // Committed by the time the next timer fires: no hedge, and a timer for what is held since.
    driver.step({} as never);
    await turn();
    assert.equal(timeouts.length, 1);
    log.committed = 7;
    held = 9;
    timeouts.shift()!.fn();
    await turn();
    assert.deepEqual(hedges, [7]);
    assert.equal(timeouts.length, 1, 'entries 8-9 are checked by a timer of their own');
    held = 0;
    log.committed = 9;
    timeouts.shift()!.fn();
    await turn();
    assert.equal(timeouts.length, 0, 'nothing held: no timer');
    await driver.stop();
  });
});
