/**
 * A RaftLoggerGroup end to end on the Kubernetes emulator (the seed's one logger for several
 * clusters): the group's pod joins every formed cluster that names it, each cluster reports it
 * as a logger member, a cluster added later rolls the pod (its volume keeps the logs of the
 * others), scaling the group adds and removes a member in every cluster, a cluster that leaves
 * the group removes its member, and deleting the group removes its members from every cluster.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { CRD_FILE, GROUP_CRD_FILE } from '../../scripts/gen.js';
import { CLI } from '../helpers/cluster.js';
import { TestBed } from '../k8s/testbed.js';

const cluster = (name: string, replicas: number, group?: string) => `apiVersion: raftkv.io/v1alpha1
kind: RaftCluster
metadata: { name: ${name} }
spec:
  image: raftkv:dev
  replicas: ${replicas}
  raft: { electionTimeoutMs: 600, heartbeatMs: 60 }
${group ? `  loggerGroup: ${group}\n` : ''}`;

const GROUP = `apiVersion: raftkv.io/v1alpha1
kind: RaftLoggerGroup
metadata: { name: shared }
spec:
  loggers: 1
  image: raftkv:dev
  storage: { ephemeral: false, size: 1Gi }
  raft: { electionTimeoutMs: 600, heartbeatMs: 60 }
`;

type LogView = { clusters: { name: string; last: number; first: number }[] };

describe('a RaftLoggerGroup on the Kubernetes emulator', () => {
  let bed: TestBed;
  let operator: { p: ChildProcess; out: string };

  const dump = async () => {
    const parts = [`--- operator\n${operator.out.split('\n').slice(-40).join('\n')}`];
    for (const p of (await bed.jsonpath('pods', '{.items[*].metadata.name}')).split(' ').filter(Boolean)) parts.push(`--- pod ${p}\n${(await bed.kubectl('logs', p)).out.split('\n').slice(-10).join('\n')}`);
    parts.push(`--- group\n${await bed.jsonpath('rlg shared', '{.status}')}`);
    return parts.join('\n');
  };
  const until = (what: string, check: () => Promise<boolean>, ms = 90_000) => bed.until(what, check, ms).catch(async (e) => assert.fail(`${e.message}\n${await dump()}`));
  const loggerMembers = async (c: string) => (await bed.jsonpath(`rc ${c}`, '{.status.members[?(@.role=="logger")].name}')).split(' ').filter(Boolean);
  const readyLoggers = async (c: string) => (await bed.jsonpath(`rc ${c}`, '{.status.members[?(@.role=="logger")].ready}')).split(' ').filter(Boolean);
  const groupLog = async (): Promise<LogView | undefined> => {
    const ip = await bed.jsonpath('pod shared-0', '{.status.podIP}');
    if (!ip) return undefined;
    return fetch(`http://${ip}:14001/v1/log`).then((r) => (r.ok ? (r.json() as Promise<LogView>) : undefined)).catch(() => undefined);
  };
  const write = async (c: string, key: string): Promise<number> => {
    const leader = await bed.jsonpath(`rc ${c}`, '{.status.leader}');
    const ip = await bed.jsonpath(`pod ${leader}`, '{.status.podIP}');
    assert.equal((await fetch(`http://${ip}:13000/v1/kv/${key}`, { method: 'PUT', body: 'v' })).status, 200);
    return ((await (await fetch(`http://${ip}:13000/v1/status`)).json()) as { commitIndex: number }).commitIndex;
  };

  before(async () => {
    bed = await TestBed.start({ kubelet: true, nodes: 3 });
    for (const f of [CRD_FILE, GROUP_CRD_FILE]) {
      const r = await bed.kubectl('apply', '-f', f);
      assert.equal(r.code, 0, r.err);
    }
    operator = { p: spawn(process.execPath, [CLI, 'operator', '--metrics', '127.0.0.1:0', '--id', 'op', '--lease-seconds', '3'], { env: bed.env(), stdio: ['ignore', 'pipe', 'pipe'] }), out: '' };
    operator.p.stdout!.on('data', (d: Buffer) => (operator.out += d.toString()));
    operator.p.stderr!.on('data', (d: Buffer) => (operator.out += d.toString()));
  });
  after(async () => {
    operator?.p.kill('SIGKILL');
    await bed?.stop();
  });

  it('its pod joins a formed cluster that names it as a logger and keeps that cluster\'s log', async () => {
    assert.equal((await bed.apply(`${GROUP}---\n${cluster('ga', 3, 'shared')}`)).code, 0);
    await until('ga to have the group logger as a ready member', async () => (await loggerMembers('ga')).join() === 'shared-0-ga' && (await readyLoggers('ga')).join() === 'true');
    await until('the group Available', async () => (await bed.jsonpath('rlg shared', '{.status.phase}')) === 'Available');
    assert.equal(await bed.jsonpath('rlg shared', '{.status.clusters[*].name}'), 'ga');
    assert.equal(await bed.jsonpath('rc ga', '{.status.loggerGroup.members}'), '1');
    assert.match((await bed.kubectl('get', 'rlg')).out, /shared\s+1\s+1\s+ga\s+Available/);
    const commit = await write('ga', 'first');
    await until('the group logger to hold ga\'s write', async () => ((await groupLog())?.clusters.find((c) => c.name === 'shared-0-ga')?.last ?? 0) >= commit);
  });

  it('a second cluster naming the group rolls its pod, which then logs both; the volume keeps the first cluster\'s log', async () => {
    const uid = await bed.jsonpath('pod shared-0', '{.metadata.uid}');
    const before = (await groupLog())!.clusters.find((c) => c.name === 'shared-0-ga')!.last;
    assert.equal((await bed.apply(cluster('gb', 1, 'shared'))).code, 0);
    await until('gb to have the group logger as a member', async () => (await loggerMembers('gb')).join() === 'shared-0-gb');
    assert.notEqual(await bed.jsonpath('pod shared-0', '{.metadata.uid}'), uid, 'the pod was replaced');
    assert.equal(await bed.jsonpath('rlg shared', '{.status.clusters[*].raftPort}'), '12000 12001', 'ga kept its port; gb got the next');
    assert.match(await bed.jsonpath('pod shared-0', '{.spec.containers[0].args}'), /"--clusters","ga,gb","--id","shared-0-ga,shared-0-gb"/);
    await until('ga to still have the group logger as a ready member', async () => (await loggerMembers('ga')).join() === 'shared-0-ga' && (await readyLoggers('ga')).join() === 'true');
    const ca = await write('ga', 'second');
    const cb = await write('gb', 'other');
    await until('the group logger to hold both clusters\' writes', async () => {
      const log = await groupLog();
      const a = log?.clusters.find((c) => c.name === 'shared-0-ga');
      const b = log?.clusters.find((c) => c.name === 'shared-0-gb');
      return !!a && !!b && a.last >= ca && b.last >= cb;
    });
    const a = (await groupLog())!.clusters.find((c) => c.name === 'shared-0-ga')!;
    assert.ok(a.first <= before, `ga's log from before the roll is still there (first ${a.first}, had up to ${before})`);
  });

  it('scaling the group to 2 loggers adds a member to every cluster; back to 1 removes it from each', async () => {
    assert.equal((await bed.kubectl('patch', 'rlg', 'shared', '--type', 'merge', '-p', '{"spec":{"loggers":2}}')).code, 0);
    await until('both clusters to have two group loggers', async () => (await loggerMembers('ga')).sort().join() === 'shared-0-ga,shared-1-ga' && (await loggerMembers('gb')).sort().join() === 'shared-0-gb,shared-1-gb');
    assert.equal(await bed.jsonpath('rc ga', '{.status.loggerGroup.members}'), '2');
    assert.equal((await bed.kubectl('patch', 'rlg', 'shared', '--type', 'merge', '-p', '{"spec":{"loggers":1}}')).code, 0);
    await until('one group logger again in each cluster, and one pod', async () =>
      (await loggerMembers('ga')).join() === 'shared-0-ga' && (await loggerMembers('gb')).join() === 'shared-0-gb' && (await bed.jsonpath('pods -l raftkv.io/logger-group=shared', '{.items[*].metadata.name}')) === 'shared-0',
    );
  });

  it('a cluster that leaves the group removes the group\'s member; deleting the group removes it from the rest', async () => {
    assert.equal((await bed.kubectl('patch', 'rc', 'ga', '--type', 'json', '-p', '[{"op":"remove","path":"/spec/loggerGroup"}]')).code, 0);
    await until('ga without logger members', async () => (await loggerMembers('ga')).length === 0);
    await until('the group to serve gb only', async () => (await bed.jsonpath('rlg shared', '{.status.clusters[*].name}')) === 'gb' && (await bed.jsonpath('rlg shared', '{.status.phase}')) === 'Available');
    assert.equal((await bed.kubectl('delete', 'rlg', 'shared')).code, 0);
    await until('gb without logger members and no group pod', async () => (await loggerMembers('gb')).length === 0 && (await bed.jsonpath('pods -l raftkv.io/logger-group=shared', '{.items[*].metadata.name}')) === '');
    assert.equal(await bed.jsonpath('rc gb', '{.status.loggerGroup.found}'), 'false');
    assert.match((await bed.kubectl('get', 'events', '--field-selector', 'involvedObject.name=gb,reason=NoLoggerGroup', '-o', 'jsonpath={.items[*].message}')).out, /no RaftLoggerGroup of that name/);
    assert.equal(await bed.jsonpath('rc gb', '{.status.phase}'), 'Available');
  });
});
