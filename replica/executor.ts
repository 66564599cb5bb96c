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

/** A response, its fields always in one order (one object shape for every answer). */
function answer(id: number, status: Status, error = '', leader = '', value: Uint8Array = EMPTY): Response {
  return { id, status, value, leader, error };
}

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
    if (!this.host.driver() || this.host.stopping()) return answer(cmd.id, Status.UNAVAILABLE, 'replica is starting or stopping; retry');
    if (cmd.op === Op.GET) {
      try {
        const invalid = this.host.engine().validate(cmd.key);
        if (invalid) return answer(cmd.id, Status.ERROR, invalid);
        if (!cmd.stale) await this.host.driver()!.readBarrier();
        const v = this.host.engine().get(cmd.key);
        return v === undefined ? answer(cmd.id, Status.NOT_FOUND) : answer(cmd.id, Status.OK, '', '', v);
      } catch (e) {
        // A read changes nothing: whatever went wrong, it is safe to retry.
        return answer(cmd.id, Status.UNAVAILABLE, (e as Error).message, this.host.leaderClientAddr() ?? '');
      }
    }
    if (cmd.op === Op.REGISTER) return this.writeOnce(cmd);
    if (cmd.op !== Op.SET && cmd.op !== Op.DELETE) return answer(cmd.id, Status.ERROR, `unknown op ${String(cmd.op)}`);
    const invalid = this.host.engine().validate(cmd.key, cmd.op === Op.SET ? cmd.value.length : undefined);
    if (invalid) return answer(cmd.id, Status.ERROR, invalid);
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
    const deadline = this.now() + WRITE_DEADLINE_MS;
    let session: PooledSession;
    try {
      session = await this.pool.acquire();
    } catch (e) {
      return answer(cmd.id, Status.UNAVAILABLE, `no session could be opened: ${(e as Error).message}`, this.host.leaderClientAddr() ?? '');
    }
    // Whether an earlier attempt may have been applied: then only the same session can tell.
    let maybeApplied = false;
    try {
      for (let attempt = 0; ; attempt++) {
        const r = await this.writeOnce(cmd, session);
        if (r.status === Status.OK || r.status === Status.ERROR || r.status === Status.NOT_FOUND) return r;
        if (r.status === Status.UNKNOWN) maybeApplied = true;
        if (r.status === Status.SESSION_EXPIRED) {
          session.discarded = true;
          if (maybeApplied) return answer(cmd.id, Status.UNKNOWN, 'outcome unknown: the write may have been applied, and its session expired before a retry could tell');
          this.pool.release(session);
          session = await this.pool.acquire();
          continue;
        }
        if (this.now() >= deadline || this.host.stopping()) {
          return maybeApplied
            ? answer(cmd.id, Status.UNKNOWN, `outcome unknown after ${WRITE_DEADLINE_MS} ms: ${r.error}`)
            : r;
        }
        await this.sleep(Math.min(500, 10 * 2 ** Math.min(attempt, 6)));
      }
    } catch (e) {
      return answer(cmd.id, maybeApplied ? Status.UNKNOWN : Status.UNAVAILABLE, (e as Error).message);
    } finally {
      this.pool.release(session);
    }
  }

  /**
   * One attempt: propose here when leading, else pass it to the leader. With `session`, the
   * write goes under that session (its next sequence number) instead of the command's own.
   */
  private async writeOnce(cmd: Command, session?: PooledSession): Promise<Response> {
    if (!this.host.driver() || this.host.stopping()) return answer(cmd.id, Status.UNAVAILABLE, 'replica is starting or stopping; retry');
    const driver = this.host.driver()!;
    if (driver.node.role !== Role.Leader) return this.passOn(cmd, session);
    try {
      const applied = await driver.propose(
        encodeKvCommand({
          op: cmd.op,
          key: cmd.key,
          value: cmd.value,
          client: session ? session.id : cmd.client,
          seq: session ? session.seq : cmd.seq,
          acked: session ? session.seq - 1 : cmd.acked,
          time: this.now(),
        }),
      );
      this.host.onProposal?.('applied');
      const r = parseResult(applied.result);
      switch (r.status) {
        case ApplyStatus.Ok:
          return answer(cmd.id, Status.OK, '', '', cmd.op === Op.REGISTER ? Buffer.from(r.message) : EMPTY);
        case ApplyStatus.SessionExpired:
          return answer(cmd.id, Status.SESSION_EXPIRED, r.message);
        default:
          return answer(cmd.id, Status.ERROR, r.message);
      }
    } catch (e) {
      const leader = this.host.leaderClientAddr() ?? '';
      if (!(e instanceof RaftError)) {
        // The node stopped with the proposal pending: it may yet commit elsewhere.
        return answer(cmd.id, Status.UNKNOWN, `outcome unknown: ${(e as Error).message}`, leader);
      }
      this.host.onProposal?.(e.code);
      switch (e.code) {
        case 'not-leader':
          // Nothing was proposed: passing it on is safe.
          if (!cmd.forwarded && driver.node.leader && driver.node.leader !== this.host.id) return this.passOn(cmd, session);
          return answer(cmd.id, Status.UNAVAILABLE, e.message, leader);
        case 'transfer-in-progress':
        case 'dropped':
          return answer(cmd.id, Status.UNAVAILABLE, e.message, leader);
        case 'outcome-unknown':
          return answer(cmd.id, Status.UNKNOWN, e.message, leader);
        default:
          return answer(cmd.id, Status.ERROR, e.message, leader);
      }
    }
  }

  /** Pass a write on to the leader, under `session` when it has one (the command copied only then). */
  private passOn(cmd: Command, session?: PooledSession): Promise<Response> | Response {
    return this.forward(session ? { ...cmd, client: session.id, seq: session.seq, acked: session.seq - 1 } : cmd);
  }

  private forward(cmd: Command): Promise<Response> | Response {
    const addr = this.host.leaderClientAddr();
    if (cmd.forwarded || !addr) {
      return { id: cmd.id, value: EMPTY, status: Status.UNAVAILABLE, leader: addr ?? '', error: addr ? 'not the leader' : 'no leader elected yet; retry' };
    }
    return this.host.forwardToLeader(cmd, addr);
  }
}
