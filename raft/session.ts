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
  /** Log index of the last command, and log time of it. */
  lastActive: number;
  lastTime: number;
  /** Everything at or below this was acknowledged by the client and forgotten. */
  ackedThrough: number;
  responses: Map<number, Uint8Array>;
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
  /** In order of last activity, oldest first (a Map keeps insertion order; a touch re-inserts). */
  private sessions = new Map<string, Session>();
  /** The last session in `sessions` (the most recently active), if known. */
  private newest: Session | undefined;
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
    for (const [id, s] of this.sessions) {
      if (s.lastTime + this.ttlMs >= this.time) break;
      this.sessions.delete(id);
    }
  }

  /** Open a session for the registration entry at `index`; returns its id. */
  register(index: number): string {
    const id = String(index);
    const s: Session = { lastActive: index, lastTime: this.time, ackedThrough: 0, responses: new Map() };
    this.sessions.set(id, s);
    this.newest = s;
    while (this.sessions.size > this.maxSessions) this.sessions.delete(this.sessions.keys().next().value!);
    return id;
  }

  /**
   * Look up (client, seq) while applying the entry at `index`. `ackedThrough` is the client's
   * statement that it has seen answers up to that sequence number, so they can be forgotten.
   */
  check(client: string, seq: number, ackedThrough: number, index: number): SessionOutcome {
    const s = this.sessions.get(client);
    if (!s) return UNKNOWN_SESSION;
    this.touch(client, s, index);
    this.forget(s, ackedThrough);
    const prior = s.responses.get(seq);
    if (prior) return { kind: 'duplicate', response: prior };
    if (seq <= s.ackedThrough) return EXPIRED;
    return NEW;
  }

  /** Remember the answer to (client, seq), applied at `index`. Unknown sessions are ignored. */
  record(client: string, seq: number, response: Uint8Array, index: number): void {
    const s = this.sessions.get(client);
    if (!s) return;
    this.touch(client, s, index);
    s.responses.set(seq, response);
    if (s.responses.size > this.maxResponses) {
      const oldest = Math.min(...s.responses.keys());
      s.responses.delete(oldest);
      s.ackedThrough = Math.max(s.ackedThrough, oldest);
    }
  }

  private touch(id: string, s: Session, index: number): void {
    s.lastActive = index;
    s.lastTime = this.time;
    // Re-insert to keep the map in order of activity, unless it is the newest already (record
    // right after check, or one client's run of commands): a delete and set per command less.
    if (this.newest === s) return;
    this.sessions.delete(id);
    this.sessions.set(id, s);
    this.newest = s;
  }

  private forget(s: Session, ackedThrough: number): void {
    if (ackedThrough <= s.ackedThrough) return;
    s.ackedThrough = ackedThrough;
    for (const k of s.responses.keys()) if (k <= ackedThrough) s.responses.delete(k);
  }

  toJSON(): unknown {
    return {
      time: this.time,
      sessions: [...this.sessions].map(([id, s]) => [id, s.lastActive, s.lastTime, s.ackedThrough, [...s.responses].map(([k, v]) => [k, Buffer.from(v).toString('base64')])]),
    };
  }

  static fromJSON(raw: unknown, opts: SessionOptions = {}): SessionTable {
    const t = new SessionTable(opts);
    const r = raw as { time?: unknown; sessions?: unknown };
    if (!r || typeof r !== 'object' || !Array.isArray(r.sessions) || typeof r.time !== 'number') throw new Error('session table snapshot is malformed');
    t.time = r.time;
    for (const row of r.sessions as [string, number, number, number, [number, string][]][]) {
      const [id, lastActive, lastTime, ackedThrough, responses] = row;
      t.sessions.set(id, {
        lastActive,
        lastTime,
        ackedThrough,
        responses: new Map(responses.map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))])),
      });
    }
    return t;
  }
}
