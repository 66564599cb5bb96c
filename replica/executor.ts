/**
 * How a replica executes client commands, whichever protocol brought them: reads behind a
 * ReadIndex barrier, writes proposed here when leading or passed to the leader, and every
 * write applied at most once. A write that comes with the caller's session is tried once and
 * the caller retries; one without gets a pooled session of this replica's, so the replica can
 * retry it itself through leader changes and unknown outcomes without applying it twice.
 *
 * Time, sleeping and the way to reach the leader come from the host, so the same code runs in
 * a replica process and under the deterministic simulator.
 */
import { RaftDriver, RaftError, Role } from '../raft/index.js';
import type { KvEngine } from './engines/engine.js';
import { ApplyStatus, parseResult } from './kv-machine.js';
import { Command, Op, Response, Status, encodeKvCommand, newCommand } from './proto.js';
import { PooledSession, SessionPool } from './session-pool.js';

/** How long the replica retries a write it holds the session of before answering "unknown". */
export const WRITE_DEADLINE_MS = 8_000;

const EMPTY = new Uint8Array(0);

export interface ExecutorHost {
  readonly id: string;
  readonly sessionTtlMs: number;
  /** The running driver (undefined while starting). */
  driver(): Pick<RaftDriver, 'node' | 'propose' | 'readBarrier'> | undefined;
  stopping(): boolean;
  engine(): Pick<KvEngine, 'validate' | 'get'>;
  leaderClientAddr(): string | undefined;
  /**
   * Send a command to the leader at `addr` and return its answer. UNAVAILABLE when it surely
   * did not arrive, UNKNOWN when it may have.
   */
  forwardToLeader(cmd: Command, addr: string): Promise<Response>;
  onProposal?(result: string): void;
  /** Wall-clock ms for command time stamps and deadlines (default Date.now). */
  now?(): number;
  sleep?(ms: number): Promise<void>;
}

export class CommandExecutor {
  private readonly pool: SessionPool;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly host: ExecutorHost) {
    this.now = host.now ? () => host.now!() : Date.now;
    this.sleep = host.sleep ? (ms) => host.sleep!(ms) : (ms) => new Promise((r) => setTimeout(r, ms));
    // Pooled sessions are dropped after half the TTL idle, well before the cluster expires them.
    this.pool = new SessionPool(() => this.registerSession(), host.sessionTtlMs / 2, this.now);
  }

  /** Execute a client command here or at the leader. Never throws; errors become responses. */
  async execute(cmd: Command): Promise<Response> {
    const base = { id: cmd.id, value: EMPTY, leader: '', error: '' };
    if (!this.host.driver() || this.host.stopping()) return { ...base, status: Status.UNAVAILABLE, error: 'replica is starting or stopping; retry' };
    if (cmd.op === Op.GET) {
      try {
        const invalid = this.host.engine().validate(cmd.key);
        if (invalid) return { ...base, status: Status.ERROR, error: invalid };
        if (!cmd.stale) await this.host.driver()!.readBarrier();
        const v = this.host.engine().get(cmd.key);
        return v === undefined ? { ...base, status: Status.NOT_FOUND } : { ...base, status: Status.OK, value: v };
      } catch (e) {
        // A read changes nothing: whatever went wrong, it is safe to retry.
        return { ...base, status: Status.UNAVAILABLE, error: (e as Error).message, leader: this.host.leaderClientAddr() ?? '' };
      }
    }
    if (cmd.op === Op.REGISTER) return this.writeOnce(cmd);
    if (cmd.op !== Op.SET && cmd.op !== Op.DELETE) return { ...base, status: Status.ERROR, error: `unknown op ${String(cmd.op)}` };
    const invalid = this.host.engine().validate(cmd.key, cmd.op === Op.SET ? cmd.value.length : undefined);
    if (invalid) return { ...base, status: Status.ERROR, error: invalid };
    // A write with the caller's session is tried once: the caller retries with that session.
    // One without gets a session of ours, so that we can retry it without applying it twice.
    if (cmd.client || cmd.forwarded) return this.writeOnce(cmd);
    return this.writeWithOwnSession(cmd);
  }

  /**
   * Register a client session through the log; returns its id. Retried until it works: a
   * registration whose outcome was unknown at worst leaves an unused session, which expires.
   */
  async registerSession(deadlineMs = WRITE_DEADLINE_MS): Promise<string> {
    const deadline = this.now() + deadlineMs;
    for (let attempt = 0; ; attempt++) {
      const r = await this.writeOnce(newCommand({ op: Op.REGISTER, key: '' }));
      if (r.status === Status.OK) return Buffer.from(r.value).toString();
      if (r.status === Status.ERROR || this.now() >= deadline || this.host.stopping()) throw new Error(r.error || `cannot open a session: ${Status[r.status]}`);
      await this.sleep(Math.min(500, 10 * 2 ** Math.min(attempt, 6)));
    }
  }

  private async writeWithOwnSession(cmd: Command): Promise<Response> {
    const base = { id: cmd.id, value: EMPTY, leader: '', error: '' };
    const deadline = this.now() + WRITE_DEADLINE_MS;
    let session: PooledSession;
    try {
      session = await this.pool.acquire();
    } catch (e) {
      return { ...base, status: Status.UNAVAILABLE, error: `no session could be opened: ${(e as Error).message}`, leader: this.host.leaderClientAddr() ?? '' };
    }
    // Whether an earlier attempt may have been applied: then only the same session can tell.
    let maybeApplied = false;
    try {
      for (let attempt = 0; ; attempt++) {
        const r = await this.writeOnce({ ...cmd, client: session.id, seq: session.seq, acked: session.seq - 1 });
        if (r.status === Status.OK || r.status === Status.ERROR || r.status === Status.NOT_FOUND) return { ...r, id: cmd.id };
        if (r.status === Status.UNKNOWN) maybeApplied = true;
        if (r.status === Status.SESSION_EXPIRED) {
          session.discarded = true;
          if (maybeApplied) return { ...base, status: Status.UNKNOWN, error: 'outcome unknown: the write may have been applied, and its session expired before a retry could tell' };
          this.pool.release(session);
          session = await this.pool.acquire();
          continue;
        }
        if (this.now() >= deadline || this.host.stopping()) {
          return maybeApplied
            ? { ...base, status: Status.UNKNOWN, error: `outcome unknown after ${WRITE_DEADLINE_MS} ms: ${r.error}` }
            : { ...r, id: cmd.id };
        }
        await this.sleep(Math.min(500, 10 * 2 ** Math.min(attempt, 6)));
      }
    } catch (e) {
      return { ...base, status: maybeApplied ? Status.UNKNOWN : Status.UNAVAILABLE, error: (e as Error).message };
    } finally {
      this.pool.release(session);
    }
  }

  /** One attempt: propose here when leading, else pass it to the leader. */
  private async writeOnce(cmd: Command): Promise<Response> {
    const base = { id: cmd.id, value: EMPTY, leader: '', error: '' };
    if (!this.host.driver() || this.host.stopping()) return { ...base, status: Status.UNAVAILABLE, error: 'replica is starting or stopping; retry' };
    const driver = this.host.driver()!;
    if (driver.node.role !== Role.Leader) return this.forward(cmd);
    try {
      const applied = await driver.propose(
        encodeKvCommand({ op: cmd.op, key: cmd.key, value: cmd.value, client: cmd.client, seq: cmd.seq, acked: cmd.acked, time: this.now() }),
      );
      this.host.onProposal?.('applied');
      const r = parseResult(applied.result);
      switch (r.status) {
        case ApplyStatus.Ok:
          return { ...base, status: Status.OK, value: cmd.op === Op.REGISTER ? Buffer.from(r.message) : EMPTY };
        case ApplyStatus.SessionExpired:
          return { ...base, status: Status.SESSION_EXPIRED, error: r.message };
        default:
          return { ...base, status: Status.ERROR, error: r.message };
      }
    } catch (e) {
      const leader = this.host.leaderClientAddr() ?? '';
      if (!(e instanceof RaftError)) {
        // The node stopped with the proposal pending: it may yet commit elsewhere.
        return { ...base, status: Status.UNKNOWN, error: `outcome unknown: ${(e as Error).message}`, leader };
      }
      this.host.onProposal?.(e.code);
      switch (e.code) {
        case 'not-leader':
          // Nothing was proposed: passing it on is safe.
          if (!cmd.forwarded && driver.node.leader && driver.node.leader !== this.host.id) return this.forward(cmd);
          return { ...base, status: Status.UNAVAILABLE, error: e.message, leader };
        case 'transfer-in-progress':
        case 'dropped':
          return { ...base, status: Status.UNAVAILABLE, error: e.message, leader };
        case 'outcome-unknown':
          return { ...base, status: Status.UNKNOWN, error: e.message, leader };
        default:
          return { ...base, status: Status.ERROR, error: e.message, leader };
      }
    }
  }

  private forward(cmd: Command): Promise<Response> | Response {
    const addr = this.host.leaderClientAddr();
    if (cmd.forwarded || !addr) {
      return { id: cmd.id, value: EMPTY, status: Status.UNAVAILABLE, leader: addr ?? '', error: addr ? 'not the leader' : 'no leader elected yet; retry' };
    }
    return this.host.forwardToLeader(cmd, addr);
  }
}
