/**
 * The whole-replica simulator: the real RaftDriver, WAL and snapshot store (over a simulated
 * disk that loses and tears unsynced writes on a power cut and fails fsyncs), the real KV state
 * machine with its sessions, and the real client command path (pooled sessions, forwarding to
 * the leader, retries), and on even seeds a logger (the real CommandLog and LogMachine on its
 * own simulated disk), driven by virtual timers on one seeded schedule. Everything the core
 * simulator leaves out (the glue between the parts) runs here under faults.
 *
 * Async code is deterministic here because nothing waits on real I/O: every timer, fsync and
 * message is an event in the simulation's queue, and between two events the microtask queue
 * is drained completely. One seed is one schedule, replayed exactly.
 */
import {
  ConfChange,
  ConfChangeType,
  DiskStorage,
  Entry,
  Message,
  RaftConfig,
  EntryReader,
  RaftDriver,
  RaftError,
  RaftNode,
  Role,
  SessionOptions,
  Timers,
  isDamage,
  isEmptyStorage,
  loadOrBootstrap,
} from '../../../raft/index.js';
import { CommandLog } from '../../../logger/command-log.js';
import { MemoryEngine } from '../../../replica/engines/memory.js';
import { JoinsInFlight, admitJoiner, confChangeMayBeRetried, joinSteps } from '../../../replica/join.js';
import { CommandExecutor } from '../../../replica/executor.js';
import { KvStateMachine } from '../../../replica/kv-machine.js';
import { Command, Op, Response, Status, newCommand } from '../../../replica/proto.js';
import { admitsMembersOf } from '../../../replica/transport.js';
import { Prng } from '../../../util/prng.js';

/** How long a rejoin's steps may take before the joiner asks again (simulated ms). */
const ADMIT_ATTEMPT_MS = 2_000;
import { EventQueue } from '../cluster.js';
import { checkHistory, formatOps, Operation } from '../linearizability.js';
import { SimFs } from './sim-fs.js';
import { SimLoggers } from './loggers.js';
import { SimReplica, TICK_MS } from './sim-replica.js';

export interface WholeSimOptions {
  seed: number;
  /** Report crashes to the survivors as the peer transport does (default: half the seeds). */
  fastFailover?: boolean;
  durationMs?: number;
  settleMs?: number;
  trace?: boolean;
}

export interface WholeSimStats {
  events: number;
  writesAcked: number;
  writesIndeterminate: number;
  writesRefused: number;
  readsOk: number;
  faults: number;
  powerCuts: number;
  tornFiles: number;
  fsyncErrors: number;
  /** Entries members read back from their WALs (released from memory). */
  entriesReadBack: number;
  elections: number;
  sessionsExpired: number;
}

export interface WholeSimResult {
  seed: number;
  violations: string[];
  stats: WholeSimStats;
  trace: string[];
}

const DATA = '/data';
interface Timer {
  cancelled: boolean;
}

export class WholeReplicaSim {
  private readonly rng: Prng;
  private readonly goneRng: Prng;
  /** Whether a member still joining loses its disk again (a stream of its own, as goneRng). */
  private readonly againRng: Prng;
  /** Whether crashes are reported to the survivors (RaftDriver.leaderGone) in this schedule. */
  private readonly fastFailover: boolean;
  private readonly queue = new EventQueue();
  private now = 0;
  /** Orders every call and return of the client history. */
  private clock = 0;
  private readonly nodes = new Map<string, SimReplica>();
  private readonly initial: { id: string; addr: string }[];
  private readonly history: Operation[] = [];
  private readonly violations: string[] = [];
  private readonly traceLines: string[] = [];
  private readonly traceOn: boolean;
  private readonly durationMs: number;
  private readonly settleMs: number;
  private readonly readMode: 'safe' | 'lease';
  /** Thrifty replication (the replica's default) in half the schedules, and its hedge delay. */
  private readonly thrifty: boolean;
  private readonly hedgeMs: number;
  private readonly logMemoryTail: number;
  private readonly mixedTimers: boolean;
  private readonly sessionOptions: Required<Pick<SessionOptions, 'maxSessions' | 'ttlMs'>>;
  private readonly snapshotEvery: number;
  private nextNode: number;
  private readonly withLogger: boolean;
  private readonly withApplog: boolean;
  private readonly loggers: SimLoggers;
  private opId = 0;
  private healed = false;
  // Network.
  private blocked = new Set<string>();
  private dropRate = 0;
  /** Each leader process's joins being admitted (RaftServer keeps one per process too). */
  private readonly joinsInFlight = new WeakMap<RaftDriver, JoinsInFlight>();
  private dupRate = 0;
  private maxLatency = 5;
  // Invariants.
  private leaderOfTerm = new Map<number, string>();
  private appliedAt = new Map<number, { term: number; data: string }>();
  /** Put value -> the log index where it took effect (values are unique). */
  private freshAt = new Map<string, number>();
  private readonly stats: WholeSimStats = {
    events: 0,
    writesAcked: 0,
    writesIndeterminate: 0,
    writesRefused: 0,
    readsOk: 0,
    faults: 0,
    powerCuts: 0,
    tornFiles: 0,
    fsyncErrors: 0,
    entriesReadBack: 0,
    elections: 0,
    sessionsExpired: 0,
  };

  constructor(private readonly opts: WholeSimOptions) {
    this.rng = new Prng(opts.seed);
    // A stream of its own, so that the schedules of seeds without it stay what they were.
    this.goneRng = new Prng(opts.seed * 7919 + 17);
    this.fastFailover = opts.fastFailover ?? this.goneRng.chance(0.5);
    this.againRng = new Prng(opts.seed * 7919 + 37);
    this.traceOn = opts.trace ?? false;
    this.durationMs = opts.durationMs ?? 3000;
    this.settleMs = opts.settleMs ?? 4000;
    this.readMode = this.rng.chance(0.5) ? 'lease' : 'safe';
    // Members configured with election timeouts up to 4x apart, in a third of the safe-read
    // schedules (lease reads need equal ones); a stream of its own, as above.
    this.mixedTimers = this.readMode === 'safe' && new Prng(opts.seed * 7919 + 29).chance(0.3);
    const thriftyRng = new Prng(opts.seed * 7919 + 31);
    this.thrifty = thriftyRng.chance(0.5);
    this.hedgeMs = thriftyRng.int(1, 3);
    // Few entries kept in memory (as the product's 64, but tiny), so that followers behind are
    // served from the WAL's segments: a stream of its own, as above.
    this.logMemoryTail = new Prng(opts.seed * 7919 + 41).int(0, 8);
    this.sessionOptions = this.rng.chance(0.3) ? { maxSessions: this.rng.int(2, 6), ttlMs: this.rng.int(300, 3000) } : { maxSessions: 1000, ttlMs: 600_000 };
    this.snapshotEvery = this.rng.int(15, 80);
    const voters = this.rng.chance(0.5) ? 3 : 5;
    this.nextNode = voters + 1;
    this.initial = Array.from({ length: voters }, (_, i) => ({ id: `n${i + 1}`, addr: `sim:n${i + 1}` }));
    for (const m of this.initial) this.addNode(m.id);
    // Even seeds also run a logger, and every fourth (2, 6, 10, ...) keeps applogs on the
    // replicas (chosen from the seed, so odd seeds keep their schedules).
    this.withLogger = opts.seed % 2 === 0;
    this.withApplog = opts.seed % 4 === 2;
    this.loggers = new SimLoggers({
      rng: this.rng,
      sessionOptions: this.sessionOptions,
      now: () => this.now,
      at: (delay, fn) => this.at(delay, fn),
      trace: (line) => this.trace(line),
      violation: (what) => this.violation(what),
      violated: () => this.violations.length > 0,
      nodes: () => this.nodes.values(),
      node: (id) => this.nodes.get(id),
      leader: () => this.leader(),
      linkUp: (from, to) => this.linkUp(from, to),
      maxLatency: () => this.maxLatency,
      onNode: (node, inc, fn) => this.onNode(node, inc, fn),
      timersFor: (node, inc) => this.timersFor(node, inc),
      raftConfig: (node) => this.raftConfig(node),
      countingReader: (storage) => this.countingReader(storage),
      sendPeer: (node, inc, msgs) => this.sendPeer(node, inc, msgs),
      crash: (node, why) => this.crash(node, why),
      restart: (node) => void this.startNode(node, false),
      fsyncFailed: () => this.stats.fsyncErrors++,
      appliedAt: (index) => this.appliedAt.get(index),
      healed: () => this.healed,
    });
    this.trace(
      `config: voters=${voters} readMode=${this.readMode}${this.thrifty ? ` thrifty(hedge ${this.hedgeMs} ms)` : ''} sessions=${this.sessionOptions.maxSessions}/${this.sessionOptions.ttlMs}ms snapshotEvery=${this.snapshotEvery}${this.fastFailover ? ' fastFailover' : ''}${this.mixedTimers ? ` electionTicks=${this.initial.map((m) => this.electionTicksOf(m.id)).join('/')}` : ''}${this.withLogger ? ' logger=log1' : ''}${this.withApplog ? ' applogs' : ''}`,
    );
  }

  async run(): Promise<WholeSimResult> {
    for (const m of this.initial) this.at(this.rng.int(0, 5), () => void this.startNode(this.nodes.get(m.id)!, true));
    const clients = this.rng.int(2, 5);
    for (let i = 0; i < clients; i++) {
      const withSession = this.rng.chance(0.5);
      this.at(this.rng.int(50, 150), () => void this.client(`c${i + 1}`, withSession));
    }
    const nemesis = () => {
      if (this.now >= this.durationMs) return;
      this.nemesis();
      this.at(this.rng.int(80, 400), nemesis);
    };
    this.at(this.rng.int(200, 500), nemesis);
    if (this.withLogger) {
      this.at(this.rng.int(100, 600), () => {
        const log = this.addNode('log1', true);
        void this.startNode(log, false);
        this.loggers.admitLogger(log, true);
      });
    }
    this.at(this.durationMs, () => this.healAll());
    const end = this.durationMs + this.settleMs;
    let events = 0;
    for (;;) {
      const ev = this.queue.pop();
      if (!ev || ev.time > end) break;
      this.now = ev.time;
      ev.fn();
      // Let every promise chain the event started run to its next wait on the simulation.
      await new Promise<void>((r) => setImmediate(r));
      if (++events > 3_000_000) {
        this.violation('simulation did not quiesce (event budget exhausted)');
        break;
      }
      if (this.violations.length > 0) break;
    }
    this.stats.events = events;
    if (this.violations.length === 0) this.finalChecks();
    if (this.violations.length === 0) await this.loggers.checkLoggers();
    return { seed: this.opts.seed, violations: this.violations, stats: this.stats, trace: this.traceLines };
  }

  // ---------------------------------------------------------------------------------------
  // Scheduling

  private at(delay: number, fn: () => void): void {
    this.queue.push(this.now + Math.max(0, delay), fn);
  }

  private trace(line: string): void {
    if (this.traceOn) this.traceLines.push(`${this.now.toFixed(1).padStart(8)}ms ${line}`);
  }

  private violation(what: string): void {
    this.trace(`VIOLATION ${what}`);
    this.violations.push(what);
  }

  /** Run `fn` on `node` when it is running (deferred while its process is paused). */
  private onNode(node: SimReplica, inc: number, fn: () => void): void {
    if (!node.alive || node.inc !== inc) return;
    if (node.pausedUntil > this.now) {
      this.queue.push(node.pausedUntil, () => this.onNode(node, inc, fn));
      return;
    }
    fn();
  }

  /** What every simulated Raft node shares, replica or logger: timing, windows, randomness, clock. */
  /** The storage's reader, counted in the stats. */
  countingReader(storage: EntryReader): EntryReader {
    return {
      readEntries: (lo, hi, maxBytes) => {
        const got = storage.readEntries(lo, hi, maxBytes);
        this.stats.entriesReadBack += got.length;
        return got;
      },
    };
  }

  private raftConfig(node: SimReplica): RaftConfig {
    return {
      id: node.id,
      electionTicks: this.electionTicksOf(node.id),
      heartbeatTicks: 1,
      maxInflight: 8,
      maxAppendBytes: 4096,
      random: () => this.rng.float(),
      clock: () => this.now * node.clockRate,
      tickMs: TICK_MS,
      maxClockDrift: 0.05,
      thrifty: this.thrifty,
      logMemoryTail: this.logMemoryTail,
    };
  }

  /** A member's election timeout in ticks: its own, for good, when the schedule mixes them. */
  private electionTicksOf(id: string): number {
    if (!this.mixedTimers) return 10;
    return this.memberPrng(this.opts.seed ^ 0x9e3779b9, id).int(10, 40);
  }

  /**
   * A generator of a member's own, from `start` (the seed, salted per use) and its id: what it
   * draws leaves the schedule's generator, and so every other seed's schedule, as it was.
   */
  private memberPrng(start: number, id: string): Prng {
    let h = start >>> 0;
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
    return new Prng(h);
  }

  /** A process's timers: virtual, scaled by its clock rate, silenced by a crash. */
  private timersFor(node: SimReplica, inc: number): Timers {
    const sim = this;
    const scale = (ms: number) => ms / node.clockRate;
    return {
      setTimeout(fn, ms) {
        const t: Timer = { cancelled: false };
        sim.at(scale(ms), () => t.cancelled || sim.onNode(node, inc, fn));
        return t;
      },
      clearTimeout(h) {
        if (h) (h as Timer).cancelled = true;
      },
      setInterval(fn, ms) {
        const t: Timer = { cancelled: false };
        const step = () => {
          if (t.cancelled || !node.alive || node.inc !== inc) return;
          // A blocked event loop loses interval ticks; the clock goes on.
          if (node.pausedUntil <= sim.now) fn();
          sim.at(scale(ms) + sim.rng.float() * 0.5, step);
        };
        sim.at(scale(ms), step);
        return t;
      },
      clearInterval(h) {
        if (h) (h as Timer).cancelled = true;
      },
      setImmediate(fn) {
        sim.at(0, () => sim.onNode(node, inc, fn));
      },
    };
  }

  // ---------------------------------------------------------------------------------------
  // Replica processes

  private addNode(id: string, logger = false): SimReplica {
    // Half the disks offer a synchronous fsync (a follower's WAL then syncs on its thread), drawn
    // apart from the schedule's generator so that adding this kept every seed's schedule.
    const syncOnCaller = this.memberPrng(this.opts.seed, id).chance(0.5);
    const node: SimReplica = new SimReplica(
      id,
      new SimFs(
        this.rng,
        (ms) => {
          const inc = node.inc;
          // An fsync of a crashed process never returns.
          return new Promise<void>((r) => this.at(ms, () => node.alive && node.inc === inc && r()));
        },
        syncOnCaller,
        () => this.now,
      ),
      logger,
    );
    if (syncOnCaller) this.trace(`${id}'s disk syncs on the caller`);
    node.clockRate = 1 + (this.rng.float() * 0.04 - 0.02);
    node.wallOffset = this.rng.int(-50, 50);
    this.nodes.set(id, node);
    return node;
  }

  private async startNode(node: SimReplica, initialMember: boolean): Promise<void> {
    if (node.alive) return;
    if (node.logger) return this.loggers.startLogger(node);
    const inc = ++node.inc;
    node.alive = true;
    node.pausedUntil = 0;
    node.fs.reopen();
    const timers = this.timersFor(node, inc);
    let storage: DiskStorage;
    try {
      storage = await DiskStorage.open(DATA, { fs: node.fs, fsync: 'batch', segmentBytes: 8192 });
    } catch (e) {
      if (node.inc !== inc) return;
      if (isDamage(e)) {
        this.violation(`${node.id} cannot start after a power cut: ${(e as Error).message}`);
      } else this.crash(node, `start failed: ${(e as Error).message}`);
      return;
    }
    if (node.inc !== inc) return;
    const fresh = isEmptyStorage(storage);
    const initial = await loadOrBootstrap(storage, initialMember ? this.initial : undefined).catch((e: Error) => e);
    if (node.inc !== inc) return;
    if (initial instanceof Error) {
      this.crash(node, `bootstrap failed: ${initial.message}`);
      return;
    }
    // Background snapshots pause every few entries here (not every 4096), so applies interleave
    // with them; from the seed, not the rng, so every schedule stays what it was.
    const snapshotSlice = 1 + (this.opts.seed % 7);
    // Tiny slabs (64-512 bytes) swept at the first garbage, so the engine starts slabs, stores
    // values alone and moves them all the time under the simulated faults.
    const slabBytes = 64 << (this.opts.seed % 4);
    // Some schedules keep the seed's applog (--logfolder) on every replica: every applied entry,
    // synced before the apply returns, on the replica's own disk.
    let applog: CommandLog | undefined;
    if (this.withApplog) {
      try {
        applog = await CommandLog.open(`${DATA}/applog`, { fs: node.fs, segmentBytes: 2048 });
      } catch (e) {
        if (node.inc !== inc) return;
        if (isDamage(e)) this.violation(`${node.id} cannot open its applog after a power cut: ${(e as Error).message}`);
        else this.crash(node, `applog open failed: ${(e as Error).message}`);
        return;
      }
      if (node.inc !== inc) return;
    }
    const sm = new KvStateMachine(new MemoryEngine(1 << 20, { slabBytes, sweepAbove: 1, sweepSlackSlabs: 0 }), { nodeId: node.id, sessions: this.sessionOptions, snapshotSlice, applog });
    this.watch(node, sm);
    if (initial.snapshot) {
      try {
        await sm.restore(initial.snapshot);
      } catch (e) {
        if (node.inc !== inc) return;
        this.crash(node, `restore failed: ${(e as Error).message}`);
        return;
      }
      if (node.inc !== inc) return;
    }
    const raft = new RaftNode(
      {
        ...this.raftConfig(node),
        readMode: this.readMode,
        snapshotChunkBytes: this.rng.int(256, 4096),
        promoteLag: 20,
        // As the replica server: a joiner votes only once admitted, across restarts too (its
        // joining marker stays until then).
        withholdVotes: node.rejoining,
        incarnation: node.incarnation,
        advanceFirstElection: fresh && initialMember,
        entryReader: this.countingReader(storage),
      },
      initial,
    );
    const driver = new RaftDriver({
      node: raft,
      storage,
      stateMachine: sm,
      transport: { send: (msgs) => this.sendPeer(node, inc, msgs) },
      tickMs: TICK_MS,
      snapshotEvery: this.snapshotEvery,
      // The server's mode (state rebuilt at start, applied before the local copy is durable)
      // most of the time, the library default otherwise.
      volatileStateMachine: this.rng.chance(0.75),
      keepEntries: this.rng.int(0, 10),
      timers,
      hedgeMs: this.hedgeMs,
      readContextPrefix: `${node.id}.${inc}`,
      // As replicas run with --logger-truncate: after each snapshot, ask the loggers to cut.
      onSnapshot: (index) => this.loggers.askLoggerToTruncate(node, inc, index),
      onSoftState: (s) => {
        this.trace(`${node.id} is ${s.role} (term ${s.term}, leader ${s.leader || '-'})`);
        if (s.role === Role.Leader) this.onLeader(node, raft, s.term);
        if (s.role === Role.PreCandidate) this.restartSomeoneInsideTheLease(node);
      },
      onFatal: (e) => {
        if (node.inc !== inc) return;
        this.stats.fsyncErrors++;
        // The storage gave up (an fsync failed): the process exits, and what it had not synced
        // may be gone. It is started again later, as a supervisor would.
        this.crash(node, `storage failed: ${e.message}`);
        this.at(this.rng.int(50, 300), () => void this.startNode(node, false));
      },
    });
    const executor = new CommandExecutor({
      id: node.id,
      sessionTtlMs: this.sessionOptions.ttlMs,
      driver: () => (node.alive && node.inc === inc ? driver : undefined),
      stopping: () => !node.alive || node.inc !== inc,
      engine: () => sm.engine,
      leaderClientAddr: () => driver.node.leader || undefined,
      forwardToLeader: (cmd, addr) => this.forward(node, inc, cmd, addr),
      now: () => Math.floor(this.now * node.clockRate + node.wallOffset),
      sleep: (ms) => new Promise((r) => timers.setTimeout(r, ms)),
    });
    node.proc = { inc, driver, sm, executor, timers };
    driver.start();
    this.trace(`${node.id} started (incarnation ${inc}, term ${raft.term}, ${initial.entries?.length ?? 0} entries, snapshot ${initial.snapshot?.meta.index ?? 0})`);
  }

  /** Power cut (or a process that died with its storage): everything unsynced may be gone. */
  private crash(node: SimReplica, why: string): void {
    if (!node.alive) return;
    node.alive = false;
    node.inc++;
    node.proc = undefined;
    node.lproc = undefined;
    const torn = node.fs.crash();
    this.stats.powerCuts++;
    this.stats.tornFiles += torn;
    this.trace(`${node.id} CRASH (${why}; ${torn} files lost unsynced data)`);
    this.reportGone(node);
  }

  /**
   * What the peer transport reports after a crash: each member that can reach `victim` finds
   * its port refusing a few ms later, unless it is back by then. Sometimes a member also hears
   * a wrong report about a leader that is alive.
   */
  private reportGone(victim: SimReplica): void {
    if (!this.fastFailover) return;
    for (const n of this.nodes.values()) {
      if (n === victim || !n.alive || !this.linkUp(n.id, victim.id)) continue;
      this.at(this.goneRng.int(1, 60), () => {
        if (victim.alive || !n.proc) return;
        if (n.proc.driver.node.leader === victim.id) this.trace(`${n.id} finds its leader ${victim.id} gone`);
        n.proc.driver.leaderGone(victim.id);
      });
    }
    const leader = this.leader();
    const followers = [...this.nodes.values()].filter((n) => n.alive && n !== leader && n !== victim);
    if (leader && leader !== victim && followers.length > 0 && this.goneRng.chance(0.2)) {
      const follower = this.goneRng.pick(followers);
      this.at(this.goneRng.int(0, 60), () => follower.proc?.driver.leaderGone(leader.id));
    }
  }

  /** Check every applied entry and every fresh write, on every replica. */
  private watch(node: SimReplica, sm: KvStateMachine): void {
    const applyBatch = sm.applyBatch.bind(sm);
    sm.applyBatch = (entries: Entry[]) => {
      for (const e of entries) {
        const data = Buffer.from(e.data).toString('base64');
        const seen = this.appliedAt.get(e.index);
        if (seen && (seen.term !== e.term || seen.data !== data)) {
          this.violation(`state machine safety: ${node.id} applied term ${e.term} at index ${e.index}, another replica term ${seen.term}`);
        } else if (!seen) this.appliedAt.set(e.index, { term: e.term, data });
      }
      return applyBatch(entries);
    };
    const engine = sm.engine;
    const put = engine.put.bind(engine);
    const bulk = engine.bulk.bind(engine);
    let restoring = false;
    engine.bulk = <T>(fn: () => T): T => {
      restoring = true;
      try {
        return bulk(fn);
      } finally {
        restoring = false;
      }
    };
    engine.put = (key, value) => {
      if (restoring) return put(key, value); // a snapshot being installed, not a command
      const v = Buffer.from(value).toString();
      const index = sm.appliedIndex;
      const prior = this.freshAt.get(v);
      if (prior !== undefined && prior !== index) this.violation(`duplicate apply: ${key}=${v} took effect at index ${prior} and again at ${index} (${node.id})`);
      this.freshAt.set(v, index);
      put(key, value);
    };
  }

  /**
   * A node starts an election: now is when a follower that restarts forgets the leader it was
   * hearing, and could hand the candidate the vote that deposes a leader inside its lease.
   */
  private restartSomeoneInsideTheLease(candidate: SimReplica): void {
    if (this.now >= this.durationMs || !this.rng.chance(0.2)) return;
    const leader = this.leader();
    const others = [...this.nodes.values()].filter((n) => n.alive && n !== candidate && n !== leader);
    if (!leader || others.length === 0) return;
    const victim = this.rng.pick(others);
    this.stats.faults++;
    this.crash(victim, `NEMESIS restart as ${candidate.id} campaigns, inside ${leader.id}'s lease`);
    // Back at once: up before the candidate's request arrives, not yet hearing the leader.
    this.at(0, () => void this.startNode(victim, false));
  }

  /** `term`: the one it was elected in (the node may be past it by the time the driver says so). */
  private onLeader(node: SimReplica, raft: RaftNode, term: number): void {
    this.stats.elections++;
    for (const v of raft.membership.voters) if (this.nodes.get(v)?.logger) this.violation(`a logger is a voter: ${node.id} leads term ${term} with voters ${raft.membership.voters}`);
    const prior = this.leaderOfTerm.get(term);
    if (prior && prior !== node.id) this.violation(`election safety: ${prior} and ${node.id} both lead term ${term}`);
    this.leaderOfTerm.set(term, node.id);
  }

  private leader(): SimReplica | undefined {
    let best: SimReplica | undefined;
    for (const n of this.nodes.values()) {
      const d = n.proc?.driver;
      if (n.alive && n.pausedUntil <= this.now && d && d.node.role === Role.Leader && (!best || d.node.term > best.proc!.driver.node.term)) best = n;
    }
    return best;
  }

  // ---------------------------------------------------------------------------------------
  // Network

  private linkUp(from: string, to: string): boolean {
    return !this.blocked.has(`${from}>${to}`);
  }

  private sendPeer(node: SimReplica, inc: number, msgs: Message[]): void {
    if (node.inc !== inc) return;
    // What the sender's hello would say: the receiver admits a peer it does not know only when
    // that peer has committed more (replica/transport.ts). Checked per message here, which is
    // stricter than per connection, and is how a member behind on the configuration that
    // refused a newer leader for ever would show up (fault suite seed 602).
    const commit = node.running()?.driver.node.log.committed ?? 0;
    for (const m of msgs) {
      const to = this.nodes.get(m.to);
      if (!to || !this.linkUp(m.from, m.to) || this.rng.chance(this.dropRate)) continue;
      const copies = this.rng.chance(this.dupRate) ? 2 : 1;
      for (let i = 0; i < copies; i++) {
        this.at(this.rng.int(1, this.maxLatency), () => {
          const target = to.running();
          if (!this.linkUp(m.from, m.to) || !target) return;
          const admits = admitsMembersOf(() => target.driver.node.membership, () => target.driver.node.log.committed);
          if (!admits(m.from, { from: m.from, token: '', clientAddr: '', httpAddr: '', raftAddr: '', clusterId: '', commit })) return;
          this.onNode(to, target.inc, () => target.driver.step(m));
        });
      }
    }
  }

  /** A follower passing a command to the leader over the (simulated) client protocol. */
  private forward(from: SimReplica, inc: number, cmd: Command, addr: string): Promise<Response> {
    const timers = from.proc?.inc === inc ? from.proc.timers : this.timersFor(from, inc);
    return new Promise<Response>((resolve) => {
      let done = false;
      const finish = (r: Response) => {
        if (done) return;
        done = true;
        resolve({ ...r, id: cmd.id });
      };
      const base = { id: cmd.id, value: new Uint8Array(0), leader: addr };
      const to = this.nodes.get(addr);
      if (!to || !this.linkUp(from.id, addr)) {
        // The connection cannot be made: nothing was sent.
        timers.setTimeout(() => finish({ ...base, status: Status.UNAVAILABLE, error: 'cannot reach the leader' }), 20);
        return;
      }
      timers.setTimeout(() => finish({ ...base, status: cmd.op === Op.GET ? Status.UNAVAILABLE : Status.UNKNOWN, error: 'no answer from the leader' }), 2000);
      this.at(this.rng.int(1, this.maxLatency), () => {
        const target = to.proc;
        if (!target || !this.linkUp(from.id, addr)) return;
        this.onNode(to, target.inc, () => {
          void target.executor.execute({ ...cmd, forwarded: true }).then((r) => {
            this.at(this.rng.int(1, this.maxLatency), () => {
              if (this.linkUp(addr, from.id)) this.onNode(from, inc, () => finish(r));
            });
          });
        });
      });
    });
  }

  /** A client's request to a replica; 'timeout' when no answer came in time. */
  private call(nodeId: string, cmd: Command, timeoutMs = 1500): Promise<Response | 'timeout'> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (r: Response | 'timeout') => {
        if (!done) {
          done = true;
          resolve(r);
        }
      };
      this.at(timeoutMs, () => finish('timeout'));
      const node = this.nodes.get(nodeId)!;
      this.at(this.rng.int(1, this.maxLatency), () => {
        const p = node.proc;
        if (!p) return;
        this.onNode(node, p.inc, () => {
          void p.executor.execute(cmd).then((r) => this.at(this.rng.int(1, this.maxLatency), () => finish(r)));
        });
      });
    });
  }

  // ---------------------------------------------------------------------------------------
  // Clients

  private pickTarget(): string {
    // Clients talk to replicas; a logger has no client port. (Before log1 exists this is the
    // same pick as always.)
    return this.rng.pick([...this.nodes.values()].filter((n) => !n.logger).map((n) => n.id));
  }

  /**
   * A closed-loop client. Without a session it is a curl user: one request per operation, and
   * the replica owns the retries. With one it behaves like RaftKvClient: a registered session,
   * retries of the same (session, seq), a new session when told it expired.
   */
  private async client(id: string, withSession: boolean): Promise<void> {
    let ops = 0;
    let session = '';
    let seq = 0;
    const stopAt = this.durationMs + 500;
    while (this.now < stopAt) {
      const key = `k${this.rng.int(0, 3)}`;
      const roll = this.rng.float();
      if (roll < 0.4) {
        const call = this.clock++;
        const r = await this.call(this.pickTarget(), newCommand({ op: Op.GET, key }));
        if (r !== 'timeout' && (r.status === Status.OK || r.status === Status.NOT_FOUND)) {
          this.stats.readsOk++;
          this.history.push({ id: this.opId++, client: id, key, kind: 'get', value: r.status === Status.OK ? Buffer.from(r.value).toString() : null, call, ret: this.clock++ });
        }
      } else {
        const del = roll > 0.9;
        const value = del ? null : `${id}.${++ops}`;
        const op: Operation = { id: this.opId++, client: id, key, kind: 'put', value, call: this.clock++, ret: Infinity };
        const cmd = newCommand({ op: del ? Op.DELETE : Op.SET, key, value: value ? Buffer.from(value) : new Uint8Array(0) });
        let outcome: 'ok' | 'unknown' | 'refused';
        if (!withSession) {
          const r = await this.call(this.pickTarget(), cmd);
          outcome = r === 'timeout' || r.status === Status.UNKNOWN ? 'unknown' : r.status === Status.OK ? 'ok' : 'refused';
        } else {
          let maybe = false;
          const deadline = this.now + 3000;
          outcome = 'refused';
          while (this.now < deadline) {
            if (!session) {
              const r = await this.call(this.pickTarget(), newCommand({ op: Op.REGISTER, key: '' }));
              if (r !== 'timeout' && r.status === Status.OK) {
                session = Buffer.from(r.value).toString();
                seq = 0;
                this.trace(`${id} registered session ${session}`);
              }
              continue;
            }
            seq++;
            const sent = { ...cmd, client: session, seq, acked: seq - 1 };
            let r: Response | 'timeout' | undefined;
            // Retries of this write keep its session and seq: that is what makes them safe.
            while (this.now < deadline) {
              r = await this.call(this.pickTarget(), sent);
              if (r === 'timeout' || r.status === Status.UNKNOWN) maybe = true;
              if (r !== 'timeout' && (r.status === Status.OK || r.status === Status.ERROR || r.status === Status.SESSION_EXPIRED)) break;
              await new Promise<void>((res) => this.at(10, res));
            }
            if (r && r !== 'timeout' && r.status === Status.SESSION_EXPIRED) {
              this.stats.sessionsExpired++;
              this.trace(`${id} session ${session} expired`);
              session = '';
              if (maybe) break; // an earlier attempt may have been applied: unknown
              continue; // this write surely was not: send it again under a new session
            }
            outcome = r && r !== 'timeout' && r.status === Status.OK ? 'ok' : r && r !== 'timeout' && r.status === Status.ERROR ? 'refused' : 'unknown';
            break;
          }
          if (outcome === 'refused' && maybe) outcome = 'unknown';
        }
        if (outcome === 'ok') {
          op.ret = this.clock++;
          this.stats.writesAcked++;
          this.history.push(op);
        } else if (outcome === 'unknown') {
          this.stats.writesIndeterminate++;
          this.history.push(op);
        } else this.stats.writesRefused++; // surely not applied: not part of the history
        this.trace(`${id} ${del ? 'delete' : 'put'}(${key}${value ? `, ${value}` : ''}) ${outcome}`);
      }
      await new Promise<void>((res) => this.at(this.rng.int(0, 20), res));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Nemesis

  private nemesis(): void {
    const all = [...this.nodes.values()];
    const leader = this.leader();
    this.stats.faults++;
    switch (this.rng.int(0, 9)) {
      case 0:
      case 1: {
        const ids = this.rng.shuffle(all.map((n) => n.id));
        const side = leader && this.rng.chance(0.4) ? new Set([leader.id]) : new Set(ids.slice(0, this.rng.int(1, Math.floor(ids.length / 2))));
        this.partition(side, `partition {${[...side].join(',')}} | rest`);
        return;
      }
      case 2: {
        const victim = leader && this.rng.chance(0.5) ? leader : this.rng.pick(all);
        if (!victim.alive) return;
        this.crash(victim, 'NEMESIS power cut');
        this.at(this.rng.int(20, 600), () => void this.startNode(victim, false));
        return;
      }
      case 3: {
        // A stalled process (GC, a blocked event loop): ticks lost, the clock runs on.
        const victim = leader && this.rng.chance(0.5) ? leader : this.rng.pick(all);
        if (!victim.alive) return;
        victim.pausedUntil = Math.max(victim.pausedUntil, this.now + this.rng.int(50, 600));
        this.trace(`NEMESIS pause ${victim.id} until ${victim.pausedUntil.toFixed(0)}ms`);
        // A stalled leader that the others stop hearing: they elect and write while it sleeps,
        // and the first thing it does on waking may be to answer a read from its lease.
        if (victim === leader && this.rng.chance(0.5)) this.partition(new Set([victim.id]), `isolate stalled leader ${victim.id}`);
        return;
      }
      case 4:
        this.dropRate = this.rng.pick([0, 0, 0.05, 0.2]);
        this.dupRate = this.rng.pick([0, 0.02, 0.1]);
        // Now and then a congested network: answers arrive long after the asker moved on.
        this.maxLatency = this.rng.pick([3, 5, 20, 60, 150]);
        this.trace(`NEMESIS network drop=${this.dropRate} dup=${this.dupRate} latency<=${this.maxLatency}ms`);
        return;
      case 5: {
        if (!leader?.proc) return;
        const voters = leader.proc.driver.node.membership.voters.filter((v) => v !== leader.id);
        if (voters.length === 0) return;
        const to = this.rng.pick(voters);
        this.trace(`NEMESIS transfer ${leader.id} -> ${to}`);
        leader.proc.driver.transferLeadership(to).catch(() => undefined);
        if (this.rng.chance(0.5)) this.at(this.rng.int(1, 15), () => this.partition(new Set([leader.id]), `isolate old leader ${leader.id} after transfer`));
        return;
      }
      case 6: {
        const victim = this.rng.pick(all);
        victim.fs.syncFailureRate = 0.3;
        this.trace(`NEMESIS failing fsyncs on ${victim.id}`);
        this.at(this.rng.int(50, 300), () => (victim.fs.syncFailureRate = 0));
        return;
      }
      case 8:
        if (this.rng.chance(0.5)) {
          // A wall clock jumps (NTP, a VM migration). Only command time stamps, and so session
          // expiry, see it; the lease runs on the monotonic clock.
          const victim = this.rng.pick(all);
          const jump = this.rng.int(-3000, 3000);
          victim.wallOffset += jump;
          this.trace(`NEMESIS wall clock of ${victim.id} jumps ${jump} ms`);
          return;
        }
        this.changeMembership(leader);
        return;
      case 7: {
        // A follower restarts inside the leader's lease.
        const followers = all.filter((n) => n.alive && n !== leader);
        if (followers.length === 0) return;
        const victim = this.rng.pick(followers);
        this.crash(victim, 'NEMESIS quick restart');
        this.at(this.rng.int(1, 30), () => void this.startNode(victim, false));
        return;
      }
      default:
        this.changeMembership(leader);
    }
  }

  private partition(side: Set<string>, what: string): void {
    this.blocked.clear();
    const ids = [...this.nodes.keys()];
    for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
    this.trace(`NEMESIS ${what}`);
    this.at(this.rng.int(100, 700), () => {
      this.blocked.clear();
      this.trace('NEMESIS heal partition');
    });
  }

  private changeMembership(leader: SimReplica | undefined): void {
    const d = leader?.proc?.driver;
    if (!leader || !d) return;
    const m = d.node.membership;
    const members = new Set([...m.voters, ...m.learners]);
    const roll = this.rng.int(0, 3);
    const propose = (cc: Parameters<RaftDriver['proposeConfChange']>[0], what: string) => {
      this.trace(`NEMESIS ${what}`);
      d.proposeConfChange(cc).catch((e: unknown) => {
        if (!(e instanceof RaftError) && !(e instanceof Error)) throw e;
      });
    };
    if (roll === 3 && m.voters.length >= 3 && ![...this.nodes.values()].some((n) => n.rejoining)) {
      // A voter's disk is lost; it comes back empty and joins under its id, and the leader
      // admits it as the replica server does (joinSteps: remove the old member, add it anew).
      const victim = this.nodes.get(this.rng.pick(m.voters.filter((v) => v !== leader.id)));
      if (!victim) return;
      this.crash(victim, 'NEMESIS disk lost');
      victim.fs.wipe();
      victim.rejoining = true;
      victim.incarnation = `${victim.id}.${victim.inc}`;
      this.at(this.rng.int(20, 200), () => {
        void this.startNode(victim, false);
        this.admit(victim);
      });
      return;
    }
    if (roll === 0 && m.voters.length + m.learners.length < 7) {
      // A new member, or a removed one back with a wiped disk, under the same id.
      const gone = [...this.nodes.values()].filter((n) => !members.has(n.id) && !n.logger);
      let node: SimReplica;
      if (gone.length > 0 && this.rng.chance(0.5)) {
        // The operator replaces the removed member's machine and adds it back under its id.
        // Messages its old process had in flight drain first (a re-add is a later action, and
        // a connection's data dies with its process); see the note in the issue tracker.
        node = this.rng.pick(gone);
        this.crash(node, 'removed member shut down for re-adding');
        node.fs.wipe();
        node.incarnation = `${node.id}.${node.inc}`;
        const back = node;
        // Started with no state, it joins as the replica server does (POST /join, fresh, with
        // its incarnation). Before, the simulator proposed its AddLearner itself, a step no part
        // of raftkv takes, which a join of the same id still in flight could make stale.
        back.rejoining = true;
        this.at(100, () => {
          this.trace(`NEMESIS add ${back.id} again, wiped`);
          void this.startNode(back, false);
          this.admit(back);
        });
        return;
      }
      node = this.addNode(`n${this.nextNode++}`);
      void this.startNode(node, false);
      if (this.rng.chance(0.3)) propose({ type: ConfChangeType.AddVoter, node: node.id, addr: `sim:${node.id}` }, `add ${node.id} directly as a voter`);
      else propose({ type: ConfChangeType.AddLearner, node: node.id, addr: `sim:${node.id}` }, `add learner ${node.id}`);
    } else if (roll === 1 && m.learners.length > 0) {
      const l = this.rng.pick(m.learners);
      propose({ type: ConfChangeType.AddVoter, node: l }, `promote ${l}`);
    } else if (m.voters.length > 3) {
      const v = this.rng.pick(m.voters);
      propose({ type: ConfChangeType.RemoveNode, node: v }, `remove ${v}`);
    }
  }

  /** What POST /join does on the leader for a joiner with no state: its joinSteps, in order. */
  private admit(node: SimReplica): void {
    // The start that asks: once it is gone (crashed, or wiped and started again), it asks no more.
    const start = node.incarnation;
    const d = this.leader()?.proc?.driver;
    if (!d) {
      this.at(50, () => node.incarnation === start && this.admit(node));
      return;
    }
    const joiner = { id: node.id, addr: `sim:${node.id}`, voter: false, fresh: true, incarnation: start };
    if (this.againRng.chance(0.15)) {
      // It loses its disk again while the leader is still taking its steps, and starts anew:
      // two starts of it join at once (admitJoiner; seed 421).
      this.at(this.againRng.int(1, 10), () => {
        if (node.incarnation !== start || !node.rejoining || !node.alive || this.healed) return;
        this.crash(node, 'NEMESIS disk lost again while joining');
        node.fs.wipe();
        node.incarnation = `${node.id}.${node.inc}`;
        this.at(this.againRng.int(0, 10), () => {
          void this.startNode(node, false);
          this.admit(node);
        });
      });
    }
    let steps;
    try {
      steps = joinSteps(d.node.membership, joiner);
    } catch (e) {
      this.violation(`joinSteps refused a rejoin of ${node.id}: ${(e as Error).message}`);
      return;
    }
    this.trace(`NEMESIS ${node.id} rejoins with no state: ${steps.map((cc) => `${cc.type} ${cc.node}`).join(', ')}`);
    // The leader's side of POST /join (RaftServer.addMember): steps taken one at a time, a newer
    // fresh join of the same id superseding this one.
    let joins = this.joinsInFlight.get(d);
    if (!joins) this.joinsInFlight.set(d, (joins = new JoinsInFlight()));
    const flight = joins.begin(joiner);
    let settled = false;
    // Each step retried as RaftServer.retryConfChange does, while this attempt lasts.
    const change = async (cc: ConfChange): Promise<void> => {
      for (;;) {
        try {
          await d.proposeConfChange(cc);
          return;
        } catch (e) {
          if (!confChangeMayBeRetried(e) || settled) throw e;
          await new Promise<void>((r) => this.at(20, r));
        }
      }
    };
    const run = async () => {
      try {
        await admitJoiner(joiner, { membership: () => d.node.membership, change, superseded: flight.superseded });
      } finally {
        flight.end();
      }
    };
    // Like the joiner's POST /join, an attempt that gets no answer is given up and made again:
    // a leader that crashes with the steps pending never answers (seed 12: n1 stayed in the
    // configuration under its lost incarnation, its acknowledgments ignored for good).
    const retry = () => {
      if (settled) return;
      settled = true;
      this.at(50, () => node.incarnation === start && this.admit(node));
    };
    this.at(ADMIT_ATTEMPT_MS, retry);
    run().then(
      () => {
        if (settled || node.incarnation !== start) return;
        settled = true;
        node.rejoining = false;
        node.proc?.driver.node.allowVotes();
        this.trace(`${node.id} admitted again (a learner; promoted later)`);
      },
      (e) => {
        // A refusal (HTTP 409) ends the joiner's attempts (joinThrough's JoinRefusedError). The
        // replica then stops (exit 1); this start stays up unadmitted instead, which counts for
        // nothing in the configuration either way.
        if (e instanceof RaftError && e.code === 'invalid-conf-change' && !settled && node.incarnation === start) {
          settled = true;
          this.trace(`${node.id}'s join refused: ${e.message}`);
          return;
        }
        retry();
      },
    );
  }

  private healAll(): void {
    this.healed = true;
    this.blocked.clear();
    this.dropRate = 0;
    this.dupRate = 0;
    this.maxLatency = 5;
    for (const n of this.nodes.values()) {
      n.fs.syncFailureRate = 0;
      n.pausedUntil = Math.min(n.pausedUntil, this.now);
      if (!n.alive) void this.startNode(n, false);
    }
    this.trace('NEMESIS heal everything');
  }

  // ---------------------------------------------------------------------------------------
  // After the run

  private finalChecks(): void {
    if (!this.healed) return;
    const leader = this.leader();
    if (!leader?.proc) {
      this.violation('liveness: no leader after healing');
      return;
    }
    const ld = leader.proc.driver;
    const m = ld.node.membership;
    for (const id of [...m.voters, ...m.learners]) {
      const n = this.nodes.get(id);
      if (n?.logger) continue; // checked by checkLoggers
      const p = n?.proc;
      if (!p) {
        this.violation(`liveness: member ${id} is not running after healing`);
        continue;
      }
      if (p.driver.appliedIndex < ld.node.log.committed) {
        const pr = ld.node.progressOf(id);
        this.violation(
          `liveness: ${id} applied ${p.driver.appliedIndex}, the leader committed ${ld.node.log.committed} ` +
            `(leader's view of it: ${pr ? `match ${pr.match} next ${pr.next} ${pr.state}` : 'no progress'}; its term ${p.driver.node.term}, leader ${p.driver.node.leader || '-'}, log ${p.driver.node.log.lastIndex()}; ` +
            `incarnation ${p.driver.node.ownIncarnation() ?? 'none'}, the leader counts ${ld.node.membership.incarnations?.[id] ?? 'none'})`,
        );
        continue;
      }
      if (p.driver.appliedIndex === leader.proc.driver.appliedIndex) {
        const a = JSON.stringify([...p.sm.engine.entries()].map(([k, v]) => [k, Buffer.from(v).toString()]));
        const b = JSON.stringify([...leader.proc.sm.engine.entries()].map(([k, v]) => [k, Buffer.from(v).toString()]));
        if (a !== b) this.violation(`replicas diverge: ${id} has ${a}, leader ${leader.id} has ${b}`);
      }
    }
    for (const op of this.history) {
      if (op.kind === 'put' && op.value !== null && op.ret !== Infinity && !this.freshAt.has(op.value)) {
        this.violation(`acknowledged write lost: ${op.client} put(${op.key}, ${op.value})`);
      }
    }
    const r = checkHistory(this.history);
    if (r.ok === false) this.violation(`not linearizable on key ${r.key}: ${r.reason}\n${formatOps(r.ops)}`);
    else if (r.ok === 'unknown') this.violation(`linearizability check inconclusive on key ${r.key}: ${r.reason}`);
  }
}

export function runWholeSchedule(opts: WholeSimOptions): Promise<WholeSimResult> {
  return new WholeReplicaSim(opts).run();
}
