/**
 * A deterministic simulation of a raftkv cluster (TigerBeetle/FoundationDB style): simulated
 * time, a seeded PRNG for every choice, a network that drops, delays, duplicates, reorders and
 * partitions, disks whose unsynced writes vanish on a crash, and clients whose history is
 * checked for linearizability. One seed is one schedule, replayed exactly.
 */
import {
  ConfChangeType,
  decodeConfChange,
  Entry,
  EntryType,
  HardState,
  Message,
  MessageType,
  RaftError,
  RaftNode,
  Ready,
  Role,
  Snapshot,
  appendToLog,
  readFromLog,
  bootstrapEntries,
} from '../../raft/index.js';
import { checkHistory, formatOps, Operation } from './linearizability.js';
import { KvCommand, SESSION_EXPIRED, SimKv, decodeCommand, encodeCommand } from './kv.js';
import type { SessionOptions } from '../../raft/index.js';
import { Prng } from '../../util/prng.js';

export interface SimOptions {
  seed: number;
  /** Simulated milliseconds of faults and load. */
  durationMs?: number;
  /** Simulated milliseconds of calm at the end, for the cluster to converge. */
  settleMs?: number;
  trace?: boolean;
}

export interface SimStats {
  events: number;
  simulatedMs: number;
  nodes: number;
  elections: number;
  opsAcked: number;
  opsIndeterminate: number;
  readsOk: number;
  faults: number;
  snapshotsSent: number;
  /** Entries the nodes read back from their disks (released from memory). */
  entriesReadBack: number;
  confChanges: number;
  transfers: number;
  maxCommit: number;
}

export interface SimResult {
  seed: number;
  violations: string[];
  stats: SimStats;
  trace: string[];
}

const TICK_MS = 10;

/** The durable part of a node: what survives a crash. */
class SimDisk {
  hardState: HardState = { term: 0, vote: '', commit: 0 };
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];


  compact(upTo: number): void {
    let drop = 0;
    while (drop < this.entries.length && this.entries[drop].index <= upTo) drop++;
    this.entries = this.entries.slice(drop);
  }
}

type Input =
  | { kind: 'msg'; m: Message }
  | { kind: 'tick' }
  | { kind: 'client'; req: ClientRequest }
  /** An operator action (transfer, membership change), run when the node is between batches. */
  | { kind: 'admin'; what: string; fn: (raft: RaftNode) => void }
  /** The transport found nothing listening at `id` (its process crashed): RaftNode.leaderGone. */
  | { kind: 'gone'; id: string }
  /** Thrifty replication: entry `index` was held back from a voter a while ago (RaftNode.hedge). */
  | { kind: 'hedge'; index: number };

interface ClientRequest {
  attempt: number;
  client: SimClient;
  op: 'put' | 'del' | 'get' | 'register';
  key: string;
  cmd?: KvCommand;
}

type ClientReply =
  | { kind: 'ok'; value: string | null; result?: string }
  /** The command's session is unknown to the cluster: it was not applied. */
  | { kind: 'session-expired' }
  | { kind: 'redirect'; leader: string }
  | { kind: 'retry' };

class SimNode {
  raft!: RaftNode;
  kv!: SimKv;
  readonly disk = new SimDisk();
  alive = false;
  paused = false;
  busy = false;
  /** A hedge check is scheduled (thrifty replication; one at a time, like the driver's timer). */
  hedgeArmed = false;
  /**
   * This node's clock rate against true (simulated) time: monotonic clocks differ in rate
   * (and the lease must allow for it), they do not jump.
   */
  clockRate = 1;
  /** Members may be configured with different election timeouts (a flag per process). */
  electionTicks = 10;
  incarnation = 0;
  inbox: Input[] = [];
  pendingProposals = new Map<number, { term: number; req: ClientRequest }>();
  pendingReads = new Map<string, ClientRequest>();
  readsWaiting: { index: number; req: ClientRequest }[] = [];
  lastSnapshotIndex = 0;
  constructor(readonly id: string) {}
}

class SimClient {
  /** Session id from the cluster ('' until registered, and again after it expired). */
  session = '';
  /** Operations made (values are `${id}.${ops}`, unique). */
  ops = 0;
  seq = 0;
  ackedThrough = 0;
  guess = '';
  attempt = 0;
  current: { op: Operation; deadline: number; req: ClientRequest } | undefined;
  constructor(readonly id: string) {}
}

export class EventQueue {
  private heap: { time: number; seq: number; fn: () => void }[] = [];
  private seq = 0;
  get size(): number {
    return this.heap.length;
  }
  push(time: number, fn: () => void): void {
    const h = this.heap;
    h.push({ time, seq: this.seq++, fn });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p], h[i])) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }
  pop(): { time: number; fn: () => void } | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i], h[m]];
        i = m;
      }
    }
    return top;
  }
}

function less(a: { time: number; seq: number }, b: { time: number; seq: number }): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}

export class Simulation {
  private readonly rng: Prng;
  private readonly goneRng: Prng;
  /** Whether crashes are reported to the survivors (RaftNode.leaderGone) in this schedule. */
  private readonly fastFailover: boolean;
  /**
   * Election timeouts differ between members in this schedule (up to 4x): a member whose
   * timer is long keeps counting on a leader (it will not vote against it) well after that
   * leader stepped down. Its own stream too, for the same reason.
   */
  private readonly timerRng: Prng;
  private readonly mixedTimers: boolean;
  /** Thrifty replication (RaftConfig.thrifty) on every member: in half the schedules. */
  private readonly thrifty: boolean;
  /**
   * Whether nodes read released entries back from their disks, how many they keep in memory
   * (tiny, so that lagging followers are served from disk), and how often a read fails or comes
   * short: a stream of its own, as goneRng.
   */
  private readonly readBack: { tail: number; failRate: number } | undefined;
  private readonly readBackRng: Prng;
  private readonly queue = new EventQueue();
  private now = 0;
  /** Logical clock for the client history: strictly orders every call and return. */
  private clock = 0;
  private readonly nodes = new Map<string, SimNode>();
  private readonly clients: SimClient[] = [];
  private readonly history: Operation[] = [];
  private readonly violations: string[] = [];
  private readonly traceLines: string[] = [];
  private readonly traceOn: boolean;
  private readonly durationMs: number;
  private readonly settleMs: number;
  private readonly readMode: 'safe' | 'lease';
  /** Session table limits: small in some schedules, so sessions expire under the clients' feet. */
  private readonly sessionOptions: SessionOptions;
  private readonly snapshotEvery: number;
  private readonly snapshotKeep: number;
  private readonly chunkBytes: number;
  private readonly keys: string[];
  private nextNodeNumber: number;
  /** Nodes added as loggers: the configuration must never make one a voter. */
  private readonly loggerIds = new Set<string>();
  private opId = 0;
  private stopClientsAt: number;

  // Network state.
  private blocked = new Set<string>();
  private dropRate = 0;
  private dupRate = 0;
  private maxLatency = 5;

  // Invariant state.
  private leaderOfTerm = new Map<number, string>();
  /**
   * Every applied index: its entry's term and data, and the lowest term any node was in when
   * applying it, an upper bound on the term in which it was committed (a node learns of a
   * commit from a leader of its own term, never an older one).
   */
  private appliedAt = new Map<number, { term: number; data: string; applyTerm: number }>();
  private freshApplied = new Map<string, number>();
  private readonly stats: SimStats = {
    events: 0,
    simulatedMs: 0,
    nodes: 0,
    elections: 0,
    opsAcked: 0,
    opsIndeterminate: 0,
    readsOk: 0,
    faults: 0,
    snapshotsSent: 0,
    entriesReadBack: 0,
    confChanges: 0,
    transfers: 0,
    maxCommit: 0,
  };

  constructor(private readonly opts: SimOptions) {
    this.rng = new Prng(opts.seed);
    // A stream of its own, so that the schedules of seeds without it stay what they were.
    this.goneRng = new Prng(opts.seed * 7919 + 17);
    this.fastFailover = this.goneRng.chance(0.5);
    this.timerRng = new Prng(opts.seed * 7919 + 29);
    this.readBackRng = new Prng(opts.seed * 7919 + 37);
    this.readBack = this.readBackRng.chance(0.75) ? { tail: this.readBackRng.int(0, 8), failRate: this.readBackRng.pick([0, 0.05, 0.3]) } : undefined;
    this.traceOn = opts.trace ?? false;
    this.durationMs = opts.durationMs ?? 3000;
    this.settleMs = opts.settleMs ?? 3000;
    this.stopClientsAt = this.durationMs + 500;
    this.readMode = this.rng.chance(0.5) ? 'lease' : 'safe';
    // Not in lease mode: the leader's lease is its own election timeout, so every member must
    // share it (as with etcd's lease-based reads; README, "Reads").
    this.mixedTimers = this.timerRng.chance(0.3) && this.readMode === 'safe';
    this.thrifty = new Prng(opts.seed * 7919 + 31).chance(0.5);
    this.snapshotEvery = this.rng.int(10, 80);
    this.snapshotKeep = this.rng.int(0, 8);
    this.chunkBytes = this.rng.int(64, 2048);
    this.keys = Array.from({ length: this.rng.int(2, 6) }, (_, i) => `k${i}`);
    this.sessionOptions = this.rng.chance(0.3)
      ? { maxSessions: this.rng.int(1, 4), ttlMs: this.rng.int(200, 2000) }
      : { maxSessions: 1000 };
    const voters = this.rng.chance(0.5) ? 3 : 5;
    this.nextNodeNumber = voters + 1;
    const members = Array.from({ length: voters }, (_, i) => ({ id: `n${i + 1}`, addr: `sim:${i + 1}` }));
    const boot = bootstrapEntries(members);
    for (const m of members) {
      const node = new SimNode(m.id);
      node.clockRate = 1 + (this.rng.float() * 0.04 - 0.02);
      node.electionTicks = this.drawElectionTicks();
      node.disk.entries = boot.slice();
      node.disk.hardState = { term: 1, vote: '', commit: boot.length };
      this.nodes.set(m.id, node);
      this.start(node);
    }
    const clientCount = this.rng.int(2, 6);
    for (let i = 0; i < clientCount; i++) this.clients.push(new SimClient(`c${i + 1}`));
    this.trace(
      `config: voters=${voters} readMode=${this.readMode}${this.thrifty ? ' thrifty' : ''} fastFailover=${this.fastFailover} electionTicks=${[...this.nodes.values()].map((n) => n.electionTicks).join('/')} snapshotEvery=${this.snapshotEvery} keep=${this.snapshotKeep} chunk=${this.chunkBytes} keys=${this.keys.length} clients=${clientCount}${this.readBack ? ` readBack(tail ${this.readBack.tail}, fail ${this.readBack.failRate})` : ''}`,
    );
  }

  run(): SimResult {
    for (const c of this.clients) this.at(this.rng.int(0, 50), () => this.nextOp(c));
    this.scheduleNemesis();
    this.at(this.durationMs, () => this.healAll());
    const end = this.durationMs + this.settleMs;
    let guard = 0;
    for (;;) {
      const ev = this.queue.pop();
      if (!ev || ev.time > end) break;
      this.now = ev.time;
      ev.fn();
      if (++guard > 5_000_000) {
        this.violation('simulation did not quiesce (event budget exhausted)');
        break;
      }
      if (this.violations.length > 0) break;
    }
    this.stats.events = guard;
    this.stats.simulatedMs = this.now;
    this.stats.nodes = this.nodes.size;
    if (this.violations.length === 0) this.finalChecks();
    return { seed: this.opts.seed, violations: this.violations, stats: this.stats, trace: this.traceLines };
  }

  // ---------------------------------------------------------------------------------------
  // Scheduling helpers

  private at(delay: number, fn: () => void): void {
    this.queue.push(this.now + delay, fn);
  }

  private trace(line: string): void {
    if (this.traceOn) this.traceLines.push(`${String(this.now).padStart(6)}ms ${line}`);
  }

  private violation(what: string): void {
    this.trace(`VIOLATION ${what}`);
    this.violations.push(what);
  }

  private drawElectionTicks(): number {
    return this.mixedTimers ? this.timerRng.int(10, 40) : 10;
  }

  // ---------------------------------------------------------------------------------------
  // Node lifecycle

  private start(node: SimNode): void {
    const d = node.disk;
    node.incarnation++;
    node.alive = true;
    node.paused = false;
    node.busy = false;
    node.hedgeArmed = false;
    node.inbox = [];
    node.pendingProposals.clear();
    node.pendingReads.clear();
    node.readsWaiting = [];
    node.kv = d.snapshot ? SimKv.restore(d.snapshot.data, this.sessionOptions) : new SimKv(this.sessionOptions);
    node.lastSnapshotIndex = d.snapshot?.meta.index ?? 0;
    const rng = this.rng;
    node.raft = new RaftNode(
      {
        id: node.id,
        electionTicks: node.electionTicks,
        heartbeatTicks: 1,
        readMode: this.readMode,
        snapshotChunkBytes: this.chunkBytes,
        maxInflight: 8,
        maxAppendBytes: 4096,
        promoteLag: 20,
        random: () => rng.float(),
        clock: () => this.now * node.clockRate,
        tickMs: TICK_MS,
        maxClockDrift: 0.05,
        thrifty: this.thrifty,
        // As the replica server: the first start of a bootstrap member (a joiner starts blank).
        advanceFirstElection: node.incarnation === 1 && d.entries.length > 0,
        entryReader: this.readBack && { readEntries: (lo, hi, maxBytes) => this.readDisk(d, lo, hi, maxBytes) },
        logMemoryTail: this.readBack?.tail,
      },
      { hardState: d.hardState, snapshot: d.snapshot, entries: d.entries.slice(), applied: d.snapshot?.meta.index ?? 0 },
    );
    const inc = node.incarnation;
    // A faster clock fires its tick timer sooner in true time.
    const interval = TICK_MS / node.clockRate;
    const tick = () => {
      if (!node.alive || node.incarnation !== inc) return;
      this.input(node, { kind: 'tick' });
      this.at(Math.max(1, Math.round(interval + this.rng.float() * 2 - 1)), tick);
    };
    this.at(this.rng.int(1, TICK_MS), tick);
    this.trace(`${node.id} start (term ${d.hardState.term}, ${d.entries.length} entries, snapshot ${d.snapshot?.meta.index ?? 0})`);
  }

  /**
   * What the peer transport reports after a crash (on half the seeds, from a stream of its own):
   * each member that can reach `victim` finds its port refusing a few ms later, unless it is
   * back by then. Sometimes a member also hears a wrong report about a leader that is alive.
   */
  private reportGone(victim: SimNode): void {
    if (!this.fastFailover) return;
    for (const n of this.nodes.values()) {
      if (n === victim || !n.alive || this.blocked.has(`${n.id}>${victim.id}`)) continue;
      this.at(this.goneRng.int(1, 60), () => {
        if (!victim.alive) this.input(n, { kind: 'gone', id: victim.id });
      });
    }
    const leader = this.leaderNode();
    if (leader && leader !== victim && this.goneRng.chance(0.2)) {
      const followers = [...this.nodes.values()].filter((n) => n.alive && n !== leader);
      if (followers.length > 0) {
        const follower = this.goneRng.pick(followers);
        this.at(this.goneRng.int(0, 60), () => this.input(follower, { kind: 'gone', id: leader.id }));
      }
    }
  }

  private crash(node: SimNode): void {
    if (!node.alive) return;
    node.alive = false;
    node.incarnation++;
    this.trace(`${node.id} CRASH (unsynced writes lost)`);
  }

  private input(node: SimNode, inp: Input): void {
    if (!node.alive) return;
    // A blocked event loop loses timer ticks (Node's setInterval skips missed intervals); the
    // clock goes on. Messages and requests wait in the socket buffers.
    if (node.paused && inp.kind === 'tick') return;
    if (node.busy || node.paused) {
      node.inbox.push(inp);
      return;
    }
    this.handle(node, inp);
    this.kick(node);
  }

  private handle(node: SimNode, inp: Input): void {
    const raft = node.raft;
    switch (inp.kind) {
      case 'tick':
        raft.tick();
        return;
      case 'hedge':
        raft.hedge(inp.index);
        return;
      case 'msg': {
        const reason = raft.step(inp.m);
        if (reason && this.traceOn && inp.m.type !== MessageType.Heartbeat) this.trace(`${node.id} drop ${MessageType[inp.m.type]} from ${inp.m.from}: ${reason}`);
        return;
      }
      case 'client':
        this.handleClient(node, inp.req);
        return;
      case 'gone':
        if (this.traceOn && raft.leader === inp.id) this.trace(`${node.id} finds leader ${inp.id} gone`);
        raft.leaderGone(inp.id);
        return;
      case 'admin':
        if (raft.role !== Role.Leader) return;
        try {
          inp.fn(raft);
          this.trace(`NEMESIS ${inp.what}`);
        } catch (e) {
          if (!(e instanceof RaftError)) throw e;
          this.trace(`NEMESIS ${inp.what} refused: ${e.message}`);
        }
        return;
    }
  }

  /** Take the next Ready, if any, and "fsync" it after a simulated disk latency. */
  private kick(node: SimNode): void {
    if (!node.alive || node.busy || node.paused) return;
    const rd = node.raft.ready();
    this.armHedge(node);
    if (!rd) return;
    node.busy = true;
    const inc = node.incarnation;
    // A leader may send before its own fsync; a crash before the fsync then loses its copy.
    if (rd.sendBeforePersist) for (const m of rd.messages) this.sendPeer(m);
    const needsSync = rd.entries.length > 0 || rd.hardState !== undefined || rd.snapshot !== undefined;
    this.at(needsSync ? this.rng.int(0, 3) : 0, () => {
      if (node.incarnation !== inc || !node.alive) return; // crashed before the fsync finished
      this.persistAndProcess(node, rd);
    });
  }

  /** As the driver does: check entries held back from a voter after a while, hedge if not committed. */
  private armHedge(node: SimNode): void {
    if (!this.thrifty || node.hedgeArmed) return;
    const index = node.raft.heldIndex();
    if (index <= node.raft.log.committed) return;
    node.hedgeArmed = true;
    const inc = node.incarnation;
    this.at(this.rng.int(1, 4), () => {
      if (node.incarnation !== inc || !node.alive) return;
      node.hedgeArmed = false;
      if (node.raft.log.committed < index) this.input(node, { kind: 'hedge', index });
      else this.armHedge(node);
    });
  }

  /** Entries of a node's disk, as DiskStorage reads them back: maybe failing, maybe short. */
  private readDisk(d: SimDisk, lo: number, hi: number, maxBytes: number): Entry[] {
    const rb = this.readBack!;
    if (this.readBackRng.chance(rb.failRate)) return [];
    const out = readFromLog(d.entries, lo, hi, maxBytes);
    // A read that meets a deleted segment ends there.
    const got = this.readBackRng.chance(rb.failRate) ? out.slice(0, this.readBackRng.int(0, out.length)) : out;
    this.stats.entriesReadBack += got.length;
    return got;
  }

  private persistAndProcess(node: SimNode, rd: Ready): void {
    const { disk, raft } = node;
    if (rd.snapshot) {
      disk.snapshot = rd.snapshot;
      disk.entries = [];
    }
    appendToLog(disk.entries, rd.entries);
    if (rd.hardState) disk.hardState = rd.hardState;

    if (rd.softState) {
      this.trace(`${node.id} is ${rd.softState.role} (term ${rd.softState.term}, leader ${rd.softState.leader || '-'})`);
      if (rd.softState.role === Role.Leader) this.onLeader(node);
      if (rd.softState.role === Role.PreCandidate) this.restartSomeoneInsideTheLease(node);
    }
    if (!rd.sendBeforePersist) for (const m of rd.messages) this.sendPeer(m);
    if (rd.snapshot) {
      node.kv = SimKv.restore(rd.snapshot.data, this.sessionOptions);
      node.lastSnapshotIndex = rd.snapshot.meta.index;
      this.stats.snapshotsSent++;
      this.trace(`${node.id} installed snapshot at ${rd.snapshot.meta.index}`);
    }
    for (const e of rd.committed) this.applyEntry(node, e);
    for (const rs of rd.readStates) {
      const req = node.pendingReads.get(rs.context);
      if (!req) continue;
      node.pendingReads.delete(rs.context);
      node.readsWaiting.push({ index: rs.index, req });
    }
    this.serveReads(node);
    raft.advance();
    node.busy = false;
    this.maybeSnapshot(node);
    // Everything that arrived during the fsync is handled now, as one batch.
    const inbox = node.inbox;
    node.inbox = [];
    for (const inp of inbox) this.handle(node, inp);
    this.kick(node);
  }

  private maybeSnapshot(node: SimNode): void {
    const applied = node.kv.applied;
    if (applied - node.lastSnapshotIndex < this.snapshotEvery) return;
    const raft = node.raft;
    const snap: Snapshot = {
      meta: { index: applied, term: raft.log.term(applied), membership: raft.membershipAt(applied) },
      data: node.kv.snapshot(),
    };
    node.disk.snapshot = snap;
    node.disk.compact(applied - this.snapshotKeep);
    raft.compact(snap, this.snapshotKeep);
    node.lastSnapshotIndex = applied;
  }

  // ---------------------------------------------------------------------------------------
  // Applying, and the invariants checked on the way

  private applyEntry(node: SimNode, e: Entry): void {
    const data = e.type === EntryType.Normal || e.type === EntryType.ConfChange ? new TextDecoder().decode(e.data) : '';
    const seen = this.appliedAt.get(e.index);
    if (seen && (seen.term !== e.term || seen.data !== data)) {
      this.violation(`state machine safety: ${node.id} applied index ${e.index} term ${e.term} ${data}, another node applied term ${seen.term} ${seen.data}`);
      return;
    }
    if (!seen) this.appliedAt.set(e.index, { term: e.term, data, applyTerm: node.raft.term });
    else if (node.raft.term < seen.applyTerm) seen.applyTerm = node.raft.term;
    if (e.index > this.stats.maxCommit) this.stats.maxCommit = e.index;
    if (e.index !== node.kv.applied + 1) {
      this.violation(`${node.id} applied index ${e.index} after ${node.kv.applied}: gap or repeat`);
      return;
    }
    const pending = node.pendingProposals.get(e.index);
    if (pending) node.pendingProposals.delete(e.index);
    if (e.type !== EntryType.Normal) {
      node.kv.applied = e.index;
      if (e.type === EntryType.ConfChange) {
        this.trace(`${node.id} applied conf change ${data} at ${e.index}`);
        // Marked by a committed entry: no configuration may make it a voter from now on.
        const cc = decodeConfChange(e.data);
        if (cc.logger) this.loggerIds.add(cc.node);
      }
      if (pending) this.reply(pending.req, { kind: 'retry' });
      return;
    }
    const cmd = decodeCommand(e.data);
    const r = node.kv.apply(e.index, cmd);
    if (r.fresh) {
      // Put values are unique per operation; a delete is known by its session and seq.
      const k = cmd.op === 'put' && cmd.value !== null ? cmd.value : `del ${cmd.client}:${cmd.seq}`;
      const prev = this.freshApplied.get(k);
      if (prev !== undefined && prev !== e.index) {
        this.violation(`duplicate apply: ${k} took effect at index ${prev} and again at ${e.index}`);
        return;
      }
      this.freshApplied.set(k, e.index);
    }
    if (pending) {
      if (pending.term !== e.term) this.reply(pending.req, { kind: 'retry' });
      else if (r.result === 'ok') this.reply(pending.req, { kind: 'ok', value: cmd.value });
      else if (r.result.startsWith('session:')) this.reply(pending.req, { kind: 'ok', value: r.result.slice('session:'.length) });
      else if (r.result === SESSION_EXPIRED) this.reply(pending.req, { kind: 'session-expired' });
      else this.reply(pending.req, { kind: 'retry' });
    }
  }

  /**
   * A node starts an election: now is when a follower that restarts forgets the leader it was
   * hearing, and could hand the candidate the vote that deposes a leader inside its lease.
   */
  private restartSomeoneInsideTheLease(candidate: SimNode): void {
    if (this.now >= this.durationMs || !this.rng.chance(0.2)) return;
    const leader = this.leaderNode();
    const others = [...this.nodes.values()].filter((n) => n.alive && n !== candidate && n !== leader);
    if (!leader || others.length === 0) return;
    const victim = this.rng.pick(others);
    this.stats.faults++;
    this.crash(victim);
    this.trace(`NEMESIS restart ${victim.id} as ${candidate.id} campaigns (inside ${leader.id}'s lease)`);
    // Back at once: up before the candidate's request arrives, not yet hearing the leader.
    this.at(0, () => {
      if (!victim.alive) this.start(victim);
    });
  }

  private onLeader(node: SimNode): void {
    const raft = node.raft;
    this.stats.elections++;
    const prior = this.leaderOfTerm.get(raft.term);
    if (prior && prior !== node.id) {
      this.violation(`election safety: ${prior} and ${node.id} both lead term ${raft.term}`);
      return;
    }
    this.leaderOfTerm.set(raft.term, node.id);
    for (const id of raft.membership.voters) if (this.loggerIds.has(id)) this.violation(`a logger became a voter: ${node.id} leads term ${raft.term} with voters ${raft.membership.voters}`);
    // Leader completeness: every entry anyone applied (so committed) is in the new leader's log.
    for (const [index, { term, applyTerm }] of this.appliedAt) {
      // Only entries committed before this term are owed to its leader; a leader of an old term
      // may win late (its votes were delayed) without entries committed in later terms.
      if (applyTerm >= raft.term) continue;
      if (index < raft.log.snapshotIndex) continue;
      const t = raft.log.term(index);
      if (t !== term) {
        this.violation(`leader completeness: ${node.id} leads term ${raft.term} but has term ${t} at committed index ${index} (term ${term})`);
        return;
      }
    }
  }

  private serveReads(node: SimNode): void {
    if (node.readsWaiting.length === 0) return;
    const still: { index: number; req: ClientRequest }[] = [];
    for (const w of node.readsWaiting) {
      if (node.kv.applied >= w.index) this.reply(w.req, { kind: 'ok', value: node.kv.data.get(w.req.key) ?? null });
      else still.push(w);
    }
    node.readsWaiting = still;
  }

  // ---------------------------------------------------------------------------------------
  // Network

  private sendPeer(m: Message): void {
    const to = this.nodes.get(m.to);
    if (!to) return;
    if (this.blocked.has(`${m.from}>${m.to}`)) return;
    if (this.rng.chance(this.dropRate)) return;
    const copies = this.rng.chance(this.dupRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      this.at(this.rng.int(1, this.maxLatency), () => {
        if (this.blocked.has(`${m.from}>${m.to}`)) return; // the link was cut while in flight
        this.input(to, { kind: 'msg', m });
      });
    }
  }

  // ---------------------------------------------------------------------------------------
  // Clients

  private nextOp(c: SimClient): void {
    if (this.now >= this.stopClientsAt) return;
    const key = this.rng.pick(this.keys);
    const roll = this.rng.float();
    const kind: 'put' | 'del' | 'get' = roll < 0.5 ? 'put' : roll < 0.58 ? 'del' : 'get';
    if (kind !== 'get' && !c.session) {
      // Writes need a session: open one through the log first (not part of the history).
      const op: Operation = { id: -1, client: c.id, key: '', kind: 'put', value: null, call: -1, ret: Infinity };
      const cmd: KvCommand = { op: 'register', client: '', seq: 0, ackedThrough: 0, key: '', value: null, time: 0 };
      c.current = { op, deadline: this.now + 1500, req: { attempt: 0, client: c, op: 'register', key: '', cmd } };
      this.attempt(c);
      return;
    }
    c.ops++;
    if (kind !== 'get') c.seq++;
    const value = kind === 'put' ? `${c.id}.${c.ops}` : null;
    const op: Operation = { id: this.opId++, client: c.id, key, kind: kind === 'get' ? 'get' : 'put', value, call: this.clock++, ret: Infinity };
    const cmd: KvCommand | undefined =
      kind === 'get' ? undefined : { client: c.session, seq: c.seq, ackedThrough: c.ackedThrough, op: kind, key, value, time: 0 };
    c.current = { op, deadline: this.now + 1500, req: { attempt: 0, client: c, op: kind, key, cmd } };
    this.attempt(c);
  }

  private attempt(c: SimClient): void {
    const cur = c.current;
    if (!cur) return;
    if (this.now >= cur.deadline) {
      this.finishOp(c, undefined);
      return;
    }
    const targets = [...this.nodes.keys()];
    const target = c.guess && this.nodes.has(c.guess) ? c.guess : this.rng.pick(targets);
    const attempt = ++c.attempt;
    const req: ClientRequest = { ...cur.req, attempt };
    cur.req = req;
    const node = this.nodes.get(target)!;
    this.at(this.rng.int(1, this.maxLatency), () => this.input(node, { kind: 'client', req }));
    this.at(200, () => {
      if (c.current === cur && c.attempt === attempt) {
        c.guess = '';
        this.attempt(c);
      }
    });
  }

  private reply(req: ClientRequest, r: ClientReply): void {
    const c = req.client;
    this.at(this.rng.int(1, this.maxLatency), () => {
      if (!c.current || c.attempt !== req.attempt) return; // an answer to an abandoned attempt
      if (r.kind === 'ok') {
        this.finishOp(c, r.value);
      } else if (r.kind === 'session-expired') {
        this.sessionExpired(c);
      } else if (r.kind === 'redirect') {
        c.guess = r.leader;
        c.attempt++;
        this.at(r.leader ? 1 : 20, () => this.attempt(c));
      } else {
        c.guess = '';
        c.attempt++;
        this.at(10, () => this.attempt(c));
      }
    });
  }

  /**
   * The cluster no longer knows the client's session. If this was the op's only attempt, that
   * answer is definite: it was not applied, and the op is dropped from the history as if never
   * made. After several attempts an earlier one may have been applied: the outcome is unknown.
   */
  private sessionExpired(c: SimClient): void {
    const cur = c.current!;
    this.trace(`${c.id} session ${c.session} expired (attempt ${cur.req.attempt})`);
    c.session = '';
    c.seq = 0;
    c.ackedThrough = 0;
    if (cur.req.attempt <= 1 && cur.op.kind === 'put') {
      c.current = undefined;
      c.attempt++;
      this.at(this.rng.int(0, 20), () => this.nextOp(c));
      return;
    }
    this.finishOp(c, undefined);
  }

  /** `value` undefined: the op gave up with its outcome unknown. */
  private finishOp(c: SimClient, value: string | null | undefined): void {
    const cur = c.current!;
    c.current = undefined;
    c.attempt++;
    if (cur.req.op === 'register') {
      if (value) {
        c.session = value;
        c.seq = 0;
        c.ackedThrough = 0;
        this.trace(`${c.id} registered session ${value}`);
      }
      this.at(0, () => this.nextOp(c));
      return;
    }
    if (value !== undefined) {
      cur.op.ret = this.clock++;
      if (cur.op.kind === 'get') {
        cur.op.value = value;
        this.stats.readsOk++;
      } else this.stats.opsAcked++;
      this.history.push(cur.op);
      c.ackedThrough = cur.req.cmd ? cur.req.cmd.seq : c.ackedThrough;
      this.trace(`${c.id} ${cur.op.kind}(${cur.op.key}) -> ${cur.op.kind === 'get' ? String(value) : 'ok ' + String(cur.op.value)}`);
    } else if (cur.op.kind === 'put') {
      // A write that timed out may or may not take effect: keep it as indeterminate.
      this.stats.opsIndeterminate++;
      this.history.push(cur.op);
      this.trace(`${c.id} ${cur.op.kind}(${cur.op.key}, ${String(cur.op.value)}) gave up: outcome unknown`);
    }
    this.at(this.rng.int(0, 20), () => this.nextOp(c));
  }

  private handleClient(node: SimNode, req: ClientRequest): void {
    const raft = node.raft;
    if (req.op === 'get') {
      const ctx = `${req.client.id}/${req.attempt}`;
      try {
        raft.readIndex(ctx);
        node.pendingReads.set(ctx, req);
      } catch (e) {
        if (!(e instanceof RaftError)) throw e;
        this.reply(req, { kind: 'redirect', leader: e.leader });
      }
      return;
    }
    try {
      const { index, term } = raft.propose(encodeCommand({ ...req.cmd!, time: this.now }));
      node.pendingProposals.set(index, { term, req });
    } catch (e) {
      if (!(e instanceof RaftError)) throw e;
      this.reply(req, e.code === 'not-leader' ? { kind: 'redirect', leader: e.leader } : { kind: 'retry' });
    }
  }

  // ---------------------------------------------------------------------------------------
  // Nemesis

  private scheduleNemesis(): void {
    const step = () => {
      if (this.now >= this.durationMs) return;
      this.nemesis();
      this.at(this.rng.int(80, 400), step);
    };
    this.at(this.rng.int(200, 500), step);
  }

  private leaderNode(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (n.alive && !n.paused && n.raft.role === Role.Leader && (!best || n.raft.term > best.raft.term)) best = n;
    }
    return best;
  }

  private nemesis(): void {
    const all = [...this.nodes.values()];
    const roll = this.rng.int(0, 9);
    this.stats.faults++;
    switch (roll) {
      case 0:
      case 1: {
        // Partition: a random split, or the leader alone.
        const ids = this.rng.shuffle(all.map((n) => n.id));
        const leader = this.leaderNode();
        const side =
          leader && this.rng.chance(0.4) ? new Set([leader.id]) : new Set(ids.slice(0, this.rng.int(1, Math.floor(ids.length / 2))));
        this.blocked.clear();
        for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
        this.trace(`NEMESIS partition {${[...side].join(',')}} | rest`);
        this.at(this.rng.int(100, 800), () => {
          this.blocked.clear();
          this.trace('NEMESIS heal partition');
        });
        return;
      }
      case 2: {
        // One-way cut: a sees nothing from b (asymmetric links happen).
        const a = this.rng.pick(all).id;
        const b = this.rng.pick(all).id;
        if (a !== b) this.blocked.add(`${b}>${a}`);
        this.trace(`NEMESIS one-way cut ${b} -> ${a}`);
        return;
      }
      case 3:
      case 4: {
        const leader = this.leaderNode();
        const victim = leader && this.rng.chance(0.5) ? leader : this.rng.pick(all);
        if (!victim.alive) return;
        this.crash(victim);
        this.reportGone(victim);
        this.at(this.rng.int(20, 600), () => {
          if (!victim.alive) this.start(victim);
        });
        return;
      }
      case 5: {
        this.dropRate = this.rng.pick([0, 0, 0.05, 0.2, 0.4]);
        this.dupRate = this.rng.pick([0, 0.02, 0.1]);
        this.maxLatency = this.rng.pick([3, 5, 20, 60]);
        this.trace(`NEMESIS network drop=${this.dropRate} dup=${this.dupRate} latency<=${this.maxLatency}ms`);
        return;
      }
      case 6: {
        // Pause a process (a long GC, a blocked event loop) past the election timeout. The
        // lease is measured by the clock, which runs on while ticks are lost, so lease reads
        // must stay safe through this too; pausing the leader is the interesting case.
        const leader = this.leaderNode();
        const victim = leader && this.rng.chance(0.5) ? leader : this.rng.pick(all);
        if (!victim.alive || victim.paused) return;
        victim.paused = true;
        this.trace(`NEMESIS pause ${victim.id}`);
        if (victim === leader && this.rng.chance(0.5)) {
          // A stalled leader the others stop hearing: they elect and write while it sleeps.
          const ids = [...this.nodes.keys()];
          for (const n of ids) {
            if (n === victim.id) continue;
            this.blocked.add(`${victim.id}>${n}`);
            this.blocked.add(`${n}>${victim.id}`);
          }
          this.trace(`NEMESIS isolate stalled leader ${victim.id}`);
          this.at(this.rng.int(150, 800), () => {
            this.blocked.clear();
            this.trace('NEMESIS heal partition');
          });
        }
        this.at(this.rng.int(100, 700), () => this.resume(victim));
        return;
      }
      case 7: {
        const leader = this.leaderNode();
        if (!leader) return;
        const others = leader.raft.membership.voters.filter((v) => v !== leader.id);
        if (others.length === 0) return;
        const to = this.rng.pick(others);
        this.stats.transfers++;
        this.input(leader, { kind: 'admin', what: `transfer leadership ${leader.id} -> ${to}`, fn: (r) => r.transferLeadership(to) });
        if (this.rng.chance(0.5)) {
          // Cut the old leader off a few ms later: it must not go on answering from its lease.
          this.at(this.rng.int(1, 15), () => {
            for (const n of this.nodes.keys()) {
              if (n === leader.id) continue;
              this.blocked.add(`${leader.id}>${n}`);
              this.blocked.add(`${n}>${leader.id}`);
            }
            this.trace(`NEMESIS isolate old leader ${leader.id} after transfer`);
            this.at(this.rng.int(100, 600), () => {
              this.blocked.clear();
              this.trace('NEMESIS heal partition');
            });
          });
        }
        return;
      }
      default:
        this.changeMembership();
    }
  }

  private resume(node: SimNode): void {
    if (!node.paused) return;
    node.paused = false;
    this.trace(`NEMESIS resume ${node.id}`);
    if (!node.alive) return;
    const inbox = node.inbox;
    node.inbox = [];
    for (const inp of inbox) {
      if (node.busy) node.inbox.push(inp);
      else this.handle(node, inp);
    }
    this.kick(node);
  }

  private changeMembership(): void {
    const leader = this.leaderNode();
    if (!leader) return;
    const m = leader.raft.membership;
    const roll = this.rng.int(0, 2);
    let what: string;
    let fn: (r: RaftNode) => void;
    const unmarked = m.learners.filter((id) => !m.loggers?.includes(id));
    if (roll === 0 && unmarked.length > 0 && this.rng.chance(0.2)) {
      // A logger that joined before loggers were marked, marked now (by its join or its hello).
      const l = this.rng.pick(unmarked);
      what = `mark ${l} as a logger`;
      fn = (r) => {
        try {
          r.proposeConfChange({ type: ConfChangeType.AddLearner, node: l, logger: true });
        } catch (e) {
          const cur = r.membership;
          if (e instanceof RaftError && e.code === 'invalid-conf-change' && cur.learners.includes(l) && !cur.loggers?.includes(l)) this.violation(`marking the non-voter ${l} as a logger was refused: ${e.message}`);
          throw e;
        }
      };
    } else if (roll === 0 && m.learners.length > 0) {
      const l = this.rng.pick(m.learners);
      what = `promote ${l}`;
      fn = (r) => r.proposeConfChange({ type: ConfChangeType.AddVoter, node: l });
    } else if (roll === 1 && m.voters.length + m.learners.length < 7) {
      const id = `n${this.nextNodeNumber++}`;
      // Some join as loggers; promoting one (roll 0 picks any non-voter) must be refused.
      const logger = this.rng.chance(0.3);
      what = `add ${logger ? 'logger' : 'non-voter'} ${id}`;
      fn = (r) => {
        r.proposeConfChange({ type: ConfChangeType.AddLearner, node: id, addr: `sim:${id}`, ...(logger ? { logger } : {}) });
        if (logger) this.loggerIds.add(id);
        const node = new SimNode(id);
        node.clockRate = 1 + (this.rng.float() * 0.04 - 0.02);
        node.electionTicks = this.drawElectionTicks();
        this.nodes.set(id, node);
        this.start(node);
      };
    } else if (m.voters.length > 3 || m.learners.length > 0) {
      const pool = m.voters.length > 3 ? [...m.voters, ...m.learners] : m.learners;
      const victim = this.rng.pick(pool);
      what = `remove ${victim}`;
      fn = (r) => r.proposeConfChange({ type: ConfChangeType.RemoveNode, node: victim });
    } else return;
    this.stats.confChanges++;
    this.input(leader, { kind: 'admin', what, fn });
  }

  private healAll(): void {
    this.blocked.clear();
    this.dropRate = 0;
    this.dupRate = 0;
    this.maxLatency = 5;
    for (const n of this.nodes.values()) {
      if (n.paused) this.resume(n);
      if (!n.alive) this.start(n);
    }
    this.trace('NEMESIS heal everything');
  }

  // ---------------------------------------------------------------------------------------
  // End-of-run checks

  private finalChecks(): void {
    const leader = this.leaderNode();
    if (!leader) {
      this.violation(`liveness: no leader ${this.settleMs}ms after healing every fault`);
      return;
    }
    const m = leader.raft.membership;
    for (const id of m.voters) if (this.loggerIds.has(id)) this.violation(`a logger became a voter: ${id}`);
    for (const id of m.loggers ?? []) if (!m.learners.includes(id)) this.violation(`${id} is marked a logger but is not a non-voter`);
    const members = [...m.voters, ...m.learners].map((id) => this.nodes.get(id)!).filter(Boolean);
    const target = leader.raft.log.committed;
    for (const n of members) {
      if (n.kv.applied < target) {
        this.violation(`liveness: member ${n.id} applied ${n.kv.applied}, leader committed ${target}, after settling`);
        continue;
      }
      const a = JSON.stringify([...n.kv.data].sort());
      const b = JSON.stringify([...leader.kv.data].sort());
      if (n.kv.applied === leader.kv.applied && a !== b) this.violation(`replicas diverge: ${n.id} has ${a}, leader ${leader.id} has ${b}`);
    }
    for (const op of this.history) {
      if (op.kind !== 'put' || op.ret === Infinity) continue;
      if (op.value !== null && !this.freshApplied.has(op.value)) this.violation(`acknowledged write lost: ${op.client} put(${op.key}, ${op.value})`);
    }
    const r = checkHistory(this.history);
    if (r.ok === false) {
      this.violation(`not linearizable on key ${r.key}: ${r.reason}\n${formatOps(r.ops)}`);
    } else if (r.ok === 'unknown') {
      // An unchecked history is not a passed one.
      this.violation(`linearizability check inconclusive on key ${r.key}: ${r.reason}`);
    }
  }
}

export function runSchedule(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}
