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
