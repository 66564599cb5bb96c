/**
 * A tiny synchronous network of RaftNodes for paper-style unit tests (like etcd-io/raft's
 * `network`): storage persists instantly, messages are delivered in order unless a test cuts a
 * link or holds messages back.
 */
import {
  Entry,
  EntryType,
  HardState,
  Message,
  MessageType,
  RaftConfig,
  RaftNode,
  ReadState,
  Snapshot,
  appendToLog,
  bootstrapEntries,
} from '../../raft/index.js';

export interface Stored {
  hardState: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
}

export class Net {
  readonly nodes = new Map<string, RaftNode>();
  readonly stored = new Map<string, Stored>();
  readonly applied = new Map<string, Entry[]>();
  readonly reads = new Map<string, ReadState[]>();
  readonly sent: Message[] = [];
  private queue: Message[] = [];
  private cut = new Set<string>();
  /** Return false to drop a message. */
  filter: (m: Message) => boolean = () => true;
  private seed = 1;
  /** Simulated milliseconds: one per tick unless a test moves it (a stall: time without ticks). */
  time = 0;

  constructor(
    ids: string[],
    private readonly cfg: Partial<RaftConfig> = {},
  ) {
    const boot = bootstrapEntries(ids.map((id) => ({ id, addr: `mem:${id}` })));
    for (const id of ids) {
      this.stored.set(id, { hardState: { term: 1, vote: '', commit: boot.length }, entries: boot.slice() });
      this.boot(id, true);
    }
  }

  /**
   * (Re)create a node from what it has stored, like a process restart. A node of a brand-new
   * cluster (`fresh`) starts without the startup vote guard: no lease can count on it yet.
   */
  boot(id: string, fresh = false): RaftNode {
    const st = this.stored.get(id) ?? { hardState: { term: 0, vote: '', commit: 0 }, entries: [] };
    this.stored.set(id, st);
    let s = this.seed++ * 7919;
    const random = () => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return s / 2147483648;
    };
    const node = new RaftNode(
      { id, electionTicks: 10, heartbeatTicks: 1, random, clock: () => this.time, tickMs: 1, ...(fresh ? { startupVoteGuard: false } : {}), ...this.cfg },
      { hardState: st.hardState, entries: st.entries.slice(), snapshot: st.snapshot, applied: st.snapshot?.meta.index ?? 0 },
    );
    this.nodes.set(id, node);
    this.applied.set(id, []);
    this.reads.set(id, []);
    return node;
  }

  /** A node that is not a member yet (to be added by a conf change). */
  addBlank(id: string): RaftNode {
    this.stored.set(id, { hardState: { term: 0, vote: '', commit: 0 }, entries: [] });
    return this.boot(id);
  }

  node(id: string): RaftNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  isolate(id: string): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  cutLink(a: string, b: string): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Process one node's pending Ready: persist, queue its messages, record applies. */
  drain(id: string): boolean {
    const node = this.node(id);
    const rd = node.ready();
    if (!rd) return false;
    const st = this.stored.get(id)!;
    if (rd.snapshot) {
      st.snapshot = rd.snapshot;
      st.entries = [];
    }
    appendToLog(st.entries, rd.entries);
    if (rd.hardState) st.hardState = rd.hardState;
    for (const m of rd.messages) {
      this.sent.push(m);
      this.queue.push(m);
    }
    this.applied.get(id)!.push(...rd.committed);
    this.reads.get(id)!.push(...rd.readStates);
    node.advance();
    return true;
  }

  /** Deliver messages until nothing more happens. */
  settle(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      let progressed = false;
      for (const id of this.nodes.keys()) while (this.drain(id)) progressed = true;
      const batch = this.queue;
      this.queue = [];
      for (const m of batch) {
        progressed = true;
        if (this.cut.has(`${m.from}>${m.to}`) || !this.filter(m)) continue;
        const to = this.nodes.get(m.to);
        if (to) to.step(m);
      }
      if (!progressed) return;
    }
    throw new Error('network did not settle');
  }

  /** Queue messages a test took out of a Ready by hand. */
  deliver(msgs: Message[]): void {
    for (const m of msgs) {
      this.sent.push(m);
      this.queue.push(m);
    }
  }

  /** Drop messages that are queued and not delivered yet. */
  discardQueued(): Message[] {
    const q = this.queue;
    this.queue = [];
    return q;
  }

  tick(id: string, n = 1): void {
    for (let i = 0; i < n; i++) {
      this.time++;
      this.node(id).tick();
      this.settle();
    }
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      this.time++;
      for (const node of this.nodes.values()) node.tick();
      this.settle();
    }
  }

  elect(id: string): void {
    this.node(id).campaign();
    this.settle();
  }

  leaders(): string[] {
    return [...this.nodes.values()].filter((n) => n.isLeader()).map((n) => n.id);
  }

  /** Propose, replicate, then one heartbeat round so followers learn the commit index. */
  propose(id: string, text: string): { index: number; term: number } {
    const r = this.node(id).propose(new TextEncoder().encode(text));
    this.settle();
    this.heartbeat(id);
    return r;
  }

  /** One heartbeat round from `id` if it leads (heartbeats carry the commit index). */
  heartbeat(id: string): void {
    if (this.node(id).isLeader()) this.tick(id);
  }

  appliedData(id: string): string[] {
    return this.applied
      .get(id)!
      .filter((e) => e.type === EntryType.Normal)
      .map((e) => new TextDecoder().decode(e.data));
  }

  count(type: MessageType, from?: string): number {
    return this.sent.filter((m) => m.type === type && (from === undefined || m.from === from)).length;
  }
}

export const text = (s: string) => new TextEncoder().encode(s);
