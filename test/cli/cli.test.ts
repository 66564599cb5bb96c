/**
 * Every subcommand's front door, as a person meets it: `--help` prints usage with an example and
 * exits 0; a wrong flag prints one line naming it and pointing at --help, exit 2; no stack trace.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CLI } from '../helpers/cluster.js';

function raftkv(args: string[], input = ''): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The subcommands the top-level help lists: the test follows the help, not a fixed list. */
function listedCommands(): string[] {
  const top = raftkv(['--help']);
  assert.equal(top.code, 0);
  const names = [...top.stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]);
  assert.ok(names.length >= 6, `commands listed: ${names}`);
  return names;
}

describe('the raftkv command line', () => {
  for (const cmd of listedCommands()) {
    it(`${cmd} --help prints its usage with an example and exits 0`, () => {
      for (const flag of ['--help', '-h']) {
        const r = raftkv([cmd, flag]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^usage: raftkv ${cmd}`), r.stdout.slice(0, 200));
        assert.match(r.stdout, /Example/);
        assert.equal(r.stderr, '');
      }
    });

    it(`${cmd} with an unknown flag names it in one line and exits 2`, () => {
      const r = raftkv([cmd, '--bogus'], '');
      assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], new RegExp(`^raftkv ${cmd}: unknown flag --bogus \\(see raftkv ${cmd} --help\\)$`));
      assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at |TypeError|ERR_PARSE_ARGS/);
    });
  }

  it('a flag without its value, or a wrong value, is one clear line too', () => {
    const missing = raftkv(['loadgen', '--clients']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^raftkv loadgen: flag --clients needs a value \(see raftkv loadgen --help\)\n$/);
    const wrong = raftkv(['replica', '--fsync', 'sometimes']);
    assert.equal(wrong.code, 2);
    assert.equal(wrong.stderr.trim().split('\n').length, 1, wrong.stderr);
    assert.match(wrong.stderr, /--fsync/);
    for (const bad of [['--wal-segment', '0'], ['--wal-segment', 'big'], ['--wal-preallocate', '-1'], ['--replication', 'some']]) {
      const r = raftkv(['replica', ...bad]);
      assert.equal(r.code, 2, bad.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(bad[0]));
    }
    const seed = raftkv(['demo', 'x']);
    assert.equal(seed.code, 2);
    assert.match(seed.stderr, /SEED must be a non-negative integer/);
  });

  it('an unknown command is refused with the list of commands', () => {
    const r = raftkv(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });

  it('--version prints the package version', () => {
    const r = raftkv(['--version']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^raftkv \d+\.\d+\.\d+ \(node v\d+/);
  });
});

describe('the build', () => {
  it('compiles every source folder and the image copies each of them (a folder left out builds here and fails in the image)', () => {
    const root = join(CLI, '..', '..');
    const tsconfig = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8')) as { include: string[] };
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    const folders = readdirSync(root, { withFileTypes: true })
      .filter((d) => d.isDirectory() && !['node_modules', 'dist', 'data', 'results', 'docs', 'charts', 'crds', 'deploys'].includes(d.name) && !d.name.startsWith('.'))
      .filter((d) => readdirSync(join(root, d.name), { recursive: true }).some((f) => String(f).endsWith('.ts')))
      .map((d) => d.name);
    assert.ok(folders.includes('raft') && folders.includes('experiment'), folders.join());
    for (const f of folders) {
      assert.ok(tsconfig.include.includes(f), `tsconfig.json includes ${f}/`);
      assert.match(dockerfile, new RegExp(`^COPY ${f} ${f}$`, 'm'), `the Dockerfile copies ${f}/`);
    }
  });
});
