/**
 * `raftkv local [FILE]`: run a manifest's RaftClusters (one or several, like the seed's 3- and
 * 6-application experiments) as processes on 127.0.0.1: replicas, loggers and the load generator
 * when a spec has one, with endpoints printed, a live status line, and a clean stop on Ctrl-C that
 * leaves no process behind.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { RaftCluster, RaftLoggerGroup, groupLoggerName, groupMemberId, loggerName, parseRaftCluster, parseRaftLoggerGroup, replicaName } from '../operator/spec.js';
import { commandLine, reportUsage } from '../util/cli.js';
import { freePort } from '../util/ports.js';
import { processAlive } from '../util/signals.js';

export const LOCAL_HELP = `usage: raftkv local [FILE] [flags]

Runs every RaftCluster of a manifest (default deploys/kv-notlog.yaml) as local processes on
127.0.0.1: its replicas, its loggers and, when its spec has one, its load generator; and every
RaftLoggerGroup as logger processes that each serve all the clusters naming the group.
  --duration S        stop by itself after S seconds (default: run until Ctrl-C)
  --base-port P       replica i of the k-th cluster listens on P+20k+i (client), P+1000+20k+i
                      (raft), P+2000+20k+i (http); default 11000; 0 picks free ports
  --data-dir DIR      where persistent (non-ephemeral) storage lives (default ./data/local)
  --no-loadgen        ignore the manifest's loadgen block

Stops every process it started on Ctrl-C, SIGTERM or SIGHUP, and when its own parent goes away.

Example:
  raftkv local                                   # deploys/kv-notlog.yaml: 3 replicas + a load generator
  raftkv local deploys/disk-notlog.yaml --duration 30
  raftkv local deploys/apps-3.yaml               # three clusters at once, each under load
  raftkv local deploys/loggers.yaml              # two clusters, one logger process for both
`;

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

interface Member {
  id: string;
  client: number;
  raft: number;
  http: number;
  proc?: ChildProcess;
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}


const OWNER_FILE = 'owner.pid';

/**
 * Remove the ephemeral data of earlier runs whose `raftkv local` died without cleaning up (a
 * SIGKILL leaves no chance to). Only directories that name an owner that is gone are touched.
 */
export function sweepStaleEphemeral(root = tmpdir()): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(root)) {
    if (!name.startsWith('raftkv-local-')) continue;
    const dir = join(root, name);
    let pid: number;
    try {
      pid = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      continue;
    }
    if (!Number.isInteger(pid) || pid <= 0 || processAlive(pid)) continue;
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/** Every RaftCluster in a manifest file, validated (other kinds are skipped). */
export function loadManifest(file: string): RaftCluster[] {
  return loadTopology(file).clusters;
}

/** The RaftClusters and RaftLoggerGroups of a manifest file, validated, each group named by a cluster. */
export function loadTopology(file: string): { clusters: RaftCluster[]; groups: RaftLoggerGroup[] } {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const clusters: RaftCluster[] = [];
  const groups: RaftLoggerGroup[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0].message}`);
    const js = d.toJS() as { kind?: string } | null;
    if (js && js.kind === 'RaftCluster') clusters.push(parseRaftCluster(js, file));
    if (js && js.kind === 'RaftLoggerGroup') groups.push(parseRaftLoggerGroup(js, file));
  }
  if (clusters.length === 0) throw new Error(`${file}: no RaftCluster document in it`);
  for (const [kind, names] of [['RaftCluster', clusters.map((c) => c.metadata.name)], ['RaftLoggerGroup', groups.map((g) => g.metadata.name)]] as const) {
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice) throw new Error(`${file}: ${kind} ${twice} is defined twice`);
  }
  for (const c of clusters) {
    const g = c.spec.loggerGroup;
    if (g && !groups.some((x) => x.metadata.name === g)) throw new Error(`${file}: RaftCluster ${c.metadata.name} names loggerGroup ${g}, but the file has no RaftLoggerGroup ${g}`);
  }
  return { clusters, groups };
}

type Status = { role: string; term: number; leader: string; commitIndex: number };

async function status(m: Member): Promise<Status | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${m.http}/v1/status`, { signal: AbortSignal.timeout(800) });
    return r.ok ? ((await r.json()) as Status) : undefined;
  } catch {
    return undefined;
  }
}

/** Ports for a process: the wanted ones when free, else any free ones (all free ones for base 0). */
async function ports(want: number[]): Promise<number[]> {
  const out: number[] = [];
  for (const p of want) out.push(p !== 0 && (await portFree(p)) ? p : await freePort());
  return out;
}

interface LocalCluster {
  rc: RaftCluster;
  members: Member[];
  lastCommit: number;
  lastAt: number;
}

export async function runLocal(argv: string[]): Promise<void> {
  const cl = commandLine(
    'local',
    LOCAL_HELP,
    argv,
    {
      duration: { type: 'string' },
      'base-port': { type: 'string', default: '11000' },
      'data-dir': { type: 'string', default: './data/local' },
      'no-loadgen': { type: 'boolean', default: false },
    },
    { positionals: 1 },
  );
  if (!cl) return;
  const values = cl.values as { duration?: string; 'base-port': string; 'data-dir': string; 'no-loadgen': boolean };
  const file = cl.positionals[0] ?? 'deploys/kv-notlog.yaml';
  let rcs: RaftCluster[];
  let groups: RaftLoggerGroup[];
  try {
    ({ clusters: rcs, groups } = loadTopology(file));
  } catch (e) {
    console.error(`raftkv local: ${(e as Error).message}`);
    process.exitCode = 2;
    return;
  }
  const duration = values.duration === undefined ? undefined : Number(values.duration);
  const basePort = Number(values['base-port']);
  if ((duration !== undefined && !(duration > 0)) || !Number.isInteger(basePort) || basePort < 0 || basePort > 60000) {
    reportUsage('local', '--duration must be positive and --base-port an integer port');
    return;
  }
  const at = (offset: number) => (basePort === 0 ? 0 : basePort + offset);
  const ephemeral = rcs.some((rc) => rc.spec.storage.ephemeral || rc.spec.fsync === 'memory') || groups.some((g) => g.spec.storage.ephemeral);
  if (ephemeral) for (const d of sweepStaleEphemeral()) console.log(`raftkv local: removed ${d}, left by a run that was killed`);
  // One temporary root for the ephemeral clusters of this run, removed when it stops.
  const tmpRoot = ephemeral ? mkdtempSync(join(tmpdir(), `raftkv-local-${rcs[0].metadata.name}-`)) : undefined;
  if (tmpRoot) writeFileSync(join(tmpRoot, OWNER_FILE), String(process.pid));
  const dataRootOf = (rc: RaftCluster) => (rc.spec.storage.ephemeral || rc.spec.fsync === 'memory' ? join(tmpRoot!, rc.metadata.name) : resolve(values['data-dir']!, rc.metadata.name));

  const children = new Set<ChildProcess>();
  const spawnChild = (args: string[], label: string, quiet = true): ChildProcess => {
    // stdin stays open as a lifeline: a child exits when this process goes away, even by SIGKILL.
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', quiet ? 'ignore' : 'pipe', 'pipe'], env: { ...process.env, RAFTKV_EXIT_WITH_PARENT: '1' } });
    children.add(p);
    p.stderr!.on('data', (d: Buffer) => process.stderr.write(`[${label}] ${d}`));
    p.on('exit', () => children.delete(p));
    return p;
  };

  let stopping = false;
  let statusTimer: NodeJS.Timeout | undefined;
  const stop = async (why: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    if (statusTimer) clearInterval(statusTimer);
    if (process.stdout.isTTY) process.stdout.write('\n');
    console.log(`raftkv local: ${why}; stopping ${children.size} processes`);
    const exits = [...children].map((p) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r()))));
    for (const p of children) p.kill('SIGTERM');
    const killer = setTimeout(() => {
      for (const p of children) p.kill('SIGKILL');
    }, 5000);
    await Promise.all(exits);
    clearTimeout(killer);
    if (tmpRoot) rmSync(tmpRoot, { recursive: true, force: true });
    console.log('raftkv local: stopped, no process left behind');
    process.exit(code);
  };
  process.on('SIGINT', () => void stop('Ctrl-C'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGHUP', () => void stop('SIGHUP'));
  // Run under `npm start` or a shell, a supervisor signals the process it started, which may not
  // be this one (npm and sh exit and leave us re-parented). Being re-parented is the sign.
  const parent = process.ppid;
  const parentWatch = setInterval(() => {
    if (process.ppid !== parent) void stop('parent process exited');
  }, 250);
  parentWatch.unref();

  // The replicas of every cluster.
  const clusters: LocalCluster[] = [];
  for (const [k, rc] of rcs.entries()) {
    const { spec } = rc;
    const name = rc.metadata.name;
    const dataRoot = dataRootOf(rc);
    mkdirSync(dataRoot, { recursive: true });
    const members: Member[] = [];
    for (let i = 0; i < spec.replicas; i++) {
      const [client, raft, http] = await ports([at(20 * k + i), at(1000 + 20 * k + i), at(2000 + 20 * k + i)]);
      members.push({ id: replicaName(name, i), client, raft, http });
    }
    const peers = members.map((m) => `${m.id}=127.0.0.1:${m.raft}`).join(',');
    console.log(`raftkv local: RaftCluster ${name} from ${file}: ${spec.replicas} ${spec.app} replicas, fsync ${spec.fsync}, ${spec.storage.ephemeral || spec.fsync === 'memory' ? 'ephemeral storage' : `data in ${dataRoot}`}`);
    for (const m of members) {
      const args = [
        'replica',
        '--id', m.id,
        '--port', `127.0.0.1:${m.client}`,
        '--raft', `127.0.0.1:${m.raft}`,
        '--http', `127.0.0.1:${m.http}`,
        '--peers', peers,
        '--app', spec.app,
        '--data-dir', join(dataRoot, m.id),
        '--fsync', spec.fsync,
        '--value-size', String(spec.valueSize),
        '--preload', String(spec.preload),
        '--keys', String(spec.keys),
        '--election-timeout', String(spec.raft.electionTimeoutMs),
        '--heartbeat', String(spec.raft.heartbeatMs),
        '--snapshot-every', String(spec.raft.snapshotEvery),
      ];
      if (spec.applog) args.push('--logfolder', join(dataRoot, m.id, 'applog'));
      m.proc = spawnChild(args, m.id);
      m.proc.on('exit', (code, signal) => {
        if (!stopping) void stop(`replica ${m.id} exited (${signal ?? code})`, 1);
      });
      console.log(`  ${m.id}: client 127.0.0.1:${m.client}  http http://127.0.0.1:${m.http}  raft 127.0.0.1:${m.raft}`);
    }
    clusters.push({ rc, members, lastCommit: -1, lastAt: Date.now() });
  }

  // Wait for a leader in each, and for every replica to answer and follow it: a majority elects
  // while a replica slow to start is still loading, and every endpoint printed must serve.
  const t0 = Date.now();
  for (const c of clusters) {
    let leader = '';
    let waiting: string[] = c.members.map((m) => m.id);
    while (!stopping && Date.now() - t0 < 30_000) {
      const st = await Promise.all(c.members.map(status));
      leader = st.find((s) => s?.role === 'leader')?.leader ?? '';
      waiting = c.members.filter((_, i) => !leader || st[i]?.leader !== leader).map((m) => m.id);
      if (leader && waiting.length === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (stopping) return;
    if (!leader) return stop(`no leader elected in ${c.rc.metadata.name} within 30 s`, 1);
    if (waiting.length > 0) return stop(`${waiting.join(', ')} of ${c.rc.metadata.name} did not answer or follow ${leader} within 30 s`, 1);
    const m0 = c.members[0];
    console.log(`raftkv local: ${leader} leads after ${Date.now() - t0} ms. Try: curl -XPUT http://127.0.0.1:${m0.http}/v1/kv/hello -d world; curl http://127.0.0.1:${m0.http}/v1/kv/hello`);
  }

  // The decoupled loggers: non-voters that join their running cluster and keep its command log.
  for (const [k, c] of clusters.entries()) {
    const { spec } = c.rc;
    const joinVia = c.members.map((m) => `127.0.0.1:${m.http}`).join('|');
    for (let i = 0; i < spec.loggers; i++) {
      const [raft, recov, http] = await ports([at(1500 + 10 * k + i), at(3000 + 10 * k + i), at(3500 + 10 * k + i)]);
      const id = loggerName(c.rc.metadata.name, i);
      const args = ['logger', '--id', id, '--raft', `127.0.0.1:${raft}`, '--join', joinVia, '--logfolder', join(dataRootOf(c.rc), id), '--recov', `127.0.0.1:${recov}`, '--http', `127.0.0.1:${http}`,
        '--election-timeout', String(spec.raft.electionTimeoutMs), '--heartbeat', String(spec.raft.heartbeatMs)];
      const p = spawnChild(args, id);
      p.on('exit', (code, signal) => {
        if (!stopping) void stop(`logger ${id} exited (${signal ?? code})`, 1);
      });
      console.log(`  ${id}: logger  http http://127.0.0.1:${http}/v1/log  recov 127.0.0.1:${recov}`);
    }
  }

  // The logger groups: each process has one non-voting member in every cluster naming the group.
  for (const [gk, g] of groups.entries()) {
    const name = g.metadata.name;
    const served = clusters.filter((c) => c.rc.spec.loggerGroup === name);
    if (served.length === 0) {
      console.log(`raftkv local: RaftLoggerGroup ${name}: no cluster names it; no logger started`);
      continue;
    }
    const dataRoot = g.spec.storage.ephemeral ? join(tmpRoot!, name) : resolve(values['data-dir']!, name);
    for (let i = 0; i < g.spec.loggers; i++) {
      const rafts = await ports(served.map((_, k) => at(4000 + 200 * gk + 20 * i + k)));
      const [recov, http] = await ports([at(4100 + 200 * gk + i), at(4150 + 200 * gk + i)]);
      const pod = groupLoggerName(name, i);
      const args = [
        'logger',
        '--id', served.map((c) => groupMemberId(name, i, c.rc.metadata.name)).join(','),
        '--raft', rafts.map((p) => `127.0.0.1:${p}`).join(','),
        '--join', served.map((c) => c.members.map((m) => `127.0.0.1:${m.http}`).join('|')).join(','),
        '--logfolder', join(dataRoot, pod), '--recov', `127.0.0.1:${recov}`, '--http', `127.0.0.1:${http}`,
        '--election-timeout', String(g.spec.raft.electionTimeoutMs), '--heartbeat', String(g.spec.raft.heartbeatMs),
      ];
      const p = spawnChild(args, pod);
      p.on('exit', (code, signal) => {
        if (!stopping) void stop(`logger ${pod} exited (${signal ?? code})`, 1);
      });
      console.log(`  ${pod}: logger group ${name} for ${served.map((c) => c.rc.metadata.name).join(', ')}  http http://127.0.0.1:${http}/v1/log  recov 127.0.0.1:${recov}`);
    }
  }

  // Live status line: per cluster, leader, term, commit index and committed entries per second.
  let ticks = 0;
  statusTimer = setInterval(() => {
    void Promise.all(clusters.map(async (c) => ({ c, st: await Promise.all(c.members.map(status)) }))).then((all) => {
      if (stopping) return;
      const parts = all.map(({ c, st }) => {
        const up = st.filter(Boolean).length;
        const lead = st.find((s) => s?.role === 'leader');
        const commit = Math.max(...st.map((s) => s?.commitIndex ?? 0));
        const now = Date.now();
        const rate = c.lastCommit < 0 ? 0 : ((commit - c.lastCommit) * 1000) / (now - c.lastAt);
        c.lastCommit = commit;
        c.lastAt = now;
        return clusters.length === 1
          ? `leader ${lead?.leader ?? 'none'}  term ${lead?.term ?? '-'}  commit ${commit}  ${rate.toFixed(0)} entries/s  replicas up ${up}/${c.members.length}`
          : `${c.rc.metadata.name}: ${lead?.leader ?? 'no leader'} ${rate.toFixed(0)}/s ${up}/${c.members.length} up`;
      });
      const line = parts.join('  |  ');
      if (process.stdout.isTTY) process.stdout.write(`\r${line}   `);
      else if (++ticks % 5 === 0) console.log(line);
    });
  }, 1000);

  // The load generators, one per cluster whose spec has one, all at once.
  for (const c of clusters) {
    const lg = c.rc.spec.loadgen;
    if (!lg || values['no-loadgen']) continue;
    const name = c.rc.metadata.name;
    const targets = c.members.map((m) => `127.0.0.1:${m.client}`).join(',');
    const args = ['loadgen', '--targets', targets, '--driver', lg.driver, '--clients', String(lg.clients), '--duration', String(lg.duration), '--keys', String(lg.keys),
      '--value-size', String(lg.valueSize), '--write-ratio', String(lg.writeRatio), '--think', String(lg.thinkMs), '--procs', String(lg.parallel), '--quiet'];
    if (process.stdout.isTTY) process.stdout.write('\n');
    console.log(`raftkv local: load generator${clusters.length > 1 ? ` for ${name}` : ''}: ${lg.clients} clients for ${lg.duration} s (${lg.driver}, ${Math.round(lg.writeRatio * 100)}% writes, ${lg.valueSize} B values)`);
    const p = spawnChild(args, `loadgen ${name}`, false);
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => {
      if (stopping) return;
      if (process.stdout.isTTY) process.stdout.write('\n');
      const head = clusters.length > 1 ? `raftkv local: load test of ${name}:\n` : '';
      console.log(code === 0 ? `${head}${out.trimEnd()}` : `raftkv local: load generator${clusters.length > 1 ? ` for ${name}` : ''} failed (exit ${code})`);
    });
  }
  if (duration !== undefined) setTimeout(() => void stop(`${duration} s elapsed`), duration * 1000);
  else console.log('raftkv local: running; Ctrl-C to stop');
}
