import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Message, MessageType, RaftError, RaftNode, bootstrapEntries } from '../../raft/index.js';
import { decodeRecord } from '../../raft/storage/records.js';
import { decodeSnapshot } from '../../raft/storage/snapshots.js';
import { ClientFrameDecoder, FrameError, PeerFrameDecoder, peerFrame } from '../../replica/framing.js';
import { commandFrame, responseFrame } from '../../replica/client-frames.js';
import { CommandPb, KvCommand, ResponsePb, decodeCommand, decodeCommandPb, decodeKvCommand, decodeResponse, decodeResponsePb, decodeKvCommandPb, decodeRaftMessagePb, encodeHello, encodeKvCommand, encodeKvCommandPb, encodeRaftMessagePb } from '../../replica/proto.js';
import { decodeRaftMessage, encodeRaftMessage } from '../../replica/raft-message-codec.js';
import { RaftKvClient } from '../../replica/client.js';
import { TestCluster } from '../helpers/cluster.js';

const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
const runs = { seed, numRuns: 400 };
const bytes = fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b));

/** Valid bytes with one byte changed (how 0), cut short (1) or extended (2). */
function mutate(b: Buffer, at: number, byte: number, how: number): Buffer {
  const i = b.length === 0 ? 0 : at % b.length;
  if (how === 0) return Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i + 1)]);
  return how === 1 ? b.subarray(0, i) : Buffer.concat([b, Buffer.from([byte, byte])]);
}

/** A decoder may reject input only with an ordinary Error, never crash or hang. */
function rejectsCleanly(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    return e instanceof Error;
  }
}

describe(`every decoder survives arbitrary bytes (fast-check seed ${seed}; RAFTKV_SEED replays)`, () => {
  it('the hand-written command decoder reads exactly what protobufjs reads, and fails where it fails', () => {
    const outcome = (f: () => KvCommand): string => {
      try {
        const c = f();
        return JSON.stringify({ ...c, value: Buffer.from(c.value).toString('hex') });
      } catch {
        return 'throws';
      }
    };
    const same = (b: Buffer) => outcome(() => decodeKvCommand(b)) === outcome(() => decodeKvCommandPb(b));
    const command = fc.record({
      op: fc.integer({ min: 0, max: 3 }),
      key: fc.string({ maxLength: 40 }),
      value: fc.uint8Array({ maxLength: 300 }),
      client: fc.string({ maxLength: 30 }),
      seq: fc.nat(),
      acked: fc.nat(),
      time: fc.maxSafeNat(),
    });
    fc.assert(fc.property(command, (c) => same(Buffer.from(encodeKvCommand(c)))), runs);
    // The hand encoder writes what protobufjs reads back as the same command, and the hand
    // decoder reads protobufjs's own encoding (which writes zero fields out) the same way.
    fc.assert(fc.property(command, (c) => outcome(() => decodeKvCommandPb(encodeKvCommand(c))) === outcome(() => c)), runs);
    fc.assert(fc.property(command, (c) => outcome(() => decodeKvCommand(encodeKvCommandPb(c))) === outcome(() => c)), runs);
    // Valid commands with a byte changed, cut short or extended, and arbitrary bytes.
    fc.assert(
      fc.property(command, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 }), (c, at, byte, how) => {
        return same(mutate(Buffer.from(encodeKvCommand(c)), at, byte, how));
      }),
      runs,
    );
    fc.assert(fc.property(bytes, (b) => same(b)), runs);
    // Entries read back from a log are plain Uint8Array views into a larger buffer, not Buffers.
    fc.assert(
      fc.property(command, fc.nat({ max: 64 }), (c, pad) => {
        const enc = encodeKvCommand(c);
        const backing = new Uint8Array(pad + enc.length + 7);
        backing.set(enc, pad);
        const view = new Uint8Array(backing.buffer, pad, enc.length);
        return outcome(() => decodeKvCommand(view)) === outcome(() => decodeKvCommandPb(Buffer.from(enc)));
      }),
      runs,
    );
  });

  it('the hand-written client Command and Response decoders read exactly what protobufjs reads, and fail where it fails', () => {
    const outcome = (f: () => object): string => {
      try {
        const x = f() as { value: Uint8Array };
        return JSON.stringify({ ...x, value: Buffer.from(x.value).toString('hex') });
      } catch {
        return 'throws';
      }
    };
    const sameCommand = (b: Buffer) => outcome(() => decodeCommand(b)) === outcome(() => checked(decodeCommandPb(b)));
    const checked = (c: ReturnType<typeof decodeCommandPb>) => {
      if (!(c.op in { 0: 1, 1: 1, 2: 1, 3: 1 })) throw new Error('unknown op');
      return c;
    };
    const sameResponse = (b: Buffer) => outcome(() => decodeResponse(b)) === outcome(() => decodeResponsePb(b));
    const str = fc.string({ maxLength: 30 });
    const command = fc.record({
      id: fc.maxSafeNat(),
      ip: str,
      op: fc.integer({ min: 0, max: 5 }),
      key: str,
      value: fc.uint8Array({ maxLength: 300 }),
      client: str,
      seq: fc.maxSafeNat(),
      acked: fc.nat(),
      stale: fc.boolean(),
      forwarded: fc.boolean(),
    });
    const response = fc.record({ id: fc.maxSafeNat(), status: fc.integer({ min: 0, max: 9 }), value: fc.uint8Array({ maxLength: 300 }), leader: str, error: str });
    const payload = (frame: Buffer) => frame.subarray(5);
    // Both encoders' bytes (ours leaves zero fields out, protobufjs's writes them), as sent.
    fc.assert(fc.property(command, (c) => sameCommand(payload(commandFrame(c))) && sameCommand(Buffer.from(CommandPb.encode(c).finish()))), runs);
    fc.assert(fc.property(response, (r) => sameResponse(payload(responseFrame(r))) && sameResponse(Buffer.from(ResponsePb.encode(r).finish()))), runs);
    fc.assert(
      fc.property(command, response, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 }), (c, r, at, byte, how) => {
        return sameCommand(mutate(payload(commandFrame(c)), at, byte, how)) && sameResponse(mutate(payload(responseFrame(r)), at, byte, how));
      }),
      runs,
    );
    fc.assert(fc.property(bytes, (b) => sameCommand(b) && sameResponse(b)), runs);
  });

  it('the hand-written peer message codec agrees with protobufjs both ways, and fails where it fails', () => {
    const outcome = (f: () => Message): string => {
      try {
        const m = f();
        const plain = { ...m, entries: m.entries.map((e) => ({ ...e, data: Buffer.from(e.data).toString('hex') })), snapshot: m.snapshot && { ...m.snapshot, data: Buffer.from(m.snapshot.data).toString('hex') } };
        // The same fields and values, whatever order the decoder created them in.
        return JSON.stringify(Object.fromEntries(Object.entries(plain).sort(([a], [b]) => (a < b ? -1 : 1))));
      } catch {
        return 'throws';
      }
    };
    const same = (b: Buffer) => outcome(() => decodeRaftMessage(b)) === outcome(() => decodeRaftMessagePb(b));
    // Numbers up to 2^53 (past the hand codec's 2^49: those go through protobufjs).
    const n = fc.oneof(fc.nat({ max: 300 }), fc.maxSafeNat());
    const entry = fc.record({ index: n, term: n, type: fc.integer({ min: 0, max: 2 }), data: fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)) });
    const membership = { voters: ['a', 'b'], learners: ['l'], addrs: { a: 'h:1', b: 'h:2', l: 'h:3' }, incarnations: { b: 'b#2' } };
    const message = fc.record({
      type: fc.integer({ min: 0, max: 20 }),
      from: fc.string({ maxLength: 12 }),
      to: fc.string({ maxLength: 12 }),
      term: n,
      logTerm: n,
      index: n,
      entries: fc.array(entry, { maxLength: 5 }),
      commit: n,
      reject: fc.boolean(),
      rejectHint: n,
      seq: n,
      context: fc.string({ maxLength: 20 }),
      transfer: fc.boolean(),
      snapshot: fc.option(fc.record({ meta: fc.constant({ index: 9, term: 2, membership }), offset: fc.nat(), totalSize: fc.nat(), data: fc.uint8Array({ maxLength: 50 }).map((u) => Buffer.from(u)), done: fc.boolean() }), { nil: undefined }),
      snapshotIndex: n,
      snapshotOffset: n,
      incarnation: fc.option(fc.string({ maxLength: 16 }), { nil: undefined }),
    }) as fc.Arbitrary<Message>;
    fc.assert(
      fc.property(message, (m) => {
        const mine = Buffer.from(encodeRaftMessage(m));
        const theirs = Buffer.from(encodeRaftMessagePb(m));
        // Each side reads what the other wrote, the same message either way.
        assert.equal(outcome(() => decodeRaftMessagePb(mine)), outcome(() => decodeRaftMessagePb(theirs)));
        assert.equal(outcome(() => decodeRaftMessage(theirs)), outcome(() => decodeRaftMessagePb(theirs)));
        assert.equal(outcome(() => decodeRaftMessage(mine)), outcome(() => decodeRaftMessagePb(theirs)));
      }),
      // Seed 375512 found it: protobufjs writes an empty incarnation for none, which the hand
      // decoder read as an incarnation ''.
      { ...runs, examples: [[{ type: 0 as Message['type'], from: '', to: '', term: 0, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, seq: 0, context: '', transfer: false, snapshotIndex: 0, snapshotOffset: 0 }]] },
    );
    fc.assert(
      fc.property(message, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 }), (m, at, byte, how) => {
        return same(mutate(Buffer.from(encodeRaftMessage(m)), at, byte, how));
      }),
      runs,
    );
    fc.assert(fc.property(bytes, (b) => same(b)), runs);
  });

  it('peer messages: decoding garbage fails cleanly, and whatever decodes is validated by the core before use', () => {
    const boot = bootstrapEntries([{ id: 'a', addr: 'x' }, { id: 'b', addr: 'y' }]);
    fc.assert(
      fc.property(bytes, (b) => {
        let m;
        try {
          m = decodeRaftMessage(b);
        } catch (e) {
          return e instanceof Error;
        }
        const node = new RaftNode({ id: 'b' }, { hardState: { term: 1, vote: '', commit: 2 }, entries: boot });
        const before = JSON.stringify(node.hardState());
        try {
          node.step({ ...m, to: 'b' });
        } catch (e) {
          assert.ok(e instanceof RaftError && e.code === 'invalid-message', String(e));
          assert.equal(JSON.stringify(node.hardState()), before, 'rejected input changed nothing');
        }
        return true;
      }),
      runs,
    );
  });

  it('a snapshot sent to a peer keeps which non-voters are loggers', () => {
    const membership = { voters: ['a', 'b'], learners: ['log1', 'r3'], addrs: { a: 'x:1', b: 'y:1', log1: 'z:1', r3: 'w:1' } };
    const chunk = (loggers?: string[]) => ({
      type: MessageType.Snap, from: 'a', to: 'b', term: 3, index: 0, logTerm: 0, commit: 0, reject: false, rejectHint: 0, seq: 1, context: '', entries: [], snapshotIndex: 0, snapshotOffset: 0,
      snapshot: { meta: { index: 9, term: 2, membership: { ...membership, ...(loggers ? { loggers } : {}) } }, offset: 0, totalSize: 3, data: Buffer.from('abc'), done: true },
    });
    assert.deepEqual(decodeRaftMessage(encodeRaftMessage(chunk(['log1']) as never)).snapshot?.meta.membership, { ...membership, loggers: ['log1'] });
    assert.deepEqual(decodeRaftMessage(encodeRaftMessage(chunk() as never)).snapshot?.meta.membership, membership);
  });

  it('client commands, log commands, WAL records, snapshots', () => {
    fc.assert(
      fc.property(bytes, fc.nat(64), (b, off) => {
        assert.ok(rejectsCleanly(() => decodeCommand(b)));
        assert.ok(rejectsCleanly(() => decodeKvCommand(b)));
        const r = decodeRecord(b, Math.min(off, b.length));
        assert.ok(['record', 'truncated', 'corrupt'].includes(r.kind));
        assert.ok(rejectsCleanly(() => decodeSnapshot(b)));
        return true;
      }),
      runs,
    );
  });

  it('peer frames come out whole and in order however the stream is cut into reads', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ kind: fc.integer({ min: 0, max: 255 }), payload: fc.uint8Array({ maxLength: 3000 }) }), { maxLength: 12 }),
        fc.array(fc.integer({ min: 0, max: 40_000 }), { maxLength: 20 }),
        (frames, cuts) => {
          const stream = Buffer.concat(frames.map((f) => peerFrame(f.kind, f.payload)));
          const at = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const d = new PeerFrameDecoder(1 << 16);
          const got: { kind: number; payload: Buffer }[] = [];
          let from = 0;
          for (const to of [...at, stream.length]) {
            // A copy per read, as a socket delivers: views must not reach across reads.
            got.push(...d.push(Buffer.from(stream.subarray(from, to))).map((f) => ({ kind: f.kind, payload: Buffer.from(f.payload) })));
            from = to;
          }
          assert.deepEqual(
            got.map((f) => [f.kind, f.payload.toString('hex')]),
            frames.map((f) => [f.kind, Buffer.from(f.payload).toString('hex')]),
          );
        },
      ),
      runs,
    );
  });

  it('stream framers split or refuse arbitrary chunks without losing their place', () => {
    fc.assert(
      fc.property(fc.array(bytes, { maxLength: 8 }), (chunks) => {
        const peer = new PeerFrameDecoder(1 << 16);
        const client = new ClientFrameDecoder(1 << 16, 4096);
        for (const ch of chunks) {
          for (const d of [peer, client]) {
            try {
              d.push(ch);
            } catch (e) {
              assert.ok(e instanceof FrameError);
            }
          }
        }
        return true;
      }),
      runs,
    );
  });
});

describe('the raft port of a live cluster under fuzzing', () => {
  it('a hello with empty addresses does not make a member forget how its peers are reached', async () => {
    const ids = ['h1', 'h2', 'h3'];
    const c = await TestCluster.startStatic('hello', ids);
    try {
      const leader = await c.waitLeader(ids);
      const follower = ids.find((id) => id !== leader)!;
      // A follower learns how the leader serves clients from the leader's own hello.
      const known = async () => ((await c.status(follower))?.members.find((m) => m.id === leader) as { clientAddr?: string } | undefined)?.clientAddr;
      for (let i = 0; i < 200 && !(await known()); i++) await new Promise((r) => setTimeout(r, 50));
      const before = await known();
      assert.ok(before, `${follower} knows where ${leader} serves clients`);
      await new Promise<void>((resolve) => {
        const s = net.connect(c.nodes.get(follower)!.raft, '127.0.0.1', () => {
          s.write(peerFrame(1, encodeHello({ from: leader, token: '', clientAddr: '', httpAddr: '', raftAddr: '', clusterId: '' })));
          setTimeout(() => {
            s.destroy();
            resolve();
          }, 100);
        });
        s.on('error', () => resolve());
      });
      assert.equal(await known(), before);
    } finally {
      await c.destroy();
    }
  });

  it('garbage after a valid hello drops that connection, never the node or its data', async () => {
    const c = await TestCluster.create('rawfuzz');
    const ids = ['f1', 'f2', 'f3'];
    try {
      for (const id of ids) await c.define(id);
      for (const id of ids) c.start(id, ['--peers', c.peersFlag(ids)]);
      await c.waitLeader(ids);
      const client = new RaftKvClient({ targets: ids.map((id) => c.clientAddr(id)) });
      await client.set('anchor', 'steady');
      const port = c.nodes.get('f2')!.raft;
      await fc.assert(
        fc.asyncProperty(bytes, fc.boolean(), async (junk, framed) => {
          await new Promise<void>((resolve) => {
            const s = net.connect(port, '127.0.0.1', () => {
              s.write(peerFrame(1, encodeHello({ from: 'f1', token: '', clientAddr: '', httpAddr: '', raftAddr: '', clusterId: '' })));
              s.write(framed ? peerFrame(2, junk) : junk);
              setTimeout(() => {
                s.destroy();
                resolve();
              }, 30);
            });
            s.on('error', () => resolve());
          });
        }),
        { seed, numRuns: 60 },
      );
      for (const id of ids) assert.equal(c.procs.get(id)!.exitCode, null, `${id} survived`);
      assert.equal(await client.getString('anchor'), 'steady');
      await client.set('after', 'fuzz');
      client.close();
      assert.ok(MessageType.App > 0);
    } finally {
      await c.destroy();
    }
  });
});
