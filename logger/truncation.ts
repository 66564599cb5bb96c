/**
 * When a logger may cut its command log: voters ask after each snapshot ("I have a snapshot up to
 * i"), and the log is cut only to the smallest index among a majority of the voters that asked,
 * with a base snapshot covering the cut (the log alone must still rebuild the state). This is the
 * decision alone, without HTTP or files, so the logger process and the whole-replica simulator
 * run the same rule.
 */
import { quorum } from '../raft/confchange.js';

export type TruncationDecision =
  | { truncate: false; reason: string }
  /** Cut up to `upTo`; `baseFrom` lists voters to fetch a base from, best first; none needed when `heldBase`. */
  | { truncate: true; upTo: number; heldBase: boolean; baseFrom: string[] };

export class TruncationAsks {
  /** Each voter's highest ask. */
  readonly asks: Map<string, number>;

  constructor(initial: Map<string, number> = new Map()) {
    this.asks = new Map(initial);
  }

  /**
   * Record `member`'s ask and decide. `member` must be a voter (the caller refuses others);
   * asks of members that are no longer voters are forgotten.
   */
  ask(member: string, index: number, voters: string[], log: { first: number; last: number; base?: { index: number } }): TruncationDecision {
    for (const id of this.asks.keys()) if (!voters.includes(id)) this.asks.delete(id);
    this.asks.set(member, Math.max(index, this.asks.get(member) ?? 0));
    const q = quorum(voters.length);
    const values = [...this.asks.values()].sort((a, b) => b - a);
    if (values.length < q) return { truncate: false, reason: `${values.length} of ${voters.length} voters asked; a majority (${q}) must ask before anything is dropped` };
    const upTo = Math.min(values[q - 1], log.last);
    if (upTo < log.first) return { truncate: false, reason: `already truncated past ${upTo}` };
    // A base the log holds already may cover the cut (an earlier ask fetched a newer snapshot).
    if (log.base && log.base.index >= upTo) return { truncate: true, upTo, heldBase: true, baseFrom: [] };
    // The voters that asked past the cut have a snapshot covering it; any other voter may too.
    const askers = [...this.asks].filter(([, v]) => v >= upTo).map(([id]) => id);
    return { truncate: true, upTo, heldBase: false, baseFrom: [...askers, ...voters.filter((v) => !askers.includes(v))] };
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.asks);
  }
}
