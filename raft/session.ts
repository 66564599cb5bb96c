/**
 * Client sessions (Raft dissertation §6.3): each command carries (client id, sequence number),
 * and the state machine remembers the answers it gave, so a command retried after a timeout or
 * a leader change is applied at most once and the retry gets the original answer.
 *
 * Everything here is a pure function of the applied log, so every replica evicts the same
 * sessions at the same index and the table can be part of a snapshot.
 */
export interface SessionOptions {
  /** Sessions kept; the least recently active is evicted beyond this. */
  maxSessions?: number;
  /** Answers kept per session for pipelining clients. */
  maxResponsesPerSession?: number;
}

interface Session {
  lastActive: number; // log index of the last command, for deterministic LRU
  /** Everything at or below this was acknowledged by the client and forgotten. */
  ackedThrough: number;
  responses: Map<number, Uint8Array>;
}

export type SessionOutcome =
  | { kind: 'new' }
  | { kind: 'duplicate'; response: Uint8Array }
  /** Seq at or below what the client already acknowledged, or its session expired: answer unknown. */
  | { kind: 'expired' };

export class SessionTable {
  private sessions = new Map<string, Session>();
  private readonly maxSessions: number;
  private readonly maxResponses: number;

  constructor(opts: SessionOptions = {}) {
    this.maxSessions = opts.maxSessions ?? 10_000;
    this.maxResponses = opts.maxResponsesPerSession ?? 64;
  }

  size(): number {
    return this.sessions.size;
  }

  /**
   * Look up (client, seq) while applying the entry at `index`. `ackedThrough` is the client's
   * statement that it has seen answers up to that sequence number, so they can be forgotten.
   */
  check(client: string, seq: number, ackedThrough: number, index: number): SessionOutcome {
    const s = this.sessions.get(client);
    if (!s) return seq > 1 && ackedThrough >= seq ? { kind: 'expired' } : { kind: 'new' };
    s.lastActive = index;
    this.forget(s, ackedThrough);
    const prior = s.responses.get(seq);
    if (prior) return { kind: 'duplicate', response: prior };
    if (seq <= s.ackedThrough) return { kind: 'expired' };
    return { kind: 'new' };
  }

  /** Remember the answer to (client, seq), applied at `index`. */
  record(client: string, seq: number, response: Uint8Array, index: number): void {
    let s = this.sessions.get(client);
    if (!s) {
      s = { lastActive: index, ackedThrough: 0, responses: new Map() };
      this.sessions.set(client, s);
      this.evict();
    }
    s.lastActive = index;
    s.responses.set(seq, response);
    if (s.responses.size > this.maxResponses) {
      const oldest = Math.min(...s.responses.keys());
      s.responses.delete(oldest);
      s.ackedThrough = Math.max(s.ackedThrough, oldest);
    }
  }

  private forget(s: Session, ackedThrough: number): void {
    if (ackedThrough <= s.ackedThrough) return;
    s.ackedThrough = ackedThrough;
    for (const k of s.responses.keys()) if (k <= ackedThrough) s.responses.delete(k);
  }

  private evict(): void {
    while (this.sessions.size > this.maxSessions) {
      let victim: string | undefined;
      let oldest = Infinity;
      for (const [id, s] of this.sessions) {
        if (s.lastActive < oldest || (s.lastActive === oldest && victim !== undefined && id < victim)) {
          oldest = s.lastActive;
          victim = id;
        }
      }
      this.sessions.delete(victim!);
    }
  }

  toJSON(): unknown {
    return [...this.sessions].map(([id, s]) => [id, s.lastActive, s.ackedThrough, [...s.responses].map(([k, v]) => [k, Buffer.from(v).toString('base64')])]);
  }

  static fromJSON(raw: unknown, opts: SessionOptions = {}): SessionTable {
    const t = new SessionTable(opts);
    if (!Array.isArray(raw)) throw new Error('session table snapshot is not a list');
    for (const row of raw as [string, number, number, [number, string][]][]) {
      const [id, lastActive, ackedThrough, responses] = row;
      t.sessions.set(id, {
        lastActive,
        ackedThrough,
        responses: new Map(responses.map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))])),
      });
    }
    return t;
  }
}
