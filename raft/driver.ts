/**
 * The I/O half of a Raft node: runs the Ready loop against real storage, a state machine and a
 * transport, on a timer. Writes are pipelined (RaftNode.accept/persisted): the node takes input
 * while a save is synced, and the Readies made meanwhile join the next save, so each fsync
 * covers everything that arrived during the previous one (group commit without a tuning knob).
 */
import { randomBytes } from 'node:crypto';
import { RaftError } from './errors.js';
import { RaftNode, Ready } from './node.js';
import type { Storage } from './storage/storage.js';
import { ConfChange, Entry, EntryType, HardState, HeldSnapshot, Membership, Message, NodeId, Role, Snapshot, SoftState } from './types.js';

export interface StateMachine {
  /** Apply a committed command; the result goes back to whoever proposed it. */
  apply(entry: Entry): Uint8Array | Promise<Uint8Array>;
  /**
   * Optional: apply a whole batch of committed entries at once (one engine transaction);
   * returns one result per entry, in order (empty for non-command entries).
   */
  applyBatch?(entries: Entry[]): Uint8Array[] | Promise<Uint8Array[]>;
  /** Serialize the state as of the last applied entry. */
  snapshot(): Uint8Array | Promise<Uint8Array>;
  /**
   * Optional: take the state as of the last applied entry now (before returning, cheaply) and
   * serialize it later, in slices, calling `pause()` between them; entries applied meanwhile
   * must not change what it produces. With it, a snapshot of a large state does not stop
   * the node for the whole serialization (hundreds of ms for 100 MB: the tail latency of
   * every write in flight).
   */
  captureSnapshot?(): CapturedSnapshot;
  /** Replace the state with a snapshot's. */
  restore(snapshot: Snapshot): void | Promise<void>;
}

/** A state taken at one index, serialized when asked (see StateMachine.captureSnapshot). */
export interface CapturedSnapshot {
  /** The serialized size in bytes, worked out with `pause()` between slices of the work. */
  size(pause: () => Promise<void>): Promise<number>;
  /**
   * The serialized state, a few MB at a time, adding up to `size`; pauses likewise. With
   * `reuse`, a chunk may be overwritten once the next one is asked for (for a consumer done
   * with each chunk by then, as Storage.saveSnapshotStream is): no fresh 4 MB per chunk.
   */
  chunks(pause: () => Promise<void>, reuse?: boolean): AsyncIterable<Uint8Array>;
}

export interface Transport {
  send(messages: Message[]): void;
  /** Write out now what `send` queued (before this thread blocks in a sync). */
  flush?(): void;
}

/** The timer functions the driver uses: the process's, or the simulator's virtual ones. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  setImmediate(fn: () => void): void;
}

export const processTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => {
    const t = setInterval(fn, ms);
    t.unref();
    return t;
  },
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  setImmediate: (fn) => void setImmediate(fn),
};

export interface DriverOptions {
  node: RaftNode;
  storage: Storage;
  stateMachine: StateMachine;
  transport: Transport;
  /** Milliseconds per Raft tick (default 100; electionTicks ticks make an election timeout). */
  tickMs?: number;
  /**
   * Take a snapshot after this many applied entries (default 100,000, etcd's snapshot count) or
   * 64 MB of them, whichever comes first, and, once the state is large (snapshots over 8 MB),
   * not before the entries since the last one add up to its size or 64 MB: a snapshot writes
   * the whole state, so snapshots of states up to 64 MB write no more than the log did (100 MB
   * every 10,000 writes of 1 KB was a 280 ms stall and much of the p99 at 128 clients; at half
   * the state, the snapshots' disk writes were still most of the p99 at 8 clients: 363 of 468
   * requests over it overlapped one). With 10,000 as the count, a small state at one client
   * was snapshotted every 10 s: 6% of the cluster's CPU and 0.5 ms of the p99.
   */
  snapshotEvery?: number;
  /**
   * The most log between two snapshots, whatever snapshotEvery and the state's size say
   * (default 64 MB): a restart reads the log since the last snapshot into memory to replay it
   * (and without RaftConfig.entryReader the core holds it in memory all along).
   */
  snapshotLogBytes?: number;
  /**
   * The state machine is rebuilt from the snapshot and the log at every start (it keeps no
   * applied index of its own): committed entries are then applied as soon as they are committed,
   * before this node's own copy is durable (they are durable on a majority already), and a
   * leader answers without waiting for its own fdatasync. Snapshots still wait until the log
   * below them is durable here. Default false.
   */
  volatileStateMachine?: boolean;
  /** Entries kept behind a snapshot for slightly lagging followers (default 1,000). */
  keepEntries?: number;
  onSoftState?: (s: SoftState) => void;
  onMembership?: (m: Membership) => void;
  /** A snapshot this node took is durable (its log was compacted behind it). */
  onSnapshot?: (index: number) => void;
  /** The node cannot go on (storage failure): it has stopped. */
  onFatal?: (e: Error) => void;
  /**
   * Prefix of this process's ReadIndex contexts, unique per start so an answer meant for an
   * earlier process can never complete a read of this one (default: random).
   */
  readContextPrefix?: string;
  /** Timers (default: the process's). */
  timers?: Timers;
  /**
   * Thrifty replication (RaftConfig.thrifty): milliseconds an entry held back from some voter
   * may wait to commit before the held voters get it too (default 1). Longer spares more of
   * the held voters' work when an eager voter is a little slow, and adds that much to the
   * latency of a write whose eager voter stalls.
   */
  hedgeMs?: number;
}

export interface Applied {
  index: number;
  term: number;
  result: Uint8Array;
}

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
  timer?: unknown;
}

/**
 * Above this, a snapshot waits for its own size in log since the last one (see snapshotEvery),
 * but never for more than the cap (DriverOptions.snapshotLogBytes): a restart replays the log since
 * the last snapshot from memory, and a replica's memory should stay near the size of its state.
 */
const LARGE_SNAPSHOT_BYTES = 8 << 20;
/** See leaderMaySyncOnCaller. */
const LONE_SAVES_BEFORE_CALLER_SYNC = 3;
/** The default of DriverOptions.snapshotLogBytes. */
const MAX_LOG_BYTES_BEFORE_SNAPSHOT = 64 << 20;

interface SaveGroup {
  entries: Entry[];
  /** Lowest index among its entries (Infinity: none). */
  first: number;
  /** Begun while no other save was in flight. */
  quiet: boolean;
  hardState?: HardState;
  done: Promise<void>;
}

export class DriverStoppedError extends Error {
  constructor(why: string) {
    super(`raft node stopped: ${why}`);
    this.name = 'DriverStoppedError';
  }
}

export class RaftDriver {
  readonly node: RaftNode;
  private readonly storage: Storage;
  private readonly sm: StateMachine;
  private readonly transport: Transport;
  private readonly tickMs: number;
  private readonly snapshotEvery: number;
  /** See DriverOptions.snapshotLogBytes. */
  private readonly maxLogBytes: number;
  /** This member's own multiple (1 to 1.5) of the snapshot thresholds (see spreadOf). */
  private readonly snapshotSpread: number;
  private readonly keepEntries: number;
  private readonly opts: DriverOptions;

  private inputs: (() => void)[] = [];
  /** A snapshot Ready is being processed, or a snapshot captured: no new Ready until it is done. */
  private busy = false;
  /** The after-persist work of accepted Readies (see pump), and how many steps are pending. */
  private sendLane: Promise<void> = Promise.resolve();
  private applyLane: Promise<void> = Promise.resolve();
  private inPipeline = 0;
  /** The save in flight (or the last one), the one that Readies coming now join, and those not done. */
  private saving: Promise<void> = Promise.resolve();
  private nextSave: SaveGroup | undefined;
  private saves: SaveGroup[] = [];
  /** How many of the last leader saves in a row held one entry and began with none in flight. */
  private loneSaves = 0;
  private hedgeTimer: unknown;
  private readonly hedgeMs: number;
  private scheduled = false;
  private timer: unknown;
  private readonly timers: Timers;
  private stopped: Error | undefined;
  private fatalError: Error | undefined;
  private idle: (() => void)[] = [];

  private proposals = new Map<number, Waiter<Applied> & { term: number }>();
  private readWaiters = new Map<string, Waiter<number>>();
  private readsByIndex: { index: number; w: Waiter<number> }[] = [];
  private readSeq = 0;
  private readonly readPrefix: string;
  private applied: number;
  private lastSnapshotIndex: number;
  private snapshotting = false;
  /** Size of the last snapshot taken or installed, and command bytes applied since it was taken. */
  private lastSnapshotBytes = 0;
  private appliedBytesSinceSnapshot = 0;
  /** Snapshots taken or installed since this driver started (see snapshotPhase). */
  private snapshotsSinceStart = 0;
  private phase: { of: Membership; fraction: number } | undefined;

  constructor(opts: DriverOptions) {
    this.opts = opts;
    this.node = opts.node;
    this.storage = opts.storage;
    this.sm = opts.stateMachine;
    this.transport = opts.transport;
    this.tickMs = opts.tickMs ?? 100;
    this.snapshotEvery = opts.snapshotEvery ?? 100_000;
    this.snapshotSpread = spreadOf(this.node.id);
    this.maxLogBytes = opts.snapshotLogBytes ?? MAX_LOG_BYTES_BEFORE_SNAPSHOT;
    this.keepEntries = opts.keepEntries ?? 1_000;
    this.readPrefix = opts.readContextPrefix ?? randomBytes(6).toString('hex');
    this.timers = opts.timers ?? processTimers;
    this.hedgeMs = opts.hedgeMs ?? 1;
    this.applied = this.node.log.applied;
    this.lastSnapshotIndex = this.node.log.snapshotIndex;
  }

  /** Start ticking and processing. The state machine must already hold the snapshot's state. */
  start(): void {
    this.timer = this.timers.setInterval(() => this.enqueue(() => this.node.tick()), this.tickMs);
    this.enqueue(() => {
      // The loaded snapshot's bytes and the recovered entries were needed to start, and no more.
      this.holdFromStorage(this.node.log.snapshotIndex);
      this.storage.forgetInitialState();
    });
    this.schedule();
  }

  /** Let the core keep the snapshot at `index` as its file, not its bytes, if storage has it. */
  private holdFromStorage(index: number): void {
    const held = index > 0 ? this.storage.heldSnapshot(index) : undefined;
    if (held) this.node.holdSnapshot(held);
  }

  /** Stop: finish the batch in flight, fail what is pending, stop the timer. */
  async stop(why = 'shutting down'): Promise<void> {
    this.clearTimers();
    if (!this.stopped) this.stopped = new DriverStoppedError(why);
    if (this.busy || this.inPipeline > 0) await new Promise<void>((r) => this.idle.push(r));
    this.failAll(this.stopped);
  }

  get appliedIndex(): number {
    return this.applied;
  }

  /** Feed a message from a peer. A malformed one is dropped and the reason returned. */
  step(m: Message): void {
    this.enqueue(() => {
      try {
        this.node.step(m);
      } catch (e) {
        if (!(e instanceof RaftError)) throw e;
        // Malformed input from the network: dropped, never trusted.
      }
    });
  }

  /** Nothing listens at `id`'s address any more (see RaftNode.leaderGone). */
  leaderGone(id: NodeId): void {
    this.enqueue(() => this.node.leaderGone(id));
  }

  reportUnreachable(id: NodeId): void {
    this.enqueue(() => this.node.reportUnreachable(id));
  }

  /** Propose a command; resolves with the state machine's answer once it is applied here. */
  propose(data: Uint8Array, timeoutMs = 10_000): Promise<Applied> {
    return this.proposeWith((n) => n.propose(data), timeoutMs);
  }

  proposeConfChange(cc: ConfChange, timeoutMs = 10_000): Promise<Applied> {
    return this.proposeWith((n) => n.proposeConfChange(cc), timeoutMs);
  }

  /**
   * A linearizable read barrier (ReadIndex): resolves once this node's state machine reflects
   * every write committed before the call, so a local read after it is linearizable.
   */
  readBarrier(timeoutMs = 5_000): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.stopped) return reject(this.stopped);
      const ctx = `${this.readPrefix}.${++this.readSeq}`;
      const w: Waiter<number> = { resolve, reject };
      w.timer = this.timers.setTimeout(() => {
        this.readWaiters.delete(ctx);
        this.readsByIndex = this.readsByIndex.filter((r) => r.w !== w);
        reject(new RaftError('not-leader', `read not confirmed within ${timeoutMs} ms (no reachable leader?)`, this.node.leader));
      }, timeoutMs);
      this.enqueue(() => {
        try {
          this.node.readIndex(ctx);
          this.readWaiters.set(ctx, w);
        } catch (e) {
          this.timers.clearTimeout(w.timer);
          reject(e as Error);
        }
      });
    });
  }

  transferLeadership(to: NodeId): Promise<void> {
    return new Promise((resolve, reject) =>
      this.enqueue(() => {
        try {
          this.node.transferLeadership(to);
          resolve();
        } catch (e) {
          reject(e as Error);
        }
      }),
    );
  }

  /** Run `fn` against the core between batches (for status and admin calls). */
  withNode<T>(fn: (n: RaftNode) => T): Promise<T> {
    return new Promise((resolve, reject) =>
      this.enqueue(() => {
        try {
          resolve(fn(this.node));
        } catch (e) {
          reject(e as Error);
        }
      }),
    );
  }

  // ---------------------------------------------------------------------------------------

  private proposeWith(fn: (n: RaftNode) => { index: number; term: number }, timeoutMs: number): Promise<Applied> {
    return new Promise<Applied>((resolve, reject) => {
      if (this.stopped) return reject(this.stopped);
      this.enqueue(() => {
        let r: { index: number; term: number };
        try {
          r = fn(this.node);
        } catch (e) {
          reject(e as Error);
          return;
        }
        const w = { resolve, reject, term: r.term } as Waiter<Applied> & { term: number };
        w.timer = this.timers.setTimeout(() => {
          if (this.proposals.get(r.index) === w) this.proposals.delete(r.index);
          // The command may still commit later: the outcome is unknown, not failed.
          reject(new RaftError('outcome-unknown', `proposal ${r.index} not applied within ${timeoutMs} ms (outcome unknown)`, this.node.leader));
        }, timeoutMs);
        const earlier = this.proposals.get(r.index);
        if (earlier) {
          // We lead again and reuse the index, so our log lost the earlier entry there: it was
          // never committed (a leader has every committed entry) and never will be.
          this.timers.clearTimeout(earlier.timer);
          earlier.reject(new RaftError('dropped', `entry ${r.index} of term ${earlier.term} was replaced by another leader's; not applied`, this.node.leader));
        }
        this.proposals.set(r.index, w);
      });
    });
  }

  private enqueue(fn: () => void): void {
    if (this.stopped) return;
    this.inputs.push(fn);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.busy) return;
    this.scheduled = true;
    this.timers.setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.busy || this.stopped) return;
    const inputs = this.inputs;
    this.inputs = [];
    for (const fn of inputs) fn();
    const rd = this.node.ready();
    this.armHedge();
    if (!rd) return;
    if (rd.snapshot) {
      // A snapshot replaces the log and the state: everything before it finishes first, and
      // nothing else runs until it is installed.
      this.busy = true;
      Promise.all([this.sendLane, this.applyLane])
        .then(() => this.process(rd))
        .then(
          () => {
            this.node.advance();
            this.holdFromStorage(rd.snapshot!.meta.index);
            this.busy = false;
            this.wakeIdle();
            if (this.stopped) return;
            this.maybeSnapshot();
            if (this.inputs.length > 0 || this.node.hasReady()) this.schedule();
          },
          (e: unknown) => this.fatal(e as Error),
        );
      return;
    }
    // Pipelined (etcd's asynchronous storage writes): the node takes new input while this
    // Ready's writes are synced. A leader replicates new proposals and counts followers' acks
    // during its own fdatasync instead of after it; at 32 clients that wait was a period of
    // every write's latency. What must follow the writes (messages that promise durability,
    // applying, answering) runs after them, Ready by Ready, in order.
    this.node.accept();
    const early = rd.sendBeforePersist && rd.messages.length > 0;
    if (early) this.transport.send(rd.messages);
    const durable = this.persist(rd);
    const last = rd.entries.length > 0 ? rd.entries[rd.entries.length - 1] : undefined;
    // Two ordered lanes. Messages that promise durability (a follower's ack, a vote) go out once
    // this Ready's writes and all before them are durable. Committed entries are applied once
    // they are durable here (a state machine that keeps its applied index durably is never
    // ahead of its own log after a crash), or at once for a volatile one (see
    // volatileStateMachine): a leader's clients are then answered as soon as a quorum has the
    // entry, whichever members that quorum is.
    const appliedUpTo = rd.committed.length > 0 ? rd.committed[rd.committed.length - 1].index : 0;
    const applyAfter = appliedUpTo > 0 && !this.opts.volatileStateMachine ? this.durableThrough(appliedUpTo) : Promise.resolve();
    // A lane step that would do nothing is not queued: at one client a leader makes two or
    // three Readies per write, most with work for one lane only, and each step is a chain of
    // promises and closures (its largest allocation per write with the quorum sort).
    if (last || (!early && rd.messages.length > 0) || rd.softState || rd.membership) {
      this.track(
        (this.sendLane = this.sendLane
          .then(() => durable)
          .then(() => {
            if (this.stopped) return;
            if (last) this.enqueue(() => this.node.persisted(last));
            this.afterPersist(rd, early);
          })),
      );
    }
    if (rd.committed.length > 0 || rd.readStates.length > 0 || rd.softState || this.snapshotDue()) {
      this.track(
        (this.applyLane = this.applyLane
          .then(() => applyAfter)
          .then(async () => {
            if (this.stopped) return;
            await this.applyCommitted(rd.committed);
            this.resolveReads(rd);
            await this.maybeSnapshot();
          })),
      );
    }
    if (this.inputs.length > 0 || this.node.hasReady()) this.schedule();
  }

  /**
   * Thrifty replication: once uncommitted entries are held back from a voter, check after
   * hedgeMs that they committed; if not, the core sends them to every voter (RaftNode.hedge).
   * One timer at a time: a later entry is checked by the timer armed after this one fires.
   */
  private armHedge(): void {
    if (this.hedgeTimer !== undefined || this.stopped || this.fatalError) return;
    const index = this.node.heldIndex();
    if (index <= this.node.log.committed) return;
    // Timers count whole milliseconds from a truncated loop time: one may fire well before its
    // delay, and a hedge after a fraction of a commit's usual time spares nothing. The core's
    // clock says when it is due.
    const due = this.node.clockMs() + this.hedgeMs;
    const check = () => {
      this.hedgeTimer = undefined;
      // Committed: entries held since then are checked by a timer of their own (with no ack
      // coming, as when the eager voter is gone, nothing else would arm it).
      if (this.node.log.committed >= index) return this.armHedge();
      const left = due - this.node.clockMs();
      if (left > 0) this.hedgeTimer = this.timers.setTimeout(check, Math.max(1, Math.ceil(left)));
      else this.enqueue(() => this.node.hedge(index));
    };
    this.hedgeTimer = this.timers.setTimeout(check, this.hedgeMs);
  }

  /** The tick and the hedge check: neither may fire once the driver stopped. */
  private clearTimers(): void {
    if (this.timer) this.timers.clearInterval(this.timer);
    this.timer = undefined;
    if (this.hedgeTimer !== undefined) this.timers.clearTimeout(this.hedgeTimer);
    this.hedgeTimer = undefined;
  }

  /** Count a lane step until it settles; a failure stops the node. */
  private track(step: Promise<void>): void {
    this.inPipeline++;
    step.then(
      () => {
        this.inPipeline--;
        this.wakeIdle();
      },
      (e: unknown) => {
        this.inPipeline--;
        this.fatal(e as Error);
      },
    );
  }

  private wakeIdle(): void {
    if (this.busy || this.inPipeline > 0) return;
    for (const r of this.idle.splice(0)) r();
  }

  /** Resolves once the entry at `index` as the log holds it now is durable here. */
  private durableThrough(index: number): Promise<void> {
    // The latest save holding an entry at or below `index`: a later one may have overwritten an
    // earlier one's entries, and saves finish in order.
    for (let i = this.saves.length - 1; i >= 0; i--) if (this.saves[i].first <= index) return this.saves[i].done;
    return Promise.resolve();
  }

  /**
   * Make a Ready's entries and hard state durable. Readies that come while a save is in flight
   * join one next save (entries appended, a later overwrite cutting the earlier ones, the latest
   * hard state): one fdatasync for all of them, as the node made one Ready of them before.
   */
  private persist(rd: Ready): Promise<void> {
    if (rd.entries.length === 0 && !rd.hardState) return this.nextSave?.done ?? this.saving;
    if (!this.nextSave) {
      const group: SaveGroup = { entries: [], first: Infinity, quiet: this.saves.length === 0, done: Promise.resolve() };
      group.done = this.saving.then(() => {
        if (this.nextSave === group) this.nextSave = undefined;
        // A member that is not leading only waits for this save (its ack follows it), so it
        // may sync on this thread; a leader keeps taking acks and requests meanwhile, unless
        // it serves one client (see leaderMaySyncOnCaller).
        const leading = this.node.isLeader();
        const syncOnCaller = !leading || this.leaderMaySyncOnCaller(group);
        if (leading && syncOnCaller) this.transport.flush?.();
        return this.storage.save({ entries: group.entries, hardState: group.hardState, syncOnCaller }).then(() => undefined);
      });
      const forget = () => {
        const i = this.saves.indexOf(group);
        if (i >= 0) this.saves.splice(i, 1);
      };
      group.done.then(forget, forget);
      this.nextSave = group;
      this.saving = group.done;
      this.saves.push(group);
    }
    const g = this.nextSave;
    if (rd.entries.length > 0) {
      const first = rd.entries[0].index;
      let keep = g.entries.length;
      while (keep > 0 && g.entries[keep - 1].index >= first) keep--;
      g.entries.length = keep;
      for (const e of rd.entries) g.entries.push(e);
      g.first = Math.min(g.first, first);
    }
    if (rd.hardState) g.hardState = rd.hardState;
    return g.done;
  }

  /**
   * Whether a leader may sync this save on its own thread, as a follower does. At one client
   * (or in a lull) a leader has nothing to do until the save is durable but count acks, which
   * can wait in their sockets meanwhile; syncing here spares the hand-off to the thread pool
   * and back and the wake-ups between them. But a leader that blocks while requests arrive
   * holds them back from its followers for a whole fdatasync: at 8 clients, a rule that
   * looked only at what was in flight (all of it in this save) fired in 17% of the saves and
   * cost 5-15% of the throughput. So it takes a run of saves that each held one entry and
   * began with nothing else in flight: the load of one client, not a pause in a heavier one.
   * The leader also cannot count an ack during the sync, so a write whose leader flush is
   * slower than both followers' waits for it; at one client the p99 went down all the same.
   */
  private leaderMaySyncOnCaller(group: SaveGroup): boolean {
    if (group.entries.length === 0) return false;
    this.loneSaves = group.quiet && group.entries.length === 1 ? this.loneSaves + 1 : 0;
    return (
      this.loneSaves >= LONE_SAVES_BEFORE_CALLER_SYNC &&
      this.inputs.length === 0 &&
      this.readWaiters.size === 0 &&
      this.readsByIndex.length === 0 &&
      this.proposals.size <= 1 &&
      this.node.log.committed >= group.first - 1
    );
  }

  /** A Ready with a snapshot, start to end: persist, send, install, apply. */
  private async process(rd: Ready): Promise<void> {
    const early = rd.sendBeforePersist && rd.messages.length > 0;
    if (early) this.transport.send(rd.messages);
    const snapshot = rd.snapshot!;
    await this.storage.save({ snapshot, entries: rd.entries, hardState: rd.hardState });
    this.afterPersist(rd, early);
    await this.sm.restore(snapshot);
    this.lastSnapshotBytes = snapshot.data.length;
    this.appliedBytesSinceSnapshot = 0;
    this.snapshotsSinceStart++;
    this.applied = snapshot.meta.index;
    this.lastSnapshotIndex = Math.max(this.lastSnapshotIndex, snapshot.meta.index);
    this.failProposalsUpTo(this.applied);
    await this.applyCommitted(rd.committed);
    this.resolveReads(rd);
  }

  /** What waits for a Ready's writes to be durable: the rest of its messages, and telling the replica. */
  private afterPersist(rd: Ready, sentEarly: boolean): void {
    if (!sentEarly && rd.messages.length > 0) this.transport.send(rd.messages);
    if (rd.softState) this.opts.onSoftState?.(rd.softState);
    if (rd.membership) this.opts.onMembership?.(rd.membership);
  }

  private async applyCommitted(committed: Entry[]): Promise<void> {
    const results = this.sm.applyBatch && committed.length > 0 ? await this.sm.applyBatch(committed) : undefined;
    for (let i = 0; i < committed.length; i++) {
      const e = committed[i];
      this.appliedBytesSinceSnapshot += e.data.length;
      let result: Uint8Array = EMPTY;
      if (results) result = results[i];
      else if (e.type === EntryType.Normal) result = await this.sm.apply(e);
      this.applied = e.index;
      const w = this.proposals.get(e.index);
      if (w) {
        this.proposals.delete(e.index);
        this.timers.clearTimeout(w.timer);
        if (w.term === e.term) w.resolve({ index: e.index, term: e.term, result });
        else w.reject(new RaftError('dropped', `entry ${e.index} was replaced by another leader's; not applied`, this.node.leader));
      }
    }
  }

  private resolveReads(rd: Ready): void {
    for (const rs of rd.readStates) {
      const w = this.readWaiters.get(rs.context);
      if (!w) continue;
      this.readWaiters.delete(rs.context);
      this.readsByIndex.push({ index: rs.index, w });
    }
    if (this.readsByIndex.length > 0) {
      const still: typeof this.readsByIndex = [];
      for (const r of this.readsByIndex) {
        if (r.index <= this.applied) {
          this.timers.clearTimeout(r.w.timer);
          r.w.resolve(r.index);
        } else still.push(r);
      }
      this.readsByIndex = still;
    }
    if (rd.softState && rd.softState.role !== Role.Leader) {
      // Reads this node was confirming as leader can no longer complete.
      for (const [ctx, w] of this.readWaiters) {
        this.timers.clearTimeout(w.timer);
        w.reject(new RaftError('not-leader', 'leadership changed during the read', rd.softState.leader));
        this.readWaiters.delete(ctx);
      }
    }
  }

  /**
   * Enough has been applied since the last snapshot for maybeSnapshot to consider one: its
   * count of entries, or maxLogBytes of them whatever the count (see snapshotLogBytes).
   */
  private snapshotDue(): boolean {
    if (this.snapshotting) return false;
    const phase = this.snapshotPhase();
    return this.applied - this.lastSnapshotIndex >= this.snapshotEvery * this.snapshotSpread * phase || this.appliedBytesSinceSnapshot >= this.maxLogBytes * phase;
  }

  /**
   * The fraction of its thresholds this member waits for: until its first snapshot since it
   * started, (its rank among the members + 1) / their number; then 1. The spread (spreadOf)
   * cannot part members once the memory cap is every member's threshold (states over about
   * 43 MB: the benchmark's 100 MB state), and members that start together then all snapshot at
   * the same index, every time: a third of their first thresholds apart, they stay apart, as
   * each goes on snapshotting every maxLogBytes of the same log. At 32 clients on 2 cores, with
   * the benchmark's state: write p99 7.1-8.3 ms against 8.5-10.1 in four of five alternated runs
   * (docs/bench/one-client-tail.md, "Snapshots in phase").
   */
  private snapshotPhase(): number {
    if (this.snapshotsSinceStart > 0) return 1;
    const m = this.node.membership;
    if (this.phase?.of !== m) {
      const members = [...m.voters, ...m.learners].sort();
      const rank = members.indexOf(this.node.id);
      this.phase = { of: m, fraction: rank < 0 ? 1 : (rank + 1) / members.length };
    }
    return this.phase.fraction;
  }

  /** Resolves once the state is captured (nothing may be applied before that). */
  private maybeSnapshot(): Promise<void> | undefined {
    if (!this.snapshotDue()) return;
    const spread = this.snapshotSpread;
    // A volatile state machine may be ahead of the log durable here: no snapshot of that yet.
    if (this.saves.some((g) => g.first <= this.applied)) return;
    // The memory bound (maxLogBytes) holds for every member, spread or not.
    const logBytes = Math.min(spread * this.lastSnapshotBytes, this.maxLogBytes) * this.snapshotPhase();
    if (this.lastSnapshotBytes > LARGE_SNAPSHOT_BYTES && this.appliedBytesSinceSnapshot < logBytes) return;
    this.snapshotting = true;
    this.snapshotsSinceStart++;
    this.appliedBytesSinceSnapshot = 0;
    const index = this.applied;
    const term = this.node.log.term(index);
    const membership = this.node.membershipAt(index);
    // Capture the state before anything else is applied: hold the loop for the capture (or,
    // without captureSnapshot, the whole serialization), never for writing it to disk.
    this.busy = true;
    let held = true;
    let captured!: () => void;
    const done = new Promise<void>((r) => (captured = r));
    const release = () => {
      if (!held) return;
      held = false;
      this.busy = false;
      captured();
      this.wakeIdle();
      this.schedule();
    };
    const meta = { index, term, membership };
    const compactTo = index - this.keepEntries;
    const pause = () => new Promise<void>((r) => this.timers.setImmediate(r));
    let saved: Promise<HeldSnapshot>;
    try {
      if (this.sm.captureSnapshot) {
        const captured = this.sm.captureSnapshot();
        release();
        saved = captured.size(pause).then((size) => {
          this.lastSnapshotBytes = size;
          // Written as it is serialized, and kept by the core as its file (on disk storage): a
          // large state is never in memory twice.
          return this.storage.saveSnapshotStream(meta, size, captured.chunks(pause, true), compactTo);
        });
      } else {
        saved = Promise.resolve(this.sm.snapshot()).then(async (data) => {
          release();
          this.lastSnapshotBytes = data.length;
          const snap: Snapshot = { meta, data };
          await this.storage.saveSnapshot(snap, compactTo);
          return snap;
        });
      }
    } catch (e) {
      saved = Promise.reject(e as Error);
    }
    saved
      .then((held) => {
        // An installed snapshot may have overtaken this one while it was being written.
        this.lastSnapshotIndex = Math.max(this.lastSnapshotIndex, index);
        this.enqueue(() => this.node.compact(held, this.keepEntries));
        this.opts.onSnapshot?.(index);
      })
      .catch((e: unknown) => this.fatal(e as Error))
      .finally(() => {
        release();
        this.snapshotting = false;
      });
    return done;
  }

  private failProposalsUpTo(index: number): void {
    for (const [i, w] of this.proposals) {
      if (i > index) continue;
      this.proposals.delete(i);
      this.timers.clearTimeout(w.timer);
      w.reject(new RaftError('outcome-unknown', `entry ${i} outcome unknown after a snapshot install; retry with the same session`, this.node.leader));
    }
  }

  private failAll(e: Error): void {
    for (const w of this.proposals.values()) {
      this.timers.clearTimeout(w.timer);
      w.reject(e);
    }
    this.proposals.clear();
    for (const w of this.readWaiters.values()) {
      this.timers.clearTimeout(w.timer);
      w.reject(e);
    }
    this.readWaiters.clear();
    for (const r of this.readsByIndex) {
      this.timers.clearTimeout(r.w.timer);
      r.w.reject(e);
    }
    this.readsByIndex = [];
  }

  private fatal(e: Error): void {
    // Once: a failed save fails every lane step queued behind it too.
    if (this.fatalError) return;
    this.fatalError = e;
    this.clearTimers();
    this.busy = false;
    for (const r of this.idle.splice(0)) r();
    if (!this.stopped) this.stopped = new DriverStoppedError(e.message);
    this.failAll(this.stopped);
    this.opts.onFatal?.(e);
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Members apply the same entries at nearly the same time, so with one threshold they all wrote
 * their snapshots (the whole state, ~100 MB in the benchmark) at once, and a quorum of them
 * flushed the same disk together: every write in flight waited (p99 at 32 clients 26-28 ms;
 * 19-21 ms spread apart). Each member waits for its own multiple of the thresholds (from its
 * id), so their snapshots drift apart and a quorum is usually not snapshotting. The log held in
 * memory stays within the cap (DriverOptions.snapshotLogBytes): for states over about 43 MB the
 * bytes rule meets that cap on every member, and the phase of their first snapshots
 * (snapshotPhase) is what keeps them apart.
 */
function spreadOf(id: string): number {
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
  return 1 + ((h >>> 0) % 1024) / 2048;
}
