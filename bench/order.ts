/**
 * Which system a matrix point measures first (0: raftkv, 1: etcd). The one measured second
 * inherits the first one's leftovers (a warm page cache, the disk's write-back and discards
 * of the cluster just deleted), and the first one follows the previous point's heavier run.
 * Alternating from point to point alone gave the same system the same place at every point
 * of a client count when the count of client counts is even (raftkv went first at both
 * one-client points of the default 1, 8, 32, 128); a checkerboard over workload and client
 * count gives each system first place at one of the two workloads of every client count.
 */
export function measuredFirst(workloadIndex: number, clientIndex: number): 0 | 1 {
  return ((workloadIndex + clientIndex) % 2) as 0 | 1;
}

/**
 * The order of both systems in each of `runs` runs of one point: the first run as
 * measuredFirst says, then alternating, so that each system goes first in half of them (one
 * more for the point's first system when `runs` is odd).
 */
export function runOrders(first: 0 | 1, runs: number): (0 | 1)[][] {
  return Array.from({ length: runs }, (_, k) => {
    const f = ((first + k) % 2) as 0 | 1;
    return [f, (1 - f) as 0 | 1];
  });
}

/**
 * The median of the ratios of paired runs, `ours[k] / theirs[k]`: run k of both systems are
 * measured one right after the other. This VM has slow stretches of tens of seconds (both
 * systems' throughput halves, and their tails double); one that falls on one system's run and
 * not on its pair's decided a pooled one-client ratio by itself, where the median of the pairs
 * sets it aside when it hits fewer than half of them. The ratios come back too, in run order.
 */
export function pairedMedianRatio(ours: number[], theirs: number[]): { median: number; ratios: number[] } {
  if (ours.length !== theirs.length || ours.length === 0) throw new Error(`paired runs needed: ${ours.length} and ${theirs.length}`);
  const ratios = ours.map((x, k) => x / theirs[k]);
  const sorted = [...ratios].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return { median: sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2, ratios };
}
