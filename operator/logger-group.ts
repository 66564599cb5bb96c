/**
 * One reconcile pass for one RaftLoggerGroup (the seed's one logger for several clusters): its
 * logger pods carry one non-voting member for each RaftCluster that names the group and has
 * formed. A change of that set (or of the group's spec) rolls the pods one at a time, each only
 * when every other one is ready, so the group never has two loggers down by choice. Clusters
 * treat the group's members as their loggers (operator/reconcile.ts); this pass only runs pods.
 */
import { ReconcilerBase, createIfAbsent, ignoreConflict, isReady } from './api.js';
import { LABEL_GROUP, LABEL_ORDINAL } from './labels.js';
import { ClusterRef, GroupCluster, Obj, TEMPLATE_ANNOTATION, assignGroupPorts, groupLoggerPod, groupPvc, groupTemplateHash } from './resources.js';
import { RaftLoggerGroupSpec, groupLoggerName } from './spec.js';
import type { ReconcileResult } from './reconcile.js';


export class GroupReconciler extends ReconcilerBase {
  /** `clusters`: the RaftClusters of the group's namespace, as the informer has them. */
  async reconcile(group: Obj, spec: RaftLoggerGroupSpec, clusters: Obj[]): Promise<ReconcileResult> {
    const g: ClusterRef = { name: group.metadata.name, namespace: group.metadata.namespace, uid: group.metadata.uid, kind: 'RaftLoggerGroup' };
    if (group.metadata.deletionTimestamp) return { phase: 'Terminating' };
    // Only formed clusters: a group pod waits for every cluster it serves before it starts, so a
    // cluster still forming would hold up the logs of the others.
    const serving = clusters
      .filter((c) => c.spec?.loggerGroup === g.name && !c.metadata.deletionTimestamp && c.status?.bootstrapped === true && c.status?.phase !== 'Restoring')
      .map((c) => c.metadata.name as string)
      .sort();
    const waiting = clusters.filter((c) => c.spec?.loggerGroup === g.name && !serving.includes(c.metadata.name)).map((c) => c.metadata.name as string);
    const ports: GroupCluster[] = assignGroupPorts(serving, (group.status?.clusters ?? []) as GroupCluster[]);
    const hash = groupTemplateHash(spec, ports);
    const pods = ((await this.core.listNamespacedPod({ namespace: g.namespace, labelSelector: `${LABEL_GROUP}=${g.name}` })).items as Obj[]).filter((p) => !p.metadata.deletionTimestamp);
    const status: Record<string, unknown> = { observedGeneration: group.metadata.generation, clusters: ports, clusterNames: serving.join(','), waiting, loggers: pods.length, readyLoggers: pods.filter(isReady).length };
    const clash = clusters.find((c) => c.metadata.name === g.name);
    if (clash) {
      const message = `a RaftCluster is also named ${g.name}: its replica pods and this group's logger pods would have the same names; rename the group`;
      if (group.status?.phase !== 'Invalid') await this.event(g, 'Warning', 'NameClash', message);
      return this.finish(group, g, { ...status, phase: 'Invalid', message }, 30_000);
    }

    if (ports.length === 0) {
      // Nothing to log: a logger process serves at least one cluster.
      for (const p of pods) await this.core.deleteNamespacedPod({ name: p.metadata.name, namespace: g.namespace }).catch(ignoreConflict);
      const message = waiting.length > 0 ? `waiting for ${waiting.join(', ')} to form` : 'no RaftCluster names this group in spec.loggerGroup';
      return this.finish(group, g, { ...status, loggers: 0, readyLoggers: 0, phase: 'Idle', message }, waiting.length > 0 ? 2000 : undefined);
    }

    for (let i = 0; i < spec.loggers; i++) {
      if (pods.some((p) => p.metadata.name === groupLoggerName(g.name, i))) continue;
      if (!spec.storage.ephemeral) await this.objects.create(groupPvc(g, spec, i)).catch(ignoreConflict);
      const made = await createIfAbsent(this.objects, groupLoggerPod(g, spec, i, ports));
      if (made) {
        this.log(`${g.namespace}/${g.name}: created pod ${groupLoggerName(g.name, i)}`);
        await this.event(g, 'Normal', 'CreatedLogger', `created ${groupLoggerName(g.name, i)} for ${serving.join(', ')}`);
      }
      return this.finish(group, g, { ...status, phase: 'Progressing', message: `creating ${groupLoggerName(g.name, i)}` }, 1000);
    }
    for (const p of pods.filter((x) => Number(x.metadata.labels?.[LABEL_ORDINAL]) >= spec.loggers)) {
      await this.core.deleteNamespacedPod({ name: p.metadata.name, namespace: g.namespace }).catch(ignoreConflict);
      await this.event(g, 'Normal', 'RemovedLogger', `deleted ${p.metadata.name} (spec.loggers is ${spec.loggers})`);
    }
    const current = pods.filter((p) => Number(p.metadata.labels?.[LABEL_ORDINAL]) < spec.loggers);
    const outdated = current.filter((p) => p.metadata.annotations?.[TEMPLATE_ANNOTATION] !== hash).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    if (outdated.length > 0) {
      // One at a time, and only when all the others are ready: a group never loses two loggers by choice.
      if (current.some((p) => !isReady(p) && !outdated.includes(p)) || outdated.filter((p) => !isReady(p)).length > 1) {
        return this.finish(group, g, { ...status, phase: 'Rolling', message: `waiting for the logger pods to be ready before replacing ${outdated[0].metadata.name}` }, 1000);
      }
      const victim = outdated.find((p) => !isReady(p)) ?? outdated[0];
      await this.core.deleteNamespacedPod({ name: victim.metadata.name, namespace: g.namespace }).catch(ignoreConflict);
      await this.event(g, 'Normal', 'RollingUpdate', `replacing ${victim.metadata.name}: it now serves ${serving.join(', ')} (${outdated.length - 1} more after it)`);
      return this.finish(group, g, { ...status, phase: 'Rolling', message: `replacing ${victim.metadata.name}` }, 1000);
    }
    const ready = current.filter(isReady).length;
    const phase = ready === spec.loggers ? 'Available' : 'Progressing';
    return this.finish(group, g, { ...status, phase, message: `${ready} of ${spec.loggers} loggers ready, serving ${serving.join(', ')}` }, phase === 'Available' ? 10_000 : 1000);
  }

  private async finish(group: Obj, g: ClusterRef, status: Record<string, unknown>, requeueMs?: number): Promise<ReconcileResult> {
    if (JSON.stringify(group.status ?? {}) !== JSON.stringify(status)) await this.writeStatus('raftloggergroups', group, g, status);
    return { requeueMs, phase: String(status.phase) };
  }
}
