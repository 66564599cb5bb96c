/** A node of the whole-replica simulator: a replica process or a logger process, and its disk. */
import type { RaftDriver, Timers } from '../../../raft/index.js';
import type { CommandLog } from '../../../logger/command-log.js';
import { TruncationAsks } from '../../../logger/truncation.js';
import type { CommandExecutor } from '../../../replica/executor.js';
import type { KvStateMachine } from '../../../replica/kv-machine.js';
import type { SimFs } from './sim-fs.js';

/** Milliseconds per Raft tick of every simulated process. */
export const TICK_MS = 10;

export interface Proc {
  inc: number;
  driver: RaftDriver;
  sm: KvStateMachine;
  executor: CommandExecutor;
  timers: Timers;
}

export class SimReplica {
  inc = 0;
  alive = false;
  proc: Proc | undefined;
  pausedUntil = 0;
  /** Monotonic clock rate against true time, and the wall clock's offset. */
  clockRate = 1;
  wallOffset = 0;
  /** Its disk was lost and it is joining again under its id: no votes while it has no state. */
  rejoining = false;
  /** Set when it starts again with no state (as MemberFiles.newIncarnation): RaftConfig.incarnation. */
  incarnation: string | undefined;
  /** A logger: the real LogMachine and CommandLog on this disk, a non-voter that never campaigns. */
  lproc: { inc: number; driver: RaftDriver; log: CommandLog } | undefined;
  /** A logger that the leader has let in at least once (a fresh start then means it rejoins). */
  admitted = false;
  /** A logger's voters' truncation asks (on its disk, durably: they survive its restarts). */
  readonly asks = new TruncationAsks();
  constructor(
    readonly id: string,
    readonly fs: SimFs,
    readonly logger = false,
  ) {}

  /** The running process's Raft driver, whichever kind of node this is. */
  running(): { inc: number; driver: RaftDriver } | undefined {
    return this.proc ?? this.lproc;
  }
}

