/**
 * Ports handed to processes about to start (util/ports.ts): never one another live process
 * claimed, never the same one twice, and a claim left by a dead process is taken over.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const PORTS = fileURLToPath(new URL('../../util/ports.js', import.meta.url));

/** freePorts(n) in a fresh process with its claims under `dir`. */
function portsFromChild(dir: string, n: number): number[] {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `const { freePorts } = await import(${JSON.stringify(PORTS)}); console.log(JSON.stringify(await freePorts(${n})));`], { env: { ...process.env, RAFTKV_PORT_CLAIMS: dir }, encoding: 'utf8' });
  return JSON.parse(out) as number[];
}

describe('free ports for processes about to start', () => {
  it('skips every port another live process claimed, takes over claims of dead ones, and releases its own at exit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'raftkv-ports-test-'));
    try {
      // This (live) process claims every port of the range but 40; a dead one claimed 5 of those.
      const open = new Set<number>();
      while (open.size < 40) open.add(20_000 + Math.floor(Math.random() * 12_000));
      const dead = [...open].slice(0, 5);
      for (let p = 20_000; p < 32_000; p++) if (!open.has(p)) writeFileSync(join(dir, String(p)), String(process.pid));
      for (const p of dead) writeFileSync(join(dir, String(p)), '999999999');
      const got = portsFromChild(dir, 12);
      assert.equal(new Set(got).size, 12, 'no port twice');
      for (const p of got) assert.ok(open.has(p), `${p} was not claimed by a live process`);
      // The child exited: its claims are gone, the live process's remain.
      const left = readdirSync(dir).map(Number);
      for (const p of got) assert.ok(!left.includes(p), `${p} released at exit`);
      assert.equal(Number(readFileSync(join(dir, String([...Array(12_000).keys()].map((i) => 20_000 + i).find((p) => !open.has(p))!)), 'utf8')), process.pid);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
