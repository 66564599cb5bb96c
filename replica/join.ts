/**
 * What a new member does to get in (replica or logger): ask an existing member's HTTP API to
 * add it, retrying with backoff while nobody answers or there is no leader, and giving up on a
 * definite refusal. Also the small files that make joining and cluster identity survive a crash.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { writeFileDurably } from '../util/durable-file.js';
import { join } from 'node:path';
import { dialHost, formatHostPort, parseHostPort } from './addr.js';
import { requestJson } from './tls.js';

export interface JoinRequest {
  id: string;
  addr: string;
  voter: boolean;
  clusterId?: string;
  role?: 'logger';
}

export async function joinThrough(
  targets: string[],
  req: JoinRequest,
  o: { token?: string; ca?: Buffer; log: (line: string) => void; stopped: () => boolean; attempts?: number },
): Promise<boolean> {
  const body = JSON.stringify(req);
  for (let attempt = 0; attempt < (o.attempts ?? 600) && !o.stopped(); attempt++) {
    const target = targets[attempt % targets.length];
    const hp = parseHostPort(target, '--join');
    try {
      const res = await requestJson(`${o.ca ? 'https' : 'http'}://${formatHostPort(dialHost(hp), hp.port)}/join`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(o.token ? { 'x-raftkv-token': o.token } : {}) },
        body,
        timeoutMs: 65_000,
        ca: o.ca,
      });
      if (res.status >= 200 && res.status < 300) {
        o.log(`${req.id}: joined the cluster through ${target}`);
        return true;
      }
      if (res.status === 409 || res.status === 400) {
        o.log(`${req.id}: join refused by ${target}: ${res.text}`);
        return false;
      }
    } catch {
      // Not up yet, or no leader: keep trying.
    }
    await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** Math.min(attempt, 4))));
  }
  return false;
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
    if (this.persistent) rmSync(join(this.dir, 'joining'), { force: true });
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
}
