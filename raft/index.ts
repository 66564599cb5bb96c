export * from './types.js';
export * from './errors.js';
export { RaftNode, bootstrapEntries } from './node.js';
export type { RaftConfig, InitialState, Ready } from './node.js';
export { RaftLog } from './log.js';
export { ProgressState } from './progress.js';
export { encodeConfChange, decodeConfChange, validateConfChange, applyConfChange, quorum } from './confchange.js';
export { SessionTable } from './session.js';
export type { SessionOutcome, SessionOptions } from './session.js';
