/**
 * Rebuild a state machine from a command log: start from the log's base snapshot (or from a
 * state the caller already has), apply the committed entries after it, and follow the
 * membership through the configuration entries, so the result can become a Raft snapshot.
 */
import { applyConfChange, decodeConfChange } from '../raft/confchange.js';
import { Entry, EntryType, Membership, Snapshot } from '../raft/types.js';
import { LogSource, pickLog } from './client.js';
import { FIELDS, F_INDEX, F_TERM, F_TYPE, PreparedKvBatch, unpreparedEntry } from '../replica/prepared.js';

export interface Rebuildable {
  applyBatch(entries: Entry[]): Uint8Array[] | Promise<Uint8Array[]>;
  restoreState(s: Snapshot): void;
  /**
   * A KV state machine takes the entries prepared on the receiving thread (decoded, values in
   * slabs of this size: replica/prepared.ts) when it streams; the install is then mostly the map.
   */
  prepared?: { slabBytes: number; apply(batch: PreparedKvBatch): void };
}

export interface RebuildResult {
  clusterId: string;
  /** The state now reflects every entry up to here. */
  index: number;
  term: number;
  membership: Membership;
  /** Entries transferred and applied (after the base), and their bytes on the wire. */
  commands: number;
  bytes: number;
  baseIndex: number;
  baseBytes: number;
  transferMs: number;
  installMs: number;
}

export interface RebuildOptions {
  cluster?: string;
  /** The caller's state already reflects entries up to here (with this membership and term). */
  have?: { index: number; term: number; membership: Membership };
  /** Stop here (default: the log's last durable entry). */
  to?: number;
  /**
   * 'separate': transfer everything first, then install (the seed's recovery measurement);
   * 'streaming': install as entries arrive (bounded memory, for catching up).
   */
  mode?: 'separate' | 'streaming';
}

export async function rebuild(src: LogSource, sm: Rebuildable, o: RebuildOptions = {}): Promise<RebuildResult> {
  // A source truncating its log between telling where it starts and sending the range answers
  // "truncated" before sending any entry: start over from where it starts now.
  for (let attempt = 1; ; attempt++) {
    const applied = { entries: 0 };
    try {
      return await rebuildOnce(src, sm, o, applied);
    } catch (e) {
      if (attempt >= 3 || applied.entries > 0 || !/were truncated/.test((e as Error).message)) throw e;
    }
  }
}

async function rebuildOnce(src: LogSource, sm: Rebuildable, o: RebuildOptions, applied: { entries: number }): Promise<RebuildResult> {
  const info = pickLog(await src.info(), o.cluster);
  const t0 = performance.now();
  let installMs = 0;
  let index: number;
  let term: number;
  let membership: Membership;
  let baseIndex = 0;
  let baseBytes = 0;
  if (o.have && o.have.index + 1 >= info.first) {
    ({ index, term, membership } = o.have);
  } else if (info.base) {
    const base = await src.base(info.clusterId || info.name);
    if (!base) throw new Error(`the log of ${info.name} says it starts from a snapshot at ${info.base.index}, but none was sent`);
    const t = performance.now();
    sm.restoreState(base);
    installMs += performance.now() - t;
    ({ index, term, membership } = base.meta);
    baseIndex = index;
    baseBytes = base.data.length;
  } else if (info.first <= 1) {
    index = 0;
    term = 0;
    membership = { voters: [], learners: [], addrs: {} };
  } else {
    throw new Error(`the log of ${info.name} starts at ${info.first} with no snapshot before it: the state cannot be rebuilt from it`);
  }
  const to = Math.min(o.to ?? info.last, info.last);
  let commands = 0;
  let bytes = 0;
  const follow = (batch: Entry[]) => {
    for (const e of batch) {
      if (e.type === EntryType.ConfChange) membership = applyConfChange(membership, decodeConfChange(e.data));
      term = e.term;
    }
    index = batch[batch.length - 1].index;
    commands += batch.length;
    applied.entries = commands;
  };
  const followPrepared = (b: PreparedKvBatch) => {
    const f = b.fields;
    for (let i = 0, at = 0; i < b.count; i++, at += FIELDS) {
      if (f[at + F_TYPE] === EntryType.ConfChange) membership = applyConfChange(membership, decodeConfChange(unpreparedEntry(b, i).data));
      term = f[at + F_TERM];
    }
    index = f[(b.count - 1) * FIELDS + F_INDEX];
    commands += b.count;
    applied.entries = commands;
  };
  if (to > index) {
    if (o.mode === 'streaming' && sm.prepared) {
      const prepared = sm.prepared;
      const r = await src.rangePrepared(info.clusterId || info.name, index + 1, to, prepared.slabBytes, (batch) => {
        const t = performance.now();
        prepared.apply(batch);
        installMs += performance.now() - t;
        followPrepared(batch);
      });
      bytes = r.bytes;
    } else if (o.mode === 'streaming') {
      let chain = Promise.resolve();
      const r = await src.range(info.clusterId || info.name, index + 1, to, (batch) => {
        chain = chain.then(async () => {
          const t = performance.now();
          await sm.applyBatch(batch);
          installMs += performance.now() - t;
        });
        follow(batch);
      });
      await chain;
      bytes = r.bytes;
    } else {
      const batches: Entry[][] = [];
      const r = await src.range(info.clusterId || info.name, index + 1, to, (batch) => {
        batches.push(batch);
        follow(batch);
      });
      bytes = r.bytes;
      const t = performance.now();
      for (const b of batches) await sm.applyBatch(b);
      installMs += performance.now() - t;
    }
  }
  const transferMs = performance.now() - t0 - installMs;
  return { clusterId: info.clusterId, index, term, membership, commands, bytes, baseIndex, baseBytes, transferMs, installMs };
}
