import { NodeId } from './types.js';

export type RaftErrorCode =
  /** Refused before anything was proposed: safe to retry (elsewhere). */
  | 'not-leader'
  /** Proposed, but whether it will be applied is not known (it timed out, or a snapshot covered it). */
  | 'outcome-unknown'
  /** Proposed, then replaced by another leader's entry: it will never be applied; safe to retry. */
  | 'dropped'
  | 'transfer-in-progress'
  | 'conf-change-pending'
  | 'invalid-conf-change'
  | 'learner-not-caught-up'
  | 'invalid-message'
  | 'stopped';

/** A request the core refused; `leader` is a hint for where to retry ('' if unknown). */
export class RaftError extends Error {
  constructor(
    readonly code: RaftErrorCode,
    message: string,
    readonly leader: NodeId = '',
  ) {
    super(message);
    this.name = 'RaftError';
  }
}
