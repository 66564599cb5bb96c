import { INCARNATION_PATTERN, Message, MessageType, NodeId } from './types.js';

const isIndex = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/**
 * Structural checks on a message from the network. The core trusts nothing it has not checked:
 * returns a reason when the message is malformed, undefined when it is well formed.
 */
export function validateMessage(m: Message, self: NodeId): string | undefined {
  if (typeof m !== 'object' || m === null) return 'message is not an object';
  if (!(m.type in MessageType) || typeof m.type !== 'number') return `unknown message type ${String(m.type)}`;
  if (typeof m.from !== 'string' || m.from === '') return 'message has no sender';
  if (m.from === self) return 'message claims to come from this node';
  if (m.to !== self) return `message addressed to ${String(m.to)}, not ${self}`;
  for (const f of ['term', 'index', 'logTerm', 'commit', 'rejectHint', 'seq', 'snapshotIndex', 'snapshotOffset'] as const) {
    if (!isIndex(m[f])) return `field ${f} is not a non-negative integer`;
  }
  if (!Array.isArray(m.entries)) return 'entries is not a list';
  if (m.entries.length > 0) {
    if (m.type !== MessageType.App) return `${MessageType[m.type]} must not carry entries`;
    let expect = m.index + 1;
    let prevTerm = m.logTerm;
    for (const e of m.entries) {
      if (!e || e.index !== expect) return `entries are not consecutive after index ${m.index}`;
      if (!isIndex(e.term) || e.term < prevTerm || e.term > m.term) return `entry ${e.index} has an impossible term ${e.term}`;
      if (!(e.data instanceof Uint8Array)) return `entry ${e.index} has no data buffer`;
      if (typeof e.type !== 'number' || e.type < 0 || e.type > 2) return `entry ${e.index} has unknown type`;
      prevTerm = e.term;
      expect++;
    }
  }
  if (m.type === MessageType.Snap) {
    const c = m.snapshot;
    if (!c || !c.meta || !isIndex(c.meta.index) || !isIndex(c.meta.term) || !isIndex(c.offset) || !isIndex(c.totalSize)) {
      return 'snapshot chunk is malformed';
    }
    if (!(c.data instanceof Uint8Array) || c.offset + c.data.length > c.totalSize) return 'snapshot chunk overruns its size';
    const mem = c.meta.membership;
    if (
      !mem ||
      !Array.isArray(mem.voters) ||
      !Array.isArray(mem.learners) ||
      typeof mem.addrs !== 'object' ||
      (mem.loggers !== undefined && !Array.isArray(mem.loggers)) ||
      (mem.incarnations !== undefined && (typeof mem.incarnations !== 'object' || mem.incarnations === null))
    ) {
      return 'snapshot chunk has no membership';
    }
    if (c.meta.term > m.term) return 'snapshot term is ahead of the sender';
  }
  if (typeof m.context !== 'string') return 'context is not a string';
  if (m.incarnation !== undefined && (typeof m.incarnation !== 'string' || !INCARNATION_PATTERN.test(m.incarnation))) return 'incarnation is malformed';
  return undefined;
}
