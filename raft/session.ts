/**
 * Client sessions (Raft dissertation §6.3): a client registers a session through the log and
 * tags each command with (session id, sequence number); the state machine remembers the answers
 * it gave, so a command retried after a timeout or a leader change is applied at most once and
 * the retry gets the original answer.
 *
 * Session ids are the log index of their registration, so an id is never handed out twice: a
 * session that expired stays unknown forever, and a command for it is answered "session
 * expired" instead of being applied again as if it were new.
 *
 * Everything here is a pure function of the applied log (indexes, and times the leader wrote
 * into the commands), so every replica expires the same sessions at the same entry and the
 * table can be part of a snapshot.
 */
export interface SessionOptions {
  /** Sessions kept; beyond this the least recently active expires (a memory bound). */
  maxSessions?: number;
  /** Answers kept per session for pipelining clients. */
  maxResponsesPerSession?: number;
  /** A session unused for this long (in log time) expires (default 10 minutes). */
  ttlMs?: number;
}

interface Session {
  id: string;
  /** Log index of the last command, and log time of it. */
  lastActive: number;
  lastTime: number;
  /** Everything at or below this was acknowledged by the client and forgotten. */
  ackedThrough: number;
  /**
   * Kept answers: seqs ascending, answers[i] the answer to seqs[i]. Arrays rather than a map:
   * a client usually has one or a few answers kept, and a map emptied and refilled on every
   * command reallocates its table each time.
   */
  seqs: number[];
  answers: Uint8Array[];
  /** Neighbours in the order of last activity (a linked list: a touch is a few pointer moves). */
  older: Session | undefined;
  newer: Session | undefined;
}

export type SessionOutcome =
  | { kind: 'new' }
  | { kind: 'duplicate'; response: Uint8Array }
  /** Seq at or below what the client already acknowledged: its answer is gone, not applied again. */
  | { kind: 'expired' }
  /** No such session (never registered, or expired): not applied; the client must register anew. */
  | { kind: 'unknown-session' };

// The answers without data, shared (one allocation per command less on the apply path).
const NEW: SessionOutcome = Object.freeze({ kind: 'new' });
const EXPIRED: SessionOutcome = Object.freeze({ kind: 'expired' });
const UNKNOWN_SESSION: SessionOutcome = Object.freeze({ kind: 'unknown-session' });

export const DEFAULT_SESSION_TTL_MS = 10 * 60_000;

export class SessionTable {
  /** By id. The order of activity is the list from `oldest` to `newest`, not the map's order. */
  private sessions = new Map<string, Session>();
  private oldest: Session | undefined;
  private newest: Session | undefined;
  /** The session `check` found last: `record` for the same command does not look it up again. */
  private checked: Session | undefined;
  /** Log time: the largest command time applied so far. */
  private time = 0;
  private readonly maxSessions: number;
  private readonly maxResponses: number;
  private readonly ttlMs: number;

  constructor(opts: SessionOptions = {}) {
    this.maxSessions = opts.maxSessions ?? 10_000;
    this.maxResponses = opts.maxResponsesPerSession ?? 64;
    this.ttlMs = opts.ttlMs ?? DEFAULT_SESSION_TTL_MS;
  }

  size(): number {
    return this.sessions.size;
  }

  has(client: string): boolean {
    return this.sessions.has(client);
  }

  /**
   * Move log time forward to a command's time (written by the leader that proposed it) and
   * expire sessions idle for longer than the TTL. Times from a leader with a slower clock never
   * move it back.
   */
  advance(time: number): void {
    if (time > this.time) this.time = time;
    while (this.oldest && this.oldest.lastTime + this.ttlMs < this.time) this.remove(this.oldest);
  }

  /** Open a session for the registration entry at `index`; returns its id. */
  register(index: number): string {
    const id = String(index);
    const existing = this.sessions.get(id);
    if (existing) this.remove(existing);
    const s: Session = { id, lastActive: index, lastTime: this.time, ackedThrough: 0, seqs: [], answers: [], older: undefined, newer: undefined };
    this.sessions.set(id, s);
    this.append(s);
    while (this.sessions.size > this.maxSessions) this.remove(this.oldest!);
    return id;
  }

  /**
   * Look up (client, seq) while applying the entry at `index`. `ackedThrough` is the client's
   * statement that it has seen answers up to that sequence number, so they can be forgotten.
   */
  check(client: string, seq: number, ackedThrough: number, index: number): SessionOutcome {
    const s = this.sessions.get(client);
    this.checked = s;
    if (!s) return UNKNOWN_SESSION;
    this.touch(s, index);
    this.forget(s, ackedThrough);
    const at = search(s.seqs, seq);
    if (s.seqs[at] === seq) return { kind: 'duplicate', response: s.answers[at] };
    if (seq <= s.ackedThrough) return EXPIRED;
    return NEW;
  }

  /** Remember the answer to (client, seq), applied at `index`. Unknown sessions are ignored. */
  record(client: string, seq: number, response: Uint8Array, index: number): void {
    const s = this.checked?.id === client ? this.checked : this.sessions.get(client);
    if (!s) return;
    this.touch(s, index);
    const at = search(s.seqs, seq);
    if (s.seqs[at] === seq) s.answers[at] = response;
    else if (at === s.seqs.length) {
      s.seqs.push(seq);
      s.answers.push(response);
    } else {
      s.seqs.splice(at, 0, seq);
      s.answers.splice(at, 0, response);
    }
    if (s.seqs.length > this.maxResponses) {
      const oldest = s.seqs.shift()!;
      s.answers.shift();
      s.ackedThrough = Math.max(s.ackedThrough, oldest);
    }
  }

  private touch(s: Session, index: number): void {
    s.lastActive = index;
    s.lastTime = this.time;
    if (this.newest === s) return;
    this.unlink(s);
    this.append(s);
  }

  private append(s: Session): void {
    s.older = this.newest;
    s.newer = undefined;
    if (this.newest) this.newest.newer = s;
    else this.oldest = s;
    this.newest = s;
  }

  private unlink(s: Session): void {
    if (s.older) s.older.newer = s.newer;
    else this.oldest = s.newer;
    if (s.newer) s.newer.older = s.older;
    else this.newest = s.older;
    s.older = s.newer = undefined;
  }

  private remove(s: Session): void {
    this.unlink(s);
    this.sessions.delete(s.id);
    if (this.checked === s) this.checked = undefined;
  }

  private forget(s: Session, ackedThrough: number): void {
    if (ackedThrough <= s.ackedThrough) return;
    s.ackedThrough = ackedThrough;
    // Usually one (a client acknowledging its last answer): shift allocates nothing, splice
    // returns a new array.
    for (let n = search(s.seqs, ackedThrough, true); n > 0; n--) {
      s.seqs.shift();
      s.answers.shift();
    }
  }

  /** Sessions from the least to the most recently active. */
  private *inOrder(): Generator<Session> {
    for (let s = this.oldest; s; s = s.newer) yield s;
  }

  toJSON(): unknown {
    return {
      time: this.time,
      sessions: [...this.inOrder()].map((s) => [s.id, s.lastActive, s.lastTime, s.ackedThrough, s.seqs.map((k, i) => [k, Buffer.from(s.answers[i]).toString('base64')])]),
    };
  }

  static fromJSON(raw: unknown, opts: SessionOptions = {}): SessionTable {
    const t = new SessionTable(opts);
    const r = raw as { time?: unknown; sessions?: unknown };
    if (!r || typeof r !== 'object' || !Array.isArray(r.sessions) || typeof r.time !== 'number') throw new Error('session table snapshot is malformed');
    t.time = r.time;
    for (const row of r.sessions as [string, number, number, number, [number, string][]][]) {
      const [id, lastActive, lastTime, ackedThrough, responses] = row;
      const kept = [...responses].sort(([a], [b]) => a - b);
      const s: Session = {
        id,
        lastActive,
        lastTime,
        ackedThrough,
        seqs: kept.map(([k]) => k),
        answers: kept.map(([, v]) => new Uint8Array(Buffer.from(v, 'base64'))),
        older: undefined,
        newer: undefined,
      };
      if (t.sessions.has(id)) throw new Error(`session table snapshot is malformed: session ${id} appears twice`);
      t.sessions.set(id, s);
      t.append(s);
    }
    return t;
  }
}

/**
 * The first position in ascending `a` whose value is at least `x` (or, with `past`, above it:
 * then also how many values are at most `x`).
 */
function search(a: number[], x: number, past = false): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x || (past && a[mid] === x)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
