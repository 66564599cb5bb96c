/**
 * Receiving a log range: on a worker thread (the default) and on the caller's thread, from a
 * real recov port over a real command log. Both hand over exactly the asked entries in order,
 * however slowly the caller takes them (the worker's window is then full and it stops reading),
 * and a stream that ends early or asks for what is not held fails with a clear error.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CommandLog, encodeRecord } from '../../logger/command-log.js';
import { logSource } from '../../logger/client.js';
import { RecovServer } from '../../logger/recov.js';
import { Entry, EntryType } from '../../raft/index.js';
import { BATCH_BYTES, WINDOW } from '../../logger/range-thread.js';
import { rebuild } from '../../logger/rebuild.js';
import { FIELDS, F_INDEX, F_PLAIN, F_TERM, unpreparedEntry } from '../../replica/prepared.js';
import type { LogInfo, LogSource } from '../../logger/client.js';

const VALUE = 4000;
const entry = (index: number): Entry => ({ index, term: 1 + (index >> 10), type: EntryType.Normal, data: Buffer.alloc(VALUE, index & 0xff) });

async function withServedLog(n: number, fn: (addr: string, log: CommandLog) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-range-'));
  const log = await CommandLog.open(dir, { segmentBytes: 8 << 20 });
  const server = new RecovServer(() => [{ name: 'log0', clusterId: 'c0', log }]);
  try {
    for (let i = 1; i <= n; i += 1000) {
      log.append(Array.from({ length: Math.min(1000, n - i + 1) }, (_, k) => entry(i + k)));
      await log.flush();
    }
    const port = await server.start({ host: '127.0.0.1', port: 0 });
    await fn(`recov://127.0.0.1:${port}`, log);
  } finally {
    await server.stop();
    await log.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Take a range, checking every entry; `slow` makes the taker lag far behind the reader. */
async function take(addr: string, inThread: boolean, from: number, to: number, slow = false) {
  let next = from;
  let batches = 0;
  const r = await logSource(addr, { inThread }).range('log0', from, to, (batch) => {
    batches++;
    for (const e of batch) {
      assert.equal(e.index, next++);
      assert.equal(e.term, 1 + (e.index >> 10));
      assert.equal(e.data.length, VALUE);
      assert.ok(e.data[0] === (e.index & 0xff) && e.data[VALUE - 1] === (e.index & 0xff), `entry ${e.index} holds its own bytes`);
    }
    if (slow) {
      const until = Date.now() + 5;
      while (Date.now() < until); // busy: the reader thread keeps going until its window is full
    }
  });
  assert.equal(next, to + 1);
  return { ...r, batches };
}

/** The same range as prepared KV batches (these entries are not KV commands: mostly passed whole). */
async function takePrepared(addr: string, inThread: boolean, from: number, to: number) {
  let next = from;
  let whole = 0;
  const r = await logSource(addr, { inThread }).rangePrepared('log0', from, to, 1 << 20, (b) => {
    for (let i = 0; i < b.count; i++) {
      assert.equal(b.fields[i * FIELDS + F_INDEX], next);
      assert.equal(b.fields[i * FIELDS + F_TERM], 1 + (next >> 10));
      if (!b.fields[i * FIELDS + F_PLAIN]) {
        assert.deepEqual(Buffer.from(unpreparedEntry(b, i).data), Buffer.from(entry(next).data));
        whole++;
      }
      next++;
    }
  });
  assert.equal(next, to + 1);
  assert.ok(whole > (to - from) / 2, 'entries that are not commands come whole');
  return r;
}

describe('log ranges received off-thread and in-thread', () => {
  // Enough bytes for many more batches than the worker's window holds.
  const n = Math.ceil((3 * WINDOW * BATCH_BYTES) / (VALUE + 21));

  it(`a range of ${n} entries (${((n * VALUE) / 1e6).toFixed(0)} MB) arrives whole and in order both ways, with a slow taker too`, () =>
    withServedLog(n, async (addr) => {
      // The server waits for 'drain' many times over a range this size (the taker is slower
      // than the disk): each wait must leave no listener behind on the socket.
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
      process.on('warning', onWarning);
      after(() => process.off('warning', onWarning));
      for (const inThread of [false, true]) {
        const all = await take(addr, inThread, 1, n);
        assert.equal(all.count, n);
        assert.ok(all.bytes > n * VALUE);
        const part = await take(addr, inThread, 1234, n - 777, true);
        assert.equal(part.count, n - 777 - 1234 + 1);
        if (!inThread) assert.ok(part.batches <= Math.ceil(part.bytes / BATCH_BYTES) + 1, `handed over in batches of ${BATCH_BYTES} bytes, not per socket read (${part.batches})`);
        assert.equal((await takePrepared(addr, inThread, 1234, n - 777)).count, n - 777 - 1234 + 1);
      }
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')), []);
    }));

  it('a range that is not held gets the source’s answer, from the worker as from this thread', () =>
    withServedLog(100, async (addr) => {
      for (const inThread of [false, true]) {
        await assert.rejects(take(addr, inThread, 50, 150), /available 1\.\.100/);
        await assert.rejects(takePrepared(addr, inThread, 50, 150), /available 1\.\.100/);
      }
    }));

  it('a stream that stops inside a record, or short of the range, is an error, not a shorter range', async () => {
    const records = Buffer.concat([1, 2, 3].map((i) => encodeRecord(entry(i))));
    for (const cut of [records.length - 100, encodeRecord(entry(1)).length * 2]) {
      const server = net.createServer((s) => {
        s.once('data', () => s.end(Buffer.concat([Buffer.from('OK 1 3 3\n'), records.subarray(0, cut)])));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const addr = `recov://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      try {
        for (const inThread of [false, true]) {
          await assert.rejects(logSource(addr, { inThread }).range('log0', 1, 3, () => undefined), /ended (early|inside a record)/);
          await assert.rejects(logSource(addr, { inThread }).rangePrepared('log0', 1, 3, 1 << 20, () => undefined), /ended (early|inside a record)/);
        }
      } finally {
        await new Promise((r) => server.close(r));
      }
    }
  });

  it('a rebuild whose range was truncated before it was sent starts over from where the log starts now', async () => {
    const membership = { voters: ['a'], learners: [], addrs: {} };
    let infos = 0;
    const restored: number[] = [];
    const got: number[] = [];
    const src: LogSource = {
      // First the log starts at 1; by the time the range is asked, it starts after a base at 50.
      info: async (): Promise<LogInfo[]> => [{ name: 'l', clusterId: 'c', first: infos++ === 0 ? 1 : 51, last: 60, commitIndex: 60, base: infos > 1 ? { index: 50, term: 1 } : null, bytes: 0 }],
      base: async () => ({ meta: { index: 50, term: 1, membership }, data: new Uint8Array(0) }),
      range: async (_c, from, to, onEntries) => {
        if (from < 51) throw new Error('127.0.0.1:1: entries before 51 were truncated or never received: available 51..60');
        onEntries(Array.from({ length: to - from + 1 }, (_, i) => ({ index: from + i, term: 1, type: EntryType.Normal, data: new Uint8Array(0) })));
        return { count: to - from + 1, bytes: 0 };
      },
      rangePrepared: async () => {
        throw new Error('not asked for prepared batches');
      },
    };
    const r = await rebuild(src, { applyBatch: (b) => (got.push(...b.map((e) => e.index)), b.map(() => new Uint8Array(0))), restoreState: (s) => void restored.push(s.meta.index) }, { mode: 'streaming' });
    assert.deepEqual(restored, [50]);
    assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => 51 + i));
    assert.equal(r.index, 60);
    assert.equal(r.baseIndex, 50);
  });
});
