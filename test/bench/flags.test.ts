/**
 * Every benchmark script answers a flag it does not know with one line and its usage (exit 2),
 * and --help with the usage (exit 0), before it starts anything: not a stack trace.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const script = (name: string) => fileURLToPath(new URL(`../../bench/${name}.js`, import.meta.url));

describe('benchmark flags', () => {
  for (const name of ['core', 'wal', 'logger', 'vs-etcd', 'all']) {
    it(`${name}: a bad flag gets its usage, --help the usage`, () => {
      const bad = spawnSync(process.execPath, [script(name), '--no-such-flag'], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(bad.status, 2, `${name} --no-such-flag: exit ${bad.status}\n${bad.stderr}`);
      assert.match(bad.stderr, /no-such-flag/);
      assert.match(bad.stderr, /usage/i);
      assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');
      const help = spawnSync(process.execPath, [script(name), '--help'], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(help.status, 0, `${name} --help: exit ${help.status}\n${help.stderr}`);
      assert.match(help.stdout, /usage/i);
    });
  }
});
