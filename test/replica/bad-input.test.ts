import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { RaftKvClient } from '../../replica/index.js';
import { clientFrame, peerFrame } from '../../replica/framing.js';
import { encodeCommand } from '../../replica/proto.js';
import { TestCluster } from '../helpers/cluster.js';

/** Write bytes, collect whatever comes back until the server answers or closes. */
function raw(port: number, bytes: Buffer, waitMs = 400): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    const chunks: Buffer[] = [];
    let closed = false;
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => (closed = true));
    s.on('close', () => {
      closed = true;
      resolve({ data: Buffer.concat(chunks), closed });
    });
    setTimeout(() => {
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    }, waitMs);
  });
}

describe('bad input on every port gets a clear error or a closed connection, never a crash or a change', () => {
  let c: TestCluster;
  const ids = ['b1', 'b2', 'b3'];
  let client: RaftKvClient;
  before(async () => {
    c = await TestCluster.startStatic('badinput', ids, ['--max-value', String(1 << 20)]);
    client = new RaftKvClient({ targets: ids.map((id) => c.clientAddr(id)) });
    await client.set('sentinel', 'unchanged');
  });
  after(async () => {
    client.close();
    await c.destroy();
  });

  const assertIntact = async () => {
    for (const id of ids) assert.ok(c.procs.get(id)!.exitCode === null, `${id} is still running\n${c.dump()}`);
    assert.equal(await client.getString('sentinel'), 'unchanged');
    await client.set('probe', String(Date.now()));
  };

  it('client port: unknown text commands, garbage bytes, a truncated frame, a malformed protobuf', async () => {
    const port = c.nodes.get('b1')!.client;
    const r1 = await raw(port, Buffer.from('frobnicate-x\nset-sentinel\n'));
    assert.match(r1.data.toString(), /^ERR unknown command 'frobnicate'.*\nERR set needs a key and a value/);
    const r2 = await raw(port, Buffer.concat([Buffer.from([0]), Buffer.from([0, 0, 0, 20]), Buffer.from('not protobuf at all!')]));
    assert.ok(r2.data.length > 0, 'a malformed protobuf command gets an error answer');
    const truncated = clientFrame(encodeCommand({ id: 1, op: 0, key: 'sentinel', value: Buffer.from('changed') })).subarray(0, 12);
    const r3 = await raw(port, truncated);
    assert.equal(r3.data.length, 0, 'a truncated frame is not executed');
    const r4 = await raw(port, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)));
    assert.ok(r4.data.length > 0 || r4.closed);
    await assertIntact();
  });

  it('client port: an unknown op and a 100 MB value are refused', async () => {
    const port = c.nodes.get('b2')!.client;
    const badOp = await raw(port, clientFrame(encodeCommand({ id: 9, op: 7 as never, key: 'sentinel' })));
    assert.ok(badOp.data.length > 0);
    // A 100 MB frame header: refused before the body is read, and the connection closed.
    const header = Buffer.alloc(5);
    header.writeUInt32BE(100 << 20, 1);
    const big = await raw(port, Buffer.concat([header, Buffer.alloc(1 << 16, 1)]), 2000);
    assert.match(big.data.toString(), /over the \d+-byte limit/);
    assert.ok(big.closed);
    const longLine = await raw(port, Buffer.from(`set-sentinel-${'x'.repeat((1 << 20) + 10_000)}`), 2000);
    assert.match(longLine.data.toString(), /ERR request line longer/);
    await assertIntact();
  });

  it('HTTP: wrong JSON types, bad JSON, an oversized body, a bad join, an unknown route', async () => {
    assert.equal((await c.http('b3', 'PUT', '/v1/kv/sentinel', { value: 42 })).status, 400);
    assert.equal((await c.http('b3', 'PUT', '/v1/kv/sentinel', '{"value": ', 'application/json')).status, 400);
    const huge = await c.http('b3', 'PUT', '/v1/kv/sentinel', 'x'.repeat(3 << 20), 'text/plain');
    assert.equal(huge.status, 413);
    assert.equal((await c.http('b3', 'POST', '/v1/members', { id: 7 })).status, 400);
    assert.equal((await c.http('b3', 'POST', '/join', { id: 'b1', addr: '127.0.0.1:9' })).status, 409);
    assert.equal((await c.http('b3', 'POST', '/v1/leader/transfer', { to: 'nobody' })).status, 409);
    assert.equal((await c.http('b3', 'DELETE', '/v1/members/ghost')).status, 409);
    assert.equal((await c.http('b3', 'GET', '/v2/nothing')).status, 404);
    await assertIntact();
  });

  it('raft port: garbage, a bad hello, an impostor and a huge frame are dropped with the connection', async () => {
    const port = c.nodes.get('b1')!.raft;
    for (const bytes of [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      peerFrame(2, Buffer.from('raft message before hello')),
      peerFrame(1, Buffer.from([0xff, 0xff, 0xff])),
      Buffer.from([0x7f, 0xff, 0xff, 0xff, 1]),
    ]) {
      const r = await raw(port, bytes, 1000);
      assert.ok(r.closed, `connection closed after ${JSON.stringify(bytes.subarray(0, 16).toString())}`);
    }
    await assertIntact();
  });

  it('property: random bytes and random lines on the client port never change data or stop the cluster', async () => {
    const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
    const port = c.nodes.get('b2')!.client;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.uint8Array({ minLength: 1, maxLength: 512 }).map((b) => Buffer.from(b)),
            fc.string({ maxLength: 200 }).map((s) => Buffer.from(`${s.replace(/sentinel/g, 's')}\n`)),
            fc.record({ op: fc.integer({ min: -5, max: 10 }), key: fc.string({ maxLength: 40 }) }).map(({ op, key }) => clientFrame(encodeCommand({ id: 1, op: op as never, key: key.replace(/sentinel/g, 's') }))),
          ),
          async (bytes) => {
            await raw(port, bytes, 60);
          },
        ),
        { seed, numRuns: 60 },
      );
    } catch (e) {
      console.error(`fuzzing failed; replay with RAFTKV_SEED=${seed}`);
      throw e;
    }
    await assertIntact();
  });

  it('property: random JSON bodies and paths on the HTTP API never change data or stop the cluster', async () => {
    const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 1_000_000);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('PUT /v1/kv/x', 'POST /v1/members', 'POST /join', 'POST /v1/leader/transfer', 'DELETE /v1/members/zz', 'PUT /v1/kv/'),
        fc.jsonValue({ maxDepth: 3 }),
        async (route, body) => {
          const [method, path] = route.split(' ');
          const res = await c.http('b1', method, path, body);
          assert.ok(res.status >= 200 && res.status < 600);
          if (route !== 'PUT /v1/kv/x') assert.ok(res.status >= 400, `${route} with ${JSON.stringify(body)} was accepted`);
        },
      ),
      { seed, numRuns: 50 },
    );
    await assertIntact();
  });
});
