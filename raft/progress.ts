/**
 * What a leader knows about one follower's log, and the flow control for sending to it
 * (etcd-io/raft's Progress): in Probe state one append is outstanding until the follower
 * answers; in Replicate state appends are pipelined up to a bounded number in flight; in
 * Snapshot state the follower is receiving a snapshot and gets no appends.
 */
export enum ProgressState {
  Probe = 'probe',
  Replicate = 'replicate',
  Snapshot = 'snapshot',
}

export class Inflights {
  /** Last index of each append in flight, oldest first. */
  private buf: number[] = [];
  constructor(readonly capacity: number) {}

  full(): boolean {
    return this.buf.length >= this.capacity;
  }
  count(): number {
    return this.buf.length;
  }
  add(lastIndex: number): void {
    this.buf.push(lastIndex);
  }
  /** The follower acknowledged up to `index`: everything sent up to it has arrived. */
  freeTo(index: number): void {
    let n = 0;
    while (n < this.buf.length && this.buf[n] <= index) n++;
    if (n > 0) this.buf.splice(0, n);
  }
  reset(): void {
    this.buf.length = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state = ProgressState.Probe;
  /** Probe state: an append is outstanding; wait for its answer or the next heartbeat. */
  probeSent = false;
  /** Snapshot state: index of the snapshot being sent and how far its chunks have been acked. */
  pendingSnapshot = 0;
  snapshotOffset = 0;
  snapshotIdleTicks = 0;
  /** Replicate state: ticks since `match` last moved while appends were outstanding. */
  stallTicks = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /** Highest heartbeat/read sequence the follower has acknowledged. */
  ackedSeq = 0;
  /**
   * The leader's send sequence when this progress began (RaftNode.sendSeq): answers echo the
   * sequence of the append or snapshot chunk they answer, and one at or below this answers a
   * message sent before, possibly to an earlier incarnation of a member removed and added again.
   */
  readonly since: number;
  readonly inflights: Inflights;

  constructor(next: number, maxInflight: number, public isLearner: boolean, since = 0) {
    this.next = next;
    this.since = since;
    this.inflights = new Inflights(maxInflight);
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
    this.snapshotOffset = 0;
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotOffset = 0;
    this.snapshotIdleTicks = 0;
    this.stallTicks = 0;
    this.inflights.reset();
  }

  /** Record an acknowledgement up to `index`; returns whether it was news. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      this.stallTicks = 0;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /** Account for an append of entries up to `lastIndex` just sent. */
  sentEntries(lastIndex: number, count: number): void {
    if (this.state === ProgressState.Replicate) {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
    } else if (this.state === ProgressState.Probe) {
      this.probeSent = true;
    }
  }

  /**
   * A rejection of the append after `rejected`: move `next` back toward the hint. Returns
   * false when the rejection is stale (answers an append we already moved past).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflights.full();
      case ProgressState.Snapshot:
        return true;
    }
  }
}
