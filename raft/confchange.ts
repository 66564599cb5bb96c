import { ConfChange, ConfChangeType, Membership, NodeId, cloneMembership } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify(cc));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const v = JSON.parse(decoder.decode(data)) as ConfChange;
  if (typeof v !== 'object' || v === null || typeof v.node !== 'string' || !(v.type in ConfChangeType)) {
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
  switch (cc.type) {
    case ConfChangeType.AddVoter:
      if (isVoter) return `${cc.node} is already a voter`;
      if (!isLearner && !cc.addr) return `new member ${cc.node} needs an address`;
      if (!isLearner && Object.entries(m.addrs).some(([id, a]) => a === cc.addr && id !== cc.node)) {
        return `address ${cc.addr} already belongs to another member`;
      }
      return undefined;
    case ConfChangeType.AddLearner:
      if (isLearner) return `${cc.node} is already a non-voter`;
      if (isVoter && m.voters.length === 1) return `cannot demote the only voter ${cc.node}`;
      if (!isVoter && !cc.addr) return `new member ${cc.node} needs an address`;
      if (!isVoter && Object.entries(m.addrs).some(([id, a]) => a === cc.addr && id !== cc.node)) {
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
  switch (cc.type) {
    case ConfChangeType.AddVoter:
      next.learners = drop(next.learners);
      if (!next.voters.includes(cc.node)) next.voters.push(cc.node);
      if (cc.addr) next.addrs[cc.node] = cc.addr;
      break;
    case ConfChangeType.AddLearner:
      next.voters = drop(next.voters);
      if (!next.learners.includes(cc.node)) next.learners.push(cc.node);
      if (cc.addr) next.addrs[cc.node] = cc.addr;
      break;
    case ConfChangeType.RemoveNode:
      next.voters = drop(next.voters);
      next.learners = drop(next.learners);
      delete next.addrs[cc.node];
      break;
  }
  return next;
}

export function quorum(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}
