import { SessionTable } from '../../raft/index.js';

/** The simulator's replicated state machine: a map with client sessions. */
export interface KvCommand {
  client: string;
  seq: number;
  ackedThrough: number;
  op: 'put' | 'del';
  key: string;
  value: string | null;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeCommand(c: KvCommand): Uint8Array {
  return enc.encode(JSON.stringify(c));
}

export function decodeCommand(d: Uint8Array): KvCommand {
  return JSON.parse(dec.decode(d)) as KvCommand;
}

export class SimKv {
  data = new Map<string, string>();
  sessions = new SessionTable({ maxSessions: 1000 });
  applied = 0;

  /** Returns whether the command was new (applied) or a duplicate/expired (not applied again). */
  apply(index: number, cmd: KvCommand): { fresh: boolean; result: string } {
    this.applied = index;
    const outcome = this.sessions.check(cmd.client, cmd.seq, cmd.ackedThrough, index);
    if (outcome.kind === 'duplicate') return { fresh: false, result: dec.decode(outcome.response) };
    if (outcome.kind === 'expired') return { fresh: false, result: 'expired' };
    if (cmd.op === 'put' && cmd.value !== null) this.data.set(cmd.key, cmd.value);
    else this.data.delete(cmd.key);
    this.sessions.record(cmd.client, cmd.seq, enc.encode('ok'), index);
    return { fresh: true, result: 'ok' };
  }

  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify({ applied: this.applied, data: [...this.data], sessions: this.sessions.toJSON() }));
  }

  static restore(bytes: Uint8Array): SimKv {
    const raw = JSON.parse(dec.decode(bytes)) as { applied: number; data: [string, string][]; sessions: unknown };
    const kv = new SimKv();
    kv.applied = raw.applied;
    kv.data = new Map(raw.data);
    kv.sessions = SessionTable.fromJSON(raw.sessions, { maxSessions: 1000 });
    return kv;
  }
}
