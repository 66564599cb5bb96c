/**
 * One reconcile pass for one RaftCluster: make its Services, PDB and member pods agree with the
 * spec, taking at most one membership step per pass (add one member, remove one, replace one),
 * and write what it saw into status. Every step is safe to repeat and safe to interrupt: the
 * operator may be killed between any two calls and the next pass (by this operator or another)
 * starts from what the cluster and the API say, never from memory.
 */
import { PatchStrategy, ApiException, type V1OwnerReference } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { quorum } from '../raft/index.js';
import { ReconcilerBase, createIfAbsent, ignoreConflict, isReady } from './api.js';
import { LABEL_CLUSTER, LABEL_ORDINAL, LABEL_ROLE } from './labels.js';
import { ReplicaView, removeMember, replicaStatus, transferLeadership } from './members.js';
import { ClusterRef, Obj, PORTS, ownerReference, TEMPLATE_ANNOTATION, clientService, disruptionBudget, loadgenPod, loggerPod, peerService, pvcFor, replicaPod, replicaSelector, selectorString, serviceMonitor, templateHash } from './resources.js';
import { RaftClusterSpec, RaftLoggerGroupSpec, groupLoggerName, loggerName, replicaName } from './spec.js';

/** The RaftLoggerGroup a cluster names in spec.loggerGroup, as the operator's cache has it. */
export interface LoggerGroupView {
  name: string;
  /** undefined: no such group (its members in the cluster are stale). */
  spec?: RaftLoggerGroupSpec;
  /** Its pods, as the operator's cache has them. */
  pods: Obj[];
}

export interface ReconcileResult {
  /** Run again after this many ms (the cluster is still converging). */
  requeueMs?: number;
  phase: string;
}

export interface EventSink {
  (c: ClusterRef, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
}

interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

/** `kubectl annotate rc NAME raftkv.io/restore-from-logger=ORDINAL`: rebuild from that logger. */
export const RESTORE_ANNOTATION = 'raftkv.io/restore-from-logger';
const RESTORED_ANNOTATION = 'raftkv.io/restored-from';


export class Reconciler extends ReconcilerBase {
  async reconcile(rc: Obj, spec: RaftClusterSpec, group?: LoggerGroupView): Promise<ReconcileResult> {
    const c: ClusterRef = { name: rc.metadata!.name!, namespace: rc.metadata!.namespace!, uid: rc.metadata!.uid! };
    if (rc.metadata?.deletionTimestamp) return { phase: 'Terminating' };
    let monitorUnavailable = false;
    await this.ensureMemberAccess(c);
    await this.ensure(c, peerService(c));
    await this.ensure(c, clientService(c));
    await this.ensure(c, disruptionBudget(c, spec.replicas));
    if (spec.monitoring.serviceMonitor) {
      // Without the Prometheus operator's CRD there is nothing to make: say so once, go on.
      await this.ensure(c, serviceMonitor(c)).catch(async (e: unknown) => {
        if (rc.status?.serviceMonitor === 'unavailable') return;
        await this.event(c, 'Warning', 'NoServiceMonitor', `spec.monitoring.serviceMonitor is set but no ServiceMonitor could be made (is the Prometheus operator installed?): ${(e as Error).message.split('\n')[0]}`);
        monitorUnavailable = true;
      });
    }

    const pods = (await this.core.listNamespacedPod({ namespace: c.namespace, labelSelector: `${LABEL_CLUSTER}=${c.name}` })).items as Obj[];
    const live = pods.filter((p) => !p.metadata.deletionTimestamp);
    const replicas = live.filter((p) => p.metadata.labels?.[LABEL_ROLE] === 'replica');
    const views = (await Promise.all(replicas.filter((p) => p.status?.podIP).map((p) => replicaStatus(p.metadata.name, p.status.podIP)))).filter((v): v is ReplicaView => v !== undefined);
    const leader = views.find((v) => v.role === 'leader');
    const bootstrapped = rc.status?.bootstrapped === true || (leader !== undefined && leader.commitIndex > 0);
    const status: Record<string, any> = { observedGeneration: rc.metadata.generation, selector: selectorString(replicaSelector(c.name)), bootstrapped };
    if (monitorUnavailable || (spec.monitoring.serviceMonitor && rc.status?.serviceMonitor === 'unavailable')) status.serviceMonitor = 'unavailable';
    const conditions: Condition[] = [];
    let phase = 'Forming';
    let requeueMs: number | undefined = 2000;

    // Pods that failed for good are replaced (Always-restart pods rarely get here).
    for (const p of live.filter((x) => x.status?.phase === 'Failed')) {
      await this.core.deleteNamespacedPod({ name: p.metadata.name, namespace: c.namespace }).catch(ignoreConflict);
      await this.event(c, 'Warning', 'PodFailed', `${p.metadata.name} failed (${p.status?.reason ?? 'exited'}); it will be replaced`);
      return this.finish(rc, c, { ...status, phase: 'Degraded' }, [{ type: 'Degraded', status: 'True', reason: 'PodFailed', message: `${p.metadata.name} failed` }], 500);
    }

    // The engine is chosen when the cluster forms; nothing converts data between engines.
    status.app = rc.status?.app ?? spec.app;
    if (spec.app !== status.app) {
      const message = `spec.app cannot change from ${status.app} to ${spec.app} once the cluster has formed (nothing converts the data); set it back, or make a new RaftCluster`;
      if (rc.status?.phase !== 'Invalid') await this.event(c, 'Warning', 'AppImmutable', message);
      return this.finish(rc, c, { ...status, phase: 'Invalid' }, [{ type: 'Degraded', status: 'True', reason: 'AppImmutable', message }], 10_000);
    }

    // Disaster recovery, asked for with an annotation: rebuild the cluster from a logger.
    const restoreRequest = rc.metadata.annotations?.[RESTORE_ANNOTATION];
    if (restoreRequest !== undefined && rc.status?.restore?.request !== restoreRequest) {
      return this.restore(rc, c, spec, restoreRequest, pods, live, views, status);
    }

    if (!bootstrapped) {
      // First generation: ordinals 0..N-1, each told the same initial size, so they bootstrap
      // one configuration together and nothing else can.
      const initial = rc.status?.initialSize ?? spec.replicas;
      status.initialSize = initial;
      for (let i = 0; i < initial; i++) {
        if (replicas.some((p) => p.metadata.name === replicaName(c.name, i))) continue;
        await this.createPod(c, spec, replicaPod(c, spec, i, initial), i);
        await this.event(c, 'Normal', 'CreatedMember', `created ${replicaName(c.name, i)} (initial member ${i + 1} of ${initial})`);
      }
      conditions.push({ type: 'Progressing', status: 'True', reason: 'Forming', message: `waiting for the ${initial} initial members to elect a leader` });
      return this.finish(rc, c, { ...status, phase, replicas: replicas.length, readyReplicas: readyCount(replicas) }, conditions, 1000);
    }

    if (!leader) {
      // An election takes a moment: quorum is declared lost only when no leader has been seen
      // for several election timeouts.
      const since = rc.status?.noLeaderSince ?? new Date().toISOString();
      const lost = Date.now() - Date.parse(since) > 5 * spec.raft.electionTimeoutMs;
      const message = `no replica reports a leader (${views.length} of ${replicas.length} answered) since ${since}`;
      if (lost && rc.status?.phase !== 'QuorumLost') await this.event(c, 'Warning', 'QuorumLost', `${message}; a majority of the members must come back, or restore from a logger (raftkv restore)`);
      return this.finish(rc, c, { ...status, noLeaderSince: since, phase: lost ? 'QuorumLost' : 'Electing', leader: '', replicas: replicas.length, readyReplicas: readyCount(replicas) }, [
        { type: 'Available', status: 'False', reason: 'NoLeader', message },
        { type: 'QuorumLost', status: lost ? 'True' : 'Unknown', reason: lost ? 'NoLeader' : 'Electing', message },
      ], 1000);
    }

    const members = leader.members;
    const voters = members.filter((m) => m.role === 'voter').map((m) => m.id);
    const learners = members.filter((m) => m.role === 'non-voter').map((m) => m.id);
    const podNames = new Set(replicas.map((p) => p.metadata.name));
    const ordinals = replicas.map((p) => Number(p.metadata.labels?.[LABEL_ORDINAL] ?? -1));
    status.leader = leader.id;
    // The group's pods log this cluster too: its members <group>-<i>-<cluster> are loggers here.
    const groupPods = group?.pods ?? [];
    const podOfLogger = (id: string) => {
      const gm = groupMemberOf(c.name, id);
      return live.find((x) => x.metadata.name === id) ?? (gm && groupPods.find((x) => x.metadata.name === groupLoggerName(gm.group, gm.ordinal)));
    };
    status.members = [
      ...members.filter((m) => m.role !== 'logger').map((m) => {
        const v = views.find((x) => x.id === m.id);
        const p = replicas.find((x) => x.metadata.name === m.id);
        return { name: m.id, role: m.role, ready: isReady(p), raftId: m.id, appliedIndex: v?.appliedIndex ?? 0 };
      }),
      ...members.filter((m) => m.role === 'logger').map((m) => ({ name: m.id, role: 'logger', ready: isReady(podOfLogger(m.id)), raftId: m.id, appliedIndex: m.match ?? 0 })),
    ];
    const allPods = new Set(live.map((p) => p.metadata.name as string));
    const loggerIds = members.filter((m) => m.role === 'logger').map((m) => m.id);
    if (spec.loggerGroup) status.loggerGroup = { name: spec.loggerGroup, found: group?.spec !== undefined, members: loggerIds.filter((id) => groupMemberOf(c.name, id)?.group === spec.loggerGroup).length };
    if (spec.loggerGroup && !group?.spec && rc.status?.loggerGroup?.found !== false) await this.event(c, 'Warning', 'NoLoggerGroup', `spec.loggerGroup names ${spec.loggerGroup}, but there is no RaftLoggerGroup of that name in ${c.namespace}`);
    const step = await this.membershipStep(c, spec, leader, { voters, learners: [...learners, ...loggerIds], loggerIds, group, podNames, allPods, ordinals, replicas, views });
    if (step) {
      phase = 'Scaling';
      conditions.push({ type: 'Progressing', status: 'True', reason: step.reason, message: step.message });
      requeueMs = 1000;
    }
    // Loggers: one pod per wanted ordinal (each finds the replicas to join through itself).
    const loggers = live.filter((p) => p.metadata.labels?.[LABEL_ROLE] === 'logger');
    for (let i = 0; i < spec.loggers; i++) {
      if (loggers.some((p) => p.metadata.name === loggerName(c.name, i))) continue;
      await this.createPod(c, spec, loggerPod(c, spec, i), i, 'logger');
      await this.event(c, 'Normal', 'CreatedLogger', `created ${loggerName(c.name, i)}`);
    }
    for (const p of loggers) {
      if (Number(p.metadata.labels?.[LABEL_ORDINAL]) < spec.loggers) continue;
      await this.core.deleteNamespacedPod({ name: p.metadata.name, namespace: c.namespace }).catch(ignoreConflict);
      await this.event(c, 'Normal', 'RemovedLogger', `deleted ${p.metadata.name} (spec.loggers is ${spec.loggers})`);
    }

    const ready = readyCount(replicas.filter((p) => voters.includes(p.metadata.name)));
    const healthy = voters.length === spec.replicas && ready === spec.replicas && !step;
    if (healthy) {
      phase = 'Available';
      requeueMs = 10_000;
    } else if (!step) phase = 'Degraded';
    if (spec.loadgen) {
      const lt = await this.loadTest(c, spec, rc, healthy, live);
      if (lt) status.loadTest = lt;
      else if (healthy && !rc.status?.loadTest) requeueMs = 2000;
    }
    conditions.push({ type: 'Available', status: 'True', reason: 'LeaderElected', message: `${leader.id} leads ${voters.length} voters` });
    conditions.push({ type: 'QuorumLost', status: 'False', reason: 'LeaderElected', message: `${leader.id} leads` });
    conditions.push({ type: 'Degraded', status: healthy || step ? 'False' : 'True', reason: healthy ? 'AllMembersReady' : step ? 'Scaling' : 'MembersNotReady', message: `${ready} of ${spec.replicas} voters ready` });
    if (!step) conditions.push({ type: 'Progressing', status: 'False', reason: 'Converged', message: `membership matches spec.replicas (${spec.replicas})` });
    if (spec.replicas % 2 === 0 && rc.status?.phase !== phase) await this.event(c, 'Warning', 'EvenSize', `${spec.replicas} replicas tolerate no more failures than ${spec.replicas - 1}`);
    return this.finish(rc, c, { ...status, phase, replicas: replicas.length, readyReplicas: ready }, conditions, requeueMs);
  }

  /**
   * At most one membership change per pass, never one that leaves the cluster without quorum:
   * replace a member whose pod is gone, add a member when short, remove one when over.
   */
  private async membershipStep(
    c: ClusterRef,
    spec: RaftClusterSpec,
    leader: ReplicaView,
    s: { voters: string[]; learners: string[]; loggerIds: string[]; group?: LoggerGroupView; podNames: Set<string>; allPods: Set<string>; ordinals: number[]; replicas: Obj[]; views: ReplicaView[] },
  ): Promise<{ reason: string; message: string } | undefined> {
    // A joiner on its way in (a pod that is not yet a voter): wait for it.
    const joining = s.replicas.filter((p) => !s.voters.includes(p.metadata.name));
    // 1. A member whose pod is gone: a new pod with its name joins fresh (the leader replaces
    //    the old member: a fresh joiner under a member's id is removed and added anew).
    const orphan = s.voters.find((v) => !s.podNames.has(v) && isOurReplica(c.name, v));
    if (orphan && joining.length === 0) {
      const ordinal = Number(orphan.slice(c.name.length + 1));
      if (!(await this.createPod(c, spec, replicaPod(c, spec, ordinal), ordinal))) return { reason: 'ReplacingMember', message: `waiting for ${orphan}'s old pod to finish terminating` };
      await this.event(c, 'Normal', 'ReplacedMember', `${orphan}'s pod was gone: created it again${spec.storage.ephemeral ? '; it rejoins as a new member' : ' on its volume'}`);
      return { reason: 'ReplacingMember', message: `replacing ${orphan}` };
    }
    if (joining.length > 0) {
      return { reason: 'MemberJoining', message: `${joining.map((p) => p.metadata.name).join(', ')} joining (non-voter until caught up)` };
    }
    if (s.voters.length < spec.replicas) {
      const ordinal = Math.max(-1, ...s.ordinals) + 1;
      await this.createPod(c, spec, replicaPod(c, spec, ordinal), ordinal);
      await this.event(c, 'Normal', 'ScalingUp', `created ${replicaName(c.name, ordinal)} to grow from ${s.voters.length} to ${spec.replicas} voters`);
      return { reason: 'ScalingUp', message: `adding ${replicaName(c.name, ordinal)}` };
    }
    if (s.voters.length > spec.replicas) {
      const victim = [...s.voters].filter((v) => isOurReplica(c.name, v)).sort((a, b) => ordinalOf(c.name, b) - ordinalOf(c.name, a))[0];
      if (!victim) return undefined;
      // Never leave fewer healthy voters than the new configuration's quorum.
      const healthy = s.views.filter((v) => s.voters.includes(v.id) && v.id !== victim).length;
      if (healthy < quorum(s.voters.length - 1)) {
        return { reason: 'ScaleDownBlocked', message: `removing ${victim} would leave ${healthy} healthy voters, below quorum of ${s.voters.length - 1}` };
      }
      if (victim === leader.id) {
        const to = s.views.find((v) => v.id !== victim && s.voters.includes(v.id))?.id;
        if (!to) return { reason: 'ScaleDownBlocked', message: `no other voter to hand leadership to` };
        const r = await transferLeadership(leader.ip, to).catch((e: Error) => ({ status: 0, text: e.message }));
        await this.event(c, 'Normal', 'TransferLeadership', `${victim} leads and is to be removed: handing leadership to ${to} (${r.status})`);
        return { reason: 'ScalingDown', message: `moving leadership off ${victim}` };
      }
      const r = await removeMember(leader.ip, victim).catch((e: Error) => ({ status: 0, text: e.message }));
      if (r.status !== 200) return { reason: 'ScalingDown', message: `removing ${victim} from Raft: ${r.status} ${r.text.slice(0, 200)}` };
      await this.event(c, 'Normal', 'ScalingDown', `removed ${victim} from the Raft configuration`);
      await this.core.deleteNamespacedPod({ name: victim, namespace: c.namespace }).catch(ignoreConflict);
      if (!spec.storage.ephemeral) await this.core.deleteNamespacedPersistentVolumeClaim({ name: `data-${victim}`, namespace: c.namespace }).catch(ignoreConflict);
      return { reason: 'ScalingDown', message: `removed ${victim}` };
    }
    // A spec change that shapes the pods (image, resources, timings...): replace them one at a
    // time, only while every voter is ready, followers first, the leader last and only after
    // leadership has moved off it.
    const want = templateHash(spec);
    const outdated = s.replicas.filter((p) => s.voters.includes(p.metadata.name) && p.metadata.annotations?.[TEMPLATE_ANNOTATION] !== want);
    if (outdated.length > 0) {
      const readyVoters = s.replicas.filter((p) => s.voters.includes(p.metadata.name) && isReady(p)).length;
      if (readyVoters < s.voters.length) return { reason: 'RollingUpdate', message: `waiting for every voter to be ready before replacing ${outdated.length} outdated pod(s)` };
      const follower = outdated.find((p) => p.metadata.name !== leader.id);
      if (follower) {
        await this.core.deleteNamespacedPod({ name: follower.metadata.name, namespace: c.namespace }).catch(ignoreConflict);
        await this.event(c, 'Normal', 'RollingUpdate', `replacing ${follower.metadata.name} with the new template (${outdated.length - 1} more after it)`);
        return { reason: 'RollingUpdate', message: `replacing ${follower.metadata.name}` };
      }
      const to = s.views.find((v) => v.id !== leader.id && s.voters.includes(v.id))?.id;
      if (!to) {
        await this.core.deleteNamespacedPod({ name: leader.id, namespace: c.namespace }).catch(ignoreConflict);
        return { reason: 'RollingUpdate', message: `replacing ${leader.id}, the only member` };
      }
      const r = await transferLeadership(leader.ip, to).catch((e: Error) => ({ status: 0, text: e.message }));
      await this.event(c, 'Normal', 'RollingUpdate', `${leader.id} is the last outdated pod: handing leadership to ${to} first (${r.status})`);
      return { reason: 'RollingUpdate', message: `moving leadership off ${leader.id}` };
    }
    // Non-voters with no pod and no future: a joiner whose pod was deleted before it was
    // promoted, a logger scaled away. Left in the configuration they would be retried forever.
    const stale = s.learners.find((id) => {
      // A group's logger that no longer serves this cluster: the group is gone, the cluster left
      // it, or the group has fewer loggers now. (Its pod rolls without the cluster.)
      const gm = s.loggerIds.includes(id) ? groupMemberOf(c.name, id) : undefined;
      if (gm) {
        const wanted = s.group?.spec !== undefined && spec.loggerGroup === gm.group && gm.ordinal < s.group.spec.loggers;
        if (!wanted) return true;
      }
      if (s.podNames.has(id) || s.allPods.has(id)) return false;
      if (isOurReplica(c.name, id)) return true;
      const m = new RegExp(`^${escapeRe(c.name)}-log-(\\d+)$`).exec(id);
      return m !== null && Number(m[1]) >= spec.loggers;
    });
    if (stale) {
      const r = await removeMember(leader.ip, stale).catch((e: Error) => ({ status: 0, text: e.message }));
      await this.event(c, 'Normal', 'RemovedMember', `removed ${stale}, a non-voter whose pod is gone (${r.status})`);
      return { reason: 'Cleanup', message: `removing ${stale}` };
    }
    // Pods that are not members and not wanted (left over from an interrupted scale-down).
    const stray = s.replicas.find((p) => !s.voters.includes(p.metadata.name) && !s.learners.includes(p.metadata.name) && ordinalOf(c.name, p.metadata.name) >= spec.replicas && s.voters.length >= spec.replicas);
    if (stray) {
      await this.core.deleteNamespacedPod({ name: stray.metadata.name, namespace: c.namespace }).catch(ignoreConflict);
      return { reason: 'Cleanup', message: `deleted ${stray.metadata.name}, not a member` };
    }
    return undefined;
  }

  /**
   * Rebuild the cluster from a logger's log after quorum was lost for good (`kubectl annotate rc
   * NAME raftkv.io/restore-from-logger=0`): every replica pod goes, member 0 starts from the
   * logger's log as the only member of a new cluster (new cluster id: no old member can talk to
   * it), the old loggers (of the old cluster) are replaced, and scaling brings the other members
   * back one by one.
   */
  private async restore(rc: Obj, c: ClusterRef, spec: RaftClusterSpec, request: string, pods: Obj[], live: Obj[], views: ReplicaView[], status: Record<string, any>): Promise<ReconcileResult> {
    const restoring = (message: string, reason = 'Restoring') =>
      this.finish(rc, c, { ...status, phase: 'Restoring', leader: '' }, [{ type: 'Progressing', status: 'True', reason, message }, { type: 'Available', status: 'False', reason, message }], 1000);
    const ordinal = Number(request);
    const source = loggerName(c.name, Number.isInteger(ordinal) && ordinal >= 0 ? ordinal : 0);
    const restorePod = live.find((p) => p.metadata.annotations?.[RESTORED_ANNOTATION] === request);
    if (!restorePod && !(Number.isInteger(ordinal) && ordinal >= 0 && ordinal < spec.loggers)) {
      // A group's logger also keeps other clusters' logs; rejoining it to a rebuilt cluster is not
      // automated (its log of this cluster belongs to the old cluster id): raftkv restore does it by hand.
      const message = `${RESTORE_ANNOTATION}=${request}: this cluster has no logger ${source} (spec.loggers is ${spec.loggers})${spec.loggerGroup ? `; to rebuild from the group ${spec.loggerGroup}'s log use raftkv restore --from-logger <its pod IP>:14001 --cluster <member id>` : ''}; remove the annotation`;
      if (rc.status?.phase !== 'Invalid') await this.event(c, 'Warning', 'RestoreRefused', message);
      return this.finish(rc, c, { ...status, phase: 'Invalid' }, [{ type: 'Degraded', status: 'True', reason: 'RestoreRefused', message }], 10_000);
    }
    if (!restorePod) {
      const logger = live.find((p) => p.metadata.name === source);
      if (!logger || !isReady(logger)) return restoring(`waiting for logger ${source} to be ready to restore from`, 'RestoreWaitingForLogger');
      const replicas = pods.filter((p) => p.metadata.labels?.[LABEL_ROLE] === 'replica');
      if (replicas.length > 0) {
        for (const p of replicas.filter((x) => !x.metadata.deletionTimestamp)) {
          await this.core.deleteNamespacedPod({ name: p.metadata.name, namespace: c.namespace, gracePeriodSeconds: 0 }).catch(ignoreConflict);
          if (!spec.storage.ephemeral) await this.core.deleteNamespacedPersistentVolumeClaim({ name: `data-${p.metadata.name}`, namespace: c.namespace }).catch(ignoreConflict);
        }
        return restoring(`removing the ${replicas.length} old replica pod(s) before restoring from ${source}`);
      }
      const pod = replicaPod(c, spec, 0);
      pod.spec.containers[0].args.push('--restore-from', `http://${logger.status.podIP}:${PORTS.loggerHttp}`, '--restore-cluster', source);
      pod.metadata.annotations[RESTORED_ANNOTATION] = request;
      await this.createPod(c, spec, pod, 0);
      await this.event(c, 'Warning', 'RestoreStarted', `restoring ${c.name} from logger ${source}'s log into ${pod.metadata.name}, the first member of a new cluster`);
      return restoring(`${pod.metadata.name} is rebuilding the state from ${source}`);
    }
    const v = views.find((x) => x.id === restorePod.metadata.name);
    if (!v || v.role !== 'leader') return restoring(`waiting for ${restorePod.metadata.name} to lead the restored cluster`);
    // The old loggers belong to the old cluster: replaced, they join the new one.
    for (const p of live.filter((x) => x.metadata.labels?.[LABEL_ROLE] === 'logger')) await this.core.deleteNamespacedPod({ name: p.metadata.name, namespace: c.namespace }).catch(ignoreConflict);
    await this.event(c, 'Normal', 'Restored', `${restorePod.metadata.name} leads the restored cluster at index ${v.commitIndex}; the other members are added back one by one`);
    return this.finish(rc, c, { ...status, bootstrapped: true, phase: 'Scaling', leader: v.id, restore: { request, from: source, index: v.commitIndex, at: new Date().toISOString().replace(/\.\d+Z$/, 'Z') } }, [{ type: 'Progressing', status: 'True', reason: 'Restored', message: `restored from ${source}` }], 500);
  }

  /**
   * The spec's load test, once for each loadgen block (a new block, a new run), when the cluster
   * is healthy: a generator pod runs to completion and its result (read from its log) lands in
   * status. Scaling does not rerun it.
   */
  private async loadTest(c: ClusterRef, spec: RaftClusterSpec, rc: Obj, healthy: boolean, live: Obj[]): Promise<Record<string, unknown> | undefined> {
    const generation = rc.metadata.generation as number;
    const key = createHash('sha256').update(JSON.stringify(spec.loadgen)).digest('hex').slice(0, 8);
    if (rc.status?.loadTest?.spec === key) return undefined;
    const name = `${c.name}-loadgen-${key}`;
    const pod = live.find((p) => p.metadata.name === name);
    if (!pod) {
      if (!healthy) return undefined;
      await this.objects.create(loadgenPod(c, spec, name, generation)).catch(ignoreConflict);
      await this.event(c, 'Normal', 'LoadTestStarted', `${name}: ${spec.loadgen!.clients} clients for ${spec.loadgen!.duration} s`);
      return undefined;
    }
    const phase = pod.status?.phase;
    if (phase !== 'Succeeded' && phase !== 'Failed') return undefined;
    const log = await this.core.readNamespacedPodLog({ name, namespace: c.namespace }).catch(() => '');
    const text = String(log);
    let result: Record<string, unknown>;
    try {
      const r = JSON.parse(text.slice(text.indexOf('{'))) as { throughput: number; latencyUs: { p50: number; p99: number }; errors: number; timeouts: number; answered: number };
      result = { spec: key, generation, finishedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), throughput: Math.round(r.throughput), p50Ms: r.latencyUs.p50 / 1000, p99Ms: r.latencyUs.p99 / 1000, errors: r.errors + r.timeouts, answered: r.answered };
      await this.event(c, 'Normal', 'LoadTestFinished', `${Math.round(r.throughput)} ops/s, p99 ${(r.latencyUs.p99 / 1000).toFixed(1)} ms, ${r.errors + r.timeouts} errors`);
    } catch {
      result = { spec: key, generation, finishedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), error: `the load generator ${phase === 'Failed' ? 'failed' : 'printed no result'}: ${text.trim().split('\n').slice(-3).join(' / ').slice(0, 300)}` };
      await this.event(c, 'Warning', 'LoadTestFailed', String(result.error));
    }
    await this.core.deleteNamespacedPod({ name, namespace: c.namespace }).catch(ignoreConflict);
    return result;
  }

  /** Create a member pod (and its volume claim); false if one of that name still exists. */
  private async createPod(c: ClusterRef, spec: RaftClusterSpec, pod: Obj, ordinal: number, role: 'replica' | 'logger' = 'replica'): Promise<boolean> {
    if (!spec.storage.ephemeral) await this.objects.create(pvcFor(c, spec, pod.metadata.name, role, ordinal)).catch(ignoreConflict);
    const made = await createIfAbsent(this.objects, pod);
    if (made) this.log(`${c.namespace}/${c.name}: created pod ${pod.metadata.name}`);
    return made;
  }

  /** Create the object, or bring its spec back to what it should be. */
  private async ensure(c: ClusterRef, desired: Obj): Promise<void> {
    let current: Obj | undefined;
    try {
      current = (await this.objects.read(desired as never)) as Obj;
    } catch (e) {
      if (!(e instanceof ApiException && e.code === 404)) throw e;
    }
    if (!current) {
      await this.objects.create(desired).catch(ignoreConflict);
      await this.event(c, 'Normal', 'Created', `created ${desired.kind} ${desired.metadata.name}`);
      return;
    }
    if (!sameSpec(current.spec, desired.spec)) {
      await this.objects.patch({ apiVersion: desired.apiVersion, kind: desired.kind, metadata: { name: desired.metadata.name, namespace: desired.metadata.namespace }, spec: desired.spec }, undefined, undefined, 'raftkv-operator', undefined, PatchStrategy.MergePatch);
    }
  }

  /** The ServiceAccount the member pods run as: get/list/watch on pods, nothing else. */
  /**
   * The members' ServiceAccount, Role and RoleBinding in the cluster's namespace: shared by every
   * RaftCluster there, so each one is an owner (none the controller) and they go with the last.
   */
  private async ensureMemberAccess(c: ClusterRef): Promise<void> {
    const namespace = c.namespace;
    const labels = { 'app.kubernetes.io/name': 'raftkv', 'app.kubernetes.io/managed-by': 'raftkv-operator' };
    const owner = { ...ownerReference(c), controller: false };
    for (const o of [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'raftkv-member', namespace, labels, ownerReferences: [owner] } },
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'raftkv-member', namespace, labels, ownerReferences: [owner] }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }] },
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'raftkv-member', namespace, labels, ownerReferences: [owner] }, subjects: [{ kind: 'ServiceAccount', name: 'raftkv-member', namespace }], roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'raftkv-member' } },
    ]) {
      let current: Obj;
      try {
        current = (await this.objects.read(o as never)) as Obj;
      } catch (e) {
        if (!(e instanceof ApiException && e.code === 404)) throw e;
        await this.objects.create(o).catch(ignoreConflict);
        continue;
      }
      const refs: V1OwnerReference[] = current.metadata.ownerReferences ?? [];
      if (refs.some((r) => r.uid === c.uid)) continue;
      // resourceVersion in the patch: a concurrent change makes this a 409, retried next pass.
      const meta = { name: o.metadata.name, namespace, resourceVersion: current.metadata.resourceVersion, ownerReferences: [...refs, owner] };
      await this.objects.patch({ apiVersion: o.apiVersion, kind: o.kind, metadata: meta }, undefined, undefined, 'raftkv-operator', undefined, PatchStrategy.MergePatch).catch(ignoreConflict);
    }
  }

  private async finish(rc: Obj, c: ClusterRef, status: Record<string, any>, conditions: Condition[], requeueMs?: number): Promise<ReconcileResult> {
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    status.conditions = conditions.map((cond) => {
      const old = (rc.status?.conditions ?? []).find((x: Condition) => x.type === cond.type);
      return { ...cond, observedGeneration: rc.metadata.generation, lastTransitionTime: old && old.status === cond.status ? old.lastTransitionTime : now };
    });
    if (status.loadTest === undefined && rc.status?.loadTest) status.loadTest = rc.status.loadTest;
    if (status.restore === undefined && rc.status?.restore) status.restore = rc.status.restore;
    if (JSON.stringify(stripTimes(rc.status)) !== JSON.stringify(stripTimes(status))) await this.writeStatus('raftclusters', rc, c, status);
    return { requeueMs, phase: status.phase };
  }
}

function readyCount(pods: Obj[]): number {
  return pods.filter(isReady).length;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A logger group's member in this cluster (<group>-<ordinal>-<cluster>), or undefined. */
function groupMemberOf(cluster: string, id: string): { group: string; ordinal: number } | undefined {
  if (!id.endsWith(`-${cluster}`) || new RegExp(`^${escapeRe(cluster)}-(log-)?\\d+$`).test(id)) return undefined;
  const m = /^(.+)-(\d+)$/.exec(id.slice(0, -cluster.length - 1));
  return m ? { group: m[1], ordinal: Number(m[2]) } : undefined;
}

function isOurReplica(cluster: string, id: string): boolean {
  return new RegExp(`^${escapeRe(cluster)}-\\d+$`).test(id);
}

function ordinalOf(cluster: string, id: string): number {
  return isOurReplica(cluster, id) ? Number(id.slice(cluster.length + 1)) : -1;
}

function sameSpec(a: unknown, b: unknown): boolean {
  // Only the fields the operator sets are compared (the server adds defaults of its own).
  if (b === null || typeof b !== 'object') return JSON.stringify(a) === JSON.stringify(b);
  if (Array.isArray(b)) return Array.isArray(a) && a.length === b.length && b.every((x, i) => sameSpec(a[i], x));
  if (a === null || typeof a !== 'object') return false;
  return Object.entries(b as Record<string, unknown>).every(([k, v]) => sameSpec((a as Record<string, unknown>)[k], v));
}

function stripTimes(s: unknown): unknown {
  return JSON.parse(JSON.stringify(s ?? {}, (k, v) => (k === 'lastTransitionTime' ? undefined : v)));
}
