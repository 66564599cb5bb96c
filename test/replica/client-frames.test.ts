import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { commandFrame, responseFrame } from '../../replica/client-frames.js';
import { ClientFrameDecoder, clientFrame } from '../../replica/framing.js';
import { decodeCommand, decodeResponse, encodeCommand, encodeResponse } from '../../replica/proto.js';

const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
const runs = { seed, numRuns: 500 };
const uint = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const text = fc.oneof(fc.constant(''), fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }));
const bytes = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 127, maxLength: 129 }));

/** The one frame in `buf` through the server's own decoder, as its payload. */
function payloadOf(buf: Buffer): Buffer {
  const frames = new ClientFrameDecoder(1 << 20, 4096).push(buf);
  assert.equal(frames.length, 1);
  assert.equal(frames[0].kind, 'binary');
  return (frames[0] as { payload: Buffer }).payload;
}

describe('client-port frames encoded by hand', () => {
  it('a command frame decodes to the command, as protobufjs encoding and framing it does', () => {
    fc.assert(
      fc.property(
        fc.record({ id: uint, ip: text, op: fc.integer({ min: 0, max: 3 }), key: text, value: bytes, client: text, seq: uint, acked: uint, stale: fc.boolean(), forwarded: fc.boolean() }),
        (c) => {
          const ours = decodeCommand(payloadOf(commandFrame(c)));
          const theirs = decodeCommand(payloadOf(clientFrame(encodeCommand(c))));
          assert.deepEqual({ ...ours, value: Buffer.from(ours.value) }, { ...theirs, value: Buffer.from(theirs.value) });
          assert.deepEqual({ ...ours, value: Buffer.from(ours.value) }, { ...c, value: Buffer.from(c.value) });
        },
      ),
      runs,
    );
  });

  it("a response frame decodes to the response, and the id given replaces a command's own", () => {
    fc.assert(
      fc.property(fc.record({ id: uint, status: fc.integer({ min: 0, max: 6 }), value: bytes, leader: text, error: text }), (r) => {
        const ours = decodeResponse(payloadOf(responseFrame(r)));
        const theirs = decodeResponse(payloadOf(clientFrame(encodeResponse(r))));
        assert.deepEqual({ ...ours, value: Buffer.from(ours.value) }, { ...theirs, value: Buffer.from(theirs.value) });
        assert.deepEqual({ ...ours, value: Buffer.from(ours.value) }, { ...r, value: Buffer.from(r.value) });
      }),
      runs,
    );
    assert.equal(decodeCommand(payloadOf(commandFrame({ id: 3, op: 1, key: 'k' }, 77))).id, 77);
  });

  it('refuses a number protobuf cannot carry rather than sending something else', () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 60]) assert.throws(() => commandFrame({ op: 0, key: 'k', seq: bad }), RangeError);
    assert.throws(() => responseFrame({ id: 1, status: -2 as never }), RangeError);
  });
});
