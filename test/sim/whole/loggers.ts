/**
 * Loggers in the whole-replica simulator: the logger process (the real CommandLog and LogMachine
 * on its own simulated disk, its Raft state opened as the process opens it, a non-voter that
 * never campaigns), how it joins and rejoins, the voters' truncation asks and its answer (the
 * process's own rule), and the end-of-run checks of every command log (a logger's, or a
 * replica's applog): caught up, exactly what was applied, and enough to rebuild the state.
 */
import { DiskStorage, Entry, EntryReader, Message, RaftConfig, isDamage, RaftNode, RaftDriver, SessionOptions, Snapshot, Timers, loadOrBootstrap } from '../../../raft/index.js';
import type { LogSource } from '../../../logger/client.js';
import { CommandLog, UnavailableRangeError } from '../../../logger/command-log.js';
import { LogMachine } from '../../../logger/log-machine.js';
import { openLoggerRaftState } from '../../../logger/member.js';
import { rebuild } from '../../../logger/rebuild.js';
import { MemoryEngine } from '../../../replica/engines/memory.js';
import { joinSteps } from '../../../replica/join.js';
import { KvStateMachine } from '../../../replica/kv-machine.js';
import type { Prng } from '../../../util/prng.js';
import { SimReplica, TICK_MS } from './sim-replica.js';

/** A logger's directories, as the logger process lays them out. */
const LOGGER_LOG = '/logger/log';
const LOGGER_RAFT = '/logger/raft';

/** What the loggers need of the simulation: its clock, scheduling, network, nodes and verdicts. */
export interface LoggerHost {
  readonly rng: Prng;
  readonly sessionOptions: Required<Pick<SessionOptions, 'maxSessions' | 'ttlMs'>>;
  now(): number;
  at(delay: number, fn: () => void): void;
  trace(line: string): void;
  violation(what: string): void;
  violated(): boolean;
  nodes(): Iterable<SimReplica>;
  node(id: string): SimReplica | undefined;
  leader(): SimReplica | undefined;
  linkUp(from: string, to: string): boolean;
  maxLatency(): number;
  onNode(node: SimReplica, inc: number, fn: () => void): void;
  timersFor(node: SimReplica, inc: number): Timers;
  /** The Raft settings every simulated node shares. */
  raftConfig(node: SimReplica): RaftConfig;
  countingReader(storage: EntryReader): EntryReader;
  sendPeer(node: SimReplica, inc: number, msgs: Message[]): void;
  crash(node: SimReplica, why: string): void;
  /** Start a crashed node's process again. */
  restart(node: SimReplica): void;
  fsyncFailed(): void;
  /** The entry the replicas applied at `index` (its term, and its data in base64). */
  appliedAt(index: number): { term: number; data: string } | undefined;
  healed(): boolean;
}

export class SimLoggers {
  constructor(private readonly sim: LoggerHost) {}

  /**
   * A logger process: the real CommandLog and LogMachine on this node's disk, its Raft log kept
   * unsynced (as the logger does), a non-voter that never campaigns. What it logs is checked
   * against what the replicas applied, after every power cut and at the end.
   */
  async startLogger(node: SimReplica): Promise<void> {
    const inc = ++node.inc;
    node.alive = true;
    node.pausedUntil = 0;
    node.fs.reopen();
    const timers = this.sim.timersFor(node, inc);
    const restartLater = (why: string) => {
      if (node.inc !== inc) return;
      this.sim.crash(node, why);
      this.sim.at(this.sim.rng.int(50, 300), () => this.sim.restart(node));
    };
    let log: CommandLog;
    let storage: DiskStorage;
    try {
      log = await CommandLog.open(LOGGER_LOG, { fs: node.fs, segmentBytes: 2048 });
      if (node.inc !== inc) return;
      storage = await openLoggerRaftState(LOGGER_RAFT, (line) => this.sim.trace(`${node.id}: ${line}`), { fs: node.fs, segmentBytes: 8192 });
    } catch (e) {
      if (node.inc !== inc) return;
      if (isDamage(e)) this.sim.violation(`logger ${node.id} cannot start after a power cut: ${(e as Error).message}`);
      else restartLater(`start failed: ${(e as Error).message}`);
      return;
    }
    if (node.inc !== inc) return;
    const initial = await loadOrBootstrap(storage).catch((e: Error) => e);
    if (node.inc !== inc) return;
    if (initial instanceof Error) {
      restartLater(`loading its Raft state failed: ${initial.message}`);
      return;
    }
    const machine = new LogMachine(log);
    machine.onError = (e) => {
      this.sim.fsyncFailed();
      restartLater(`command log flush failed: ${e.message}`);
    };
    machine.onBaseInstalled = (index) => this.sim.trace(`${node.id} installed a cluster snapshot at ${index} as its base`);
    if (initial.snapshot) {
      try {
        await machine.restore(initial.snapshot);
      } catch (e) {
        if (node.inc !== inc) return;
        // Restoring writes the snapshot as the command log's base: an injected write or fsync
        // failure stops this start (a real logger exits and is restarted); damage never may.
        if (isDamage(e)) this.sim.violation(`logger ${node.id} cannot start: ${(e as Error).message}`);
        else restartLater(`restoring its snapshot failed: ${(e as Error).message}`);
        return;
      }
    }
    if (node.inc !== inc) return;
    const raft = new RaftNode({ ...this.sim.raftConfig(node), candidate: false, entryReader: this.sim.countingReader(storage) }, initial);
    const driver = new RaftDriver({
      node: raft,
      storage,
      stateMachine: machine,
      transport: { send: (msgs) => this.sim.sendPeer(node, inc, msgs) },
      tickMs: TICK_MS,
      timers,
      onFatal: (e) => {
        this.sim.fsyncFailed();
        restartLater(`storage failed: ${e.message}`);
      },
    });
    node.lproc = { inc, driver, log };
    driver.start();
    const fresh = (initial.hardState?.term ?? 0) === 0 && (initial.entries?.length ?? 0) === 0 && !initial.snapshot;
    this.sim.trace(`${node.id} (logger) started (incarnation ${inc}, command log ${log.info().first}..${log.info().last}, raft ${fresh ? 'empty' : `term ${raft.term}`})`);
    // Its unsynced Raft log lost to a power cut: it joins again as the logger process does.
    if (fresh && node.admitted) this.admitLogger(node, true);
    this.readWhileRunning(node, node.lproc);
  }

  /**
   * Recovery readers (RECOVER i n) while the logger runs, truncates and crashes: every range it
   * hands out is exactly what the replicas applied; one it no longer holds is refused, never cut.
   */
  private readWhileRunning(node: SimReplica, l: NonNullable<SimReplica['lproc']>): void {
    const { at, rng } = this.sim;
    const next = () => {
      if (node.lproc !== l || this.sim.violated()) return;
      const { first, last } = l.log.info();
      if (last >= first) {
        const from = rng.int(first, last);
        const to = Math.min(last, from + rng.int(0, 40));
        void this.readRange(node, l, from, to);
      }
      at(rng.int(50, 300), next);
    };
    at(rng.int(50, 300), next);
  }

  private async readRange(node: SimReplica, l: NonNullable<SimReplica['lproc']>, from: number, to: number): Promise<void> {
    let got: Entry[] = [];
    try {
      for await (const batch of l.log.read(from, to, 512)) got = got.concat(batch);
    } catch (e) {
      // Truncated since it was asked (refused before anything was sent), or the process is gone.
      if (e instanceof UnavailableRangeError || node.lproc !== l) return;
      this.sim.violation(`logger ${node.id}: reading ${from}..${to} failed: ${(e as Error).message}`);
      return;
    }
    if (got.length !== to - from + 1 || got.some((e, i) => e.index !== from + i)) {
      this.sim.violation(`logger ${node.id}: a read of ${from}..${to} returned ${got.length} entries (${got[0]?.index}..${got[got.length - 1]?.index})`);
      return;
    }
    for (const e of got) {
      const seen = this.sim.appliedAt(e.index);
      if (seen && (seen.term !== e.term || seen.data !== Buffer.from(e.data).toString('base64'))) {
        this.sim.violation(`logger ${node.id}: a read of ${from}..${to} returned term ${e.term} at ${e.index}, the replicas applied term ${seen.term} there`);
        return;
      }
    }
  }

  /** A voter's truncation ask, over the network to the logger (POST /v1/log/<cluster>/truncate). */
  askLoggerToTruncate(from: SimReplica, inc: number, index: number): void {
    const logger = [...this.sim.nodes()].find((n) => n.logger);
    if (!logger || from.inc !== inc || !this.sim.linkUp(from.id, logger.id)) return;
    this.sim.at(this.sim.rng.int(1, this.sim.maxLatency()), () => {
      const l = logger.lproc;
      if (l) this.sim.onNode(logger, l.inc, () => void this.loggerTruncate(logger, l, from.id, index));
    });
  }

  /** The logger's side of an ask: the same rule as the logger process (TruncationAsks). */
  private async loggerTruncate(node: SimReplica, l: NonNullable<SimReplica['lproc']>, member: string, index: number): Promise<void> {
    const voters = l.driver.node.membership.voters;
    if (!voters.includes(member)) return; // 403: only voters' asks count
    const d = node.asks.ask(member, index, voters, l.log.info());
    if (!d.truncate) return;
    let base: Snapshot | undefined;
    if (!d.heldBase) {
      base = await this.fetchBase(node, d.baseFrom, d.upTo);
      if (!base) return; // no voter reachable with a snapshot that far: 503, nothing dropped
      // A base past the log's end: the logger waits for its log to get there (it gives up after
      // 30 s; here after 3 simulated seconds).
      for (let waited = 0; base.meta.index > l.log.info().last; waited += 50) {
        if (waited >= 3000 || node.lproc !== l) return;
        await new Promise<void>((r) => this.sim.at(50, r));
      }
      if (node.lproc !== l) return;
    }
    this.sim.trace(`${node.id} truncates its command log to ${d.upTo} (${base ? `base at ${base.meta.index} from a voter` : 'the base it holds'})`);
    try {
      await l.log.truncatePrefix(d.upTo, base);
    } catch (e) {
      // A power cut or a failed fsync in the middle: the next open must still tell the truth.
      this.sim.trace(`${node.id} truncation to ${d.upTo} failed: ${(e as Error).message}`);
    }
  }

  /** GET /v1/snapshot from the first voter that answers: its state as of its last applied entry. */
  private async fetchBase(logger: SimReplica, from: string[], atLeast: number): Promise<Snapshot | undefined> {
    for (const id of from) {
      const p = this.sim.node(id)?.proc;
      if (!p || !this.sim.linkUp(logger.id, id) || !this.sim.linkUp(id, logger.id)) continue;
      const n = p.driver.node;
      const index = p.driver.appliedIndex;
      if (index < atLeast) continue;
      let meta: Snapshot['meta'];
      try {
        meta = { index, term: n.log.term(index), membership: n.membershipAt(index) };
      } catch {
        continue;
      }
      // Captured at once, serialized afterwards (as the replica serves it).
      const captured = p.sm.captureSnapshot();
      const parts: Uint8Array[] = [];
      const pause = () => Promise.resolve();
      for await (const c of captured.chunks(pause)) parts.push(Buffer.from(c));
      return { meta, data: Buffer.concat(parts) };
    }
    return undefined;
  }

  /** What POST /join does on the leader for a logger: its joinSteps, in order, retried. */
  admitLogger(node: SimReplica, fresh: boolean): void {
    if (!node.alive) {
      this.sim.at(50, () => this.admitLogger(node, fresh));
      return;
    }
    const d = this.sim.leader()?.proc?.driver;
    if (!d) {
      this.sim.at(50, () => this.admitLogger(node, fresh));
      return;
    }
    let steps;
    try {
      steps = joinSteps(d.node.membership, { id: node.id, addr: `sim:${node.id}`, voter: false, fresh, logger: true });
    } catch (e) {
      this.sim.violation(`joinSteps refused logger ${node.id}: ${(e as Error).message}`);
      return;
    }
    this.sim.trace(`NEMESIS logger ${node.id} joins: ${steps.map((cc) => `${cc.type} ${cc.node}${cc.logger ? ' (logger)' : ''}`).join(', ') || 'nothing to do'}`);
    const run = async () => {
      for (const cc of steps) await d.proposeConfChange(cc);
    };
    run().then(
      () => {
        node.admitted = true;
        this.sim.trace(`${node.id} admitted (a logger)`);
      },
      () => this.sim.at(50, () => this.admitLogger(node, fresh)),
    );
  }

  /**
   * After healing, every logger in the configuration has logged everything committed, and what
   * it logged is exactly what the replicas applied, index by index.
   */
  async checkLoggers(): Promise<void> {
    if (!this.sim.healed()) return;
    const ld = this.sim.leader()?.proc?.driver;
    if (!ld) return;
    const m = ld.node.membership;
    for (const node of this.sim.nodes()) {
      if (node.logger && m.learners.includes(node.id)) {
        if (!m.loggers?.includes(node.id)) this.sim.violation(`${node.id} is in the configuration but not marked a logger`);
        const l = node.lproc;
        if (!l) {
          this.sim.violation(`liveness: logger ${node.id} is not running after healing`);
          continue;
        }
        const pr = ld.node.progressOf(node.id);
        await this.checkCommandLog(`logger ${node.id}`, l.log, `leader's view: ${pr ? `match ${pr.match} next ${pr.next} ${pr.state}` : 'no progress'}; its applied ${l.driver.appliedIndex}, leader ${l.driver.node.leader || '-'}`);
      } else if (node.proc?.sm.applog && (m.voters.includes(node.id) || m.learners.includes(node.id))) {
        await this.checkCommandLog(`the applog of ${node.id}`, node.proc.sm.applog, `its applied ${node.proc.driver.appliedIndex}`);
      }
      if (this.sim.violated()) return;
    }
  }

  /**
   * A command log (a logger's, or a replica's applog) after healing: it reaches the leader's
   * commit, holds exactly what the replicas applied, index by index, and alone (base snapshot +
   * entries, through the real rebuild()) gives the leader's state: what it is kept for.
   */
  private async checkCommandLog(what: string, log: CommandLog, context: string): Promise<void> {
    const leader = this.sim.leader()?.proc;
    if (!leader) return;
    await log.flush();
    const { first, last } = log.info();
    const committed = leader.driver.node.log.committed;
    if (last < committed) {
      this.sim.violation(`liveness: ${what} reaches ${last}, the leader committed ${committed} (${context})`);
      return;
    }
    if (last < first) return;
    for await (const batch of log.read(first, last)) {
      for (const e of batch) {
        const seen = this.sim.appliedAt(e.index);
        if (!seen) continue; // applied only through snapshots by every replica: nothing to compare
        if (seen.term !== e.term || seen.data !== Buffer.from(e.data).toString('base64')) {
          this.sim.violation(`${what} holds term ${e.term} at ${e.index}, the replicas applied term ${seen.term} there (or other bytes)`);
          return;
        }
      }
    }
    this.sim.trace(`${what} holds ${first}..${last}, as the replicas applied them`);
    if (leader.driver.appliedIndex !== last) return;
    const sm = new KvStateMachine(new MemoryEngine(1 << 20), { nodeId: 'rebuilt', sessions: this.sim.sessionOptions });
    try {
      const r = await rebuild(commandLogSource(log), { applyBatch: (b) => sm.applyToEngine(b), restoreState: (st) => sm.restoreState(st) }, { mode: 'streaming' });
      if (r.index !== last) this.sim.violation(`rebuilding from ${what} reached ${r.index}, it ends at ${last}`);
    } catch (e) {
      this.sim.violation(`the state cannot be rebuilt from ${what}: ${(e as Error).message}`);
      return;
    }
    const a = JSON.stringify([...sm.engine.entries()].map(([k, v]) => [k, Buffer.from(v).toString()]));
    const b = JSON.stringify([...leader.sm.engine.entries()].map(([k, v]) => [k, Buffer.from(v).toString()]));
    if (a !== b) this.sim.violation(`the state rebuilt from ${what} at ${last} is ${a}, the leader's is ${b}`);
    else this.sim.trace(`rebuilt the state at ${last} from ${what} (base ${log.info().base?.index ?? 'none'}): the leader's`);
  }
}

/** A logger's command log as a recovery source, read in place (what its recov port serves). */
function commandLogSource(log: CommandLog): LogSource {
  return {
    info: async () => {
      const i = log.info();
      return [{ name: 'log1', clusterId: '', first: i.first, last: i.last, commitIndex: i.last, base: i.base ?? null, bytes: i.bytes }];
    },
    base: () => log.base(),
    range: async (_cluster, from, to, onEntries) => {
      let count = 0;
      for await (const batch of log.read(from, to)) {
        count += batch.length;
        onEntries(batch);
      }
      return { count, bytes: 0 };
    },
    rangePrepared: () => Promise.reject(new Error('not used: rebuilt without prepared batches')),
  };
}
