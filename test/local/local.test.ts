import assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadManifest, loadTopology } from '../../local/run.js';
import { CLI } from '../helpers/cluster.js';

const ROOT = join(CLI, '..', '..');

function manifest(name: string, loadgen: boolean): string {
  return `apiVersion: raftkv.io/v1alpha1
kind: RaftCluster
metadata:
  name: ${name}
spec:
  replicas: 3
  raft: { electionTimeoutMs: 400, heartbeatMs: 40 }
${loadgen ? '  loadgen: { clients: 3, duration: 2, keys: 20, writeRatio: 0.5 }\n' : ''}`;
}

/** Processes whose command line mentions `needle` (other than this test's own). */
function processesWith(needle: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', needle], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

function startLocal(file: string, extra: string[]): { p: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const p = spawn(process.execPath, [CLI, 'local', file, '--base-port', '0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (d) => (out += d.toString()));
  p.stderr!.on('data', (d) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  return { p, out: () => out, exited };
}

async function waitFor(pred: () => boolean, ms: number, what: string, out: () => string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}\n${out()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('raftkv local', () => {
  it('runs the manifest with its load generator, prints endpoints and results, and stops leaving nothing behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
    try {
      const file = join(dir, 'local-a.yaml');
      writeFileSync(file, manifest('local-a', true));
      const { out, exited } = startLocal(file, ['--duration', '9']);
      assert.equal(await exited, 0, out());
      const text = out();
      assert.match(text, /local-a-0: client 127\.0\.0\.1:\d+ {2}http http:\/\/127\.0\.0\.1:\d+ {2}raft 127\.0\.0\.1:\d+/);
      assert.match(text, /local-a-\d leads after \d+ ms/);
      assert.match(text, /load generator: 3 clients for 2 s/);
      assert.match(text, /protobuf\s+3\s+1\s+\d+\s+\d+\s+0\s+0/, 'the loadgen table, with no errors');
      assert.match(text, /stopped, no process left behind/);
      assert.deepEqual(processesWith('raftkv-local-local-a-'), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('serves clients at the printed endpoints and stops cleanly on Ctrl-C (SIGINT)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
    try {
      const file = join(dir, 'local-b.yaml');
      writeFileSync(file, manifest('local-b', false));
      const { p, out, exited } = startLocal(file, []);
      try {
        await waitFor(() => /running; Ctrl-C to stop/.test(out()), 30_000, 'the cluster to run', out);
        const http = /local-b-1: client \S+ {2}http (http:\/\/127\.0\.0\.1:\d+)/.exec(out())![1];
        const put = await fetch(`${http}/v1/kv/hello`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value: 'local' }) });
        assert.equal(put.status, 200);
        assert.deepEqual(await (await fetch(`${http}/v1/kv/hello`)).json(), { key: 'hello', value: 'local' });
        p.kill('SIGINT');
        assert.equal(await exited, 0);
        assert.match(out(), /Ctrl-C; stopping 3 processes/);
        assert.deepEqual(processesWith('raftkv-local-local-b-'), []);
      } catch (e) {
        // Its replicas exit by themselves once it is gone; say what it printed.
        p.kill('SIGKILL');
        throw new Error(`${(e as Error).message} (cause: ${String((e as Error).cause ?? '-')})\n--- raftkv local printed:\n${out()}`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says it is running only once every replica answers, not when a majority has elected a leader (CI: one replica slow to start)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
    try {
      const file = join(dir, 'local-d.yaml');
      writeFileSync(file, manifest('local-d', false));
      // Replica local-d-1 sleeps 3 s before it loads anything: the other two elect meanwhile.
      const slow = join(dir, 'slow-start.cjs');
      writeFileSync(slow, "if (process.argv.includes('local-d-1')) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000);\n");
      const p = spawn(process.execPath, [CLI, 'local', file, '--base-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: `--require ${slow}` } });
      let text = '';
      p.stdout!.on('data', (d) => (text += d.toString()));
      p.stderr!.on('data', (d) => (text += d.toString()));
      const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
      try {
        await waitFor(() => /running; Ctrl-C to stop/.test(text), 30_000, 'the cluster to run', () => text);
        for (const [, http] of text.matchAll(/local-d-\d: client \S+ {2}http (http:\/\/127\.0\.0\.1:\d+)/g)) {
          const st = await fetch(`${http}/v1/status`);
          assert.equal(st.status, 200, `${http} answers once the runner says it is running`);
        }
        p.kill('SIGINT');
        assert.equal(await exited, 0);
      } catch (e) {
        p.kill('SIGKILL');
        throw new Error(`${(e as Error).message} (cause: ${String((e as Error).cause ?? '-')})\n--- raftkv local printed:\n${text}`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('its replicas exit by themselves if it is killed with SIGKILL', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
    try {
      const file = join(dir, 'local-c.yaml');
      writeFileSync(file, manifest('local-c', false));
      const { p, out, exited } = startLocal(file, []);
      await waitFor(() => /running; Ctrl-C to stop/.test(out()), 30_000, 'the cluster to run', out);
      assert.equal(processesWith('raftkv-local-local-c-').length, 3);
      p.kill('SIGKILL');
      await exited;
      await waitFor(() => processesWith('raftkv-local-local-c-').length === 0, 10_000, 'the orphaned replicas to exit', out);
      // Its ephemeral data could not be removed by the killed process; the next run removes it.
      const stale = readdirSync(tmpdir()).filter((n) => n.startsWith('raftkv-local-local-c-')).map((n) => join(tmpdir(), n)).filter((d) => existsSync(join(d, 'owner.pid')));
      assert.ok(stale.length >= 1, 'the killed run left its temp dir');
      const next = startLocal(file, ['--duration', '1']);
      assert.equal(await next.exited, 0, next.out());
      for (const d of stale) assert.ok(!existsSync(d), `${d} was swept by the next run\n${next.out()}`);
      assert.match(next.out(), /left by a run that was killed/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    it(`\`npm start\` stops every process it started on ${signal} to npm`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
      const name = `npm-${signal.toLowerCase()}`;
      try {
        const file = join(dir, `${name}.yaml`);
        writeFileSync(file, manifest(name, false));
        // The real path a newcomer takes: npm runs a shell that runs the build, then raftkv local.
        const p = spawn('npm', ['start', '--silent', '--', file, '--base-port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
        let text = '';
        p.stdout!.on('data', (d) => (text += d.toString()));
        p.stderr!.on('data', (d) => (text += d.toString()));
        const out = () => text;
        const exited = new Promise<void>((r) => p.once('exit', () => r()));
        await waitFor(() => /running; Ctrl-C to stop/.test(out()), 60_000, 'the cluster to run', out);
        assert.equal(processesWith(`raftkv-local-${name}-`).length, 3);
        p.kill(signal);
        await exited;
        await waitFor(() => processesWith(`raftkv-local-${name}-`).length === 0 && processesWith(file).length === 0, 10_000, 'every process to stop', out);
        assert.doesNotMatch(out(), /\n\s+at /, 'no stack trace');
      } finally {
        for (const pid of [...processesWith(`raftkv-local-${name}-`), ...processesWith(join(dir, name))]) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // already gone
          }
        }
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it('runs the loggers of a spec: they join and keep the committed log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
    try {
      const file = join(dir, 'local-l.yaml');
      writeFileSync(file, manifest('local-l', false).replace('  replicas: 3\n', '  replicas: 3\n  loggers: 1\n'));
      const { p, out, exited } = startLocal(file, []);
      await waitFor(() => /running; Ctrl-C to stop/.test(out()), 30_000, 'the cluster to run', out);
      const http = /local-l-0: client \S+ {2}http (http:\/\/127\.0\.0\.1:\d+)/.exec(out())![1];
      const logger = /local-l-log-0: logger {2}http (http:\/\/127\.0\.0\.1:\d+)\/v1\/log/.exec(out())![1];
      for (let i = 0; i < 5; i++) assert.equal((await fetch(`${http}/v1/kv/k${i}`, { method: 'PUT', body: `v${i}` })).status, 200);
      const commit = ((await (await fetch(`${http}/v1/status`)).json()) as { commitIndex: number }).commitIndex;
      let last = 0;
      for (let t = 0; t < 200 && last < commit; t++) {
        const r = await fetch(`${logger}/v1/log`).then((x) => x.json() as Promise<{ clusters: { last: number }[] }>).catch(() => undefined);
        last = r?.clusters[0]?.last ?? 0;
        if (last < commit) await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(last >= commit, `logger reached ${last} of ${commit}\n${out()}`);
      p.kill('SIGINT');
      assert.equal(await exited, 0, out());
      assert.deepEqual(processesWith('raftkv-local-local-l-'), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs every RaftCluster of a file at once (the seed\'s multi-application experiments), each with its own load', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
    try {
      const file = join(dir, 'two.yaml');
      writeFileSync(file, `${manifest('multi-a', true)}---\n${manifest('multi-b', true)}`);
      const { out, exited } = startLocal(file, ['--duration', '9']);
      assert.equal(await exited, 0, out());
      const text = out();
      for (const c of ['multi-a', 'multi-b']) {
        assert.match(text, new RegExp(`${c}-\\d leads after \\d+ ms`));
        assert.match(text, new RegExp(`load test of ${c}:\\n.*\\n.*\\n *protobuf +3 +1 +(\\d+) +\\1 +0 +0`), text);
      }
      assert.deepEqual(processesWith('raftkv-local-multi-a-'), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs a logger group as one logger process with a member in each cluster naming it, each cluster\'s log kept apart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
    let stopAfter: ChildProcess | undefined;
    try {
      const file = join(dir, 'group.yaml');
      const group = 'apiVersion: raftkv.io/v1alpha1\nkind: RaftLoggerGroup\nmetadata: {name: grp}\nspec: {loggers: 1}\n';
      const named = (n: string) => manifest(n, false).replace('  replicas: 3\n', '  replicas: 3\n  loggerGroup: grp\n');
      writeFileSync(file, `${group}---\n${named('grp-a')}---\n${named('grp-b')}`);
      const { p, out, exited } = startLocal(file, []);
      stopAfter = p;
      await waitFor(() => /running; Ctrl-C to stop/.test(out()), 30_000, 'the clusters to run', out);
      assert.match(out(), /grp-0: logger group grp for grp-a, grp-b/);
      const logger = /grp-0: logger group .* {2}http (http:\/\/127\.0\.0\.1:\d+)\/v1\/log/.exec(out())![1];
      // One process serves both clusters.
      assert.equal(processesWith('logger --id grp-0-grp-a,grp-0-grp-b').length, 1);
      const commits: Record<string, number> = {};
      for (const [c, n] of [['grp-a', 3], ['grp-b', 7]] as const) {
        const http = new RegExp(`${c}-0: client \\S+ {2}http (http://127\\.0\\.0\\.1:\\d+)`).exec(out())![1];
        for (let i = 0; i < n; i++) assert.equal((await fetch(`${http}/v1/kv/${c}-k${i}`, { method: 'PUT', body: `v${i}` })).status, 200);
        commits[c] = ((await (await fetch(`${http}/v1/status`)).json()) as { commitIndex: number }).commitIndex;
      }
      type Log = { clusters: { name: string; last: number; voters: string[] }[] };
      let log: Log | undefined;
      const caughtUp = (l?: Log) => ['grp-a', 'grp-b'].every((c) => (l?.clusters.find((x) => x.name === `grp-0-${c}`)?.last ?? 0) >= commits[c]);
      for (let t = 0; t < 200 && !caughtUp(log); t++) {
        log = await fetch(`${logger}/v1/log`).then((x) => x.json() as Promise<Log>).catch(() => undefined);
        if (!caughtUp(log)) await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(caughtUp(log), `the group logger did not catch up with ${JSON.stringify(commits)}: ${JSON.stringify(log)}\n${out()}`);
      for (const c of ['grp-a', 'grp-b']) assert.deepEqual(log!.clusters.find((x) => x.name === `grp-0-${c}`)!.voters.sort(), [0, 1, 2].map((i) => `${c}-${i}`));
      // The entries of each cluster are that cluster's writes only.
      for (const c of ['grp-a', 'grp-b']) {
        const ndjson = await (await fetch(`${logger}/v1/log/grp-0-${c}?from=1&to=${commits[c]}`)).text();
        // Each entry's data is the command as the cluster committed it (base64): the keys are in it verbatim.
        const entries = ndjson.trim().split('\n').map((l) => Buffer.from((JSON.parse(l) as { data: string }).data, 'base64').toString('latin1')).join('\n');
        const other = c === 'grp-a' ? 'grp-b' : 'grp-a';
        assert.ok(entries.includes(`${c}-k0`), `${c}'s log has its writes`);
        assert.ok(!entries.includes(`${other}-k0`), `${c}'s log has none of ${other}'s`);
      }
      p.kill('SIGINT');
      assert.equal(await exited, 0, out());
      assert.deepEqual(processesWith('grp-0-grp-a'), []);
    } finally {
      stopAfter?.kill('SIGINT');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the shipped manifests are valid, and a bad one is refused with the reason', async () => {
    for (const f of readdirSync(join(ROOT, 'deploys')).filter((x) => x.endsWith('.yaml') && x !== 'operator.yaml')) {
      const rcs = loadManifest(join(ROOT, 'deploys', f));
      for (const rc of rcs) assert.ok(rc.spec.replicas >= 1, f);
    }
    assert.equal(loadManifest(join(ROOT, 'deploys', 'apps-6.yaml')).length, 6);
    const shared = loadTopology(join(ROOT, 'deploys', 'loggers.yaml'));
    assert.deepEqual(shared.groups.map((g) => g.metadata.name), ['loggers']);
    assert.deepEqual(shared.clusters.map((c) => c.spec.loggerGroup), ['loggers', 'loggers']);
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-localtest-'));
    try {
      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, 'apiVersion: raftkv.io/v1alpha1\nkind: RaftCluster\nmetadata: {name: Bad_Name}\nspec: {replicas: 0, app: redis}\n');
      assert.throws(() => loadManifest(bad), /metadata\.name: must be a DNS-1123 label.*spec\.app|spec\.app.*metadata\.name/s);
      const { out, exited } = startLocal(bad, []);
      assert.equal(await exited, 2);
      assert.match(out(), /invalid RaftCluster/);
      const orphan = join(dir, 'orphan.yaml');
      writeFileSync(orphan, manifest('orphan', false).replace('  replicas: 3\n', '  replicas: 3\n  loggerGroup: nowhere\n'));
      assert.throws(() => loadManifest(orphan), /RaftCluster orphan names loggerGroup nowhere, but the file has no RaftLoggerGroup nowhere/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
