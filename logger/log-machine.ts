/**
 * The logger's "state machine": it applies nothing. Every committed entry is appended to the
 * command log, whose group commit runs beside the Raft loop (a logger's acknowledgements never
 * wait for it: a non-voter counts for no quorum). Its own Raft snapshots are a marker that
 * says "the command log is durable up to here", taken only after the log is flushed that far,
 * so a restarted logger replays into the log exactly what it is missing.
 */
import { Entry, Snapshot, StateMachine } from '../raft/index.js';
import { CommandLog } from './command-log.js';

const MARKER = Buffer.from('RKVLOGR1');
const EMPTY = new Uint8Array(0);

export class LogMachine implements StateMachine {
  /** The last flush failure: the logger must stop (the log can no longer be trusted). */
  onError?: (e: Error) => void;
  /** A cluster snapshot replaced the log's history (the leader had no older entries). */
  onBaseInstalled?: (index: number) => void;

  constructor(readonly log: CommandLog) {}

  apply(e: Entry): Uint8Array {
    return this.applyBatch([e])[0];
  }

  applyBatch(entries: Entry[]): Uint8Array[] {
    this.log.append(entries);
    this.log.flush().catch((e: unknown) => this.onError?.(e as Error));
    return entries.map(() => EMPTY);
  }

  async snapshot(): Promise<Uint8Array> {
    await this.log.flush();
    const { index } = this.log.lastAppended();
    return Buffer.concat([MARKER, Buffer.from(JSON.stringify({ index }))]);
  }

  async restore(s: Snapshot): Promise<void> {
    const data = Buffer.from(s.data.buffer, s.data.byteOffset, s.data.length);
    if (data.subarray(0, MARKER.length).equals(MARKER)) {
      // Our own snapshot: the log was flushed past it before it was written.
      const have = this.log.lastAppended().index;
      if (have < s.meta.index) throw new Error(`the logger's own snapshot says the command log reached ${s.meta.index}, but it holds only up to ${have}: the log directory was replaced or damaged`);
      return;
    }
    // A cluster snapshot from the leader, sent because it no longer has the entries we lack.
    if (await this.log.installBase(s)) this.onBaseInstalled?.(s.meta.index);
  }
}
