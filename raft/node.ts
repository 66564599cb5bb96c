import { applyConfChange, decodeConfChange, encodeConfChange, quorum, quorumValue, validateConfChange } from './confchange.js';
import { RaftError } from './errors.js';
import { EntryReader, RaftLog } from './log.js';
import { Progress, ProgressState } from './progress.js';
import {
  ConfChange,
  ConfChangeType,
  EMPTY_DATA,
  EMPTY_ENTRIES,
  Entry,
  EntryType,
  HardState,
  HeldSnapshot,
  Membership,
  Message,
  MessageType,
  NONE,
  NodeId,
  ReadState,
  Role,
  Snapshot,
  SnapshotChunk,
  SoftState,
  cloneMembership,
  message,
} from './types.js';
import { validateMessage } from './validate.js';

export interface RaftConfig {
  id: NodeId;
  /** Ticks without hearing from a leader before a follower campaigns (randomized in [n, 2n)). */
  electionTicks?: number;
  /** Ticks between leader heartbeats. */
  heartbeatTicks?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /** Appends in flight per follower in Replicate state. */
  maxInflight?: number;
  /** Soft limit on the entry bytes of one append message. */
  maxAppendBytes?: number;
  /** Bytes per InstallSnapshot chunk. */
  snapshotChunkBytes?: number;
  /**
   * 'safe': every ReadIndex is confirmed by a heartbeat round. 'lease': the leader answers from
   * its lease (a quorum acknowledged it less than an election timeout ago); needs checkQuorum and
   * clocks whose rate differs by less than the timeout's margin.
   */
  readMode?: 'safe' | 'lease';
  /** A learner within this many entries of the leader's last index can be promoted. */
  promoteLag?: number;
  /**
   * Monotonic milliseconds (performance.now() in a process, simulated time in the simulator).
   * The leader lease is measured with it, never by counting ticks: a timer whose ticks are lost
   * to a blocked event loop would stretch a tick-counted lease by the length of the block.
   * Without a clock, time is ticks x tickMs.
   */
  clock?: () => number;
  /** Milliseconds per tick (default 1), to turn the election timeout into a lease duration. */
  tickMs?: number;
  /** The largest relative difference in clock rate between two members (default 0.05). */
  maxClockDrift?: number;
  /**
   * Refuse (non-transfer) votes for one election timeout after start. A node that restarts
   * forgets which leader it heard from, and without this would grant a vote inside that
   * leader's lease (dissertation §6.4). Default: on in lease mode. A brand-new node of a new
   * cluster may leave it off: no lease can count on it yet.
   */
  startupVoteGuard?: boolean;
  /**
   * A member of a brand-new cluster: no leader exists yet for it to wait for, so its first
   * election timeout keeps only its random part, plus one tick (etcd's
   * --initial-election-tick-advance). Members that start together still time out at different
   * ticks. Ignored with the startup vote guard, which refuses votes for that first timeout
   * anyway. Default false: a restarted node waits a whole timeout for the leader it had.
   */
  advanceFirstElection?: boolean;
  /** Source of randomness for election timeouts; the simulator passes a seeded PRNG. */
  random?: () => number;
  /**
   * false: this node never campaigns or votes, even if some operator makes it a voter (a
   * logger: it must never decide anything). Default true.
   */
  candidate?: boolean;
  /**
   * Grant no vote until allowVotes() is called. For a node that joins with no state: if its id
   * was a voter before (its data was lost), the votes that member cast are forgotten, and voting
   * again could elect two leaders in one term. Its owner allows votes once the cluster has
   * removed the old member and added this one anew (the join completed).
   */
  withholdVotes?: boolean;
  /**
   * Which start of this member this is (Membership.incarnations): set by a node that started
   * with no state and joined with it, and carried on its acknowledgments (AppResp, HeartbeatResp)
   * and read requests. A leader counts a voter's acknowledgments only from the incarnation its
   * configuration names for it (none for bootstrap members): a node whose disk was lost is not
   * counted as the voter it was. Before, a stale leader (paused, unaware of a newer term) that
   * still counted the lost member committed with the restarted node's acks where newer entries
   * had been committed (whole-replica simulator seed 3153).
   */
  incarnation?: string;
  /**
   * Thrifty replication. A leader sends new entries at once only to as many voters as a quorum
   * needs (with itself); the other voters get them in batches: at every heartbeat, once
   * THRIFTY_BATCH_ENTRIES wait, when they ask for a read index, or when the driver calls
   * {@link RaftNode.hedge} because an entry waited too long to commit. At one client each
   * write then costs one follower's read, write, fdatasync and ack instead of two (-20% CPU per
   * write for the cluster). The held voter lags by at most one heartbeat; an election still
   * picks an up-to-date member (the eager one voted for every committed entry). Default off.
   */
  thrifty?: boolean;
  /**
   * Where entries no longer held in memory are read back (the storage). Without one, the log
   * keeps every entry in memory until a snapshot compacts it.
   */
  entryReader?: EntryReader;
  /**
   * With an entryReader: entries kept in memory behind the last one both durable and applied
   * here (default 64), and on a leader behind every recently active follower's match, so a
   * follower keeping up is sent from memory and one that fell behind is read back.
   */
  logMemoryTail?: number;
}

/** Entries held back from a thrifty leader's held voter before they go without waiting. */
export const THRIFTY_BATCH_ENTRIES = 64;

/** What the driver recovered from stable storage (all empty for a brand-new node). */
export interface InitialState {
  hardState?: HardState;
  /** Latest durable snapshot (metadata and data). */
  snapshot?: Snapshot;
  /** Durable entries after the snapshot. */
  entries?: Entry[];
  /** Index the state machine has already applied durably (defaults to the snapshot index). */
  applied?: number;
}

/**
 * A batch of work for the driver. Order matters: persist `snapshot`, `entries` and `hardState`
 * (one fsync), then send `messages`, then apply `snapshot` and `committed` to the state machine,
 * then call {@link RaftNode.advance}. Nothing else may be called on the node in between.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  /** Entries to append; if the first index is at or below the last durable one, truncate there first. */
  entries: Entry[];
  /** A snapshot received from the leader: replaces the log and the state machine. */
  snapshot?: Snapshot;
  committed: Entry[];
  messages: Message[];
  readStates: ReadState[];
  /** Present when membership changed in this batch (for the driver's address book). */
  membership?: Membership;
  /**
   * The messages may be sent before the persist finishes: this node leads, and the batch
   * changes neither term nor vote. A leader's disk write can then overlap its followers'
   * (Raft thesis §10.2.1); it counts itself toward commitment only after advance().
   */
  sendBeforePersist: boolean;
}

interface PendingRead {
  seq: number;
  index: number;
  context: string;
  requester: NodeId;
}

interface IncomingSnapshot {
  from: NodeId;
  index: number;
  term: number;
  chunks: Uint8Array[];
  received: number;
}

/**
 * Build the log every initial member of a new cluster starts with: one AddVoter entry per
 * member at term 1, already committed. Identical on every member, so bootstrap can never
 * produce two clusters (etcd does the same).
 */
export function bootstrapEntries(members: { id: NodeId; addr: string }[]): Entry[] {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return sorted.map((m, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type: ConfChangeType.AddVoter, node: m.id, addr: m.addr }),
  }));
}

/**
 * The Raft consensus state machine: no I/O, no clock. Driven by tick/step/propose and drained
 * through ready()/advance().
 */
export class RaftNode {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  role: Role = Role.Follower;
  leader: NodeId = NONE;
  readonly log: RaftLog;
  membership: Membership = { voters: [], learners: [], addrs: {} };

  /** Reused by the quorum counts (maybeCommit, quorumAckedSeq), which run on every ack. */
  private readonly scratch: number[] = [];
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly maxInflight: number;
  private readonly maxAppendBytes: number;
  private readonly snapshotChunkBytes: number;
  private readonly readMode: 'safe' | 'lease';
  private readonly promoteLag: number;
  private readonly candidate: boolean;
  private readonly thrifty: boolean;
  private readonly logMemoryTail: number;
  /** Thrifty replication: the voters that get new entries at once (see RaftConfig.thrifty). */
  private readonly eager = new Set<NodeId>();
  /** Voters dropped from `eager` by a hedge: chosen again only when no other one can be. */
  private readonly demoted = new Set<NodeId>();
  /** The last pre-vote ignored inside a leader's lease, and the tick it came (see leaderGone). */
  private ignoredPreVote: { m: Message; at: number } | undefined;
  /** Thrifty replication: the tick at which each follower last asked this leader for a read. */
  private readonly lastRead = new Map<NodeId, number>();
  /** Send what is held back at the next flush. */
  private releaseHeld = false;
  private votesWithheld: boolean;
  private incarnation: string | undefined;
  private readonly random: () => number;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Ticks since this node started (the startup vote guard counts them). */
  private now = 0;
  private readonly clock: () => number;
  /** How long a heartbeat round acknowledged by a quorum keeps leadership certain, in clock ms. */
  private readonly leaseMs: number;
  /** Votes are refused while `now` is below this (the startup vote guard). */
  private readonly startupGuardTicks: number;
  /**
   * Set once this leader sent TimeoutNow: the target's campaign overrides every follower's
   * lease guard, and that message may arrive late, even after the transfer was abandoned, so
   * the lease can no longer be trusted for the rest of this term.
   */
  private leaseRevoked = false;
  /** ReadIndex requests forwarded to a leader: context -> the term and leader asked. */
  private forwardedReads = new Map<string, { term: number; to: NodeId }>();

  private progress = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  private leadTransferee: NodeId = NONE;
  /** A conf change at or below this index is not yet applied; no other may be proposed. */
  private pendingConfIndex = 0;
  /** Index of the last conf change entry reflected in `membership`. */
  private membershipIndex = 0;
  /** Membership after each change still in the log (and the one at the snapshot), oldest first. */
  private membershipHistory: { index: number; membership: Membership }[] = [];

  /** Heartbeat round counter; read requests and the lease are confirmed by rounds. */
  private seq = 0;
  /** Numbers every append and snapshot chunk this node sends (see Progress.since). */
  private sendSeq = 0;
  private roundSentAt: { seq: number; at: number }[] = [];
  private pendingReads: PendingRead[] = [];
  /** Reads asked for before this leader committed an entry of its term. */
  private readsAwaitingCommit: { context: string; requester: NodeId }[] = [];

  /** The latest snapshot, sent to followers that need entries before the log's start. */
  private snapshot: HeldSnapshot | undefined;
  private incomingSnapshot: IncomingSnapshot | undefined;

  // Output accumulated for the next Ready.
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private snapshotToInstall: Snapshot | undefined;
  private membershipChanged = false;
  private needsFlush = false;
  /** A read is waiting for a heartbeat round; one round serves every read queued before it. */
  private readRoundNeeded = false;
  private prevHardState: HardState;
  private prevSoftState: SoftState;
  private inFlightReady: Ready | undefined;

  constructor(config: RaftConfig, initial: InitialState = {}) {
    this.id = config.id;
    if (!this.id) throw new Error('raft: node id must not be empty');
    this.electionTicks = config.electionTicks ?? 10;
    this.heartbeatTicks = config.heartbeatTicks ?? 1;
    if (this.heartbeatTicks >= this.electionTicks) throw new Error('raft: heartbeatTicks must be below electionTicks');
    this.preVote = config.preVote ?? true;
    this.checkQuorum = config.checkQuorum ?? true;
    this.maxInflight = config.maxInflight ?? 256;
    this.maxAppendBytes = config.maxAppendBytes ?? 1 << 20;
    this.snapshotChunkBytes = config.snapshotChunkBytes ?? 1 << 20;
    this.readMode = config.readMode ?? 'safe';
    if (this.readMode === 'lease' && !this.checkQuorum) throw new Error('raft: lease reads need checkQuorum');
    this.promoteLag = config.promoteLag ?? 1000;
    this.candidate = config.candidate ?? true;
    this.thrifty = config.thrifty ?? false;
    this.logMemoryTail = Math.max(0, config.logMemoryTail ?? 64);
    this.votesWithheld = config.withholdVotes ?? false;
    this.incarnation = config.incarnation;
    this.random = config.random ?? Math.random;
    const tickMs = config.tickMs ?? 1;
    this.clock = config.clock ?? (() => this.now * tickMs);
    const drift = config.maxClockDrift ?? 0.05;
    if (!(drift >= 0 && drift < 0.5)) throw new Error('raft: maxClockDrift must be in [0, 0.5)');
    // A follower refuses votes for electionTicks of its ticks after it processes our heartbeat,
    // which it does after we sent it. Its first tick may follow at once (one tick less), its
    // clock may run faster than ours by `drift`, and its timer may fire up to a tick early by
    // our clock's measure (one more tick less). What remains is certain.
    this.leaseMs = Math.max(0, ((this.electionTicks - 1) * (1 - drift) - 1) * tickMs);
    this.startupGuardTicks = (config.startupVoteGuard ?? this.readMode === 'lease') ? this.electionTicks : 0;

    const snap = initial.snapshot;
    const snapIndex = snap?.meta.index ?? 0;
    // Storage may keep some entries before its snapshot for lagging followers; the log starts
    // right after the snapshot.
    const entries = (initial.entries ?? []).filter((e) => e.index > snapIndex);
    entries.forEach((e, i) => {
      if (e.index !== snapIndex + 1 + i) throw new Error(`raft: recovered log has a gap at index ${snapIndex + 1 + i} (found ${e.index})`);
    });
    this.log = new RaftLog(snapIndex, snap?.meta.term ?? 0, entries, config.entryReader);
    if (snap) {
      this.snapshot = snap;
      this.setMembership(snap.meta.index, snap.meta.membership);
    }
    const hs = initial.hardState ?? { term: 0, vote: NONE, commit: 0 };
    this.term = hs.term;
    this.vote = hs.vote;
    this.log.committed = Math.max(this.log.snapshotIndex, Math.min(hs.commit, this.log.lastIndex()));
    this.log.applied = Math.max(this.log.snapshotIndex, Math.min(initial.applied ?? 0, this.log.committed));
    // Membership takes effect when a change commits; recover it from the committed log.
    this.replayMembership(this.log.committed);
    this.prevHardState = this.hardState();
    this.prevSoftState = this.softState();
    this.becomeFollower(this.term, NONE);
    if (config.advanceFirstElection && this.startupGuardTicks === 0) this.electionElapsed = this.electionTicks - 1;
  }

  // ---------------------------------------------------------------------------------------
  // Public API

  /**
   * The transport could not deliver to `id` (connection lost): appends assumed in flight are
   * gone, so go back to probing it (etcd's ReportUnreachable).
   */
  reportUnreachable(id: NodeId): void {
    this.assertNotInReady();
    const pr = this.progress.get(id);
    if (this.role === Role.Leader && pr && pr.state === ProgressState.Replicate) {
      pr.becomeProbe();
      this.needsFlush = true;
    }
  }

  /**
   * The transport found nothing listening where the leader `id` was (its connection closed and
   * a new one was refused): its process is gone. A follower then stops counting on that leader
   * (so it grants the survivors' votes) and campaigns within a few ticks instead of a whole
   * election timeout, the survivors in the order of their ids (1, 3, 5 ... ticks), so they do
   * not split the vote. RabbitMQ's Ra starts elections on a node-down signal the same way.
   * A wrong report costs no leader: the pre-vote needs a majority that has lost the leader too.
   * Ignored in lease mode: a leader serves lease reads on the promise that no vote is granted
   * within an election timeout of its last heartbeat, and a refused connection proves nothing
   * about a leader that other members can still reach.
   */
  leaderGone(id: NodeId): void {
    this.assertNotInReady();
    if (this.readMode === 'lease' || !this.preVote || this.role !== Role.Follower || this.leader !== id || !this.promotable()) return;
    this.leader = NONE;
    const survivors = this.membership.voters.filter((v) => v !== id).sort();
    const delay = 1 + 2 * Math.max(0, survivors.indexOf(this.id));
    this.electionElapsed = Math.max(this.electionElapsed, this.randomizedElectionTimeout - delay);
    // A survivor that heard first asked for our pre-vote while we still counted on this
    // leader, and got no answer (the lease): answer it now, instead of leaving it to wait
    // for our own turn. Only a recent one: an older asker has given up on it.
    const asked = this.ignoredPreVote;
    this.ignoredPreVote = undefined;
    if (asked && this.now - asked.at < this.electionTicks) this.stepValid(asked.m);
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { leader: this.leader, role: this.role, term: this.term };
  }

  isLeader(): boolean {
    return this.role === Role.Leader;
  }

  /** Whether this node may vote and campaign. */
  promotable(): boolean {
    return this.candidate && this.membership.voters.includes(this.id);
  }

  progressOf(id: NodeId): { match: number; next: number; state: ProgressState } | undefined {
    const pr = this.progress.get(id);
    return pr && { match: pr.match, next: pr.next, state: pr.state };
  }

  tick(): void {
    this.assertNotInReady();
    this.now++;
    if (this.role === Role.Leader) this.tickLeader();
    else this.tickElection();
  }

  /** Which start of this member this is (RaftConfig.incarnation); undefined: none. */
  ownIncarnation(): string | undefined {
    return this.incarnation;
  }

  /** Admitted by a leader that records no incarnations: acknowledge as before them. */
  forgetIncarnation(): void {
    this.assertNotInReady();
    this.incarnation = undefined;
  }

  /**
   * A member that joined with no state (it has an incarnation) votes only once its own log's
   * configuration names this start of it. Being told that the join completed is not enough: a
   * start admitted while cut off from the leader still holds nothing, so it would find any log
   * up to date, and a member removed two configurations before (whose stale configuration still
   * counts this one) could win its vote and lead a term that has a leader already (whole-replica
   * simulator seed 8345). Holding its admission, it holds every configuration before it.
   */
  private holdsOwnAdmission(): boolean {
    return this.incarnation === undefined || this.membership.incarnations?.[this.id] === this.incarnation;
  }

  /** End withholdVotes: this node's membership is its own again (see RaftConfig.withholdVotes). */
  allowVotes(): void {
    this.votesWithheld = false;
  }

  /** Start an election now (as if the election timer fired). */
  campaign(): void {
    this.assertNotInReady();
    if (this.role === Role.Leader || !this.promotable()) return;
    this.startCampaign(false);
  }

  /**
   * Append a command to the log. Many proposals between two ready() calls become one append
   * and one fsync. Returns the entry's index and term; the command is committed when an entry
   * with that index and term comes out in `committed`.
   */
  propose(data: Uint8Array): { index: number; term: number } {
    this.assertNotInReady();
    this.assertCanPropose();
    return this.appendOwn(EntryType.Normal, data);
  }

  /** Propose a single-server membership change. */
  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    this.assertNotInReady();
    this.assertCanPropose();
    if (this.pendingConfIndex > this.log.applied) {
      throw new RaftError('conf-change-pending', 'a membership change is still in progress', this.id);
    }
    const reason = validateConfChange(this.membership, cc);
    if (reason) throw new RaftError('invalid-conf-change', reason, this.id);
    if (cc.type === ConfChangeType.AddVoter && this.membership.learners.includes(cc.node)) {
      // Caught up: it has acknowledged something, recently, and is within promoteLag entries.
      // Promoting a learner that never answered would add a dead voter to the quorum.
      const pr = this.progress.get(cc.node);
      if (!pr || pr.match === 0 || !pr.recentActive || pr.match + this.promoteLag < this.log.lastIndex()) {
        throw new RaftError(
          'learner-not-caught-up',
          `non-voter ${cc.node} is at ${pr?.match ?? 0}, leader at ${this.log.lastIndex()}`,
          this.id,
        );
      }
    }
    const r = this.appendOwn(EntryType.ConfChange, encodeConfChange(cc));
    this.pendingConfIndex = r.index;
    return r;
  }

  /** Hand leadership to `to` (Raft dissertation §3.10): catch it up, then send TimeoutNow. */
  transferLeadership(to: NodeId): void {
    this.assertNotInReady();
    if (this.role !== Role.Leader) throw new RaftError('not-leader', 'only the leader can transfer leadership', this.leader);
    if (to === this.id) return;
    if (!this.membership.voters.includes(to)) {
      throw new RaftError('invalid-conf-change', `${to} is not a voter and cannot lead`, this.id);
    }
    if (this.leadTransferee === to) return;
    this.leadTransferee = to;
    this.electionElapsed = 0;
    const pr = this.progress.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.needsFlush = true;
  }

  /**
   * Ask for a linearizable read point. A ReadState with this context comes out in a later
   * Ready once leadership is confirmed; the read is safe once the state machine has applied its
   * index. Throws if there is no known leader; a request lost to a leader change never
   * completes, so callers time out and retry.
   */
  readIndex(context: string): void {
    this.assertNotInReady();
    if (this.role === Role.Leader) {
      this.leaderRead(context, this.id);
      return;
    }
    if (this.leader === NONE) throw new RaftError('not-leader', 'no leader known for a read', NONE);
    this.forwardedReads.set(context, { term: this.term, to: this.leader });
    // Answers lost with a leader change never come; keep the table bounded all the same.
    if (this.forwardedReads.size > 100_000) this.forwardedReads.delete(this.forwardedReads.keys().next().value!);
    this.send(message({ type: MessageType.ReadIndex, from: this.id, to: this.leader, term: this.term, context }));
  }

  /**
   * Feed a message from a peer. Malformed messages throw RaftError('invalid-message'); stale or
   * irrelevant ones are dropped and the reason returned.
   */
  step(m: Message): string | undefined {
    this.assertNotInReady();
    const invalid = validateMessage(m, this.id);
    if (invalid) throw new RaftError('invalid-message', invalid);
    return this.stepValid(m);
  }

  /**
   * The driver made `snapshot` durable (it covers the state machine up to its index). The log
   * before it is dropped, keeping `keepEntries` so slightly lagging followers avoid a snapshot.
   */
  compact(snapshot: HeldSnapshot, keepEntries = 0): void {
    this.assertNotInReady();
    const { index } = snapshot.meta;
    if (index > this.log.applied) throw new Error(`raft: snapshot at ${index} is past applied index ${this.log.applied}`);
    if (this.snapshot && index <= this.snapshot.meta.index) return;
    this.snapshot = snapshot;
    const upTo = index - keepEntries;
    if (upTo > this.log.snapshotIndex) this.log.compact(upTo, this.log.term(upTo));
    // Keep the membership in force at the oldest retained index, and everything after it.
    const oldest = Math.min(upTo, index);
    while (this.membershipHistory.length > 1 && this.membershipHistory[1].index <= oldest) this.membershipHistory.shift();
  }

  /** Membership as of applied log index `index` (for snapshot metadata). */
  membershipAt(index: number): Membership {
    let found: Membership = { voters: [], learners: [], addrs: {} };
    for (const h of this.membershipHistory) {
      if (h.index > index) break;
      found = h.membership;
    }
    return cloneMembership(found);
  }

  /** Whether ready() may have work (no side effects; ready() may still find none). */
  hasReady(): boolean {
    if (this.inFlightReady) return false;
    return this.needsFlush || this.readRoundNeeded || this.hasWork();
  }

  private hasWork(): boolean {
    return (
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.snapshotToInstall !== undefined ||
      this.log.handedOut() < this.log.lastIndex() ||
      this.log.committed > this.log.applied ||
      this.membershipChanged ||
      !sameHardState(this.prevHardState, this.hardState()) ||
      this.prevSoftState.leader !== this.leader ||
      this.prevSoftState.role !== this.role
    );
  }

  /** Collect the pending work; returns undefined when there is none. */
  ready(): Ready | undefined {
    if (this.inFlightReady) return undefined;
    if (this.needsFlush || this.readRoundNeeded) this.flushAppends();
    if (!this.hasWork()) return undefined;
    // Membership changes take effect as committed conf changes are handed out; doing it here,
    // before messages are collected, lets a change affect this very batch's quorum.
    const committed = this.snapshotToInstall ? EMPTY_ENTRIES : this.log.nextToApply();
    for (const e of committed) {
      if (e.type === EntryType.ConfChange && e.index > this.membershipIndex) this.applyCommittedConfChange(e);
    }
    if (this.needsFlush || this.readRoundNeeded) this.flushAppends();

    const hs = this.hardState();
    const rd: Ready = {
      entries: this.log.unstable(),
      committed,
      messages: this.msgs,
      readStates: this.readStates,
      sendBeforePersist: this.role === Role.Leader && hs.term === this.prevHardState.term && hs.vote === this.prevHardState.vote,
    };
    if (!sameHardState(hs, this.prevHardState)) rd.hardState = hs;
    const ss = this.softState();
    if (ss.leader !== this.prevSoftState.leader || ss.role !== this.prevSoftState.role) rd.softState = ss;
    if (this.snapshotToInstall) rd.snapshot = this.snapshotToInstall;
    if (this.membershipChanged) rd.membership = cloneMembership(this.membership);
    this.msgs = [];
    this.readStates = [];
    this.snapshotToInstall = undefined;
    this.membershipChanged = false;
    this.inFlightReady = rd;
    return rd;
  }

  /** The latest snapshot as the core keeps it (its bytes in memory, or read from its file). */
  latestSnapshot(): HeldSnapshot | undefined {
    return this.snapshot;
  }

  /**
   * Keep `held` in place of the latest snapshot's bytes if it is the same snapshot (the driver
   * hands over the snapshot's file once it is durable, so the bytes need not stay in memory).
   */
  holdSnapshot(held: HeldSnapshot): void {
    this.assertNotInReady();
    if (this.snapshot?.meta.index === held.meta.index && this.snapshot.meta.term === held.meta.term && this.snapshot.data.length === held.data.length) this.snapshot = held;
  }

  /** The driver finished the last Ready (persisted, sent, applied). */
  advance(): void {
    const rd = this.take('advance');
    if (rd.snapshot) {
      this.snapshot = rd.snapshot;
      this.log.stable = Math.max(this.log.stable, rd.snapshot.meta.index);
    }
    // The log may have been truncated meanwhile only if steps ran in between, which the
    // contract forbids; still, only what is still in the log is marked stable.
    if (rd.entries.length > 0) this.persisted(rd.entries[rd.entries.length - 1]);
    else this.countSelf();
    this.releaseReadsAwaitingCommit();
  }

  /**
   * For a driver that persists in the background (etcd's asynchronous storage writes): it has
   * taken the last Ready (sent what may go before persisting, queued the writes, and will apply
   * `committed` after them, in order) and the node may be driven again at once. The Ready's
   * entries are not handed out again; they count for this node's own match only once the driver
   * reports them durable with {@link persisted}. Not for a Ready with a snapshot (use advance).
   */
  accept(): void {
    if (this.inFlightReady?.snapshot) throw new Error('raft: a Ready with a snapshot is finished with advance()');
    const rd = this.take('accept');
    if (rd.entries.length > 0) this.log.inProgress = rd.entries[rd.entries.length - 1].index;
    this.releaseReadsAwaitingCommit();
  }

  /** The writes of an accepted Ready ending with entry `last` (index and term) are durable. */
  persisted(last: { index: number; term: number }): void {
    this.assertNotInReady();
    // Entries overwritten since (a new leader's) are not this node's log any more.
    if (last.index > this.log.stable && this.log.term(last.index) === last.term) this.log.stable = last.index;
    this.countSelf();
    this.releaseLog();
  }

  /** End the Ready in flight: what it handed out is the node's new baseline. */
  private take(by: string): Ready {
    const rd = this.inFlightReady;
    if (!rd) throw new Error(`raft: ${by}() without a ready()`);
    this.inFlightReady = undefined;
    if (rd.hardState) this.prevHardState = rd.hardState;
    if (rd.softState) this.prevSoftState = rd.softState;
    if (rd.committed.length > 0) this.log.applied = rd.committed[rd.committed.length - 1].index;
    this.releaseLog();
    return rd;
  }

  /** Let the log stop holding what no one is expected to need from memory (see logMemoryTail). */
  private releaseLog(): void {
    // RaftLog.release keeps whatever is not yet durable and applied; without a reader, all.
    let floor = Math.min(this.log.applied, this.log.stable) - this.logMemoryTail;
    if (!this.log.reader || floor <= this.log.released) return;
    if (this.role === Role.Leader) {
      for (const [id, pr] of this.progress) {
        if (id !== this.id && pr.recentActive && pr.state !== ProgressState.Snapshot && pr.match < floor) floor = pr.match;
      }
    }
    this.log.release(floor);
  }

  /** A leader's own durable log counts toward the quorum. */
  private countSelf(): void {
    if (this.role !== Role.Leader) return;
    const self = this.progress.get(this.id);
    if (self && self.maybeUpdate(this.log.stable)) this.maybeCommit();
  }

  // ---------------------------------------------------------------------------------------
  // Roles

  private becomeFollower(term: number, leader: NodeId): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = NONE;
      this.forwardedReads.clear();
    }
    this.role = Role.Follower;
    this.leader = leader;
    this.resetTimers();
    this.leadTransferee = NONE;
    this.dropLeaderState();
  }

  private becomePreCandidate(): void {
    // A pre-candidate changes neither term nor vote: a partitioned node that keeps failing its
    // pre-vote cannot inflate its term and disrupt the cluster when it returns.
    this.role = Role.PreCandidate;
    this.leader = NONE;
    this.votes.clear();
    this.dropLeaderState();
  }

  private becomeCandidate(): void {
    this.term++;
    this.forwardedReads.clear();
    this.vote = this.id;
    this.role = Role.Candidate;
    this.leader = NONE;
    this.votes.clear();
    this.resetTimers();
    this.dropLeaderState();
  }

  private becomeLeader(): void {
    this.role = Role.Leader;
    this.leader = this.id;
    this.resetTimers();
    this.leadTransferee = NONE;
    this.progress.clear();
    this.eager.clear();
    this.demoted.clear();
    this.lastRead.clear();
    this.releaseHeld = false;
    const next = this.log.lastIndex() + 1;
    for (const id of this.members()) {
      const pr = new Progress(next, this.maxInflight, !this.membership.voters.includes(id), this.sendSeq);
      pr.recentActive = true;
      this.progress.set(id, pr);
    }
    const self = this.progress.get(this.id);
    if (self) {
      self.match = this.log.stable;
      self.becomeReplicate();
    }
    this.seq = 0;
    this.roundSentAt = [];
    this.leaseRevoked = false;
    // Commit an entry of this term before anything relies on the commit index: reads wait for
    // it, and no membership change may be proposed until it is applied (the fix for the
    // single-server change bug found after the dissertation).
    const { index } = this.appendOwn(EntryType.Noop, EMPTY_DATA);
    this.pendingConfIndex = index;
  }

  private dropLeaderState(): void {
    this.progress.clear();
    this.pendingReads = [];
    this.readsAwaitingCommit = [];
    this.roundSentAt = [];
  }

  private resetTimers(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTicks + Math.floor(this.random() * this.electionTicks);
  }

  // ---------------------------------------------------------------------------------------
  // Timers

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.startCampaign(false);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      if (pr.state === ProgressState.Snapshot) {
        // A lost snapshot chunk would stall the transfer: resend from the last acked offset.
        if (++pr.snapshotIdleTicks >= this.electionTicks) {
          pr.snapshotIdleTicks = 0;
          this.sendSnapshotChunk(id, pr);
        }
      } else if (pr.state === ProgressState.Replicate && pr.inflights.count() > 0) {
        // Pipelined appends that were all lost would never be answered, and nothing else
        // would be sent while the window is full: fall back to probing.
        if (++pr.stallTicks >= this.stallTicksLimit()) {
          pr.becomeProbe();
          this.needsFlush = true;
        }
      }
    }
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, NONE);
        return;
      }
      for (const [id, pr] of this.progress) if (id !== this.id) pr.recentActive = false;
      // A transfer that did not finish within an election timeout is abandoned.
      this.leadTransferee = NONE;
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
      // Held voters lag by at most one heartbeat.
      if (this.heldIndex() > 0) {
        this.releaseHeld = true;
        this.needsFlush = true;
      }
    }
  }

  private stallTicksLimit(): number {
    return Math.max(2 * this.heartbeatTicks, Math.floor(this.electionTicks / 2));
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const id of this.membership.voters) {
      if (id === this.id || this.progress.get(id)?.recentActive) active++;
    }
    return active >= quorum(this.membership.voters.length);
  }

  // ---------------------------------------------------------------------------------------
  // Elections

  private startCampaign(transfer: boolean): void {
    if (this.preVote && !transfer) {
      this.becomePreCandidate();
      this.resetTimers();
      this.requestVotes(MessageType.PreVote, this.term + 1, false);
    } else {
      this.becomeCandidate();
      this.requestVotes(MessageType.Vote, this.term, transfer);
    }
  }

  private requestVotes(type: MessageType, term: number, transfer: boolean): void {
    this.votes.set(this.id, true);
    if (this.tallyWon()) {
      // Single voter: no one to ask.
      this.onElectionWon();
      return;
    }
    const index = this.log.lastIndex();
    const logTerm = this.log.lastTerm();
    for (const id of this.membership.voters) {
      if (id === this.id) continue;
      this.send(message({ type, from: this.id, to: id, term, index, logTerm, transfer }));
    }
  }

  private tallyWon(): boolean {
    let granted = 0;
    for (const id of this.membership.voters) if (this.votes.get(id) === true) granted++;
    return granted >= quorum(this.membership.voters.length);
  }

  private tallyLost(): boolean {
    let rejected = 0;
    for (const id of this.membership.voters) if (this.votes.get(id) === false) rejected++;
    return rejected >= quorum(this.membership.voters.length);
  }

  private onElectionWon(): void {
    if (this.role === Role.PreCandidate) {
      this.becomeCandidate();
      this.requestVotes(MessageType.Vote, this.term, false);
    } else {
      this.becomeLeader();
    }
  }

  private handleVoteRequest(m: Message): void {
    const pre = m.type === MessageType.PreVote;
    const respType = pre ? MessageType.PreVoteResp : MessageType.VoteResp;
    const canVote =
      this.candidate &&
      !this.votesWithheld &&
      this.holdsOwnAdmission() &&
      (this.vote === m.from ||
      (this.vote === NONE && this.leader === NONE) ||
      (pre && m.term > this.term));
    // Two pre-candidates for the same term with the same log would grant each other, both go
    // on to the real vote and split it (then nobody leads for an election timeout): the one
    // first in id order keeps its turn, as fast failover's stagger meant it to.
    const tie = pre && this.role === Role.PreCandidate && m.term === this.term + 1 && m.logTerm === this.log.lastTerm() && m.index === this.log.lastIndex() && this.id < m.from;
    if (canVote && !tie && this.log.isUpToDate(m.index, m.logTerm)) {
      // A granted pre-vote answers with the term the candidate will use; a real vote is durable
      // (the hard state is persisted before this response leaves).
      this.send(message({ type: respType, from: this.id, to: m.from, term: m.term }));
      if (!pre) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(message({ type: respType, from: this.id, to: m.from, term: this.term, reject: true }));
      // A survivor that knows no leader refuses a pre-vote because its own log is newer: the
      // asker cannot win, and waiting for this node's own turn (fast failover staggers the
      // survivors by id, 1, 3, 5 ... ticks) only prolongs the outage. With thrifty replication
      // the survivor behind is often the first by id: the held follower. Campaigning is a
      // pre-vote too, so this can depose no one.
      if (pre && canVote && this.role === Role.Follower && this.leader === NONE && this.preVote && this.promotable()) this.startCampaign(false);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Message dispatch

  private stepValid(m: Message): string | undefined {
    if (m.term > this.term) {
      const isVoteReq = m.type === MessageType.Vote || m.type === MessageType.PreVote;
      if (isVoteReq && !m.transfer && this.checkQuorum && this.inLease() && m.from !== this.leader) {
        // We heard from a leader within the minimum election timeout (or just restarted and
        // may have): do not let a node that cannot hear it depose it (this is also what makes
        // the leader lease safe). The leader itself asking has stepped down (it heard no
        // quorum in time): the lease protects nobody then, and turning it away would leave
        // the cluster without a leader until our timer ran out.
        if (m.type === MessageType.PreVote) this.ignoredPreVote = { m, at: this.now };
        return 'vote request ignored: current leader lease';
      }
      if (m.type === MessageType.PreVote) {
        // Never change term on a pre-vote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries the future term; we bump only when the real vote starts.
      } else if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.App)) {
        // A stale leader: tell it our term so it steps down (with PreVote/CheckQuorum it might
        // never hear it otherwise, since we will not start an election that it would see).
        this.send(message({ type: MessageType.AppResp, from: this.id, to: m.from, term: this.term }));
      } else if (m.type === MessageType.PreVote) {
        this.send(message({ type: MessageType.PreVoteResp, from: this.id, to: m.from, term: this.term, reject: true }));
      }
      return `stale term ${m.term} < ${this.term}`;
    }

    switch (m.type) {
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return undefined;
      case MessageType.ReadIndex:
        if (this.role !== Role.Leader) return 'read index request: not the leader';
        if (!this.fromConfiguredIncarnation(m)) return `read index request from another incarnation of ${m.from}`;
        this.noteReader(m.from);
        this.leaderRead(m.context, m.from);
        return undefined;
    }

    switch (this.role) {
      case Role.Leader:
        return this.stepLeader(m);
      case Role.Candidate:
      case Role.PreCandidate:
        return this.stepCandidate(m);
      case Role.Follower:
        return this.stepFollower(m);
    }
  }

  private inLease(): boolean {
    return (this.leader !== NONE && this.electionElapsed < this.electionTicks) || this.now < this.startupGuardTicks;
  }

  private stepCandidate(m: Message): string | undefined {
    const myVoteResp = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    switch (m.type) {
      case MessageType.App:
      case MessageType.Heartbeat:
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        return this.stepFollower(m);
      case myVoteResp:
        if (!this.membership.voters.includes(m.from)) return 'vote from a non-voter';
        this.votes.set(m.from, !m.reject);
        if (this.tallyWon()) this.onElectionWon();
        else if (this.tallyLost()) this.becomeFollower(this.term, NONE);
        return undefined;
      case MessageType.TimeoutNow:
        return 'timeout-now while campaigning';
      default:
        return `${MessageType[m.type]} ignored by a ${this.role}`;
    }
  }

  private stepFollower(m: Message): string | undefined {
    switch (m.type) {
      case MessageType.App:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleAppend(m);
        return undefined;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
        this.send(message({ type: MessageType.HeartbeatResp, from: this.id, to: m.from, term: this.term, seq: m.seq }));
        return undefined;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleSnapshotChunk(m);
        return undefined;
      case MessageType.TimeoutNow:
        if (!this.promotable()) return 'timeout-now to a node that cannot vote';
        this.startCampaign(true);
        return undefined;
      case MessageType.ReadIndexResp: {
        // Only the answer to a request of ours, from the leader we asked, in the term we asked.
        const asked = this.forwardedReads.get(m.context);
        if (!asked || asked.term !== m.term || asked.to !== m.from) return 'read index answer to no request of ours';
        this.forwardedReads.delete(m.context);
        this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
        this.readStates.push({ index: m.index, context: m.context });
        return undefined;
      }
      default:
        return `${MessageType[m.type]} ignored by a follower`;
    }
  }

  private stepLeader(m: Message): string | undefined {
    const pr = this.progress.get(m.from);
    if (!pr) return `message from ${m.from}, not a member`;
    // An answer to something sent before this progress began (0: a peer that does not echo).
    if ((m.type === MessageType.AppResp || m.type === MessageType.SnapResp) && m.seq !== 0 && m.seq <= pr.since) return `${MessageType[m.type]} from ${m.from} answers a message sent before it was (re)added`;
    if ((m.type === MessageType.AppResp || m.type === MessageType.HeartbeatResp) && !this.fromConfiguredIncarnation(m)) {
      return `acknowledgment from another incarnation of ${m.from} (it lost its state)`;
    }
    switch (m.type) {
      case MessageType.AppResp:
        pr.recentActive = true;
        this.handleAppendResponse(m, pr);
        return undefined;
      case MessageType.HeartbeatResp:
        pr.recentActive = true;
        if (m.seq > pr.ackedSeq) pr.ackedSeq = m.seq;
        if (pr.state === ProgressState.Probe) pr.probeSent = false;
        if (pr.match < this.log.lastIndex()) this.needsFlush = true;
        this.resolveReads();
        return undefined;
      case MessageType.SnapResp:
        pr.recentActive = true;
        this.handleSnapshotResponse(m, pr);
        return undefined;
      default:
        return `${MessageType[m.type]} ignored by the leader`;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Replication: follower side

  private handleAppend(m: Message): void {
    const reply = (fields: Partial<Message>) =>
      this.send(message({ type: MessageType.AppResp, from: this.id, to: m.from, term: this.term, seq: m.seq, ...fields }));
    if (m.index < this.log.committed) {
      reply({ index: this.log.committed });
      return;
    }
    if (this.log.matchTerm(m.index, m.logTerm)) {
      const lastNew = this.log.maybeAppend(m.index, m.entries);
      this.log.commitTo(Math.min(m.commit, lastNew));
      reply({ index: lastNew });
      return;
    }
    // Tell the leader where our logs might agree: the last index at or below its probe whose
    // term is no greater than the probe's, skipping a whole conflicting term per round trip.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    reply({ index: m.index, reject: true, rejectHint: hint, logTerm: Math.max(0, this.log.term(hint)) });
  }

  private handleSnapshotChunk(m: Message): void {
    const chunk = m.snapshot!;
    const { meta } = chunk;
    const ack = (offset: number, reject: boolean) =>
      this.send(message({ type: MessageType.SnapResp, from: this.id, to: m.from, term: this.term, snapshotIndex: meta.index, snapshotOffset: offset, reject, seq: m.seq }));
    if (meta.index <= this.log.committed) {
      // We already have everything it covers.
      this.incomingSnapshot = undefined;
      ack(chunk.totalSize, false);
      this.send(message({ type: MessageType.AppResp, from: this.id, to: m.from, term: this.term, index: this.log.committed, seq: m.seq }));
      return;
    }
    let inc = this.incomingSnapshot;
    if (chunk.offset === 0) {
      inc = { from: m.from, index: meta.index, term: meta.term, chunks: [], received: 0 };
      this.incomingSnapshot = inc;
    }
    if (!inc || inc.index !== meta.index || inc.term !== meta.term || inc.from !== m.from || chunk.offset !== inc.received) {
      // Out of order or for a different snapshot: ask for the offset we expect.
      const expect = inc && inc.index === meta.index && inc.term === meta.term && inc.from === m.from ? inc.received : 0;
      ack(expect, true);
      return;
    }
    inc.chunks.push(chunk.data);
    inc.received += chunk.data.length;
    ack(inc.received, false);
    if (!chunk.done) return;
    this.incomingSnapshot = undefined;
    if (inc.received !== chunk.totalSize) {
      ack(0, true);
      return;
    }
    const data = concat(inc.chunks, inc.received);
    this.restoreSnapshot({ meta, data });
    // What we now know matches the leader is the log up to the snapshot; entries after it
    // (kept when we already had the snapshot's entry) are unverified.
    this.send(message({ type: MessageType.AppResp, from: this.id, to: m.from, term: this.term, index: meta.index, seq: m.seq }));
  }

  private restoreSnapshot(snap: Snapshot): void {
    const { index, term } = snap.meta;
    if (this.log.matchTerm(index, term)) {
      // Our log already contains it: just move the commit index forward.
      this.log.commitTo(index);
      return;
    }
    this.log.restore(index, term);
    this.membershipHistory = [];
    this.setMembership(index, snap.meta.membership);
    this.membershipChanged = true;
    this.snapshotToInstall = snap;
  }

  // ---------------------------------------------------------------------------------------
  // Replication: leader side

  private appendOwn(type: EntryType, data: Uint8Array): { index: number; term: number } {
    const index = this.log.lastIndex() + 1;
    this.log.append([{ term: this.term, index, type, data }]);
    this.needsFlush = true;
    return { index, term: this.term };
  }

  private assertCanPropose(): void {
    if (this.role !== Role.Leader) throw new RaftError('not-leader', 'not the leader', this.leader);
    if (this.leadTransferee !== NONE) {
      throw new RaftError('transfer-in-progress', `leadership is moving to ${this.leadTransferee}`, this.leadTransferee);
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    if (m.reject) {
      let hint = m.rejectHint;
      if (m.logTerm > 0) hint = this.log.findConflictByTerm(m.rejectHint, m.logTerm);
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.needsFlush = true;
      }
      return;
    }
    // A probe is answered at or above where it probed; anything lower answers an older append,
    // possibly one to an earlier incarnation of a member removed and added again, whose log
    // the new one does not have. Trusting it would claim entries the follower lacks.
    if (pr.state === ProgressState.Probe && m.index < pr.next - 1) return;
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === ProgressState.Probe) pr.becomeReplicate();
    else if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.Replicate) pr.inflights.freeTo(m.index);
    this.maybeCommit();
    this.needsFlush = true;
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private sendTimeoutNow(to: NodeId): void {
    this.leaseRevoked = true;
    this.send(message({ type: MessageType.TimeoutNow, from: this.id, to, term: this.term }));
  }

  private handleSnapshotResponse(m: Message, pr: Progress): void {
    if (pr.state !== ProgressState.Snapshot || !this.snapshot) return;
    if (m.snapshotIndex !== pr.pendingSnapshot) {
      if (m.reject) this.startSnapshot(m.from, pr);
      return;
    }
    pr.snapshotIdleTicks = 0;
    if (m.reject) {
      pr.snapshotOffset = Math.min(m.snapshotOffset, this.snapshot.data.length);
      this.sendSnapshotChunk(m.from, pr);
      return;
    }
    if (m.snapshotOffset <= pr.snapshotOffset) return; // duplicate ack
    pr.snapshotOffset = m.snapshotOffset;
    if (pr.snapshotOffset < this.snapshot.data.length) this.sendSnapshotChunk(m.from, pr);
  }

  private maybeCommit(): boolean {
    const matches = this.scratch;
    matches.length = 0;
    for (const id of this.membership.voters) matches.push(this.progress.get(id)?.match ?? 0);
    if (matches.length === 0) return false;
    const idx = quorumValue(matches);
    // Only entries of the current term are committed by counting (Raft §5.4.2).
    if (idx > this.log.committed && this.log.term(idx) === this.term) {
      // Followers learn the new commit index from the next append or heartbeat (or a read
      // index answer); an immediate empty append per commit would double the messages.
      this.log.commitTo(idx);
      this.releaseReadsAwaitingCommit();
      return true;
    }
    return false;
  }

  /** Send what each follower is missing, within its flow-control window. */
  private flushAppends(): void {
    const readRound = this.readRoundNeeded;
    this.needsFlush = false;
    this.readRoundNeeded = false;
    if (this.role !== Role.Leader) return;
    const last = this.log.lastIndex();
    const holding = !this.releaseHeld && this.chooseEager();
    this.releaseHeld = false;
    for (const [id, pr] of this.progress) {
      if (id === this.id || pr.isPaused()) continue;
      if (pr.next <= last) {
        if (holding && this.isHeld(id, pr) && last - pr.next + 1 < THRIFTY_BATCH_ENTRIES) continue;
        this.sendPending(id, pr);
      } else if (pr.state === ProgressState.Probe && pr.match < last) {
        // An empty append probes where the logs agree.
        this.sendAppend(id, pr);
      }
    }
    if (readRound) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  /**
   * Thrifty replication: make sure `eager` holds as many voters in Replicate state as a quorum
   * needs besides this leader (keeping the ones it has: the eager voter is the most up to date,
   * and switching for nothing only splits batches). False when nothing is to be held back:
   * thrifty off, fewer than three voters, a leadership transfer under way (the transferee must
   * catch up), or this leader not a voter (it is being removed).
   */
  private chooseEager(): boolean {
    const voters = this.membership.voters;
    if (!this.thrifty || this.role !== Role.Leader || this.leadTransferee !== NONE || voters.length < 3 || !voters.includes(this.id)) return false;
    const need = quorum(voters.length) - 1;
    for (const id of this.eager) if (!this.mayBeEager(id)) this.eager.delete(id);
    if (this.eager.size < need) {
      // Not demoted by a hedge first, then serving reads, then the most up to date, then by id.
      const match = (id: NodeId) => this.progress.get(id)!.match;
      const reads = (id: NodeId) => Number(this.readsRecently(id));
      const candidates = voters
        .filter((id) => id !== this.id && !this.eager.has(id) && this.mayBeEager(id))
        .sort((x, y) => Number(this.demoted.has(x)) - Number(this.demoted.has(y)) || reads(y) - reads(x) || match(y) - match(x) || (x < y ? -1 : 1));
      for (const id of candidates.slice(0, need - this.eager.size)) this.eager.add(id);
    }
    this.demoted.clear();
    return true;
  }

  /**
   * Thrifty replication: a read at a held voter first waits for it to make the held entries
   * durable (deliverRead sends them ahead of the answer), so a voter that serves reads is
   * better eager. It takes the place of an eager voter that has served none for an election
   * timeout; two that both serve reads stay as they are (swapping back and forth would only
   * move the wait from one to the other).
   */
  private noteReader(id: NodeId): void {
    if (!this.thrifty) return;
    this.lastRead.set(id, this.now);
    if (this.eager.size === 0 || this.eager.has(id) || !this.mayBeEager(id)) return;
    for (const e of this.eager) {
      if (this.readsRecently(e)) continue;
      this.eager.delete(e);
      this.eager.add(id);
      return;
    }
  }

  /** A voter in Replicate state: one a thrifty leader may send new entries to at once. */
  private mayBeEager(id: NodeId): boolean {
    const pr = this.progress.get(id);
    return pr !== undefined && streamsToVoter(pr) && this.membership.voters.includes(id);
  }

  private readsRecently(id: NodeId): boolean {
    const at = this.lastRead.get(id);
    return at !== undefined && this.now - at < this.electionTicks;
  }

  /** A voter whose new entries may wait (thrifty replication; chooseEager ran). */
  private isHeld(id: NodeId, pr: Progress): boolean {
    return streamsToVoter(pr) && !this.eager.has(id);
  }

  /** Milliseconds on this node's clock (RaftConfig.clock). */
  clockMs(): number {
    return this.clock();
  }

  /**
   * The last index, if some voter is waiting for entries a thrifty leader holds back from it;
   * 0 otherwise. The driver arms a timer with it and calls {@link hedge} when it fires.
   */
  heldIndex(): number {
    if (!this.thrifty || this.role !== Role.Leader || this.eager.size === 0) return 0;
    const last = this.log.lastIndex();
    for (const [id, pr] of this.progress) {
      if (id !== this.id && pr.next <= last && this.isHeld(id, pr)) return last;
    }
    return 0;
  }

  /**
   * Thrifty replication: entry `index` was held back from some voter and is still not
   * committed after the driver's hedge delay (an eager voter is slow, cut off or gone). Send
   * what is held to every voter now, and let the held ones take the place of eager ones that
   * have not acknowledged `index`.
   */
  hedge(index: number): void {
    if (this.role !== Role.Leader || index <= this.log.committed) return;
    for (const id of this.eager) {
      if ((this.progress.get(id)?.match ?? 0) < index) {
        this.eager.delete(id);
        this.demoted.add(id);
      }
    }
    this.releaseHeld = true;
    this.needsFlush = true;
  }

  /** Send what `to` is missing, within its flow-control window. */
  private sendPending(to: NodeId, pr: Progress): void {
    const last = this.log.lastIndex();
    while (!pr.isPaused() && pr.next <= last && this.sendAppend(to, pr));
  }

  /** Returns false when it had to start a snapshot instead. */
  private sendAppend(to: NodeId, pr: Progress): boolean {
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === -1) {
      this.startSnapshot(to, pr);
      return false;
    }
    const entries = this.log.slice(pr.next, this.log.lastIndex() + 1, this.maxAppendBytes);
    if (entries.length === 0 && pr.next <= this.log.lastIndex()) {
      // Released entries the storage could not give back (compacted under us, a failed read):
      // a snapshot that covers them if there is one, else nothing now; the next heartbeat's
      // answer asks again.
      if (this.snapshot && this.snapshot.meta.index >= pr.next) this.startSnapshot(to, pr);
      return false;
    }
    this.send(
      message({
        type: MessageType.App,
        from: this.id,
        to,
        term: this.term,
        index: prevIndex,
        logTerm: prevTerm,
        entries,
        commit: this.log.committed,
        seq: ++this.sendSeq,
      }),
    );
    pr.sentEntries(prevIndex + entries.length, entries.length);
    return true;
  }

  private startSnapshot(to: NodeId, pr: Progress): void {
    if (!this.snapshot) throw new Error(`raft: ${to} needs entries before ${this.log.firstIndex()} but there is no snapshot`);
    pr.becomeSnapshot(this.snapshot.meta.index);
    this.sendSnapshotChunk(to, pr);
  }

  private sendSnapshotChunk(to: NodeId, pr: Progress): void {
    const snap = this.snapshot;
    if (!snap) return;
    if (pr.pendingSnapshot !== snap.meta.index) {
      pr.becomeSnapshot(snap.meta.index);
    }
    const offset = pr.snapshotOffset;
    const end = Math.min(offset + this.snapshotChunkBytes, snap.data.length);
    const chunk: SnapshotChunk = {
      meta: snap.meta,
      offset,
      totalSize: snap.data.length,
      data: snap.data.subarray(offset, end),
      done: end === snap.data.length,
    };
    this.send(message({ type: MessageType.Snap, from: this.id, to, term: this.term, snapshot: chunk, seq: ++this.sendSeq }));
  }

  private broadcastHeartbeat(): void {
    const seq = ++this.seq;
    this.roundSentAt.push({ seq, at: this.clock() });
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      this.send(
        message({
          type: MessageType.Heartbeat,
          from: this.id,
          to: id,
          term: this.term,
          commit: Math.min(pr.match, this.log.committed),
          seq,
        }),
      );
    }
    if (this.progress.size <= 1) this.resolveReads();
  }

  // ---------------------------------------------------------------------------------------
  // Reads

  private committedInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private leaderRead(context: string, requester: NodeId): void {
    if (!this.committedInCurrentTerm()) {
      // Our commit index may be behind the previous leader's until our no-op commits.
      this.readsAwaitingCommit.push({ context, requester });
      return;
    }
    const index = this.log.committed;
    if (this.membership.voters.length === 1 && this.membership.voters[0] === this.id) {
      this.deliverRead(requester, index, context);
      return;
    }
    if (this.readMode === 'lease' && this.leaseValid()) {
      this.deliverRead(requester, index, context);
      return;
    }
    if (this.requestIsQuorum(requester)) {
      this.deliverRead(requester, index, context);
      return;
    }
    this.pendingReads.push({ seq: this.seq + 1, index, context, requester });
    // Confirm leadership with a fresh heartbeat round at the next flush rather than waiting for
    // the next tick; every read queued until then shares the round.
    this.readRoundNeeded = true;
  }

  /**
   * Whether a voter's read request, with us, is a quorum (a cluster of two or three voters): then
   * it confirms our leadership by itself, with no heartbeat round. The requester sent it in our
   * term as our follower, after its read began, so until then it had voted in no newer term; nor
   * have we. A leader of a newer term needs one of our two votes, so none existed before the
   * request was sent, and every write done before the read began is at or below our commit
   * index (which a new leader uses only once an entry of its own term commits, as above).
   */
  private requestIsQuorum(requester: NodeId): boolean {
    const voters = this.membership.voters;
    return requester !== this.id && voters.includes(requester) && voters.includes(this.id) && quorum(voters.length) <= 2;
  }

  private releaseReadsAwaitingCommit(): void {
    if (this.role !== Role.Leader || this.readsAwaitingCommit.length === 0 || !this.committedInCurrentTerm()) return;
    const waiting = this.readsAwaitingCommit;
    this.readsAwaitingCommit = [];
    for (const r of waiting) this.leaderRead(r.context, r.requester);
  }

  /** Highest heartbeat round acknowledged by a quorum of voters (counting ourselves). */
  private quorumAckedSeq(): number {
    const acks = this.scratch;
    acks.length = 0;
    for (const id of this.membership.voters) {
      acks.push(id === this.id ? this.seq : (this.progress.get(id)?.ackedSeq ?? 0));
    }
    return quorumValue(acks);
  }

  private resolveReads(): void {
    const acked = this.quorumAckedSeq();
    while (this.pendingReads.length > 0 && this.pendingReads[0].seq <= acked) {
      const r = this.pendingReads.shift()!;
      this.deliverRead(r.requester, r.index, r.context);
    }
    while (this.roundSentAt.length > 1 && this.roundSentAt[1].seq <= acked) this.roundSentAt.shift();
  }

  private leaseValid(): boolean {
    if (this.leaseRevoked) return false;
    const acked = this.quorumAckedSeq();
    const round = this.roundSentAt.find((r) => r.seq === acked);
    // Leadership is certain for leaseMs after the acknowledged round was sent (see leaseMs).
    return round !== undefined && this.clock() < round.at + this.leaseMs;
  }

  private deliverRead(requester: NodeId, index: number, context: string): void {
    if (requester === this.id) {
      this.readStates.push({ index, context });
      return;
    }
    // A voter that thrifty replication holds entries back from needs them to reach the read
    // point: they go first, on the same connection.
    const pr = this.progress.get(requester);
    if (pr && pr.state === ProgressState.Replicate && pr.next <= index) this.sendPending(requester, pr);
    // Carry the commit index (capped at what the requester has acknowledged, as heartbeats do)
    // so the follower can apply up to the read point without waiting for the next heartbeat.
    const commit = Math.min(this.progress.get(requester)?.match ?? 0, this.log.committed);
    this.send(message({ type: MessageType.ReadIndexResp, from: this.id, to: requester, term: this.term, index, context, commit }));
  }

  // ---------------------------------------------------------------------------------------
  // Membership

  private members(): NodeId[] {
    return [...this.membership.voters, ...this.membership.learners];
  }

  private setMembership(index: number, m: Membership): void {
    this.membership = cloneMembership(m);
    this.membershipIndex = index;
    while (this.membershipHistory.length > 0 && this.membershipHistory[this.membershipHistory.length - 1].index >= index) {
      this.membershipHistory.pop();
    }
    this.membershipHistory.push({ index, membership: cloneMembership(m) });
  }

  private replayMembership(upTo: number): void {
    for (let i = Math.max(this.membershipIndex + 1, this.log.firstIndex()); i <= upTo; i++) {
      const e = this.log.entry(i);
      if (e?.type === EntryType.ConfChange) this.setMembership(i, applyConfChange(this.membership, decodeConfChange(e.data)));
    }
  }

  private applyCommittedConfChange(e: Entry): void {
    const cc = decodeConfChange(e.data);
    this.setMembership(e.index, applyConfChange(this.membership, cc));
    this.membershipChanged = true;
    if (this.role !== Role.Leader) return;
    if (!this.membership.voters.includes(this.id)) {
      // A leader removed (or demoted) steps down once the change commits (§4.2.2); a last
      // heartbeat round tells the others it committed, then they elect a new leader.
      this.broadcastHeartbeat();
      this.becomeFollower(this.term, NONE);
      return;
    }
    if (cc.type === ConfChangeType.RemoveNode) {
      this.progress.delete(cc.node);
      if (this.leadTransferee === cc.node) this.leadTransferee = NONE;
    } else {
      let pr = this.progress.get(cc.node);
      if (!pr) {
        pr = new Progress(this.log.lastIndex() + 1, this.maxInflight, false, this.sendSeq);
        pr.recentActive = true;
        this.progress.set(cc.node, pr);
      }
      pr.isLearner = cc.type === ConfChangeType.AddLearner;
    }
    this.maybeCommit();
    this.needsFlush = true;
  }

  // ---------------------------------------------------------------------------------------

  private send(m: Message): void {
    if (this.incarnation !== undefined && (m.type === MessageType.AppResp || m.type === MessageType.HeartbeatResp || m.type === MessageType.ReadIndex)) {
      m.incarnation = this.incarnation;
    }
    this.msgs.push(m);
  }

  /**
   * Whether an acknowledgment or read request comes from the start of its sender that our
   * configuration counts (see RaftConfig.incarnation). A non-voter counts for no quorum.
   */
  private fromConfiguredIncarnation(m: Message): boolean {
    if (!this.membership.voters.includes(m.from)) return true;
    return (m.incarnation ?? '') === (this.membership.incarnations?.[m.from] ?? '');
  }

  private assertNotInReady(): void {
    if (this.inFlightReady) throw new Error('raft: call advance() before driving the node again');
  }
}

/** A voter's progress in Replicate state: entries stream to it, or a thrifty leader holds them. */
function streamsToVoter(pr: Progress): boolean {
  return !pr.isLearner && pr.state === ProgressState.Replicate;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
