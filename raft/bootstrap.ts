import { createHash } from 'node:crypto';
import { bootstrapEntries } from './node.js';
import type { InitialState } from './node.js';
import type { Storage } from './storage/storage.js';
import { NodeId } from './types.js';

/**
 * A cluster's identity: a digest of its bootstrap entries, so every initial member computes
 * the same id on its own and two separately bootstrapped clusters never share one.
 */
export function clusterIdOf(members: { id: NodeId; addr: string }[]): string {
  const h = createHash('sha256');
  for (const e of bootstrapEntries(members)) h.update(e.data).update('\n');
  return h.digest('hex').slice(0, 16);
}

/** Nothing stored yet: a node starting for the first time (or after its data was lost). */
export function isEmptyStorage(storage: Storage): boolean {
  return isEmptyState(storage.initialState());
}

function isEmptyState(st: InitialState): boolean {
  return (st.hardState?.term ?? 0) === 0 && (st.entries?.length ?? 0) === 0 && !st.snapshot;
}

/**
 * What a node starts from: its recovered state, or, for a brand-new node of a new cluster, the
 * bootstrap entries (identical on every initial member), made durable before anything else.
 * A node with `members` undefined and empty storage starts empty and waits to be added.
 */
export async function loadOrBootstrap(storage: Storage, members?: { id: NodeId; addr: string }[]): Promise<InitialState> {
  const st = storage.initialState();
  if (!isEmptyState(st) || !members || members.length === 0) return st;
  const entries = bootstrapEntries(members);
  const hardState = { term: 1, vote: '', commit: entries.length };
  await storage.save({ entries, hardState });
  return { hardState, entries, applied: 0 };
}
