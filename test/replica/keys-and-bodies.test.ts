/**
 * One key limit on every protocol, every legal key reachable over HTTP, and the value bodies a
 * person sends with curl. Against a real replica process.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RaftKvClient, RaftKvError } from '../../replica/client.js';
import { MAX_KEY_BYTES } from '../../replica/engines/engine.js';
import { CLI, TestCluster } from '../helpers/cluster.js';
import { freePorts } from '../helpers/ports.js';

/** Send text-protocol lines, return the answer lines. */
async function textLines(port: number, lines: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      const got = buf.split('\n');
      if (got.length > lines.length) {
        s.destroy();
        resolve(got.slice(0, lines.length));
      }
    });
    s.on('error', reject);
    s.write(lines.map((l) => `${l}\n`).join(''));
  });
}

describe('keys and value bodies', () => {
  let c: TestCluster;
  let client: RaftKvClient;
  const url = (path: string) => c.httpUrl('k1', path);
  before(async () => {
    c = await TestCluster.startStatic('keys', ['k1']);
    client = new RaftKvClient({ targets: [c.clientAddr('k1')] });
  });
  after(async () => {
    client?.close();
    await c?.destroy();
  });

  it(`a key of ${MAX_KEY_BYTES} bytes written by the text protocol is read over HTTP and protobuf`, async () => {
    const key = 'k'.repeat(MAX_KEY_BYTES - 2) + 'é'; // multi-byte at the end: bytes, not characters
    assert.equal(Buffer.byteLength(key), MAX_KEY_BYTES);
    assert.deepEqual(await textLines(c.nodes.get('k1')!.client, [`set-${key}-long`]), ['OK']);
    const r = await fetch(url(`/v1/kv/${encodeURIComponent(key)}`));
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { key, value: 'long' });
    assert.equal(await client.getString(key), 'long');
  });

  it('keys with slashes and any UTF-8 go over HTTP and come back on the text protocol', async () => {
    const key = 'a/b c/ü?#%';
    const put = await fetch(url(`/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`), { method: 'PUT', body: 'v1' });
    assert.equal(put.status, 200, await put.text());
    assert.deepEqual(await textLines(c.nodes.get('k1')!.client, [`get-${key}`]), ['VALUE v1']);
  });

  it(`a key over ${MAX_KEY_BYTES} bytes is refused on every protocol with the same error, and nothing is stored or echoed`, async () => {
    const key = 'x'.repeat(MAX_KEY_BYTES + 1);
    const expected = `key of ${MAX_KEY_BYTES + 1} bytes is over the ${MAX_KEY_BYTES}-byte limit`;
    assert.deepEqual(await textLines(c.nodes.get('k1')!.client, [`set-${key}-v`]), [`ERR ${expected}`]);
    await assert.rejects(client.set(key, 'v'), (e: unknown) => e instanceof RaftKvError && e.message === expected);
    for (const [method, body] of [['PUT', 'v'], ['GET', undefined], ['DELETE', undefined]] as const) {
      const r = await fetch(url(`/v1/kv/${key}`), { method, body });
      assert.equal(r.status, 400, method);
      const text = await r.text();
      assert.deepEqual(JSON.parse(text), { error: expected });
    }
    // Far over the limit: still a short, clear answer, never the key itself.
    const huge = 'y'.repeat(6000);
    const r = await fetch(url(`/v1/kv/${huge}`));
    assert.equal(r.status, 400);
    const text = await r.text();
    assert.ok(text.length < 200 && !text.includes('yyyyyyyyyyyyyyyyyyyyyyyy'), text);
    assert.equal(await client.getString(key.slice(0, MAX_KEY_BYTES)), undefined);
  });

  it('a missing long key is reported without echoing it whole', async () => {
    const key = 'm'.repeat(900);
    const r = await fetch(url(`/v1/kv/${key}`));
    assert.equal(r.status, 404);
    const { error } = (await r.json()) as { error: string };
    assert.ok(error.length < 150, error);
  });

  it('curl-style bodies: -d (a form), value=... (etcd v2 style), text, bytes and JSON all set the value', async () => {
    const cases: [string, string | undefined, string | Blob, string][] = [
      ['form-raw', 'application/x-www-form-urlencoded', 'hello world', 'hello world'],
      ['form-field', 'application/x-www-form-urlencoded', 'value=caf%C3%A9', 'café'],
      ['text', 'text/plain', 'plain', 'plain'],
      ['bytes', 'application/octet-stream', new Blob([Buffer.from('bin')]), 'bin'],
      ['json', 'application/json', JSON.stringify({ value: 'j' }), 'j'],
      ['other', 'application/x-custom', 'custom', 'custom'],
    ];
    for (const [key, type, body, want] of cases) {
      const r = await fetch(url(`/v1/kv/${key}`), { method: 'PUT', headers: type ? { 'content-type': type } : {}, body });
      assert.equal(r.status, 200, `${key}: ${await r.text()}`);
      assert.equal(await client.getString(key), want, key);
    }
    const bad = await fetch(url('/v1/kv/badjson'), { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"v": 1}' });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /\{"value": string\}.*application\/octet-stream/);
    assert.equal(await client.getString('badjson'), undefined);
  });
});

describe('raftkv client', () => {
  function runClient(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [CLI, 'client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      p.on('exit', (code) => resolve({ code, stdout, stderr }));
      p.stdin.end(input);
    });
  }

  it('fails at once with a non-zero exit when no target accepts connections', { timeout: 30_000 }, async () => {
    const [dead1, dead2] = await freePorts(2);
    // A long --timeout: only failing fast on the refusal lets this finish within the test's limit.
    const r = await runClient(['--targets', `127.0.0.1:${dead1},127.0.0.1:${dead2}`, '--timeout', '600000'], 'set-a-1\nget-a\n');
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^ERR no replica accepts connections \(refused: .*\)\nERR no replica accepts connections/);
    assert.match(r.stderr, /none of 2 command\(s\) could be served/);
  });

  it('moves past a dead target to a live one and exits 0', async () => {
    const c = await TestCluster.startStatic('client', ['c1']);
    try {
      const [dead] = await freePorts(1);
      const r = await runClient(['--targets', `127.0.0.1:${dead},${c.clientAddr('c1')}`], 'set-a-1\nget-a\nget-nope\nbogus\n');
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.stdout, `OK\nVALUE 1\nNOT_FOUND\nERR unknown command 'bogus': expected get-KEY, set-KEY-VALUE or delete-KEY\n`);
    } finally {
      await c.destroy();
    }
  });
});
