/**
 * The command log under random interleavings, on real files with real fsync: appends, flushes,
 * truncations (with and without a base snapshot), base installs, range reads, clean reopens and
 * abandoned instances (a process crash: what was queued but not flushed is lost) are started
 * together in waves and awaited together, the way the logger's apply loop, its voters'
 * truncation asks and recovery readers meet. After every wave the log must tell the truth:
 * every index it claims reads back exactly what was appended, its start and end never move
 * back, and its base snapshot joins the entries without a gap.
 *
 * Seeded: a failure prints its seed; RAFTKV_SEED=S replays it, RAFTKV_SEEDS=N runs N seeds.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CommandLog, UnavailableRangeError } from '../../logger/command-log.js';
import { Entry, EntryType, Snapshot } from '../../raft/index.js';
import { Prng } from '../../util/prng.js';

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

async function runSeed(seed: number, waves: number): Promise<void> {
  const rng = new Prng(seed);
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-cmdlog-random-'));
  const segmentBytes = rng.pick([600, 2_000, 50_000]);
  let log = await CommandLog.open(dir, { segmentBytes });
  let seen: Seen = { first: 1, last: 0 };
  let rebuildable = true;
  const trace: string[] = [];
  try {
    for (let w = 0; w < waves; w++) {
      const ops: Promise<unknown>[] = [];
      const names: string[] = [];
      let installing = false;
      let truncating = false;
      const n = rng.int(1, 4);
      for (let k = 0; k < n; k++) {
        const roll = rng.int(0, 99);
        const appended = log.lastAppended().index;
        const { first, last } = log.info();
        if (roll < 35 && !installing) {
          const count = rng.int(1, 25);
          log.append(Array.from({ length: count }, (_, j) => entryAt(appended + 1 + j)));
          // A restarted logger applies some entries again: they are skipped.
          if (rng.chance(0.1) && appended >= first) log.append([entryAt(appended)]);
          names.push(`append ${appended + 1}..${appended + count}`);
        } else if (roll < 55) {
          const promised = log.lastAppended().index;
          names.push(`flush (to ${promised})`);
          ops.push(log.flush().then(() => assert.ok(log.info().last >= promised || installing, `flush resolved with ${log.info().last} durable, ${promised} asked`)));
        } else if (roll < 72 && last >= first) {
          const upTo = rng.int(first, last);
          const withBase = rng.chance(0.85);
          if (!withBase) rebuildable = false;
          const baseAt = withBase ? rng.int(upTo, last) : undefined;
          names.push(`truncate to ${upTo}${baseAt !== undefined ? ` with base ${baseAt}` : ''}`);
          truncating = true;
          ops.push(
            log.truncatePrefix(upTo, baseAt !== undefined ? snapshotAt(baseAt) : undefined).then((got) => {
              assert.ok(got >= upTo + 1 || installing, `truncate to ${upTo} returned start ${got}`);
            }),
          );
        } else if (roll < 78 && !installing && !truncating) {
          // A snapshot from the leader, ahead of everything held; nothing is appended while the
          // logger's apply loop restores it.
          const at = appended + rng.int(1, 30);
          names.push(`install base ${at}`);
          installing = true;
          ops.push(log.installBase(snapshotAt(at)).then((took) => assert.equal(took, true, `base at ${at} above ${appended} taken`)));
        } else if (roll < 92 && last >= first) {
          const a = rng.int(first, last);
          const b = Math.min(last, a + rng.int(0, 60));
          names.push(`read ${a}..${b}`);
          ops.push(
            readAll(log, a, b).then(
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
              await log.close();
              const shouldBe = log.info();
              log = await CommandLog.open(dir, { segmentBytes });
              assert.equal(log.info().first, shouldBe.first, 'start after a clean reopen');
              assert.equal(log.info().last, shouldBe.last, 'end after a clean reopen');
            })(),
          );
          break;
        }
      }
      trace.push(`wave ${w}: ${names.join(', ')}`);
      await Promise.all(ops);
      if (rng.chance(0.08)) {
        // A process crash: this instance is dropped with whatever it had queued; only what a
        // flush made durable must be there when the next one opens the directory.
        const durable = log.info();
        trace.push(`wave ${w}: crash (durable ${durable.first}..${durable.last}, appended to ${log.lastAppended().index})`);
        const abandoned = log;
        log = await CommandLog.open(dir, { segmentBytes });
        assert.equal(log.info().first, durable.first, 'start after a crash');
        assert.ok(log.info().last >= durable.last, `end after a crash: ${log.info().last} < ${durable.last} made durable`);
        void abandoned; // never used again (its file handle goes with the process in real life)
      }
      seen = await checkTruth(log, seen, rng, rebuildable);
    }
    await log.close();
  } catch (e) {
    (e as Error).message = `seed ${seed} (replay: RAFTKV_SEED=${seed}): ${(e as Error).message}\n${trace.slice(-12).join('\n')}`;
    throw e;
  } finally {
    await log.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

describe('command log under random interleavings (seeded)', () => {
  const fixed = process.env.RAFTKV_SEED;
  const seeds = fixed ? [Number(fixed)] : Array.from({ length: Number(process.env.RAFTKV_SEEDS ?? 20) }, (_, i) => (Date.now() % 100_000) * 100 + i);
  it(`tells the truth after every wave (seeds ${seeds[0]}${seeds.length > 1 ? `..${seeds[seeds.length - 1]}` : ''})`, async () => {
    for (const seed of seeds) await runSeed(seed, Number(process.env.RAFTKV_WAVES ?? 60));
  });
});
