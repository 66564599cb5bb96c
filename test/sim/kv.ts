import { SessionOptions, SessionTable } from '../../raft/index.js';

/** The simulator's replicated state machine: a map with client sessions. */
export interface KvCommand {
  /** 'register' opens a session (its id comes back as the result). */
  op: 'put' | 'del' | 'register';
  client: string;
  seq: number;
  ackedThrough: number;
  key: string;
  value: string | null;
  /** The proposing leader's clock (simulated ms). */
  time: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeCommand(c: KvCommand): Uint8Array {
  return enc.encode(JSON.stringify(c));
}

export function decodeCommand(d: Uint8Array): KvCommand {
  return JSON.parse(dec.decode(d)) as KvCommand;
}

export const SESSION_EXPIRED = 'session-expired';

export class SimKv {
  data = new Map<string, string>();
  sessions: SessionTable;
  applied = 0;

  constructor(sessionOptions: SessionOptions) {
    this.sessions = new SessionTable(sessionOptions);
  }

  /**
   * Apply a command. `fresh`: it took effect now (not a duplicate, not refused). `result` is
   * 'ok', a registered session's id (`session:ID`), 'expired' or SESSION_EXPIRED.
   */
  apply(index: number, cmd: KvCommand): { fresh: boolean; result: string } {
    this.applied = index;
    this.sessions.advance(cmd.time);
    if (cmd.op === 'register') return { fresh: false, result: `session:${this.sessions.register(index)}` };
    const outcome = this.sessions.check(cmd.client, cmd.seq, cmd.ackedThrough, index);
    if (outcome.kind === 'duplicate') return { fresh: false, result: dec.decode(outcome.response) };
    if (outcome.kind === 'expired') return { fresh: false, result: 'expired' };
    if (outcome.kind === 'unknown-session') return { fresh: false, result: SESSION_EXPIRED };
    if (cmd.op === 'put' && cmd.value !== null) this.data.set(cmd.key, cmd.value);
    else this.data.delete(cmd.key);
    this.sessions.record(cmd.client, cmd.seq, enc.encode('ok'), index);
    return { fresh: true, result: 'ok' };
  }

  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify({ applied: this.applied, data: [...this.data], sessions: this.sessions.toJSON() }));
  }

  static restore(bytes: Uint8Array, sessionOptions: SessionOptions): SimKv {
    const raw = JSON.parse(dec.decode(bytes)) as { applied: number; data: [string, string][]; sessions: unknown };
    const kv = new SimKv(sessionOptions);
    kv.applied = raw.applied;
    kv.data = new Map(raw.data);
    kv.sessions = SessionTable.fromJSON(raw.sessions, sessionOptions);
    return kv;
  }
}
