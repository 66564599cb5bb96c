/**
 * One fault-injection scenario against real replica and logger processes on 127.0.0.1: a nemesis
 * (kill -9, SIGSTOP pauses, partitions, flaky links, leadership transfers, membership changes, and
 * the same for the decoupled loggers) while concurrent clients record every operation; afterwards
 * everything heals, the cluster must converge, the history must be linearizable, and every
 * logger's log must be a gap-free copy of the committed log that rebuilds the replicas' state. Seeded: the same seed makes the same choices
 * (the timing of real processes still varies, so a failure is replayed by rerunning its seed).
 */
import { RaftKvClient } from '../../replica/client.js';
import { Prng } from '../../util/prng.js';
import { TestCluster, sleep } from '../helpers/cluster.js';
import { checkHistory, formatOps } from '../sim/linearizability.js';
import { History } from '../helpers/history.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FaultProxy, LinkFaults } from './proxy.js';
import { LoggerProc, defineLogger, kill9Logger, loggedRange, loggerApi, logsOf, startLogger, waitLogged } from '../helpers/logger.js';
import { logSource } from '../../logger/client.js';
import { rebuild } from '../../logger/rebuild.js';
import { MemoryEngine } from '../../replica/engines/memory.js';
import { stateDigest } from '../../replica/engines/engine.js';
import { KvStateMachine } from '../../replica/kv-machine.js';
import { Entry } from '../../raft/index.js';

const POWERCUT_REPLICA = fileURLToPath(new URL('./powercut-replica.js', import.meta.url));

export interface ScenarioOptions {
  seed: number;
  /** Seconds of faults and load. */
  timeS: number;
  nodes: 3 | 5;
  clients?: number;
  keys?: number;
  /** Read mode of every replica (default: drawn from the seed). Lease mode gets pauses too. */
  readMode?: 'safe' | 'lease';
  /** Decoupled loggers following the cluster (default 1); they are killed, paused and cut off too. */
  loggers?: number;
  log?: (line: string) => void;
}

export interface ScenarioResult {
  seed: number;
  ops: number;
  writesAcked: number;
  writesIndeterminate: number;
  readsOk: number;
  faults: Record<string, number>;
  violations: string[];
  log: string[];
}

export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const rng = new Prng(o.seed);
  const lines: string[] = [];
  const t0 = performance.now();
  const log = (l: string) => {
    const line = `${String(Math.round(performance.now() - t0)).padStart(6)}ms ${l}`;
    lines.push(line);
    o.log?.(line);
  };
  const faults = new LinkFaults(rng);
  const counts: Record<string, number> = {};
  const count = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);
  const c = await TestCluster.create(`faults-${o.seed}`);
  // Every replica keeps its unsynced writes in memory: kill -9 is a power cut.
  c.replicaCommand = [POWERCUT_REPLICA];
  const readMode = o.readMode ?? (rng.chance(0.5) ? 'lease' : 'safe');
  const proxies = new Map<string, FaultProxy>();
  const violations: string[] = [];
  const history = new History();
  let nextNode = o.nodes + 1;
  const paused = new Set<string>();
  const down = new Set<string>();
  const removed = new Set<string>();
  const loggers = new Map<string, LoggerProc>();
  const loggerDown = new Set<string>();
  const loggerPaused = new Set<string>();

  const addNode = async (id: string) => {
    const spec = await c.define(id);
    const proxy = new FaultProxy(id, spec.raft, faults);
    await proxy.start();
    proxies.set(id, proxy);
    return proxy;
  };
  const startArgs = new Map<string, string[]>();
  // Half the time replicas ask the loggers to drop what their snapshots cover, so loggers'
  // logs start from a base snapshot and truncation runs under faults too.
  const loggerTruncate = (o.loggers ?? 1) > 0 && rng.chance(0.5);
  const nodeArgs = (id: string) => ['--advertise-raft', `127.0.0.1:${proxies.get(id)!.port}`, '--read-mode', readMode, '--snapshot-every', '200', '--wal-segment', '0.0625', ...(loggerTruncate ? ['--logger-truncate'] : [])];
  /** Start (or restart) a node with the flags it was first started with, as an operator would. */
  const launch = (id: string, args?: string[]) => {
    if (args) startArgs.set(id, args);
    c.start(id, startArgs.get(id)!);
  };
  const members = () => [...c.nodes.keys()].filter((id) => !removed.has(id));
  const liveMembers = () => members().filter((id) => !down.has(id) && !paused.has(id) && c.procs.has(id));
  const leader = async (): Promise<string | undefined> => {
    for (const id of liveMembers()) {
      const s = await c.status(id);
      if (s?.role === 'leader') return id;
    }
    return undefined;
  };

  try {
    const ids = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
    for (const id of ids) await addNode(id);
    const peers = ids.map((id) => `${id}=127.0.0.1:${proxies.get(id)!.port}`).join(',');
    for (const id of ids) launch(id, ['--peers', peers, ...nodeArgs(id)]);
    await c.waitLeader(ids);
    log(`cluster of ${o.nodes} up (read mode ${readMode}, kill -9 loses unsynced writes), leader ${await leader()}`);
    for (let i = 1; i <= (o.loggers ?? 1); i++) {
      const id = `log${i}`;
      const l = await defineLogger(join(c.dir, id), [id], ids.map((m) => `127.0.0.1:${c.nodes.get(m)!.http}`).join('|'));
      const proxy = new FaultProxy(id, l.raft[0], faults);
      await proxy.start();
      proxies.set(id, proxy);
      l.args = ['--advertise-raft', `127.0.0.1:${proxy.port}`];
      loggers.set(id, l);
      startLogger(l);
    }
    if (loggers.size > 0) log(`${loggers.size} logger(s) joining: ${[...loggers.keys()]}${loggerTruncate ? ', replicas ask them to truncate after each snapshot' : ''}`);

    // ---- clients
    const keys = Array.from({ length: o.keys ?? 4 }, (_, i) => `k${i}`);
    const end = performance.now() + o.timeS * 1000;
    const clientLoop = async (n: number) => {
      const cl = new RaftKvClient({ targets: ids.map((id) => c.clientAddr(id)), timeoutMs: 1000, deadlineMs: 4000 });
      let seq = 0;
      while (performance.now() < end) {
        const key = keys[rng.int(0, keys.length - 1)];
        if (rng.chance(0.5)) await history.put(cl, `c${n}`, key, `c${n}-${++seq}`);
        else await history.get(cl, `c${n}`, key);
      }
      cl.close();
    };
    const clientsDone = Promise.all(Array.from({ length: o.clients ?? 4 }, (_, i) => clientLoop(i + 1)));

    // ---- nemesis
    const restore: (() => Promise<void> | void)[] = [];
    while (performance.now() < end - 500) {
      await sleep(rng.int(400, 1500));
      if (performance.now() >= end - 500) break;
      const live = liveMembers();
      const lead = await leader();
      const pick = () => (lead && rng.chance(0.5) ? lead : live[rng.int(0, live.length - 1)]);
      const kinds = ['kill', 'kill', 'pause', 'partition', 'partition', 'flaky', 'transfer', 'membership', 'restart-in-lease'];
      if (loggers.size > 0) kinds.push('logger-kill', 'logger-pause', 'logger-partition');
      const kind = rng.pick(kinds);
      const liveLogger = () => {
        const up = [...loggers.keys()].filter((id) => !loggerDown.has(id) && !loggerPaused.has(id));
        return up.length > 0 ? rng.pick(up) : undefined;
      };
      count(kind);
      switch (kind) {
        case 'kill': {
          if (down.size + paused.size >= Math.floor((members().length - 1) / 2) || live.length === 0) break;
          const v = pick();
          c.kill9(v);
          down.add(v);
          log(`NEMESIS power cut (kill -9, unsynced writes lost) ${v}${v === lead ? ' (leader)' : ''}`);
          const back = rng.int(200, 1500);
          setTimeout(() => {
            if (!down.has(v) || removed.has(v)) return;
            down.delete(v);
            launch(v);
            log(`restart ${v}`);
          }, back);
          break;
        }
        case 'pause': {
          if (down.size + paused.size >= Math.floor((members().length - 1) / 2) || live.length === 0) break;
          const v = pick();
          c.procs.get(v)?.kill('SIGSTOP');
          paused.add(v);
          log(`NEMESIS SIGSTOP ${v}${v === lead ? ' (leader)' : ''}`);
          setTimeout(() => {
            if (!paused.has(v)) return;
            paused.delete(v);
            c.procs.get(v)?.kill('SIGCONT');
            log(`SIGCONT ${v}`);
          }, rng.int(600, 1800));
          break;
        }
        case 'partition': {
          const all = members();
          const shuffled = rng.shuffle([...all]);
          const mode = all.length >= 5 && rng.chance(0.3) ? 'bridge' : lead && rng.chance(0.4) ? 'isolate-leader' : 'split';
          if (mode === 'bridge') {
            // Two halves that only the bridge node hears both of.
            const [bridge, ...rest] = shuffled;
            const half = Math.floor(rest.length / 2);
            const a = rest.slice(0, half);
            const b = rest.slice(half);
            for (const x of a) for (const y of b) {
              faults.cutLink(x, y);
              faults.cutLink(y, x);
            }
            log(`NEMESIS partition bridge: {${a}} <- ${bridge} -> {${b}}`);
          } else {
            const side = mode === 'isolate-leader' ? [lead!] : shuffled.slice(0, rng.int(1, Math.floor(all.length / 2)));
            for (const x of side) for (const y of all) if (!side.includes(y)) {
              faults.cutLink(x, y);
              faults.cutLink(y, x);
            }
            log(`NEMESIS partition ${mode}: {${side}} | rest`);
          }
          for (const p of proxies.values()) p.enforce();
          const heal = rng.int(500, 2000);
          restore.push(() => faults.healAll());
          setTimeout(() => {
            faults.healAll();
            log('heal partition');
          }, heal);
          break;
        }
        case 'flaky': {
          const all = members();
          for (const x of all) for (const y of all) if (x !== y && rng.chance(0.5)) faults.setDelay(x, y, rng.int(5, 60));
          faults.flakiness = rng.pick([0, 0.1, 0.3]);
          for (const p of proxies.values()) p.enforce();
          log(`NEMESIS flaky links (delays up to 60 ms, resets ${faults.flakiness})`);
          setTimeout(() => {
            faults.healAll();
            log('links steady');
          }, rng.int(500, 2000));
          break;
        }
        case 'transfer': {
          if (!lead) break;
          const to = rng.pick(live.filter((id) => id !== lead));
          if (!to) break;
          const isolate = rng.chance(0.5);
          const transfer = c.http(lead, 'POST', '/v1/leader/transfer', { to }).catch(() => undefined);
          if (isolate) {
            // The old leader is cut off a few ms after its TimeoutNow: it must not go on
            // answering reads from its lease.
            await sleep(rng.int(0, 20));
            const all = members();
            for (const y of all) if (y !== lead) {
              faults.cutLink(lead, y);
              faults.cutLink(y, lead);
            }
            for (const p of proxies.values()) p.enforce();
            setTimeout(() => {
              faults.healAll();
              log('heal partition');
            }, rng.int(500, 1500));
          }
          const r = await transfer;
          log(`NEMESIS transfer ${lead} -> ${to}: ${r?.status ?? 'no answer'}${isolate ? ', old leader isolated right after' : ''}`);
          break;
        }
        case 'restart-in-lease': {
          // A follower restarts at once: it comes back inside the leader's lease, remembering
          // nothing of it.
          const followers = live.filter((id) => id !== lead);
          if (!lead || followers.length === 0) break;
          const v = rng.pick(followers);
          c.kill9(v);
          launch(v);
          log(`NEMESIS restart ${v} inside ${lead}'s lease (kill -9, unsynced writes lost, started again at once)`);
          break;
        }
        case 'logger-kill': {
          const v = liveLogger();
          if (!v) break;
          kill9Logger(loggers.get(v)!);
          loggerDown.add(v);
          log(`NEMESIS kill -9 logger ${v}`);
          setTimeout(() => {
            if (!loggerDown.delete(v)) return;
            startLogger(loggers.get(v)!);
            log(`restart logger ${v}`);
          }, rng.int(200, 2000));
          break;
        }
        case 'logger-pause': {
          const v = liveLogger();
          if (!v) break;
          loggers.get(v)!.proc?.kill('SIGSTOP');
          loggerPaused.add(v);
          log(`NEMESIS SIGSTOP logger ${v}`);
          setTimeout(() => {
            if (!loggerPaused.delete(v)) return;
            loggers.get(v)!.proc?.kill('SIGCONT');
            log(`SIGCONT logger ${v}`);
          }, rng.int(600, 2500));
          break;
        }
        case 'logger-partition': {
          const v = liveLogger();
          if (!v) break;
          for (const y of members()) {
            faults.cutLink(v, y);
            faults.cutLink(y, v);
          }
          for (const p of proxies.values()) p.enforce();
          log(`NEMESIS partition logger ${v} from every replica`);
          setTimeout(() => {
            faults.healAll();
            log('heal partition');
          }, rng.int(500, 2500));
          break;
        }
        case 'membership': {
          const via = live[0];
          if (!via) break;
          const st = await c.status(via);
          const voters = st?.members.filter((m) => m.role === 'voter').map((m) => m.id) ?? [];
          if (voters.length > o.nodes || (voters.length > 3 && rng.chance(0.5))) {
            const victim = rng.pick(voters.filter((v) => v !== lead && !down.has(v) && !paused.has(v)));
            if (!victim) break;
            const r = await c.http(via, 'DELETE', `/v1/members/${victim}`).catch(() => undefined);
            log(`NEMESIS remove ${victim}: ${r?.status ?? 'no answer'}`);
            if (r?.status === 200) {
              removed.add(victim);
              await c.terminate(victim);
            }
          } else {
            const id = `n${nextNode++}`;
            await addNode(id);
            // Like an operator: every live member is a join target, so one dying does not strand it.
            const targets = live.map((m) => `127.0.0.1:${c.nodes.get(m)!.http}`).join(',');
            launch(id, ['--join', targets, ...nodeArgs(id)]);
            log(`NEMESIS add ${id} (joins as non-voter, promoted once caught up)`);
          }
          break;
        }
      }
    }
    await clientsDone;

    // ---- heal and converge
    faults.healAll();
    for (const f of restore) await f();
    for (const v of paused) c.procs.get(v)?.kill('SIGCONT');
    paused.clear();
    for (const v of down) if (!removed.has(v)) launch(v);
    down.clear();
    for (const v of loggerPaused) loggers.get(v)!.proc?.kill('SIGCONT');
    loggerPaused.clear();
    for (const v of loggerDown) startLogger(loggers.get(v)!);
    loggerDown.clear();
    log('heal everything');
    // The cluster's membership is what its leader says; a node whose join never went through
    // (its targets were all removed or down) is reported, not waited for.
    const finalMembers = async () => {
      const deadline = performance.now() + 30_000;
      while (performance.now() < deadline) {
        const st = (await Promise.all(members().filter((id) => c.procs.has(id)).map((id) => c.status(id)))).filter(Boolean);
        const lead = st.find((s) => s!.role === 'leader');
        if (lead) {
          const mem = lead.members.filter((m) => m.role !== 'logger' && !loggers.has(m.id)).map((m) => m.id);
          await c.waitLeader(mem, 30_000);
          for (const id of members()) if (!mem.includes(id) && c.procs.has(id)) log(`${id} never became a member (its join did not go through)`);
          return mem;
        }
        await sleep(100);
      }
      throw new Error(`no leader within 30 s after healing\n${c.dump()}`);
    };
    let mem = await finalMembers();
    await c.waitConverged(mem, 30_000);
    mem = await finalMembers();
    // Final linearizable reads of every key: a lost acknowledged write shows up here.
    const reader = new RaftKvClient({ targets: mem.map((id) => c.clientAddr(id)), timeoutMs: 2000, deadlineMs: 10_000 });
    for (const key of keys) await history.get(reader, 'final', key, { throws: true });
    reader.close();
    // Every member holds the same data.
    await c.waitConverged(mem, 30_000);
    for (const key of keys) {
      const seen = new Set<string>();
      for (const id of mem) {
        const r = await c.http(id, 'GET', `/v1/kv/${key}?stale=1`);
        seen.add(JSON.stringify(r.json));
      }
      if (seen.size > 1) violations.push(`replicas diverge on ${key}: ${[...seen].join(' vs ')}`);
    }
    violations.push(...(await checkLoggers(c, mem, loggers, log)));
    const check = checkHistory(history.ops);
    if (check.ok === false) violations.push(`not linearizable on key ${check.key}: ${check.reason}\n${formatOps(check.ops.slice(-40))}`);
    if (check.ok === 'unknown') violations.push(`linearizability check inconclusive: ${check.reason} (an unchecked history is not a passed one)`);
    const puts = history.ops.filter((h) => h.kind === 'put');
    return {
      seed: o.seed,
      ops: history.ops.length,
      writesAcked: puts.filter((p) => p.ret !== Infinity).length,
      writesIndeterminate: puts.filter((p) => p.ret === Infinity).length,
      readsOk: history.ops.length - puts.length,
      faults: counts,
      violations,
      log: lines,
    };
  } catch (e) {
    violations.push(`scenario failed: ${(e as Error).message}`);
    // What each process says of itself now: the output alone shows what changed, not where it stuck.
    const states: string[] = [];
    for (const id of members()) {
      const st = c.procs.has(id) ? await c.status(id) : undefined;
      states.push(`status ${id}: ${st ? JSON.stringify({ role: st.role, term: st.term, leader: st.leader, commit: st.commitIndex, members: st.members.map((m) => `${m.id}:${m.role}:${m.match ?? '-'}`) }) : 'no answer'}`);
    }
    for (const [id, l] of loggers) {
      const r = await loggerApi(l.http, '/v1/status').catch((e: Error) => ({ status: 0, text: e.message }));
      states.push(`status ${id}: ${r.status} ${r.text.slice(0, 1500)}`);
    }
    return { seed: o.seed, ops: history.ops.length, writesAcked: 0, writesIndeterminate: 0, readsOk: 0, faults: counts, violations, log: [...lines, ...states, c.dump(), ...[...loggers].map(([id, l]) => `--- ${id}\n${l.out.split('\n').slice(-40).join('\n')}`)] };
  } finally {
    for (const id of c.procs.keys()) c.procs.get(id)?.kill('SIGCONT');
    for (const l of loggers.values()) {
      l.proc?.kill('SIGCONT');
      kill9Logger(l);
    }
    // Processes first: a live replica redials a proxy that is closing.
    await c.destroy();
    for (const p of proxies.values()) await p.stop();
  }
}

/**
 * After healing, every logger must hold a copy of the committed log: its entries numbered without
 * gap or repeat from its first index to its last, the same bytes as every other logger where
 * they overlap, reaching the replicas' applied index, and replaying (from its base snapshot, if
 * it has one) to the same state digest the replicas report.
 */
async function checkLoggers(c: TestCluster, members: string[], loggers: Map<string, LoggerProc>, log: (l: string) => void): Promise<string[]> {
  if (loggers.size === 0) return [];
  const violations: string[] = [];
  const d = (await c.http(members[0], 'GET', '/v1/digest')).json as { index: number; digest: string; keys: number };
  const held = new Map<string, Map<number, Entry>>();
  for (const [id, l] of loggers) {
    try {
      await waitLogged(l, id, d.index, 30_000);
    } catch (e) {
      violations.push(`logger ${id} did not catch up with the committed log: ${(e as Error).message}`);
      continue;
    }
    const info = (await logsOf(l)).find((x) => x.name === id)!;
    // A log that holds nothing past its base snapshot (one sent at the very index the replicas
    // applied) is empty: first is last + 1, a range the logger rightly refuses (seed 5101).
    const entries = info.last >= info.first ? await loggedRange(l.recov, id, info.first, info.last) : [];
    const byIndex = new Map<number, Entry>();
    entries.forEach((e, i) => {
      if (e.index !== info.first + i) violations.push(`logger ${id}: entry ${i} of its range ${info.first}..${info.last} has index ${e.index} (a gap or a repeat)`);
      byIndex.set(e.index, e);
    });
    held.set(id, byIndex);
    const sm = new KvStateMachine(new MemoryEngine(Number.MAX_SAFE_INTEGER), { nodeId: 'check' });
    const r = await rebuild(logSource(`recov://127.0.0.1:${l.recov}`), { applyBatch: (b) => sm.applyToEngine(b), restoreState: (s) => sm.restoreState(s) }, { cluster: id, to: d.index });
    const digest = stateDigest(sm.engine);
    if (r.index !== d.index || digest !== d.digest) violations.push(`logger ${id}: its log rebuilds state ${digest} at ${r.index}, the replicas hold ${d.digest} at ${d.index}`);
    log(`logger ${id}: log ${info.first}..${info.last}${info.first > 1 ? ' after a base snapshot' : ''}, rebuilds the replicas' digest at ${d.index}: ${digest === d.digest}`);
  }
  const ids = [...held.keys()];
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      for (const [index, a] of held.get(ids[i])!) {
        const b = held.get(ids[j])!.get(index);
        if (b && (a.term !== b.term || a.type !== b.type || !Buffer.from(a.data).equals(Buffer.from(b.data)))) {
          violations.push(`loggers ${ids[i]} and ${ids[j]} disagree on entry ${index} (terms ${a.term} and ${b.term})`);
          break;
        }
      }
    }
  }
  return violations;
}
