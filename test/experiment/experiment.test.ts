/**
 * `raftkv experiment`: every experiment's short version, run for real (processes, sockets,
 * fsync) at a CI size: exits 0 with every correctness check passed, writes a table with the
 * expected columns (CSV and JSON) and a figure that parses as SVG with the expected series.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { DOMParser } from '@xmldom/xmldom';
import { CLI } from '../helpers/cluster.js';
import { CRD_FILE, GROUP_CRD_FILE } from '../../scripts/gen.js';
import { TestBed } from '../k8s/testbed.js';

const run = promisify(execFile);

const EXPECTED: Record<string, { columns: string[]; series: string[]; rows: number }> = {
  'saturation-kv': { columns: ['logging', 'clients', 'throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'errors'], series: ['notlog', 'applog', 'logger'], rows: 6 },
  'saturation-disk': { columns: ['logging', 'clients', 'throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'errors'], series: ['notlog', 'applog', 'logger'], rows: 6 },
  'shared-kv': { columns: ['applications', 'app', 'clients', 'throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'errors'], series: ['all applications', 'per application'], rows: 3 },
  'shared-disk': { columns: ['applications', 'app', 'clients', 'throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'errors'], series: ['all applications', 'per application'], rows: 3 },
  'logger-scale': { columns: ['clusters', 'cluster', 'committed_per_s', 'logged_per_s', 'ratio'], series: ['smallest logged/committed ratio'], rows: 3 },
  'consensus-only': { columns: ['clients', 'throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'errors'], series: ['raftkv'], rows: 2 },
  'recovery-applog': { columns: ['period', 'load_seconds', 'commands', 'transfer_s', 'install_s', 'total_s', 'state_mb', 'keys'], series: ['transfer + install', 'transfer'], rows: 2 },
  'recovery-logger': { columns: ['period', 'load_seconds', 'commands', 'transfer_s', 'install_s', 'total_s', 'state_mb', 'keys'], series: ['transfer + install', 'transfer'], rows: 2 },
};

describe('raftkv experiment', () => {
  let out: string;
  before(async () => {
    out = await mkdtemp(join(tmpdir(), 'raftkv-experiment-test-'));
  });
  after(async () => rm(out, { recursive: true, force: true }));

  it('--help lists every experiment with one line each; a wrong name or flag is refused', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'experiment', '--help']);
    for (const name of Object.keys(EXPECTED)) assert.match(stdout, new RegExp(`\\n  ${name} +\\S`), name);
    await assert.rejects(run(process.execPath, [CLI, 'experiment', 'nope']), (e: { code: number; stderr: string }) => e.code === 2 && /no experiment nope; one of saturation-kv/.test(e.stderr));
    await assert.rejects(run(process.execPath, [CLI, 'experiment', 'consensus-only', '--scale', '-1']), (e: { code: number; stderr: string }) => e.code === 2 && /--scale/.test(e.stderr));
  });

  for (const [name, want] of Object.entries(EXPECTED)) {
    it(`${name}: runs, passes its checks, writes the table and the figure`, async () => {
      const r = await run(process.execPath, [CLI, 'experiment', name, '--scale', '0.001', '--duration', '1', '--out', out], { maxBuffer: 16 << 20 }).catch((e: { stdout: string; stderr: string; code: number }) => assert.fail(`exit ${e.code}\n${e.stdout}\n${e.stderr}`));
      assert.match(r.stdout, /^ok {3}/m);
      assert.doesNotMatch(r.stdout, /^FAIL/m);
      const csv = (await readFile(join(out, `${name}.csv`), 'utf8')).trim().split('\n');
      assert.equal(csv[0], want.columns.join(','));
      assert.equal(csv.length - 1, want.rows, csv.join('\n'));
      const json = JSON.parse(await readFile(join(out, `${name}.json`), 'utf8')) as { rows: Record<string, unknown>[]; checks: { ok: boolean }[]; machine: { cores: number } };
      assert.equal(json.rows.length, want.rows);
      assert.ok(json.checks.length > 0 && json.checks.every((c) => c.ok));
      assert.ok(json.machine.cores > 0);
      const errors: string[] = [];
      const doc = new DOMParser({ onError: (level, msg) => void errors.push(`${level}: ${msg}`) }).parseFromString(await readFile(join(out, `${name}.svg`), 'utf8'), 'image/svg+xml');
      assert.deepEqual(errors, []);
      assert.equal(doc.documentElement?.nodeName, 'svg');
      const groups = Array.from(doc.getElementsByTagName('g')).filter((g) => g.getAttribute('class') === 'series');
      assert.deepEqual(groups.map((g) => g.getAttribute('data-name')), want.series);
      for (const g of groups) assert.ok(g.getElementsByTagName('circle').length > 0, `${g.getAttribute('data-name')} has points`);
    });
  }
});

describe('raftkv experiment --k8s, on the Kubernetes emulator with the operator', () => {
  let bed: TestBed;
  let out: string;
  let operator: ReturnType<typeof import('node:child_process').spawn> | undefined;
  before(async () => {
    out = await mkdtemp(join(tmpdir(), 'raftkv-experiment-k8s-'));
    bed = await TestBed.start({ kubelet: true, nodes: 3 });
    for (const f of [CRD_FILE, GROUP_CRD_FILE]) assert.equal((await bed.kubectl('apply', '-f', f)).code, 0);
    const { spawn } = await import('node:child_process');
    operator = spawn(process.execPath, [CLI, 'operator', '--metrics', '127.0.0.1:0', '--lease-seconds', '3'], { env: bed.env(), stdio: 'ignore' });
  });
  after(async () => {
    operator?.kill('SIGKILL');
    await bed?.stop();
    await rm(out, { recursive: true, force: true });
  });

  it('recovery-logger runs on RaftClusters and a RaftLoggerGroup made through the kubeconfig, checks pass, and everything it made is gone after', async () => {
    const r = await run(process.execPath, [CLI, 'experiment', 'recovery-logger', '--k8s', '--image', 'raftkv:dev', '--scale', '0.001', '--duration', '1', '--out', out], { env: bed.env(), maxBuffer: 16 << 20 }).catch(
      (e: { stdout: string; stderr: string; code: number }) => assert.fail(`exit ${e.code}\n${e.stdout}\n${e.stderr}`),
    );
    assert.match(r.stdout, /RaftLoggerGroup lg-rec: waiting for its logger to join rec-logger/);
    assert.doesNotMatch(r.stdout, /^FAIL/m);
    const json = JSON.parse(await readFile(join(out, 'recovery-logger.json'), 'utf8')) as { topology: string; rows: { commands: number }[]; checks: { ok: boolean }[] };
    assert.equal(json.topology, 'kubernetes');
    assert.ok(json.rows.length === 2 && json.rows[1].commands > json.rows[0].commands);
    assert.ok(json.checks.every((c) => c.ok));
    assert.equal((await bed.kubectl('get', 'rc,rlg,pods', '-o', 'name')).out.trim(), '', 'the experiment removed what it made');
  });
});
