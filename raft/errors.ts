import { NodeId } from './types.js';

export type RaftErrorCode =
  | 'not-leader'
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
