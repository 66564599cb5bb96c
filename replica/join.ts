/**
 * What a new member does to get in (replica or logger): ask an existing member's HTTP API to
 * add it, retrying with backoff while nobody answers or there is no leader, and giving up on a
 * definite refusal. Also the small files that make joining and cluster identity survive a crash.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { syncDir, writeFileDurably } from '../util/durable-file.js';
import { join } from 'node:path';
import { dialHost, formatHostPort, parseHostPort } from './addr.js';
import { requestJson } from './tls.js';
import { ConfChange, ConfChangeType, Membership, RaftError } from '../raft/index.js';

export interface JoinRequest {
  id: string;
  addr: string;
  voter: boolean;
  clusterId?: string;
  role?: 'logger';
  /**
   * The joiner started with no state of its own (new, or its data was lost): whatever a member
   * of this id promised before (votes, acknowledged entries) is gone with it.
   */
  fresh?: boolean;
  /** A fresh joiner's incarnation (Membership.incarnations): the configuration names this start of it. */
  incarnation?: string;
}

/** The cluster will never admit this joiner as it is (HTTP 409 or 400: the answer says why). */
export class JoinRefusedError extends Error {
  constructor(target: string, why: string) {
    super(`join refused by ${target}: ${why}`);
    this.name = 'JoinRefusedError';
  }
}

/**
 * Ask the members in `targets` (any of them: a follower passes it on) to admit this node, until
 * one does or refuses for good. Returns the answer (with the incarnation the configuration
 * recorded, if the leader records them), or undefined when stopped or given up; a refusal
 * for good is a JoinRefusedError.
 */
export async function joinThrough(
  targets: string[],
  req: JoinRequest,
  o: { token?: string; ca?: Buffer; log: (line: string) => void; stopped: () => boolean; attempts?: number },
): Promise<{ incarnation?: string } | undefined> {
  const body = JSON.stringify(req);
  for (let attempt = 0; attempt < (o.attempts ?? 600) && !o.stopped(); attempt++) {
    const target = targets[attempt % targets.length];
    const hp = parseHostPort(target, '--join');
    const res = await requestJson(`${o.ca ? 'https' : 'http'}://${formatHostPort(dialHost(hp), hp.port)}/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(o.token ? { 'x-raftkv-token': o.token } : {}) },
      body,
      timeoutMs: 65_000,
      ca: o.ca,
    }).catch(() => undefined); // not up yet, or no leader: keep trying
    if (res && res.status >= 200 && res.status < 300) {
      o.log(`${req.id}: joined the cluster through ${target}`);
      const incarnation = (res.json as { incarnation?: unknown } | undefined)?.incarnation;
      return typeof incarnation === 'string' ? { incarnation } : {};
    }
    if (res && (res.status === 409 || res.status === 400)) {
      const refused = new JoinRefusedError(target, res.text);
      o.log(`${req.id}: ${refused.message}`);
      throw refused;
    }
    await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** Math.min(attempt, 4))));
  }
  return undefined;
}

/**
 * The configuration changes that admit a joiner, in order (run by the leader, one at a time).
 * Re-joining with the same id and address adds nothing, so a restarted joiner is fine. A
 * `fresh` joiner whose id is already a member lost that member's state (its votes and the
 * entries it acknowledged): the old member is removed first and the joiner added as a new one,
 * so it counts for nothing until it has caught up again (etcd asks for the same by hand) —
 * unless the configuration already names the joiner's own incarnation: then it was added as
 * this start of it (a join asked again after its answer was lost) and nothing was lost.
 */
export function joinSteps(m: Membership, j: Joiner): ConfChange[] {
  const steps: ConfChange[] = [];
  let known: string | undefined = m.addrs[j.id];
  const wasVoter = m.voters.includes(j.id);
  const thisStart = j.incarnation !== undefined && m.incarnations?.[j.id] === j.incarnation;
  if (known !== undefined && j.fresh && !thisStart) {
    steps.push({ type: ConfChangeType.RemoveNode, node: j.id });
    known = undefined;
  }
  if (known !== undefined && known !== j.addr) throw new Error(`member ${j.id} exists with address ${known}, not ${j.addr}`);
  if (known === undefined) steps.push({ type: ConfChangeType.AddLearner, node: j.id, addr: j.addr, ...(j.logger ? { logger: true } : {}), ...(j.incarnation ? { incarnation: j.incarnation } : {}) });
  // A logger that joined before the configuration marked loggers is marked now.
  else if (j.logger && m.learners.includes(j.id) && !m.loggers?.includes(j.id)) steps.push({ type: ConfChangeType.AddLearner, node: j.id, logger: true });
  if (j.voter && (steps.length > 0 || !wasVoter)) steps.push({ type: ConfChangeType.AddVoter, node: j.id });
  return steps;
}

export interface Joiner {
  id: string;
  addr: string;
  voter: boolean;
  fresh: boolean;
  logger?: boolean;
  incarnation?: string;
}

/** More steps than a join ever needs (remove, add, promote, twice over): the configuration kept changing. */
const MAX_JOIN_STEPS = 6;

/**
 * Admit a joiner on the leader: take its steps (joinSteps) one at a time, each computed again
 * from the configuration as it is then, until none is left. Steps computed once at the start
 * went stale when another join of the same id changed the configuration meanwhile: a member
 * whose disk was lost twice (the first start's join still being admitted when the second
 * start's began) was added by the first's AddLearner after the second's steps were computed,
 * the second's AddLearner was refused ("already a non-voter"), and the member was promoted
 * under the dead start's incarnation, its acknowledgments ignored for good (found by the
 * whole-replica simulator, seed 70471; seed 421 since). `superseded`: a newer join of the
 * same id began here; this one stops (its start is gone, or it asks again), so that two never
 * undo each other's steps. Throws JoinInterruptedError when the joiner should ask again.
 */
export async function admitJoiner(
  j: Joiner,
  o: { membership: () => Membership; change: (cc: ConfChange) => Promise<void>; superseded?: () => boolean },
): Promise<void> {
  // A fresh joiner without an incarnation cannot be told apart from the member its own removal
  // re-added: once it has removed the old member, it is the member.
  let removed = false;
  for (let tries = 0; ; tries++) {
    if (o.superseded?.()) throw new JoinInterruptedError(`a newer join of ${j.id} began on this leader; this one stopped`);
    const m = o.membership();
    const before = JSON.stringify(m);
    const steps = joinSteps(m, { ...j, fresh: j.fresh && !(removed && j.incarnation === undefined) });
    if (steps.length === 0) return;
    if (tries >= MAX_JOIN_STEPS) throw new JoinInterruptedError(`the configuration of ${j.id} kept changing while it joined (${tries} steps tried)`);
    try {
      await o.change(steps[0]);
    } catch (e) {
      // Refused because another change landed after this step was computed (an AddLearner
      // already made by the other join, say): compute it again. Otherwise the refusal stands.
      if (JSON.stringify(o.membership()) === before) throw e;
      continue;
    }
    if (steps[0].type === ConfChangeType.RemoveNode) removed = true;
  }
}

/**
 * Whether a configuration change refused with `e` may be proposed again after a pause: one in
 * flight, a learner still catching up, a transfer under way, or an entry a new leader replaced
 * (never applied).
 */
export function confChangeMayBeRetried(e: unknown): boolean {
  return e instanceof RaftError && (e.code === 'conf-change-pending' || e.code === 'learner-not-caught-up' || e.code === 'transfer-in-progress' || e.code === 'dropped');
}

/** A join stopped before it was done, through no fault of the joiner's: it asks again. */
export class JoinInterruptedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JoinInterruptedError';
  }
}

/**
 * The joins a leader is admitting, by member id: a fresh join (a new start of the member: the
 * one before it is gone) supersedes any in flight for the same id.
 */
export class JoinsInFlight {
  private readonly latest = new Map<string, object>();

  /** Begin a join; the returned function tells whether a newer one has superseded it since. */
  begin(j: Joiner): { superseded: () => boolean; end: () => void } {
    const mine = {};
    // A join that is not fresh (the same start asking again, an operator's promotion) runs beside one in flight.
    const registered = j.fresh || !this.latest.has(j.id);
    if (registered) this.latest.set(j.id, mine);
    return {
      superseded: () => registered && this.latest.get(j.id) !== mine,
      end: () => {
        if (this.latest.get(j.id) === mine) this.latest.delete(j.id);
      },
    };
  }
}

/** The cluster-id and joining-marker files of a member's data directory (none in memory mode). */
export class MemberFiles {
  constructor(
    private readonly dir: string,
    private readonly persistent: boolean,
  ) {}

  joining(): boolean {
    return this.persistent && existsSync(join(this.dir, 'joining'));
  }

  markJoining(targets: string[]): void {
    if (!this.persistent) return;
    mkdirSync(this.dir, { recursive: true });
    writeFileDurably(join(this.dir, 'joining'), `${targets.join(',')}\n`);
  }

  joined(): void {
    if (!this.persistent) return;
    rmSync(join(this.dir, 'joining'), { force: true });
    syncDir(this.dir);
  }

  clusterId(): string | undefined {
    const f = join(this.dir, 'cluster-id');
    if (!this.persistent || !existsSync(f)) return undefined;
    return readFileSync(f, 'utf8').trim() || undefined;
  }

  setClusterId(id: string): void {
    if (!this.persistent) return;
    mkdirSync(this.dir, { recursive: true });
    writeFileDurably(join(this.dir, 'cluster-id'), `${id}\n`);
  }

  /**
   * This start's incarnation (Membership.incarnations): drawn when the node starts with no state
   * to join with, kept across restarts. Undefined for a bootstrap member or an older data dir.
   */
  incarnation(): string | undefined {
    if (this.memoryIncarnation) return this.memoryIncarnation;
    const f = join(this.dir, 'incarnation');
    if (!this.persistent || !existsSync(f)) return undefined;
    return readFileSync(f, 'utf8').trim() || undefined;
  }

  /** Admitted by a leader that does not record incarnations: go without one, as before them. */
  forgetIncarnation(): void {
    this.memoryIncarnation = undefined;
    if (this.persistent) rmSync(join(this.dir, 'incarnation'), { force: true });
  }

  newIncarnation(): string {
    const inc = randomBytes(8).toString('hex');
    if (!this.persistent) return (this.memoryIncarnation = inc);
    mkdirSync(this.dir, { recursive: true });
    writeFileDurably(join(this.dir, 'incarnation'), `${inc}\n`);
    return inc;
  }

  private memoryIncarnation: string | undefined;
}
