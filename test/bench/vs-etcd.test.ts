/**
 * `npm run bench`'s comparison part runs end to end on the smallest settings: both systems
 * start, the generator measures them, a leader is killed and replaced, and the report (summary
 * lines, JSON, SVG) says what the full run says. Figures are not asserted: speed belongs to
 * the benchmark, not to a test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DOMParser } from '@xmldom/xmldom';
import { EtcdCluster } from '../helpers/etcd.js';

const SCRIPT = fileURLToPath(new URL('../../bench/vs-etcd.js', import.meta.url));

describe('npm run bench: raftkv against etcd', () => {
  it('measures both systems, fails over, and reports lines, JSON and SVG', { skip: EtcdCluster.available() ? false : 'etcd is not installed (.ci/run installs it)' }, async () => {
    const out = await mkdtemp(join(tmpdir(), 'raftkv-bench-test-'));
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [SCRIPT, '--clients', '1', '--seconds', '1', '--warmup', '1', '--one-client-warmup', '1', '--one-client-runs', '2', '--kills', '1', '--rss-keys', '500', '--out', out], { maxBuffer: 16 << 20, timeout: 240_000 });
      const tail = stdout.trim().split('\n').slice(-9);
      const num = '[0-9]+\\.[0-9]{2}';
      assert.deepEqual(
        tail.slice(0, 6).map((l) => l.replace(new RegExp(`: ${num}$`), ': R')),
        ['ratio writes c=1: R', 'ratio mixed c=1: R', 'p99 ratio writes c=1: R', 'p99 ratio mixed c=1: R', 'cpu ratio writes c=1: R', 'cpu ratio mixed c=1: R'],
      );
      assert.match(tail[6], /^failover p99: \d+ ms over 1 kills/);
      assert.match(tail[7], /^memory kvstore writes c=32: \d+ ops\/s/);
      assert.match(tail[8], /^replica rss with 500 values of 1024 B: \d+ MB/);
      const report = JSON.parse(await readFile(join(out, 'bench.json'), 'utf8')) as { points: { system: string; workload: string; p99ByKindMs?: { read: number; write: number }; throughput: number; errors: number; opsPerServerCoreSecond: number; order: number; runs?: { throughput: number; p99: number; opsPerServerCoreSecond: number; order: number }[] }[]; failover: { ms: number[] }; lines: string[]; params: { warmup: number; oneClientWarmup: number }; pairedRatios: Record<string, { median: number; pairs: number[]; pooled: number }> };
      assert.equal(report.points.length, 4);
      assert.deepEqual([report.params.warmup, report.params.oneClientWarmup], [1, 1], 'the one-client warm-up as given');
      for (const p of report.points) {
        assert.ok(p.throughput > 0 && p.opsPerServerCoreSecond > 0, `${p.system} ${p.workload} measured`);
        assert.equal(p.errors, 0, `${p.system} ${p.workload}: no errors`);
      }
      assert.deepEqual(
        report.points.map((p) => `${p.workload} ${p.system} ${p.order}`),
        ['writes raftkv 1', 'writes etcd 2', 'mixed raftkv 2', 'mixed etcd 1'],
        'reported in one order, measured in alternating order: neither system always runs second, on the other\'s leftovers',
      );
      // One client's points are measured twice here (--one-client-runs 2), the second time in
      // the other order, and reported pooled, with each run's own figures beside them.
      assert.deepEqual(
        report.points.map((p) => p.runs?.map((r) => r.order)),
        [[1, 2], [2, 1], [2, 1], [1, 2]],
      );
      // The mixed points' p99 of reads and of writes apart (the writes-only ones have no reads).
      for (const p of report.points) assert.equal(p.p99ByKindMs === undefined, p.workload === 'writes', `${p.system} ${p.workload}: ${JSON.stringify(p.p99ByKindMs)}`);
      assert.match(stdout, /\n {2}raftkv mixed {2}c=1 run 1\/2: \d+ ops\/s {2}p99 [0-9.]+ ms \(reads [0-9.]+, writes [0-9.]+\)\n/);
      for (const p of report.points) assert.ok(p.runs!.every((r) => r.throughput > 0 && r.p99 > 0 && r.opsPerServerCoreSecond > 0), `${p.system} ${p.workload}: both runs measured`);
      // Their ratios are the median of the two pairs' (run k of raftkv over run k of etcd).
      const [ours, theirs] = ['raftkv', 'etcd'].map((s) => report.points.find((p) => p.system === s && p.workload === 'writes')!.runs!);
      const pairs = ours.map((r, k) => r.p99 / theirs[k].p99);
      const paired = report.pairedRatios['p99 ratio writes c=1'];
      assert.deepEqual(paired.pairs, pairs.map((r) => Number(r.toFixed(3))));
      assert.equal(paired.median, Number(((pairs[0] + pairs[1]) / 2).toFixed(3)));
      assert.equal(tail[2], `p99 ratio writes c=1: ${((pairs[0] + pairs[1]) / 2).toFixed(2)}`);
      assert.equal(Object.keys(report.pairedRatios).length, 6, 'throughput, p99 and cpu ratios, both workloads');
      assert.match(stdout, /\n  p99 ratio mixed c=1: median [0-9.]+ of the pairs [0-9.]+ [0-9.]+ \(pooled [0-9.]+\)\n/);
      assert.equal((stdout.match(/ c=1 run [12]\/2: /g) ?? []).length, 8, 'every run printed as it ends');
      assert.equal(report.failover.ms.length, 1);
      assert.deepEqual(report.lines, tail);
      const svg = new DOMParser().parseFromString(await readFile(join(out, 'bench.svg'), 'utf8'), 'image/svg+xml');
      const names = Array.from(svg.getElementsByTagName('g'))
        .filter((g) => g.getAttribute('class') === 'series')
        .map((g) => g.getAttribute('data-name'));
      assert.deepEqual(names.sort(), ['etcd mixed', 'etcd mixed', 'etcd writes', 'etcd writes', 'raftkv mixed', 'raftkv mixed', 'raftkv writes', 'raftkv writes']);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
