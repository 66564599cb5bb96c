import { ConfChange, ConfChangeType, INCARNATION_PATTERN, Membership, NodeId, cloneMembership } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify(cc));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const v = JSON.parse(decoder.decode(data)) as ConfChange;
  if (
    typeof v !== 'object' ||
    v === null ||
    typeof v.node !== 'string' ||
    !(v.type in ConfChangeType) ||
    (v.logger !== undefined && typeof v.logger !== 'boolean') ||
    (v.incarnation !== undefined && typeof v.incarnation !== 'string')
  ) {
    throw new Error('malformed conf change entry');
  }
  return v;
}

/**
 * Check a proposed single-server change against the current membership. Returns a reason
 * when it is not allowed, or undefined.
 */
export function validateConfChange(m: Membership, cc: ConfChange): string | undefined {
  if (!cc.node) return 'conf change needs a node id';
  const isVoter = m.voters.includes(cc.node);
  const isLearner = m.learners.includes(cc.node);
  const isLogger = m.loggers?.includes(cc.node) ?? false;
  if (cc.logger && cc.type !== ConfChangeType.AddLearner) return `only a non-voter can be a logger`;
  if (cc.incarnation !== undefined && !INCARNATION_PATTERN.test(cc.incarnation)) return 'an incarnation is 1 to 64 letters, digits or . # _ -';
  switch (cc.type) {
    case ConfChangeType.AddVoter:
      if (isVoter) return `${cc.node} is already a voter`;
      if (isLogger) return `${cc.node} is a logger: loggers are never promoted to voters`;
      if (!isLearner && !cc.addr) return `new member ${cc.node} needs an address`;
      if (!isLearner && Object.entries(m.addrs).some(([id, a]) => a === cc.addr && id !== cc.node)) {
        return `address ${cc.addr} already belongs to another member`;
      }
      return undefined;
    case ConfChangeType.AddLearner:
      // A non-voter that joined before loggers were marked may be marked now.
      if (isLearner && !(cc.logger && !isLogger)) return `${cc.node} is already a ${isLogger ? 'logger' : 'non-voter'}`;
      if (isVoter && cc.logger) return `${cc.node} is a voter: a voter cannot become a logger`;
      if (isVoter && m.voters.length === 1) return `cannot demote the only voter ${cc.node}`;
      if (!isVoter && !isLearner && !cc.addr) return `new member ${cc.node} needs an address`;
      if (!isVoter && cc.addr && Object.entries(m.addrs).some(([id, a]) => a === cc.addr && id !== cc.node)) {
        return `address ${cc.addr} already belongs to another member`;
      }
      return undefined;
    case ConfChangeType.RemoveNode:
      if (!isVoter && !isLearner) return `${cc.node} is not a member`;
      if (isVoter && m.voters.length === 1) return `cannot remove the only voter ${cc.node}`;
      return undefined;
    default:
      return `unknown conf change type ${String((cc as ConfChange).type)}`;
  }
}

/** The membership after applying `cc` (idempotent: re-applying a change is harmless). */
export function applyConfChange(m: Membership, cc: ConfChange): Membership {
  const next = cloneMembership(m);
  const drop = (list: NodeId[]) => list.filter((id) => id !== cc.node);
  // Applied as committed, whatever validation said when it was proposed (an entry from an older
  // version may promote a logger): the lists never disagree with each other.
  let loggers = next.loggers ?? [];
  switch (cc.type) {
    case ConfChangeType.AddVoter:
      next.learners = drop(next.learners);
      loggers = drop(loggers);
      if (!next.voters.includes(cc.node)) next.voters.push(cc.node);
      if (cc.addr) next.addrs[cc.node] = cc.addr;
      if (cc.incarnation) (next.incarnations ??= {})[cc.node] = cc.incarnation;
      break;
    case ConfChangeType.AddLearner:
      next.voters = drop(next.voters);
      if (!next.learners.includes(cc.node)) next.learners.push(cc.node);
      if (cc.logger && !loggers.includes(cc.node)) loggers = [...loggers, cc.node];
      if (cc.addr) next.addrs[cc.node] = cc.addr;
      if (cc.incarnation) (next.incarnations ??= {})[cc.node] = cc.incarnation;
      break;
    case ConfChangeType.RemoveNode:
      next.voters = drop(next.voters);
      next.learners = drop(next.learners);
      loggers = drop(loggers);
      delete next.addrs[cc.node];
      if (next.incarnations) delete next.incarnations[cc.node];
      break;
  }
  if (loggers.length > 0) next.loggers = loggers;
  else delete next.loggers;
  if (next.incarnations && Object.keys(next.incarnations).length === 0) delete next.incarnations;
  return next;
}

export function quorum(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The highest value a quorum of `values` has reached (the quorum-th largest; 0 for none).
 * Sorts `values` in place, by insertion: a handful of voters, on every ack a leader counts,
 * where Array.prototype.sort's work copy was the leader's largest allocation per write.
 */
export function quorumValue(values: number[]): number {
  for (let i = 1; i < values.length; i++) {
    const v = values[i];
    let j = i - 1;
    for (; j >= 0 && values[j] < v; j--) values[j + 1] = values[j];
    values[j + 1] = v;
  }
  return values.length > 0 ? values[quorum(values.length) - 1] : 0;
}
