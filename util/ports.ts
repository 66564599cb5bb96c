import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processAlive } from './signals.js';

/**
 * Ports for processes about to be started, on 127.0.0.1. A port handed out is free when chosen
 * but only bound later by the child, so three things could take it in between, and each is
 * ruled out:
 * - the local end of an outgoing connection, or a socket bound to port 0: the ports are below
 *   the kernel's ephemeral range (32768-60999 on Linux);
 * - another choice by this process: a port is never handed out twice (two nodes defined before
 *   either starts);
 * - a choice by another process doing the same (concurrent test files, `raftkv local`,
 *   `raftkv experiment`): a port is claimed by creating a file named after it in a shared
 *   directory, exclusively; a claim whose owner process is gone is taken over.
 */
const LOW = 20_000;
const HIGH = 32_000;
const CLAIMS = process.env.RAFTKV_PORT_CLAIMS ?? join(tmpdir(), 'raftkv-ports');

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Ports this process claimed, oldest first. */
const claimed: number[] = [];
let cleanupInstalled = false;

function claim(port: number): boolean {
  const file = join(CLAIMS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') mkdirSync(CLAIMS, { recursive: true });
      else if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        let owner = 0;
        try {
          owner = Number(readFileSync(file, 'utf8'));
        } catch {
          continue;
        }
        if (owner === process.pid || (owner > 0 && processAlive(owner))) return false;
        rmSync(file, { force: true });
      } else return false;
    }
  }
  return false;
}

function release(port: number): void {
  rmSync(join(CLAIMS, String(port)), { force: true });
}

/** `n` ports, free and claimed for this process, chosen at random below the ephemeral range. */
export async function freePorts(n: number): Promise<number[]> {
  if (!cleanupInstalled) {
    cleanupInstalled = true;
    process.on('exit', () => claimed.forEach(release));
  }
  const ports: number[] = [];
  // From a random place, every port of the range at most once: a few free ones are found even
  // when nearly all are taken.
  const span = HIGH - LOW;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span && ports.length < n; i++) {
    const p = LOW + ((start + i) % span);
    if (!claim(p)) continue;
    if (await canBind(p)) {
      ports.push(p);
      claimed.push(p);
    } else release(p);
  }
  if (ports.length < n) {
    for (const p of ports) {
      release(p);
      claimed.splice(claimed.indexOf(p), 1);
    }
    throw new Error(`no ${n} free ports in ${LOW}-${HIGH}`);
  }
  // A long-lived process may need more ports than the range holds: give back the oldest half
  // (long bound by the processes they were for).
  if (claimed.length > (HIGH - LOW) / 4) for (const p of claimed.splice(0, claimed.length / 2)) release(p);
  return ports;
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0];
}
