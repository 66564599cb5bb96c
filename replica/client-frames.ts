/**
 * Client-port frames (`0x00 | u32 length | protobuf`) for a Command or a Response, encoded by
 * hand straight into the frame: one allocation and one copy of the value per request or answer,
 * where protobufjs's encoder and then the framing made two of each. These are the two messages
 * every client request and answer carries (the generator's, a follower passing writes on, the
 * server's answers). The encoding is protobuf's canonical one (zero, empty and false fields left
 * out), which every protobuf decoder reads; the test compares with protobufjs both ways.
 */
import type { Command, Response } from './proto.js';
import { bytesSize, numSize, putBytes, putNum, putString } from './protobuf-wire.js';

function frame(payload: number): Buffer {
  const buf = Buffer.allocUnsafe(5 + payload);
  buf[0] = 0;
  buf.writeUInt32BE(payload, 1);
  return buf;
}

const EMPTY = new Uint8Array(0);

/** A Command as a client-port frame; `id` (when given) replaces the command's own. */
export function commandFrame(c: Partial<Command>, id = c.id ?? 0): Buffer {
  const ip = c.ip ?? '';
  const key = c.key ?? '';
  const client = c.client ?? '';
  const value = c.value ?? EMPTY;
  const ipLen = Buffer.byteLength(ip);
  const keyLen = Buffer.byteLength(key);
  const clientLen = Buffer.byteLength(client);
  const size =
    numSize(id) +
    bytesSize(ipLen) +
    numSize(c.op ?? 0) +
    bytesSize(keyLen) +
    bytesSize(value.length) +
    bytesSize(clientLen) +
    numSize(c.seq ?? 0) +
    numSize(c.acked ?? 0) +
    (c.stale ? 2 : 0) +
    (c.forwarded ? 2 : 0);
  const buf = frame(size);
  let off = putNum(buf, 5, 1, id);
  off = putString(buf, off, 2, ip, ipLen);
  off = putNum(buf, off, 3, c.op ?? 0);
  off = putString(buf, off, 4, key, keyLen);
  off = putBytes(buf, off, 5, value);
  off = putString(buf, off, 6, client, clientLen);
  off = putNum(buf, off, 7, c.seq ?? 0);
  off = putNum(buf, off, 8, c.acked ?? 0);
  off = putNum(buf, off, 9, c.stale ? 1 : 0);
  putNum(buf, off, 10, c.forwarded ? 1 : 0);
  return buf;
}

/** A Response as a client-port frame. */
export function responseFrame(r: Partial<Response>): Buffer {
  const value = r.value ?? EMPTY;
  const leader = r.leader ?? '';
  const error = r.error ?? '';
  const leaderLen = Buffer.byteLength(leader);
  const errorLen = Buffer.byteLength(error);
  const buf = frame(numSize(r.id ?? 0) + numSize(r.status ?? 0) + bytesSize(value.length) + bytesSize(leaderLen) + bytesSize(errorLen));
  let off = putNum(buf, 5, 1, r.id ?? 0);
  off = putNum(buf, off, 2, r.status ?? 0);
  off = putBytes(buf, off, 3, value);
  off = putString(buf, off, 4, leader, leaderLen);
  putString(buf, off, 5, error, errorLen);
  return buf;
}
