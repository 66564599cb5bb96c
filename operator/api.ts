/** Small things every reconciler does with the API and with pods. */
import { ApiException, CoreV1Api, CustomObjectsApi, KubeConfig, KubernetesObjectApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { ClusterRef, Obj } from './resources.js';
import type { EventSink } from './reconcile.js';

/** For deletes and creates that may race another pass: gone already, or made already, is fine. */
export const ignoreConflict = (e: unknown) => {
  if (e instanceof ApiException && (e.code === 409 || e.code === 404)) return undefined;
  throw e;
};

/** Create the object; false if one of that name exists (e.g. a pod still terminating). */
export async function createIfAbsent(objects: KubernetesObjectApi, o: Obj): Promise<boolean> {
  return objects.create(o).then(
    () => true,
    (e: unknown) => {
      if (e instanceof ApiException && e.code === 409) return false;
      throw e;
    },
  );
}

export function isReady(p: Obj | undefined): boolean {
  return !!p?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
}

/** What both kinds' reconcilers hold: the API clients, the event sink and the log. */
export abstract class ReconcilerBase {
  protected readonly objects: KubernetesObjectApi;
  protected readonly core: CoreV1Api;
  protected readonly custom: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    protected readonly event: EventSink,
    protected readonly log: (l: string) => void,
  ) {
    this.objects = KubernetesObjectApi.makeApiClient(kc);
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /**
   * Write `status` over `obj`'s as a merge patch (which keeps what it does not mention, so fields
   * no longer true are nulled out) and record a phase change as an event.
   */
  protected async writeStatus(plural: 'raftclusters' | 'raftloggergroups', obj: Obj, ref: ClusterRef, status: Record<string, unknown>): Promise<void> {
    const patch: Record<string, unknown> = { ...status };
    for (const k of Object.keys(obj.status ?? {})) if (!(k in status)) patch[k] = null;
    await this.custom
      .patchNamespacedCustomObjectStatus({ group: 'raftkv.io', version: 'v1alpha1', namespace: ref.namespace, plural, name: ref.name, body: { status: patch } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
      .catch(ignoreConflict);
    if (obj.status?.phase !== status.phase) await this.event(ref, 'Normal', 'Phase', `${obj.status?.phase ?? 'new'} -> ${status.phase}`);
  }
}
