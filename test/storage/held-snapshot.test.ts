/**
 * A replica's latest snapshot lives in its file, not in memory: three in-process nodes on real
 * files (DiskStorage, fdatasync) with the key-value state machine. Snapshots are written as they
 * are serialized and the core keeps them as their files; a follower cut off past the leader's
 * compaction catches up from chunks read out of the leader's snapshot file and ends with the
 * same state; a restarted node keeps its loaded snapshot as its file too.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DiskStorage, Message, RaftDriver, RaftNode, decodeSnapshot, loadOrBootstrap } from '../../raft/index.js';
import { MemoryEngine } from '../../replica/engines/memory.js';
import { stateDigest } from '../../replica/engines/engine.js';
import { KvStateMachine } from '../../replica/kv-machine.js';
import { Op, encodeKvCommand } from '../../replica/proto.js';

const ids = ['a', 'b', 'c'];

interface Member {
  driver: RaftDriver;
  sm: KvStateMachine;
  storage: DiskStorage;
}

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('snapshots held as files', () => {
  it('a follower cut off past the compaction catches up from the leader’s snapshot file; nobody keeps snapshot bytes in memory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-held-'));
    const members = new Map<string, Member>();
    const cut = new Set<string>(['c']);
    const fatal: string[] = [];
    const start = async (id: string) => {
      const storage = await DiskStorage.open(join(dir, id), { fsync: 'batch' });
      const initial = await loadOrBootstrap(storage, ids.map((i) => ({ id: i, addr: i })));
      const sm = new KvStateMachine(new MemoryEngine(1 << 20), { nodeId: id, snapshotSlice: 50 });
      if (initial.snapshot) sm.restore(initial.snapshot);
      const node = new RaftNode({ id, electionTicks: 10, heartbeatTicks: 1, snapshotChunkBytes: 64 << 10 }, initial);
      const driver = new RaftDriver({
        node,
        storage,
        stateMachine: sm,
        tickMs: 10,
        snapshotEvery: 200,
        keepEntries: 10,
        transport: {
          send: (msgs: Message[]) => {
            for (const m of msgs) if (!cut.has(m.to) && !cut.has(m.from)) setImmediate(() => members.get(m.to)?.driver.step(m));
          },
        },
        // A background snapshot still being written when its node stops ends in an error
        // about the closed log: only a running node's failures count.
        onFatal: (e) => {
          if (members.get(id)?.driver === driver) fatal.push(`${id}: ${e.message}`);
        },
      });
      members.set(id, { driver, sm, storage });
      driver.start();
    };
    const stop = async (id: string) => {
      const m = members.get(id)!;
      members.delete(id);
      await m.driver.stop();
      await m.storage.close();
    };
    try {
      for (const id of ids) await start(id);
      // c is cut off, so the leader is a or b; `a()` is whichever leads.
      await waitFor('a leader', () => ['a', 'b'].some((id) => members.get(id)!.driver.node.isLeader()));
      const leaderId = ['a', 'b'].find((id) => members.get(id)!.driver.node.isLeader())!;
      const otherId = leaderId === 'a' ? 'b' : 'a';
      const a = () => members.get(leaderId)!;
      const value = Buffer.alloc(1000, 'v');
      for (let i = 0; i < 1500; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, k) =>
            a().driver.propose(encodeKvCommand({ op: Op.SET, key: `key-${i + k}`, value, client: '', seq: 0, acked: 0, time: 1 })),
          ),
        );
      }
      await waitFor('a snapshot on the leader', () => (a().driver.node.latestSnapshot()?.meta.index ?? 0) > 1000);
      const held = a().driver.node.latestSnapshot()!;
      assert.ok(!(held.data instanceof Uint8Array), 'the leader keeps its snapshot as its file, not its bytes');
      // The bytes it reads are its file's (a newer snapshot may be on disk already).
      const name = (await readdir(join(dir, leaderId, 'snap'))).find((f) => f.startsWith(`snap-${held.meta.index.toString(16).padStart(16, '0')}-`))!;
      const onDisk = decodeSnapshot(await readFile(join(dir, leaderId, 'snap', name)));
      assert.equal(onDisk.meta.index, held.meta.index);
      assert.deepEqual(Buffer.from(held.data.subarray(0, held.data.length)), Buffer.from(onDisk.data));
      assert.ok(a().driver.node.log.firstIndex() > 2, 'the leader compacted the entries c lacks');

      cut.clear();
      const c = () => members.get('c')!;
      await waitFor('c to catch up', () => c().driver.appliedIndex >= a().driver.appliedIndex && stateDigest(c().sm.engine) === stateDigest(a().sm.engine));
      assert.equal(c().sm.engine.size(), 1500);
      assert.ok(!(c().driver.node.latestSnapshot()!.data instanceof Uint8Array), 'the installed snapshot is kept as its file once durable');

      await stop(otherId);
      await start(otherId);
      const other = () => members.get(otherId)!;
      await waitFor('the restarted follower to hold its loaded snapshot as its file', () => {
        const s = other().driver.node.latestSnapshot();
        return s !== undefined && !(s.data instanceof Uint8Array);
      });
      assert.equal(other().storage.initialState().snapshot, undefined, 'the storage let go of the loaded snapshot’s bytes');
      assert.deepEqual(other().storage.initialState().entries, [], 'and of the recovered entries (the core releases them once applied)');
      await waitFor('the restarted follower to apply everything again', () => other().driver.appliedIndex >= a().driver.appliedIndex);
      assert.equal(stateDigest(other().sm.engine), stateDigest(a().sm.engine));
      assert.deepEqual(fatal, []);
    } finally {
      for (const id of [...members.keys()]) await stop(id);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
