/**
 * Shared vocabulary of the consensus core. Everything here is plain data: the core never does
 * I/O, so these are what crosses the boundary between the core and its driver.
 */

export type NodeId = string;
export const NONE: NodeId = '';

export enum EntryType {
  /** A client command; `data` is opaque to the core. */
  Normal = 0,
  /** A membership change; `data` is an encoded {@link ConfChange}. */
  ConfChange = 1,
  /** The empty entry a new leader appends to commit everything before its term. */
  Noop = 2,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

/** State that must be on stable storage before any message that depends on it leaves the node. */
export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

/** Cluster membership. Addresses are opaque to the core and carried for the driver. */
export interface Membership {
  voters: NodeId[];
  learners: NodeId[];
  addrs: Record<NodeId, string>;
  /**
   * Learners that joined as loggers (a logger's own Raft log is not fsync'd): the configuration
   * refuses to make them voters, whoever leads and whatever it has heard. Absent when none.
   */
  loggers?: NodeId[];
  /**
   * Which start of each member the configuration means, for members that joined with no state
   * (a random id drawn when a node starts empty, given with its join). A leader counts a voter's
   * acknowledgments only from the incarnation named here: a node whose disk was lost is not
   * counted as the voter it was (see RaftConfig.incarnation). Absent for bootstrap members.
   */
  incarnations?: Record<NodeId, string>;
}

export interface SnapshotMeta {
  index: number;
  term: number;
  membership: Membership;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

/**
 * A snapshot's bytes as the core needs them to send one: a Uint8Array, or the snapshot's file,
 * read a chunk at a time when a follower needs it (a large state is not kept twice in memory).
 */
export interface SnapshotBytes {
  readonly length: number;
  subarray(start: number, end: number): Uint8Array;
}

/** What the core keeps of its latest snapshot: its meta, and its bytes wherever they are. */
export interface HeldSnapshot {
  meta: SnapshotMeta;
  data: SnapshotBytes;
}

export enum ConfChangeType {
  AddVoter = 0,
  AddLearner = 1,
  RemoveNode = 2,
}

export interface ConfChange {
  type: ConfChangeType;
  node: NodeId;
  /** Address the driver should dial for this node (ignored for RemoveNode). */
  addr?: string;
  /** AddLearner only: the node is a logger, never to be promoted (Membership.loggers). */
  logger?: boolean;
  /** AddLearner or AddVoter of a new member: which start of it this is (Membership.incarnations). */
  incarnation?: string;
}

export enum Role {
  Follower = 'follower',
  PreCandidate = 'pre-candidate',
  Candidate = 'candidate',
  Leader = 'leader',
}

export enum MessageType {
  Vote = 1,
  VoteResp = 2,
  PreVote = 3,
  PreVoteResp = 4,
  App = 5,
  AppResp = 6,
  Heartbeat = 7,
  HeartbeatResp = 8,
  /** One chunk of an InstallSnapshot. */
  Snap = 9,
  /** Acknowledges the chunks of snapshot `snapshotIndex` up to `snapshotOffset` (or, with reject, asks to resume there). */
  SnapResp = 10,
  TimeoutNow = 11,
  /** A follower forwards a ReadIndex request to the leader. */
  ReadIndex = 12,
  ReadIndexResp = 13,
}

export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  /** App: term of the entry before `entries`; Vote: candidate's last log term; AppResp reject: hint term. */
  logTerm: number;
  /** App: index before `entries`; Vote: candidate's last index; AppResp: last matching index or hint. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** AppResp on reject: the follower's hint for where the logs may agree. */
  rejectHint: number;
  /** Heartbeat round / read request sequence, echoed back in responses. */
  seq: number;
  /** ReadIndex: caller's opaque context, echoed in the read state. */
  context: string;
  /** Vote/PreVote caused by a leadership transfer: receivers must not ignore it for lease reasons. */
  transfer: boolean;
  /** AppResp, HeartbeatResp, ReadIndex: the sender's incarnation, if it has one (RaftConfig.incarnation). */
  incarnation?: string;
  /** Snap: the snapshot being sent (meta always, `data` is the chunk at `offset`). */
  snapshot?: SnapshotChunk;
  /** SnapResp: which snapshot (its index) the answer is about. */
  snapshotIndex: number;
  /** SnapResp: bytes received in order so far; on reject, the offset to resume from. */
  snapshotOffset: number;
}

export interface SnapshotChunk {
  meta: SnapshotMeta;
  offset: number;
  totalSize: number;
  data: Uint8Array;
  done: boolean;
}

/** A linearizable read is safe once the state machine has applied `index`. */
export interface ReadState {
  index: number;
  context: string;
}

export interface SoftState {
  leader: NodeId;
  role: Role;
  /**
   * The term this role and leader belong to. A driver reports a soft state once the Ready that
   * carried it is durable, by when the node may have moved to a later term: read the term here,
   * not from the node (doing the latter put two leaders in one term in the simulator's check).
   */
  term: number;
}

/** Build a message with all fields present (keeps object shapes monomorphic, which V8 rewards). */
export function message(partial: Partial<Message> & Pick<Message, 'type' | 'from' | 'to' | 'term'>): Message {
  return {
    logTerm: 0,
    index: 0,
    entries: EMPTY_ENTRIES,
    commit: 0,
    reject: false,
    rejectHint: 0,
    seq: 0,
    context: '',
    transfer: false,
    snapshot: undefined,
    snapshotIndex: 0,
    snapshotOffset: 0,
    ...partial,
  };
}

export const EMPTY_ENTRIES: Entry[] = Object.freeze([]) as unknown as Entry[];
export const EMPTY_DATA = new Uint8Array(0);

/** What an incarnation may look like (RaftConfig.incarnation): checked wherever one enters. */
export const INCARNATION_PATTERN = /^[0-9a-z.#_-]{1,64}$/i;

export function cloneMembership(m: Membership): Membership {
  const c: Membership = { voters: [...m.voters], learners: [...m.learners], addrs: { ...m.addrs } };
  if (m.loggers && m.loggers.length > 0) c.loggers = [...m.loggers];
  if (m.incarnations && Object.keys(m.incarnations).length > 0) c.incarnations = { ...m.incarnations };
  return c;
}

export function isEmptyHardState(h: HardState): boolean {
  return h.term === 0 && h.vote === NONE && h.commit === 0;
}
