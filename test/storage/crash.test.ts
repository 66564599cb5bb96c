import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { Prng } from '../../util/prng.js';
import { tempDir } from './helpers.js';

const child = fileURLToPath(new URL('./crash-cluster.js', import.meta.url));

function runChild(dir: string, mode: 'run' | 'verify', killAfterReadyMs?: number): Promise<{ acked: number; out: string; err: string; code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, '--dir', dir, '--mode', mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let acked = 0;
    let buf = '';
    const guard = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('ack ')) acked = Math.max(acked, Number(line.slice(4)));
        if (line.startsWith('ready') && killAfterReadyMs !== undefined) setTimeout(() => p.kill('SIGKILL'), killAfterReadyMs);
      }
    });
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(guard);
      resolve({ acked, out, err, code, signal });
    });
  });
}

describe('kill -9 while a 3-node cluster writes to real disks', () => {
  it('every acknowledged command survives and all replicas agree, across many crashes', async (t) => {
    const seed = Number(process.env.RAFTKV_SEED ?? Date.now() % 100_000);
    const iterations = Number(process.env.RAFTKV_CRASH_ITERATIONS ?? 12);
    const rng = new Prng(seed);
    const { dir, cleanup } = await tempDir('crash');
    let maxAcked = 0;
    try {
      for (let i = 0; i < iterations; i++) {
        const delay = rng.int(20, 400);
        const r = await runChild(dir, 'run', delay);
        assert.equal(r.signal, 'SIGKILL', `seed ${seed} iteration ${i}: child ended by itself (code ${r.code}): ${r.err}`);
        maxAcked = Math.max(maxAcked, r.acked);
        const v = await runChild(dir, 'verify');
        assert.equal(v.code, 0, `seed ${seed} iteration ${i}: verify failed: ${v.err}`);
        const states = JSON.parse(v.out.trim().split('\n').pop()!) as { id: string; count: number; hash: number; applied: number }[];
        for (const s of states) {
          assert.ok(s.count >= maxAcked, `seed ${seed} iteration ${i}: ${s.id} has ${s.count} commands, ${maxAcked} were acknowledged`);
          assert.equal(s.hash, states[0].hash, `seed ${seed} iteration ${i}: ${s.id} diverges from ${states[0].id}`);
          assert.equal(s.count, states[0].count);
        }
      }
      assert.ok(maxAcked > 0, `seed ${seed}: the cluster acknowledged writes`);
      t.diagnostic(`seed ${seed}: ${iterations} kill -9 cycles, ${maxAcked} commands acknowledged, all present on every replica`);
    } catch (e) {
      console.error(`crash test failed; replay with RAFTKV_SEED=${seed}`);
      throw e;
    } finally {
      await cleanup();
    }
  });
});
