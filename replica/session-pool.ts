/**
 * Sessions a replica owns for the writes that arrive without one (the text protocol, HTTP, a
 * protobuf command with no client id), so the replica can retry them safely: a write is
 * applied at most once even when a retry follows an unknown outcome.
 *
 * Each session serves one request at a time (seq = its uses, acked = seq - 1), so a session
 * never holds more than one answer; the pool grows to the replica's peak concurrency. Sessions
 * are registered through the log like any client's, and a session idle for half the table's
 * TTL is dropped rather than reused, so it is not expired by the time it is used again.
 */
export interface PooledSession {
  readonly id: string;
  seq: number;
  lastUsed: number;
  /** Set when the cluster said the session expired: it goes back to no pool. */
  discarded: boolean;
}

export class SessionPool {
  private free: PooledSession[] = [];

  constructor(
    private readonly register: () => Promise<string>,
    private readonly idleMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** A session with the next sequence number reserved for the caller. */
  async acquire(): Promise<PooledSession> {
    const now = this.now();
    while (this.free.length > 0) {
      const s = this.free.pop()!;
      if (now - s.lastUsed < this.idleMs) {
        s.seq++;
        return s;
      }
    }
    const id = await this.register();
    return { id, seq: 1, lastUsed: now, discarded: false };
  }

  release(s: PooledSession): void {
    s.lastUsed = this.now();
    if (!s.discarded) this.free.push(s);
  }

  size(): number {
    return this.free.length;
  }
}
