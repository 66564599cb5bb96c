import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { parseSeedConfig } from '../../loadgen/config.js';
import { LoadResult, monotonicMs, runLoad } from '../../loadgen/run.js';
import { CLI, TestCluster } from '../helpers/cluster.js';
import { EtcdCluster } from '../helpers/etcd.js';

const run = promisify(execFile);

/** A minimal well-formedness check: every tag closes in order. */
function wellFormedXml(text: string): boolean {
  const stack: string[] = [];
  for (const m of text.matchAll(/<(\/?)([A-Za-z][\w:-]*)[^>]*?(\/?)>/g)) {
    const [, close, name, selfClose] = m;
    if (selfClose) continue;
    if (close) {
      if (stack.pop() !== name) return false;
    } else stack.push(name);
  }
  return stack.length === 0;
}

describe('loadgen against a real 3-node cluster', () => {
  let c: TestCluster;
  const ids = ['l1', 'l2', 'l3'];
  before(async () => {
    c = await TestCluster.startStatic('loadgen', ids);
  });
  after(async () => c.destroy());

  for (const driver of ['protobuf', 'text', 'http'] as const) {
    it(`${driver}: every request is answered or counted as an error or timeout`, async () => {
      const targets = ids.map((id) => (driver === 'http' ? `127.0.0.1:${c.nodes.get(id)!.http}` : c.clientAddr(id)));
      const r = await runLoad({ driver, targets, clients: 4, requests: 200, keys: 50, valueSize: 128, writeRatio: 0.5, thinkMs: 0, timeoutMs: 5000, seed: 7 });
      assert.equal(r.sent, 200);
      assert.equal(r.sent, r.answered + r.errors + r.timeouts);
      assert.equal(r.errors + r.timeouts, 0, `errors: ${r.errorSamples.join(' | ')}`);
      assert.ok(r.latencyUs.p50 > 0 && r.latencyUs.p50 <= r.latencyUs.p99 && r.latencyUs.p99 <= r.latencyUs.max);
      assert.ok(r.throughput > 0);
      assert.equal(r.perSecond.reduce((a, b) => a + b, 0), r.answered);
      // Half writes: both kinds answered, apart, and together they are every answer.
      assert.equal(r.byKind.read.answered + r.byKind.write.answered, r.answered);
      assert.ok(r.byKind.read.answered > 50 && r.byKind.write.answered > 50, `reads ${r.byKind.read.answered}, writes ${r.byKind.write.answered}`);
      for (const k of ['read', 'write'] as const) assert.ok(r.byKind[k].latencyUs.p50 > 0 && r.byKind[k].latencyUs.max <= r.latencyUs.max);
    });
  }

  it('a warm-up runs the load unmeasured first: nothing in it is counted, and the window starts after it', async () => {
    // The window's clock (time origin + monotonic time): Date.now() drifts from it by
    // milliseconds while the system clock is being corrected, enough to fail this by 4 ms.
    const t0 = performance.timeOrigin + performance.now();
    const r = await runLoad({ driver: 'protobuf', targets: ids.map((id) => c.clientAddr(id)), clients: 2, durationS: 1, warmupS: 1, keys: 50, valueSize: 64, writeRatio: 1, thinkMs: 0, timeoutMs: 5000, seed: 3 });
    assert.ok(r.window.from >= t0 + 1000, 'measured only after the warm-up');
    assert.ok(r.window.to > r.window.from);
    // The same window on CLOCK_MONOTONIC, which every process on the machine shares.
    const mono = monotonicMs();
    assert.ok(r.monoWindow.to <= mono && r.monoWindow.from >= mono - (performance.timeOrigin + performance.now() - t0), 'inside this call, on the monotonic clock');
    assert.ok(Math.abs(r.monoWindow.to - r.monoWindow.from - (r.window.to - r.window.from)) < 1, 'as long as the window');
    assert.equal(r.sent, r.answered + r.errors + r.timeouts);
    assert.equal(r.perSecond.reduce((a, b) => a + b, 0), r.answered);
    assert.ok(r.answered > 0);
    await assert.rejects(runLoad({ driver: 'protobuf', targets: [c.clientAddr('l1')], clients: 1, requests: 5, warmupS: 1, keys: 5, valueSize: 8, writeRatio: 1, thinkMs: 0, timeoutMs: 1000, seed: 1 }), /warm-up needs a duration/);
    await assert.rejects(run(process.execPath, [CLI, 'loadgen', '--targets', c.clientAddr('l1'), '--requests', '5', '--warmup', '1']), (e: { stderr: string }) => /--warmup needs --duration/.test(e.stderr));
  });

  it('a warm-up timer that fires early does not start the window early', async () => {
    // libuv runs timers by the loop's cached, millisecond-truncated clock, which lags
    // performance.now(): after slow synchronous work a timer fires that much early. The CI
    // once saw the window open before the warm-up was over. Here the lag is made large.
    const realSetTimeout = globalThis.setTimeout;
    const early = ((fn: () => void, ms?: number, ...args: unknown[]) =>
      realSetTimeout(fn, ms !== undefined && ms >= 1000 ? ms / 2 : ms, ...args)) as typeof setTimeout;
    const t0 = performance.timeOrigin + performance.now();
    globalThis.setTimeout = early;
    let r: LoadResult;
    try {
      r = await runLoad({ driver: 'protobuf', targets: ids.map((id) => c.clientAddr(id)), clients: 2, durationS: 1, warmupS: 1, keys: 50, valueSize: 64, writeRatio: 1, thinkMs: 0, timeoutMs: 5000, seed: 4 });
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    assert.ok(r.window.from >= t0 + 1000, `window opened ${(t0 + 1000 - r.window.from).toFixed(1)} ms before the warm-up ended`);
    assert.equal(r.perSecond.reduce((a, b) => a + b, 0), r.answered);
    assert.ok(r.answered > 0);
  });

  it('protobuf sends writes to the leader a follower names (--route leader), or keeps them on the follower (--route member)', async () => {
    const leader = await c.waitLeader(ids, 20_000);
    const follower = ids.find((id) => id !== leader)!;
    // One client, whose own target is the follower. A second into the run the follower stops
    // answering: writes that still went through it would time out.
    const load = (route: 'leader' | 'member') =>
      runLoad({ driver: 'protobuf', route, targets: [c.clientAddr(follower), c.clientAddr(leader)], clients: 1, durationS: 2, keys: 50, valueSize: 64, writeRatio: 1, thinkMs: 0, timeoutMs: 500, seed: 5 });
    const stopped = async <T>(p: Promise<T>): Promise<T> => {
      await new Promise((r) => setTimeout(r, 1000));
      c.procs.get(follower)!.kill('SIGSTOP');
      try {
        return await p;
      } finally {
        c.procs.get(follower)!.kill('SIGCONT');
      }
    };
    const routed = await stopped(load('leader'));
    assert.equal(routed.errors + routed.timeouts, 0, `errors: ${routed.errorSamples.join(' | ')}`);
    assert.ok(routed.answered > 0);
    await c.waitConverged(ids, 20_000);
    const member = await stopped(load('member'));
    assert.ok(member.timeouts > 0, 'writes through the stopped follower time out');
    await c.waitConverged(ids, 20_000);
  });

  it('a dead target is counted as errors, never silently dropped', async () => {
    const r = await runLoad({ driver: 'protobuf', targets: ['127.0.0.1:1'], clients: 2, requests: 10, keys: 5, valueSize: 8, writeRatio: 1, thinkMs: 0, timeoutMs: 300, seed: 1 });
    assert.equal(r.sent, 10);
    assert.equal(r.answered, 0);
    assert.equal(r.errors + r.timeouts, 10);
  });

  it('the CLI merges several generator processes and writes JSON and CSV', async () => {
    const json = join(c.dir, 'out.json');
    const csvFile = join(c.dir, 'out.csv');
    const targets = ids.map((id) => c.clientAddr(id)).join(',');
    const { stdout } = await run(process.execPath, [CLI, 'loadgen', '--targets', targets, '--clients', '6', '--procs', '2', '--requests', '300', '--data', '1', '--json', json, '--csv', csvFile, '--quiet'], { timeout: 60_000 });
    assert.match(stdout, /ops\/s/);
    const r = JSON.parse(readFileSync(json, 'utf8')) as LoadResult;
    assert.equal(r.procs, 2);
    assert.equal(r.clients, 6);
    assert.equal(r.valueSize, 1024, '--data 1 is the seed\'s 1 KB');
    assert.equal(r.sent, r.answered + r.errors + r.timeouts);
    assert.equal(r.sent, 300);
    assert.equal(r.byKind.read.answered + r.byKind.write.answered, r.answered, 'the processes\' reads and writes merged');
    const rows = readFileSync(csvFile, 'utf8').trim().split('\n');
    assert.equal(rows.length, 2);
    assert.match(rows[0], /^driver,clients,procs/);
    const cells = Object.fromEntries(rows[0].split(',').map((k, i) => [k, rows[1].split(',')[i]]));
    assert.equal(Number(cells.reads) + Number(cells.writes), r.answered, 'the CSV counts reads and writes apart');
    assert.equal(Number(cells.write_p99_us), r.byKind.write.latencyUs.p99);
    assert.ok(r.cpu.percent > 0, 'the generator reports its own CPU use');
  });

  it('a client sweep draws throughput against p90 latency with one point per client count', async () => {
    const plot = join(c.dir, 'sweep.svg');
    const targets = ids.map((id) => c.clientAddr(id)).join(',');
    await run(process.execPath, [CLI, 'loadgen', '--targets', targets, '--sweep-clients', '1,3,6', '--requests', '90', '--plot', plot, '--quiet'], { timeout: 60_000 });
    const svg = readFileSync(plot, 'utf8');
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
    assert.ok(wellFormedXml(svg), 'the SVG is well formed');
    assert.equal((svg.match(/class="point"/g) ?? []).length, 3);
    assert.match(svg, /p90 latency/);
  });
});

describe("the seed's client TOML", () => {
  it('parses rep, svrIps, udpport, localip, thinkingTimeMsec', () => {
    const cfg = parseSeedConfig('rep=3\nsvrIps=["127.0.0.1:11000", "127.0.0.1:11001", "127.0.0.1:11002"]\nudpport=15000\nlocalip="127.0.0.1"\nthinkingTimeMsec=10\n');
    assert.deepEqual(cfg, { rep: 3, svrIps: ['127.0.0.1:11000', '127.0.0.1:11001', '127.0.0.1:11002'], udpport: 15000, localip: '127.0.0.1', thinkingTimeMsec: 10 });
  });
  it('rejects a rep that does not match, and broken TOML, with the reason', () => {
    assert.throws(() => parseSeedConfig('rep=2\nsvrIps=["127.0.0.1:11000"]\n'), /rep is 2 but 1 servers/);
    assert.throws(() => parseSeedConfig('rep=\n'), /not valid TOML/);
    assert.throws(() => parseSeedConfig('rep=1\nsvrIps=["nohost"]\n'), /host:port/);
  });
});

describe('the etcd driver against a real 3-member etcd', () => {
  it('measures etcd the same way (counts add up)', async () => {
    const etcd = await EtcdCluster.start(3);
    try {
      const r = await runLoad({ driver: 'etcd', targets: etcd.clientAddrs, clients: 4, requests: 200, keys: 50, valueSize: 128, writeRatio: 0.5, thinkMs: 0, timeoutMs: 5000, seed: 3 });
      assert.equal(r.sent, 200);
      assert.equal(r.answered, 200, `errors: ${r.errorSamples.join(' | ')}`);
      assert.ok(r.latencyUs.p50 > 0);
    } finally {
      await etcd.stop();
    }
  });
});
