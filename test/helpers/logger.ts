/**
 * Real logger processes on 127.0.0.1 for integration and fault tests: define (ports), start,
 * kill -9, ask for its logs, wait until a cluster's log reaches an index, read a range.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { Entry } from '../../raft/index.js';
import { recovRange } from '../../logger/recov.js';
import { CLI, sleep } from './cluster.js';
import { freePorts } from './ports.js';

export interface LoggerProc {
  ids: string[];
  raft: number[];
  http: number;
  recov: number;
  dir: string;
  /** The --join value (the seed's syntax: ',' between clusters, '|' between one cluster's members). */
  join: string;
  /** Extra flags (e.g. --advertise-raft for a logger behind a fault proxy). */
  args: string[];
  /** Flags for node itself (e.g. --cpu-prof for a benchmark's profile of the logger). */
  nodeArgs?: string[];
  proc?: ChildProcess;
  out: string;
}

export interface LogStatus {
  name: string;
  clusterId: string;
  first: number;
  last: number;
  commitIndex: number;
  [k: string]: unknown;
}

export async function defineLogger(dir: string, ids: string[], join: string, args: string[] = []): Promise<LoggerProc> {
  const ports = await freePorts(2 + ids.length);
  return { ids, http: ports[0], recov: ports[1], raft: ports.slice(2), dir, join, args, out: '' };
}

export function startLogger(l: LoggerProc): ChildProcess {
  const args = [CLI, 'logger', '--id', l.ids.join(','), '--raft', l.raft.map((p) => `127.0.0.1:${p}`).join(','), '--join', l.join, '--logfolder', l.dir, '--http', `127.0.0.1:${l.http}`, '--recov', `127.0.0.1:${l.recov}`, '--election-timeout', '400', '--heartbeat', '40', ...l.args];
  const p = spawn(process.execPath, [...(l.nodeArgs ?? []), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  l.proc = p;
  p.stdout!.on('data', (d: Buffer) => (l.out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (l.out += d.toString()));
  return p;
}

export function kill9Logger(l: LoggerProc): void {
  l.proc?.kill('SIGKILL');
  l.proc = undefined;
}

export async function loggerApi(port: number, path: string, init: RequestInit = {}): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { ...init, signal: AbortSignal.timeout(20_000) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** The clusters a logger serves (empty while it is down or starting). */
export async function logsOf(l: LoggerProc): Promise<LogStatus[]> {
  const r = await loggerApi(l.http, '/v1/log').catch(() => undefined);
  return r?.status === 200 ? r.json.clusters : [];
}

/** Wait until the logger's log of `name` reaches `index`. */
export async function waitLogged(l: LoggerProc, name: string, index: number, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let seen: LogStatus | undefined;
  while (performance.now() < deadline) {
    seen = (await logsOf(l)).find((x) => x.name === name);
    if (seen && seen.last >= index) return;
    await sleep(50);
  }
  throw new Error(`logger ${name} did not reach ${index} within ${timeoutMs} ms (last seen: ${JSON.stringify(seen)})\n${l.out.slice(-2000)}`);
}

/** Entries from..to of one cluster's log, over the recov port. */
export async function loggedRange(port: number, cluster: string, from: number, to: number): Promise<Entry[]> {
  const out: Entry[] = [];
  await recovRange(`127.0.0.1:${port}`, cluster, from, to, (b) => out.push(...b));
  return out;
}
