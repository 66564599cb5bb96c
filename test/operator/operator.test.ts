/**
 * The operator end to end, with the real kubectl against the API emulator and its process
 * kubelet: a RaftCluster forms by itself, scales 3 -> 5 -> 3 under client load with a
 * linearizable history and no lost acknowledged write, heals a deleted leader pod, finishes a
 * scale-up after being killed in the middle, hands over between two operators through the
 * Lease, runs loggers, and everything goes when the resource is deleted.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RaftKvClient } from '../../replica/client.js';
import { CRD_FILE } from '../../scripts/gen.js';
import { CLI } from '../helpers/cluster.js';
import { checkHistory, formatOps } from '../sim/linearizability.js';
import { History } from '../helpers/history.js';
import { TestBed } from '../k8s/testbed.js';

const NAME = 'kv-notlog';

function manifest(replicas = 3, loggers = 0): string {
  return readFileSync(join(process.cwd(), 'deploys', 'kv-notlog.yaml'), 'utf8')
    .replace(/^(\s*)replicas: \d+/m, `$1replicas: ${replicas}`)
    .replace(/^(\s*)loggers: \d+/m, `$1loggers: ${loggers}`)
    .replace(/^spec:\n/m, 'spec:\n  image: raftkv:dev\n');
}

describe('the raftkv operator on the Kubernetes emulator', () => {
  let bed: TestBed;
  const operators: { p: ChildProcess; out: string }[] = [];

  const startOperator = (id: string) => {
    const o = { p: spawn(process.execPath, [CLI, 'operator', '--metrics', '127.0.0.1:0', '--id', id, '--lease-seconds', '3'], { env: bed.env(), stdio: ['ignore', 'pipe', 'pipe'] }), out: '' };
    o.p.stdout!.on('data', (d: Buffer) => (o.out += d.toString()));
    o.p.stderr!.on('data', (d: Buffer) => (o.out += d.toString()));
    operators.push(o);
    return o;
  };
  const phase = () => bed.jsonpath(`rc ${NAME}`, '{.status.phase}');
  const available = async (replicas: number, timeoutMs = 60_000) =>
    bed.until(`${NAME} Available with ${replicas} ready voters`, async () => {
      const [p, ready, ...voters] = (await bed.jsonpath(`rc ${NAME}`, '{.status.phase} {.status.readyReplicas} {.status.members[?(@.role=="voter")].name}')).split(' ').filter(Boolean);
      return p === 'Available' && Number(ready) === replicas && voters.length === replicas;
    }, timeoutMs);
  /** What to read when something timed out: the operators' logs, the pods' logs and the status. */
  const dump = async () => {
    const parts = operators.map((o, i) => `--- operator ${i}\n${o.out.split('\n').slice(-30).join('\n')}`);
    const pods = (await bed.jsonpath('pods -l raftkv.io/role=replica', '{.items[*].metadata.name}')).split(' ').filter(Boolean);
    for (const p of pods) parts.push(`--- pod ${p}\n${(await bed.kubectl('logs', p)).out.split('\n').slice(-15).join('\n')}`);
    parts.push(`--- status\n${await bed.jsonpath(`rc ${NAME}`, '{.status}')}`);
    return parts.join('\n');
  };

  before(async () => {
    bed = await TestBed.start({ kubelet: true, nodes: 5 });
    const crd = await bed.kubectl('apply', '-f', CRD_FILE);
    assert.equal(crd.code, 0, crd.err);
    startOperator('op-a');
  });
  after(async () => {
    for (const o of operators) o.p.kill('SIGKILL');
    await bed?.stop();
  });

  it('forms a cluster from kubectl apply: pods find each other through the API, one leader, printer columns, owned Services and PDB', async () => {
    const r = await bed.apply(manifest());
    assert.equal(r.code, 0, r.err);
    await available(3).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    const table = (await bed.kubectl('get', 'rc')).out;
    assert.match(table, new RegExp(`${NAME}\\s+kvstore\\s+3\\s+3\\s+${NAME}-\\d\\s+Available`));
    const uid = await bed.jsonpath(`rc ${NAME}`, '{.metadata.uid}');
    for (const what of [`svc ${NAME}`, `svc ${NAME}-peers`, `pdb ${NAME}`, `pod ${NAME}-0`]) {
      assert.equal(await bed.jsonpath(what, '{.metadata.ownerReferences[0].uid}'), uid, `${what} is owned by the RaftCluster`);
    }
    assert.equal(await bed.jsonpath(`pdb ${NAME}`, '{.spec.maxUnavailable}'), '1');
    assert.match((await bed.kubectl('describe', 'rc', NAME)).out, /CreatedMember/);
    assert.equal(await bed.jsonpath(`rc ${NAME}`, '{.status.observedGeneration}'), await bed.jsonpath(`rc ${NAME}`, '{.metadata.generation}'));
  });

  it('runs the spec\'s load test once the cluster is Available and reports its throughput and p99 in status', async () => {
    await bed.until('status.loadTest', async () => (await bed.jsonpath(`rc ${NAME}`, '{.status.loadTest.spec}')) !== '', 60_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    const lt = JSON.parse(await bed.jsonpath(`rc ${NAME}`, '{.status.loadTest}'));
    assert.equal(lt.error, undefined, lt.error);
    assert.ok(lt.throughput > 0 && lt.p99Ms > 0 && lt.answered > 0, JSON.stringify(lt));
    assert.match((await bed.kubectl('get', 'events', '--field-selector', `involvedObject.name=${NAME}`, '-o', 'jsonpath={.items[*].reason}')).out, /LoadTestFinished/);
    await bed.until('the generator pod to be cleaned up', async () => (await bed.jsonpath('pods -l raftkv.io/role=loadgen', '{.items[*].metadata.name}')) === '');
  });

  it('scales 3 -> 5 -> 3 with kubectl scale under client load: one member at a time, a linearizable history, no acknowledged write lost', async () => {
    const ips = (await bed.jsonpath(`pods -l raftkv.io/cluster=${NAME},raftkv.io/role=replica`, '{.items[*].status.podIP}')).split(' ').filter(Boolean);
    const history = new History();
    let stop = false;
    const load = async (n: number) => {
      const cl = new RaftKvClient({ targets: ips.map((ip) => `${ip}:11000`), timeoutMs: 2000, deadlineMs: 8000 });
      let seq = 0;
      while (!stop) {
        const key = `k${n % 2}`;
        await history.put(cl, `c${n}`, key, `c${n}-${++seq}`);
        await history.get(cl, `c${n}`, key);
      }
      cl.close();
    };
    const clients = [load(1), load(2), load(3)];
    try {
      assert.equal((await bed.kubectl('scale', `rc/${NAME}`, '--replicas=5')).code, 0);
      await available(5, 90_000);
      assert.equal((await bed.kubectl('scale', `rc/${NAME}`, '--replicas=3')).code, 0);
      await available(3, 90_000);
    } catch (e) {
      assert.fail(`${(e as Error).message}\n${await dump()}`);
    } finally {
      stop = true;
      await Promise.all(clients);
    }
    const names = (await bed.jsonpath(`pods -l raftkv.io/role=replica`, '{.items[*].metadata.name}')).split(' ').sort();
    assert.deepEqual(names, [`${NAME}-0`, `${NAME}-1`, `${NAME}-2`], 'the highest ordinals were removed');
    const reader = new RaftKvClient({ targets: ips.map((ip) => `${ip}:11000`), timeoutMs: 2000, deadlineMs: 10_000 });
    for (const key of ['k0', 'k1']) await history.get(reader, 'final', key, { throws: true });
    reader.close();
    const acked = history.acknowledgedWrites();
    assert.ok(acked > 20, `writes were acknowledged throughout (${acked})`);
    const check = checkHistory(history.ops);
    assert.equal(check.ok, true, check.ok === false ? `not linearizable on ${check.key}: ${check.reason}\n${formatOps(check.ops.slice(-30))}` : String((check as { reason?: string }).reason));
    const events = (await bed.kubectl('get', 'events', '--field-selector', `involvedObject.name=${NAME}`, '-o', 'jsonpath={.items[*].reason}')).out;
    assert.match(events, /ScalingUp/);
    assert.match(events, /ScalingDown/);
  });

  it('a deleted leader pod is replaced and the cluster serves again with a new leader', async () => {
    const leader = await bed.jsonpath(`rc ${NAME}`, '{.status.leader}');
    assert.match(leader, new RegExp(`^${NAME}-\\d$`));
    assert.equal((await bed.kubectl('delete', 'pod', leader)).code, 0);
    await bed.until('a new leader', async () => {
      const l = await bed.jsonpath(`rc ${NAME}`, '{.status.leader}');
      return l !== '' && l !== leader;
    });
    await available(3).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    assert.equal(await bed.jsonpath(`pod ${leader}`, '{.status.phase}'), 'Running', 'its pod is back under the same name');
  });

  it('an operator killed in the middle of a scale-up is replaced by another that finishes it; the Lease lets only one act', async () => {
    const b = startOperator('op-b');
    await bed.until('op-b running', async () => /watching/.test(b.out));
    const holder = async () => bed.jsonpath('lease raftkv-operator -n default', '{.spec.holderIdentity}');
    assert.equal(await holder(), 'op-a');
    assert.doesNotMatch(b.out, /leading/, 'the second operator stands by');
    assert.equal((await bed.kubectl('scale', `rc/${NAME}`, '--replicas=4')).code, 0);
    await bed.until('the scale-up to start', async () => (await bed.kubectl('get', 'pod', `${NAME}-3`)).code === 0);
    operators[0].p.kill('SIGKILL');
    await bed.until('op-b to take the Lease', async () => (await holder()) === 'op-b', 30_000);
    await available(4, 90_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    assert.match(b.out, /leading/);
    assert.equal((await bed.kubectl('scale', `rc/${NAME}`, '--replicas=3')).code, 0);
    await available(3, 90_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
  });

  it('runs the loggers of the spec: they join as non-voters and are reported as members', async () => {
    assert.equal((await bed.kubectl('patch', 'rc', NAME, '--type', 'merge', '-p', '{"spec":{"loggers":1}}')).code, 0);
    await bed.until('the logger to be a member', async () => (await bed.jsonpath(`rc ${NAME}`, '{.status.members[?(@.role=="logger")].name}')) === `${NAME}-log-0`, 60_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    assert.equal(await phase(), 'Available');
  });

  it('a spec change that shapes the pods rolls them one at a time, followers first, the leader last after a transfer', async () => {
    const before = (await bed.jsonpath(`pods -l raftkv.io/role=replica`, '{.items[*].metadata.uid}')).split(' ').filter(Boolean);
    assert.equal((await bed.kubectl('patch', 'rc', NAME, '--type', 'merge', '-p', '{"spec":{"raft":{"heartbeatMs":90}}}')).code, 0);
    await bed.until('every replica pod replaced', async () => {
      const uids = (await bed.jsonpath(`pods -l raftkv.io/role=replica`, '{.items[*].metadata.uid}')).split(' ').filter(Boolean);
      const args = await bed.jsonpath(`pods -l raftkv.io/role=replica`, '{.items[*].spec.containers[0].args}');
      return uids.length === 3 && uids.every((u) => !before.includes(u)) && (args.match(/"--heartbeat","90"/g) ?? []).length === 3;
    }, 120_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    await available(3).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    const rolled = (await bed.kubectl('get', 'events', '--field-selector', `involvedObject.name=${NAME},reason=RollingUpdate`, '-o', 'jsonpath={range .items[*]}{.message}{"\\n"}{end}')).out;
    assert.match(rolled, /the last outdated pod: handing leadership/, rolled);
  });

  it('losing every replica at once is reported as QuorumLost; annotating the resource restores it from its logger with the data', async () => {
    const leader = await bed.jsonpath(`rc ${NAME}`, '{.status.leader}');
    const ip = await bed.jsonpath(`pod ${leader}`, '{.status.podIP}');
    assert.equal((await fetch(`http://${ip}:13000/v1/kv/survivor`, { method: 'PUT', body: 'still here' })).status, 200);
    const commit = (await (await fetch(`http://${ip}:13000/v1/status`)).json()).commitIndex as number;
    const logIp = await bed.jsonpath(`pod ${NAME}-log-0`, '{.status.podIP}');
    await bed.until('the logger to hold the write', async () => ((await (await fetch(`http://${logIp}:14001/v1/log`)).json()).clusters[0]?.last ?? 0) >= commit);
    assert.equal((await bed.kubectl('delete', 'pod', '-l', 'raftkv.io/role=replica', '--wait=false')).code, 0);
    await bed.until('QuorumLost', async () => (await phase()) === 'QuorumLost', 60_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    assert.match((await bed.kubectl('get', 'events', '--field-selector', `involvedObject.name=${NAME},reason=QuorumLost`, '-o', 'jsonpath={.items[*].message}')).out, /restore from a logger/);
    assert.equal((await bed.kubectl('annotate', 'rc', NAME, 'raftkv.io/restore-from-logger=0')).code, 0);
    await available(3, 120_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    assert.equal(await bed.jsonpath(`rc ${NAME}`, '{.status.restore.from}'), `${NAME}-log-0`);
    const nip = await bed.jsonpath(`pod ${NAME}-1`, '{.status.podIP}');
    await bed.until('the restored key on a re-added member', async () => (await (await fetch(`http://${nip}:13000/v1/kv/survivor?stale=1`)).text()).includes('still here'));
    await bed.until('the logger back as a member of the new cluster', async () => (await bed.jsonpath(`rc ${NAME}`, '{.status.members[?(@.role=="logger")].name}')) === `${NAME}-log-0`, 60_000);
  });

  it('with persistent volumes a deleted pod comes back with the same identity and data (and a ServiceMonitor when asked)', async () => {
    const pv = manifest(3).replace(/name: kv-notlog/, 'name: kv-pv').replace(/ephemeral: true/, 'ephemeral: false').replace(/\n  loadgen:[\s\S]*$/, '\n  monitoring: { serviceMonitor: true }\n');
    assert.equal((await bed.apply(pv)).code, 0);
    await bed.until('kv-pv Available', async () => (await bed.jsonpath('rc kv-pv', '{.status.phase}')) === 'Available', 60_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    assert.equal(await bed.jsonpath('pvc data-kv-pv-0', '{.status.phase}'), 'Bound');
    assert.equal(await bed.jsonpath('servicemonitor kv-pv', '{.spec.endpoints[0].port}'), 'http', 'spec.monitoring.serviceMonitor made one');
    const leader = await bed.jsonpath('rc kv-pv', '{.status.leader}');
    const victim = ['kv-pv-0', 'kv-pv-1', 'kv-pv-2'].find((n) => n !== leader)!;
    const ip = await bed.jsonpath(`pod ${leader}`, '{.status.podIP}');
    assert.equal((await fetch(`http://${ip}:13000/v1/kv/kept`, { method: 'PUT', body: 'yes' })).status, 200);
    assert.equal((await bed.kubectl('delete', 'pod', victim)).code, 0);
    await bed.until(`${victim} back and Available`, async () => (await bed.jsonpath(`pod ${victim}`, '{.status.phase}')) === 'Running' && (await bed.jsonpath('rc kv-pv', '{.status.phase}')) === 'Available', 60_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    const logs = (await bed.kubectl('logs', victim)).out;
    assert.match(logs, new RegExp(`${victim}: recovered`), 'it restarted from its volume, not as a new member');
    const vip = await bed.jsonpath(`pod ${victim}`, '{.status.podIP}');
    await bed.until('the key on the returned member', async () => (await (await fetch(`http://${vip}:13000/v1/kv/kept?stale=1`)).text()).includes('yes'));
    assert.equal((await bed.kubectl('delete', 'rc', 'kv-pv')).code, 0);
  });

  it('serves operator metrics', async () => {
    const port = /metrics on [\d.]+:(\d+)/.exec(operators[1].out)?.[1];
    assert.ok(port, operators[1].out);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(text, /raftkv_operator_reconciles_total\{result="ok"\} [1-9]/);
    assert.match(text, /raftkv_operator_leader 1/);
  });

  it('refuses to change the engine of a formed cluster, in status and an Event, and goes on once it is set back', async () => {
    assert.equal((await bed.kubectl('patch', 'rc', NAME, '--type', 'merge', '-p', '{"spec":{"app":"diskstorage"}}')).code, 0);
    await bed.until('phase Invalid', async () => (await phase()) === 'Invalid');
    assert.match(await bed.jsonpath(`rc ${NAME}`, '{.status.conditions[0].message}'), /spec\.app cannot change from kvstore to diskstorage/);
    assert.equal((await bed.jsonpath('pods -l raftkv.io/role=replica', '{.items[*].spec.containers[0].args}')).includes('diskstorage'), false, 'no pod was touched');
    assert.equal((await bed.kubectl('patch', 'rc', NAME, '--type', 'merge', '-p', '{"spec":{"app":"kvstore"}}')).code, 0);
    await available(3).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
  });

  it('scaling the loggers to 0 deletes their pods and removes them from the configuration', async () => {
    assert.equal((await bed.kubectl('patch', 'rc', NAME, '--type', 'merge', '-p', '{"spec":{"loggers":0}}')).code, 0);
    await bed.until('no logger member and no logger pod', async () =>
      (await bed.jsonpath(`rc ${NAME}`, '{.status.members[?(@.role=="logger")].name}')) === '' && (await bed.jsonpath('pods -l raftkv.io/role=logger', '{.items[*].metadata.name}')) === '',
    60_000).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
    await available(3).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
  });

  it('deleting the RaftCluster deletes everything it owns', async () => {
    const del = await bed.kubectl('delete', 'rc', NAME);
    assert.equal(del.code, 0, del.err);
    await bed.until('its pods, Services and PDB to be gone', async () => {
      const left = (await bed.kubectl('get', 'pods,svc,pdb', '-l', `raftkv.io/cluster=${NAME}`, '-o', 'name')).out.trim();
      return left === '';
    });
  });
});
