/** Small things every reconciler does with the API and with pods. */
import { ApiException, KubernetesObjectApi } from '@kubernetes/client-node';
import type { Obj } from './resources.js';

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
