/**
 * The command log under random interleavings: appends, flushes, truncations (with and without a
 * base snapshot), base installs, range reads, clean reopens and crashes are started together in
 * waves and awaited together, the way the logger's apply loop, its voters' truncation asks and
 * recovery readers meet. After every wave the log must tell the truth: every index it claims
 * reads back exactly what was appended, its start and end never move back, nothing a flush
 * promised is lost, and its base snapshot joins the entries without a gap.
 *
 * Twice: on real files with real fsync, where a crash drops an instance with what it had queued
 * (a process killed between operations); and on the simulated disk of the whole-replica
 * simulator, where a power cut can come in the middle of a wave (mid-truncation, mid-install,
 * mid-flush) and loses or tears everything not fsync'd, directory entries included.
 *
 * Seeded: a failure prints its seed; RAFTKV_SEED=S replays it, RAFTKV_SEEDS=N runs N seeds.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CommandLog, UnavailableRangeError } from '../../logger/command-log.js';
import { Entry, EntryType, FileHandleLike, FileSystem, Snapshot } from '../../raft/index.js';
import { Prng } from '../../util/prng.js';
import { SimFs } from '../sim/whole/sim-fs.js';

const membership = { voters: ['a'], learners: [], addrs: { a: 'x:1' } };
const termOf = (i: number) => 1 + Math.floor(i / 40);
/** Entry i is the same whoever makes it, so a log that lost a suffix is refilled with the same entries. */
function entryAt(i: number): Entry {
  const n = (i * 7919) % 257;
  return { index: i, term: termOf(i), type: EntryType.Normal, data: Buffer.from(`entry-${i}:`.padEnd(n, String.fromCharCode(97 + (i % 26)))) };
}
/** The cluster's state at i (what a snapshot at i holds). */
const snapshotAt = (i: number): Snapshot => ({ meta: { index: i, term: termOf(i), membership }, data: Buffer.from(`state@${i}`) });

interface Seen {
  first: number;
  last: number;
}

async function readAll(log: CommandLog, from: number, to: number): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const b of log.read(from, to, 700)) out.push(...b);
  return out;
}

function sameEntries(got: Entry[], from: number, to: number, what: string): void {
  assert.equal(got.length, to - from + 1, `${what}: ${got.length} entries for ${from}..${to}`);
  for (let k = 0; k < got.length; k++) {
    const want = entryAt(from + k);
    assert.equal(got[k].index, want.index, `${what}: index`);
    assert.equal(got[k].term, want.term, `${what}: term of ${want.index}`);
    assert.ok(Buffer.from(got[k].data).equals(Buffer.from(want.data)), `${what}: bytes of ${want.index}`);
  }
}

/**
 * What must hold whenever nothing is in flight. `rebuildable`: every truncation so far came with
 * a base snapshot (the logger's always do), so the base must join the entries without a gap.
 */
async function checkTruth(log: CommandLog, before: Seen, rng: Prng, rebuildable: boolean): Promise<Seen> {
  const { first, last, base } = log.info();
  assert.ok(first >= before.first, `the start moved back: ${before.first} -> ${first}`);
  assert.ok(last >= before.last, `the durable end moved back: ${before.last} -> ${last}`);
  assert.ok(last >= first - 1, `end ${last} before start ${first}`);
  if (first > 1) {
    if (rebuildable) {
      assert.ok(base, `the log starts at ${first} with no base snapshot: the state before it is lost`);
      assert.ok(base.index >= first - 1, `base at ${base.index} leaves a gap before ${first}`);
    }
    if (base) {
      // Even after a truncation without one: a named base always meets the entries.
      assert.ok(base.index >= first - 1, `base at ${base.index} leaves a gap before ${first}`);
      assert.ok(base.index <= Math.max(last, first - 1), `base at ${base.index} is past the end ${last}`);
      const snap = await log.base();
      assert.equal(snap?.meta.index, base.index);
      assert.equal(Buffer.from(snap!.data).toString(), `state@${base.index}`);
    }
  }
  if (last >= first) {
    // The whole log when small, else a random window and both ends.
    if (last - first < 200) sameEntries(await readAll(log, first, last), first, last, 'whole log');
    else {
      const a = rng.int(first, last);
      const b = Math.min(last, a + rng.int(0, 120));
      sameEntries(await readAll(log, a, b), a, b, 'window');
      sameEntries(await readAll(log, first, first + 5), first, first + 5, 'head');
      sameEntries(await readAll(log, last - 5, last), last - 5, last, 'tail');
    }
  }
  await assert.rejects(readAll(log, last + 1, last + 1), UnavailableRangeError, 'a range past the end is refused');
  return { first, last };
}

/** Where a log lives, and what a crash does to it. */
interface Disk {
  /** A new process opens the log. */
  open(): Promise<CommandLog>;
  /** The process dies: its instance is never used again; the disk keeps what the crash leaves. */
  crash(): void;
  /** Whether a crash may come while operations are in flight. */
  midWave: boolean;
  dispose(): Promise<void>;
}

async function realDisk(segmentBytes: number): Promise<Disk> {
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-cmdlog-random-'));
  return {
    open: () => CommandLog.open(dir, { segmentBytes }),
    // A process killed between operations: what it wrote stays (the page cache survives it).
    crash: () => undefined,
    midWave: false,
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

const turn = () => new Promise<void>((r) => setImmediate(r));

const never = () => new Promise<never>(() => undefined);

/**
 * The disk as one process sees it: once that process has lost power, every call it makes
 * (through the file system or an open file) never returns, so nothing it does after the cut
 * reaches the disk the next process opens.
 */
function processView(disk: SimFs, alive: () => boolean): FileSystem {
  const handle = (fh: FileHandleLike): FileHandleLike => {
    const wrapped: Partial<Record<keyof FileHandleLike, unknown>> = {};
    for (const k of Object.keys(fh) as (keyof FileHandleLike)[]) {
      const f = fh[k] as (...a: unknown[]) => unknown;
      wrapped[k] = (...a: unknown[]) => (alive() ? f(...a) : never());
    }
    return wrapped as FileHandleLike;
  };
  return {
    open: async (path, flags) => (alive() ? handle(await disk.open(path, flags)) : never()),
    mkdir: (path) => (alive() ? disk.mkdir(path) : never()),
    readdir: (path) => (alive() ? disk.readdir(path) : never()),
    readFile: (path) => (alive() ? disk.readFile(path) : never()),
    rm: (path, opts) => (alive() ? disk.rm(path, opts) : never()),
    rename: (from, to) => (alive() ? disk.rename(from, to) : never()),
    readRange: (path, position, length) => {
      if (!alive()) throw new Error('this process lost power');
      return disk.readRange(path, position, length);
    },
  };
}

function simulatedDisk(rng: Prng, segmentBytes: number): Disk {
  let process = 0;
  const disk = new SimFs(rng, async (ms) => {
    for (let i = 0; i <= ms; i++) await turn();
  });
  return {
    open: () => {
      const mine = process;
      return CommandLog.open('/log', { segmentBytes, fs: processView(disk, () => mine === process) });
    },
    crash: () => {
      process++;
      disk.crash();
    },
    midWave: true,
    dispose: async () => undefined,
  };
}

async function runSeed(seed: number, waves: number, kind: 'real' | 'simulated'): Promise<void> {
  const rng = new Prng(seed);
  const segmentBytes = rng.pick([600, 2_000, 50_000]);
  const disk = kind === 'real' ? await realDisk(segmentBytes) : simulatedDisk(rng, segmentBytes);
  let log = await disk.open();
  /** Instances whose process crashed: never touched again (closing one would wait for ever). */
  const dead = new Set<CommandLog>();
  let seen: Seen = { first: 1, last: 0 };
  let rebuildable = true;
  const trace: string[] = [];
  try {
    for (let w = 0; w < waves; w++) {
      const cur = log;
      const ops: Promise<unknown>[] = [];
      const names: string[] = [];
      let installing = false;
      let truncating = false;
      /** The highest index a flush of this wave promised durable (and resolved). */
      let flushed = 0;
      const n = rng.int(1, 4);
      for (let k = 0; k < n; k++) {
        const roll = rng.int(0, 99);
        const appended = cur.lastAppended().index;
        const { first, last } = cur.info();
        if (roll < 35 && !installing) {
          const count = rng.int(1, 25);
          cur.append(Array.from({ length: count }, (_, j) => entryAt(appended + 1 + j)));
          // A restarted logger applies some entries again: they are skipped.
          if (rng.chance(0.1) && appended >= first) cur.append([entryAt(appended)]);
          names.push(`append ${appended + 1}..${appended + count}`);
        } else if (roll < 55) {
          const promised = cur.lastAppended().index;
          names.push(`flush (to ${promised})`);
          ops.push(
            cur.flush().then(() => {
              assert.ok(cur.info().last >= promised || installing, `flush resolved with ${cur.info().last} durable, ${promised} asked`);
              flushed = Math.max(flushed, promised);
            }),
          );
        } else if (roll < 72 && last >= first) {
          const upTo = rng.int(first, last);
          const withBase = rng.chance(0.85);
          if (!withBase) rebuildable = false;
          const baseAt = withBase ? rng.int(upTo, last) : undefined;
          names.push(`truncate to ${upTo}${baseAt !== undefined ? ` with base ${baseAt}` : ''}`);
          truncating = true;
          ops.push(
            cur.truncatePrefix(upTo, baseAt !== undefined ? snapshotAt(baseAt) : undefined).then((got) => {
              assert.ok(got >= upTo + 1 || installing, `truncate to ${upTo} returned start ${got}`);
            }),
          );
        } else if (roll < 78 && !installing && !truncating) {
          // A snapshot from the leader, ahead of everything held; nothing is appended while the
          // logger's apply loop restores it.
          const at = appended + rng.int(1, 30);
          names.push(`install base ${at}`);
          installing = true;
          ops.push(cur.installBase(snapshotAt(at)).then((took) => assert.equal(took, true, `base at ${at} above ${appended} taken`)));
        } else if (roll < 92 && last >= first) {
          const a = rng.int(first, last);
          const b = Math.min(last, a + rng.int(0, 60));
          names.push(`read ${a}..${b}`);
          ops.push(
            readAll(cur, a, b).then(
              (got) => sameEntries(got, a, b, `read ${a}..${b}`),
              (e) => {
                // Only a truncation or install running meanwhile may take a range away.
                if (!(e instanceof UnavailableRangeError) || !(truncating || installing)) throw e;
              },
            ),
          );
        } else if (!installing && !truncating && ops.length === 0) {
          names.push('reopen');
          ops.push(
            (async () => {
              await cur.close();
              const shouldBe = cur.info();
              log = await disk.open();
              assert.equal(log.info().first, shouldBe.first, 'start after a clean reopen');
              assert.equal(log.info().last, shouldBe.last, 'end after a clean reopen');
            })(),
          );
          break;
        }
      }
      trace.push(`wave ${w}: ${names.join(', ')}`);
      let mustHave = seen;
      if (disk.midWave && rng.chance(0.15) && !names.includes('reopen')) {
        // Power cut while the wave runs: what finished before it must hold; the rest may or may
        // not have happened, but the log must open and tell the truth either way.
        const failures: unknown[] = [];
        for (const op of ops) op.catch((e: unknown) => failures.push(e));
        const after = rng.int(0, 40);
        for (let i = 0; i < after; i++) await turn();
        const bad = failures.find((e) => e instanceof assert.AssertionError);
        if (bad) throw bad;
        trace.push(`wave ${w}: power cut after ${after} turns (durable ${cur.info().first}..${cur.info().last}, flushed to ${flushed})`);
        mustHave = { first: Math.max(seen.first, 1), last: Math.max(seen.last, flushed) };
        disk.crash();
        dead.add(log);
        log = await disk.open();
      } else {
        await Promise.all(ops);
        if (rng.chance(0.08)) {
          // A crash between operations: only what a flush made durable must be there when the
          // next process opens the log.
          const durable = log.info();
          trace.push(`wave ${w}: crash (durable ${durable.first}..${durable.last}, appended to ${log.lastAppended().index})`);
          disk.crash();
          dead.add(log);
          log = await disk.open();
          assert.equal(log.info().first, durable.first, 'start after a crash');
          assert.ok(log.info().last >= durable.last, `end after a crash: ${log.info().last} < ${durable.last} made durable`);
        }
      }
      seen = await checkTruth(log, mustHave, rng, rebuildable);
    }
    await log.close();
  } catch (e) {
    (e as Error).message = `${kind} disk, seed ${seed} (replay: RAFTKV_SEED=${seed}): ${(e as Error).message}\n${trace.slice(-12).join('\n')}`;
    throw e;
  } finally {
    if (!dead.has(log)) await log.close().catch(() => undefined);
    await disk.dispose();
  }
}

describe('command log under random interleavings (seeded)', () => {
  const fixed = process.env.RAFTKV_SEED;
  const seeds = fixed ? [Number(fixed)] : Array.from({ length: Number(process.env.RAFTKV_SEEDS ?? 20) }, (_, i) => (Date.now() % 100_000) * 100 + i);
  const range = `seeds ${seeds[0]}${seeds.length > 1 ? `..${seeds[seeds.length - 1]}` : ''}`;
  it(`on real files, crashes between operations: tells the truth after every wave (${range})`, async () => {
    for (const seed of seeds) await runSeed(seed, Number(process.env.RAFTKV_WAVES ?? 60), 'real');
  });
  it(`on a simulated disk, power cuts mid-wave: tells the truth after every wave (${range})`, async () => {
    for (const seed of seeds) await runSeed(seed, Number(process.env.RAFTKV_WAVES ?? 60), 'simulated');
  });
});
