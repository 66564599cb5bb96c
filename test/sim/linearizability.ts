/**
 * A linearizability checker for key-value histories, in the style of Wing & Gong with
 * porcupine's memoization: the history is partitioned by key, and each key's operations are
 * searched for an order that respects real time and a register's semantics.
 *
 * An operation whose outcome is unknown (a write that timed out) has `ret = Infinity`: it may
 * take effect at any point after its call, or never.
 */
export interface Operation {
  id: number;
  client: string;
  key: string;
  kind: 'put' | 'get';
  /** put: the value written (null = delete); get: the value observed. */
  value: string | null;
  call: number;
  ret: number;
}

export type CheckResult =
  | { ok: true; keys: number; ops: number }
  | { ok: false; key: string; ops: Operation[]; reason: string }
  | { ok: 'unknown'; key: string; reason: string };

interface Node {
  op: Operation;
  index: number;
  isCall: boolean;
  match: Node | undefined; // call -> its return
  prev: Node | undefined;
  next: Node | undefined;
}

export function checkHistory(history: Operation[], budget = 2_000_000): CheckResult {
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, (list = []));
    list.push(op);
  }
  for (const [key, ops] of byKey) {
    const r = checkRegister(ops, budget);
    if (r === 'unknown') return { ok: 'unknown', key, reason: `search budget of ${budget} steps exhausted` };
    if (!r) return { ok: false, key, ops: ops.slice().sort((a, b) => a.call - b.call), reason: explain(ops) };
  }
  return { ok: true, keys: byKey.size, ops: history.length };
}

/** A register: put sets the value, get must observe the current value. Initial value null. */
export function checkRegister(ops: Operation[], budget = 2_000_000): boolean | 'unknown' {
  // An indeterminate op that nobody could have observed adds nothing; dropping the unobserved
  // ones keeps the search small. A put whose value some get observed must stay.
  const observed = new Set(ops.filter((o) => o.kind === 'get').map((o) => o.value));
  ops = ops.filter((o) => o.ret !== Infinity || (o.kind === 'put' && observed.has(o.value)));
  const events: { time: number; node: Node }[] = [];
  ops.forEach((op, index) => {
    const call: Node = { op, index, isCall: true, match: undefined, prev: undefined, next: undefined };
    const ret: Node = { op, index, isCall: false, match: undefined, prev: undefined, next: undefined };
    call.match = ret;
    events.push({ time: op.call, node: call }, { time: op.ret, node: ret });
  });
  // Calls sort before returns at equal times: such operations are treated as concurrent.
  events.sort((a, b) => a.time - b.time || (a.node.isCall === b.node.isCall ? 0 : a.node.isCall ? -1 : 1));
  const head: Node = { op: ops[0], index: -1, isCall: false, match: undefined, prev: undefined, next: undefined };
  let tail = head;
  for (const e of events) {
    tail.next = e.node;
    e.node.prev = tail;
    tail = e.node;
  }

  const lift = (n: Node) => {
    n.prev!.next = n.next;
    if (n.next) n.next.prev = n.prev;
    const m = n.match!;
    m.prev!.next = m.next;
    if (m.next) m.next.prev = m.prev;
  };
  const unlift = (n: Node) => {
    const m = n.match!;
    m.prev!.next = m;
    if (m.next) m.next.prev = m;
    n.prev!.next = n;
    if (n.next) n.next.prev = n;
  };

  const words = Math.ceil(ops.length / 32) || 1;
  const linearized = new Uint32Array(words);
  const cache = new Set<string>();
  const stack: { node: Node; state: string | null }[] = [];
  let state: string | null = null;
  let entry = head.next;
  let steps = 0;
  while (head.next) {
    if (++steps > budget) return 'unknown';
    if (!entry) return false;
    if (entry.isCall) {
      const op = entry.op;
      const ok = op.kind === 'put' || op.value === state;
      if (ok) {
        const next: string | null = op.kind === 'put' ? op.value : state;
        linearized[entry.index >>> 5] |= 1 << (entry.index & 31);
        const key = `${linearized.join(',')}|${next}`;
        if (!cache.has(key)) {
          cache.add(key);
          stack.push({ node: entry, state });
          state = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[entry.index >>> 5] &= ~(1 << (entry.index & 31));
      }
      entry = entry.next;
    } else {
      const top = stack.pop();
      if (!top) return false;
      state = top.state;
      linearized[top.node.index >>> 5] &= ~(1 << (top.node.index & 31));
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return true;
}

function explain(ops: Operation[]): string {
  const written = new Set(ops.filter((o) => o.kind === 'put').map((o) => o.value));
  const phantom = ops.find((o) => o.kind === 'get' && o.value !== null && !written.has(o.value));
  if (phantom) return `get by ${phantom.client} observed ${phantom.value}, which no put wrote`;
  return 'no order of these operations is consistent with real time and a register (lost write, stale read or duplicate apply)';
}

export function formatOps(ops: Operation[]): string {
  return ops
    .map((o) => {
      const ret = o.ret === Infinity ? '?' : String(o.ret);
      return `  [${o.call}, ${ret}] ${o.client} ${o.kind}(${o.key}${o.kind === 'put' ? `, ${o.value}` : ''})${o.kind === 'get' ? ` -> ${o.value}` : ''}`;
    })
    .join('\n');
}
