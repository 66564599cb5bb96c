/**
 * Every benchmark script and test runner answers a flag it does not know with one line naming
 * it (exit 2) and --help with its usage (exit 0), before it starts anything: not a stack trace,
 * and not a run (npm run gen with a stray flag wrote files).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const script = (path: string) => fileURLToPath(new URL(`../../${path}.js`, import.meta.url));

describe('flags of the benchmark and test scripts', () => {
  for (const path of ['bench/core', 'bench/wal', 'bench/logger', 'bench/vs-etcd', 'bench/all', 'test/faults/cli', 'scripts/gen']) {
    it(`${path}: a bad flag is one line naming it, --help the usage`, () => {
      const bad = spawnSync(process.execPath, [script(path), '--no-such-flag'], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(bad.status, 2, `${path} --no-such-flag: exit ${bad.status}\n${bad.stdout}\n${bad.stderr}`);
      const lines = bad.stderr.trim().split('\n');
      assert.equal(lines.length, 1, bad.stderr);
      assert.match(lines[0], /unknown flag --no-such-flag \(see .* --help\)$/);
      assert.equal(bad.stdout, '', 'nothing ran');
      const help = spawnSync(process.execPath, [script(path), '--help'], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(help.status, 0, `${path} --help: exit ${help.status}\n${help.stderr}`);
      assert.match(help.stdout, /^usage: /);
    });
  }
});
