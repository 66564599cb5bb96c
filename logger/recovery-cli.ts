/**
 * `raftkv recovery`: the seed's recovery client, measured. `raftkv restore`: disaster recovery,
 * a new cluster's first member built from a logger's log after every replica is lost.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { IntFlag } from '../util/flags.js';
import { DiskStorage, Snapshot } from '../raft/index.js';
import { KvEngine, stateDigest } from '../replica/engines/engine.js';
import { MemoryEngine } from '../replica/engines/memory.js';
import { DiskStorageEngine } from '../replica/engines/diskstorage.js';
import { KvStateMachine } from '../replica/kv-machine.js';
import { MemberFiles } from '../replica/join.js';
import { parseHostPort } from '../replica/addr.js';
import { REPLICA_DEFAULTS as D } from '../replica/defaults.js';
import { commandLine, reportUsage } from '../util/cli.js';
import { logSource, pickLog } from './client.js';
import { rebuild } from './rebuild.js';

export const RECOVERY_HELP = `usage: raftkv recovery --recov ADDR [--after SECONDS] [--from I --to N] [--cluster C] [--json]

The seed's recovery client: waits, asks a logger or a replica in applog mode (--logfolder with
--recov) for the state, installs it into a fresh state machine, and reports transfer time,
install time, state size, number of commands, and a digest to compare with a replica's
(GET /v1/digest).
  --recov ADDR       the source's recov port (host:port), or http://HOST:PORT for a logger's HTTP API
  --after S          wait S seconds first (default 0)
  --from I --to N    transfer only entries I..N (default: the source's base snapshot and all after it)
  --cluster C        which log, when the source keeps several (cluster id or member name)
  --app A            state machine to install into: kvstore (default) or diskstorage
  --value-size B     diskstorage record size (default ${D.valueSize})
  --keys K           diskstorage key space (default ${D.keys})
  --token T          cluster token for an HTTP source (or $RAFTKV_TOKEN)
  --mode M           streaming (default): install entries as they arrive, memory bounded, transfer
                     time = total - install time; separate: receive everything, then install (the
                     seed's method: the two times do not overlap)
  --json             print one JSON object instead of lines

Example:
  raftkv recovery --recov 127.0.0.1:14000 --after 60
`;

export const RESTORE_HELP = `usage: raftkv restore --from-logger ADDR --data-dir DIR --id ID --raft ADDR [--cluster C]

Disaster recovery: after every replica is lost, rebuilds the state from a logger's log (its base
snapshot and every entry after it) into DIR as the first member of a NEW cluster with a new
cluster id, so no member of the old cluster can ever join it. Then start it and join the others:
  raftkv replica --id ID --raft ADDR --data-dir DIR ...    (it serves the restored data)
  --from-logger ADDR  the logger's HTTP address (host:port) or recov://HOST:PORT
  --cluster C         which of the logger's logs (cluster id or the logger's member name)
  --data-dir DIR      the new replica's data directory (must be empty or absent)
  --id ID             the new replica's id
  --raft ADDR         the raft address the new replica will listen on (its membership entry)
  --token T           cluster token for the logger's API (or $RAFTKV_TOKEN)

Example:
  raftkv restore --from-logger 127.0.0.1:14001 --cluster log0 --data-dir ./data/r1 --id r1 --raft 127.0.0.1:12000
  raftkv replica --id r1 --raft 127.0.0.1:12000 --data-dir ./data/r1
`;

const Int = IntFlag;

const RecoveryFlags = z.object({
  recov: z.string({ required_error: 'is required (the source: host:port or http://host:port)' }),
  after: z.coerce.number().min(0).default(0),
  from: Int(1).optional(),
  to: Int(1).optional(),
  cluster: z.string().optional(),
  app: z.enum(['kvstore', 'diskstorage']).default('kvstore'),
  'value-size': Int(8).default(D.valueSize),
  keys: Int(1).default(D.keys),
  token: z.string().optional(),
  json: z.boolean().default(false),
  mode: z.enum(['streaming', 'separate']).default('streaming'),
});

function sourceAddr(addr: string): string {
  if (/^(https?|recov|tcp):\/\//.test(addr)) return addr;
  parseHostPort(addr, '--recov');
  return `recov://${addr}`;
}

function flagsOf(schema: z.AnyZodObject, booleans: string[]) {
  return Object.fromEntries(Object.keys(schema.shape).map((k) => [k, { type: booleans.includes(k) ? ('boolean' as const) : ('string' as const) }]));
}

function issues(e: z.ZodError): string {
  return e.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('\n');
}

export async function runRecovery(argv: string[]): Promise<void> {
  const cl = commandLine('recovery', RECOVERY_HELP, argv, flagsOf(RecoveryFlags, ['json']), { singleDash: true });
  if (!cl) return;
  const parsed = RecoveryFlags.safeParse(cl.values);
  if (!parsed.success) return reportUsage('recovery', issues(parsed.error));
  const f = parsed.data;
  if (f.from !== undefined && f.to !== undefined && f.to < f.from) return reportUsage('recovery', `--from ${f.from} is after --to ${f.to}`);
  let addr: string;
  try {
    addr = sourceAddr(f.recov);
  } catch (e) {
    return reportUsage('recovery', (e as Error).message);
  }
  if (f.after > 0) {
    if (!f.json) console.log(`recovery: waiting ${f.after} s before asking ${f.recov}`);
    await new Promise((r) => setTimeout(r, f.after * 1000));
  }
  const dir = f.app === 'diskstorage' ? mkdtempSync(join(tmpdir(), 'raftkv-recovery-')) : undefined;
  const engine: KvEngine = dir ? new DiskStorageEngine(join(dir, 'state.dat'), f.keys, f['value-size'], false) : new MemoryEngine(Number.MAX_SAFE_INTEGER);
  const sm = new KvStateMachine(engine, { nodeId: 'recovery' });
  try {
    const src = logSource(addr, { token: f.token ?? process.env.RAFTKV_TOKEN });
    const info = pickLog(await src.info(), f.cluster);
    const have = f.from !== undefined ? { index: f.from - 1, term: 0, membership: { voters: [], learners: [], addrs: {} } } : undefined;
    if (have && f.from! < info.first) throw new Error(`entries before ${info.first} are not held by the source (available ${info.first}..${info.last})`);
    const r = await rebuild(src, { applyBatch: (b) => sm.applyToEngine(b), restoreState: (s) => sm.restoreState(s), prepared: sm.preparedInstall() }, { cluster: info.clusterId || info.name, have, to: f.to, mode: f.mode });
    // This process's CPU and page faults up to the end of the install: what a recovery costs
    // besides its time (the size and digest work below is not part of it).
    const usage = process.resourceUsage();
    if (f.to !== undefined && r.index < f.to) throw new Error(`the source holds entries only up to ${r.index}, not ${f.to}`);
    const stateBytes = sm.snapshot().length;
    const out = {
      source: f.recov,
      mode: f.mode,
      cluster: info.clusterId || info.name,
      index: r.index,
      baseIndex: r.baseIndex,
      commands: r.commands,
      transferSeconds: Number((r.transferMs / 1000).toFixed(3)),
      installSeconds: Number((r.installMs / 1000).toFixed(3)),
      totalSeconds: Number(((r.transferMs + r.installMs) / 1000).toFixed(3)),
      bytesTransferred: r.bytes + r.baseBytes,
      stateBytes,
      cpuUserSeconds: Number((usage.userCPUTime / 1e6).toFixed(2)),
      cpuSystemSeconds: Number((usage.systemCPUTime / 1e6).toFixed(2)),
      minorFaults: usage.minorPageFault,
      keys: engine.size(),
      digest: stateDigest(engine),
    };
    if (f.json) console.log(JSON.stringify(out));
    else {
      console.log(`recovery from ${out.source} (cluster ${out.cluster}): state at index ${out.index}${out.baseIndex ? ` (base snapshot at ${out.baseIndex})` : ''}`);
      console.log(`  commands:      ${out.commands}`);
      console.log(`  transfer time: ${out.transferSeconds} s (${out.bytesTransferred} bytes)`);
      console.log(`  install time:  ${out.installSeconds} s`);
      console.log(`  CPU:           ${out.cpuUserSeconds} s user, ${out.cpuSystemSeconds} s system, ${out.minorFaults} page faults (this process, to the end of the install)`);
      console.log(`  state size:    ${out.stateBytes} bytes, ${out.keys} keys`);
      console.log(`  digest:        ${out.digest}`);
    }
  } catch (e) {
    console.error(`raftkv recovery: ${(e as Error).message}`);
    process.exitCode = 1;
  } finally {
    await engine.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

const RestoreFlags = z.object({
  'from-logger': z.string({ required_error: 'is required' }),
  cluster: z.string().optional(),
  'data-dir': z.string({ required_error: 'is required' }),
  id: z.string({ required_error: 'is required' }).regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 letters, digits, '.', '_' or '-'"),
  raft: z.string({ required_error: 'is required' }),
  token: z.string().optional(),
});

export async function runRestore(argv: string[]): Promise<void> {
  const cl = commandLine('restore', RESTORE_HELP, argv, flagsOf(RestoreFlags, []), { singleDash: true });
  if (!cl) return;
  const parsed = RestoreFlags.safeParse(cl.values);
  if (!parsed.success) return reportUsage('restore', issues(parsed.error));
  const f = parsed.data;
  try {
    parseHostPort(f.raft, '--raft');
  } catch (e) {
    return reportUsage('restore', (e as Error).message);
  }
  const dir = f['data-dir'];
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    console.error(`raftkv restore: ${dir} is not empty: restore writes a new member's data directory and never overwrites one`);
    process.exitCode = 1;
    return;
  }
  try {
    const r = await restoreMember({ fromLogger: f['from-logger'], cluster: f.cluster, dataDir: dir, id: f.id, raft: f.raft, token: f.token ?? process.env.RAFTKV_TOKEN });
    console.log(`restored ${r.keys} keys (state at index ${r.index} of cluster ${r.fromCluster || '?'}, ${r.commands} entries replayed${r.baseIndex ? ` after a base snapshot at ${r.baseIndex}` : ''}) into ${dir}`);
    console.log(`new cluster id ${r.clusterId}; digest ${r.digest}`);
    console.log(`start it: raftkv replica --id ${f.id} --raft ${f.raft} --data-dir ${dir} ...  (then add members with --join)`);
  } catch (e) {
    console.error(`raftkv restore: ${(e as Error).message}; nothing was written`);
    process.exitCode = 1;
  }
}

/**
 * Build the first member of a new cluster in `dataDir` from a logger's log: its state, a
 * configuration of itself alone at `raft`, and a new random cluster id (old members can never
 * join it). On failure nothing is left behind.
 */
export async function restoreMember(o: { fromLogger: string; cluster?: string; dataDir: string; id: string; raft: string; token?: string }) {
  const sm = new KvStateMachine(new MemoryEngine(Number.MAX_SAFE_INTEGER), { nodeId: o.id });
  try {
    const src = logSource(o.fromLogger, { token: o.token });
    const r = await rebuild(src, { applyBatch: (b) => sm.applyToEngine(b), restoreState: (s) => sm.restoreState(s), prepared: sm.preparedInstall() }, { cluster: o.cluster, mode: 'streaming' });
    if (r.index === 0) throw new Error('the log is empty: nothing to restore');
    const snapshot: Snapshot = { meta: { index: r.index, term: r.term, membership: { voters: [o.id], learners: [], addrs: { [o.id]: o.raft } } }, data: sm.snapshot() };
    const storage = await DiskStorage.open(join(o.dataDir, 'raft'), { fsync: 'batch' });
    await storage.save({ snapshot, entries: [], hardState: { term: r.term, vote: '', commit: r.index } });
    await storage.close();
    const clusterId = randomBytes(8).toString('hex');
    new MemberFiles(o.dataDir, true).setClusterId(clusterId);
    return { clusterId, fromCluster: r.clusterId, index: r.index, commands: r.commands, baseIndex: r.baseIndex, keys: sm.engine.size(), digest: stateDigest(sm.engine) };
  } catch (e) {
    rmSync(o.dataDir, { recursive: true, force: true });
    throw e;
  }
}
