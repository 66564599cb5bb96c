/**
 * Reading a logger (or a replica's applog) from outside: over its HTTP API or its recov port,
 * the same three questions: what logs are there, what state does one start from, and give me
 * the entries i..n. Used by replicas catching up, `raftkv recovery` and `raftkv restore`.
 */
import http from 'node:http';
import https from 'node:https';
import { Entry, Snapshot } from '../raft/types.js';
import { decodeSnapshot } from '../raft/storage/snapshots.js';
import { RangeCheck, recovBase, recovInfo, recovRawRange } from './recov.js';
import { preparedRangeOffThread, rangeOffThread } from './range-thread.js';
import { PreparedBatchBuilder, PreparedKvBatch } from '../replica/prepared.js';

export interface LogInfo {
  name: string;
  clusterId: string;
  first: number;
  last: number;
  commitIndex: number;
  base: { index: number; term: number } | null;
  bytes: number;
}

export interface LogSource {
  info(): Promise<LogInfo[]>;
  base(cluster: string): Promise<Snapshot | undefined>;
  /** Entries from..to, exactly, in order, each batch handed over as it arrives. */
  range(cluster: string, from: number, to: number, onEntries: (batch: Entry[]) => void): Promise<{ count: number; bytes: number }>;
  /** The same range as KV commands prepared for the kvstore engine (replica/prepared.ts), with slabs of `slabBytes`. */
  rangePrepared(cluster: string, from: number, to: number, slabBytes: number, onBatch: (batch: PreparedKvBatch) => void): Promise<{ count: number; bytes: number }>;
}

/** A source's range as raw record bytes, as they arrive (a promise from `onChunk` pauses it). */
export type RawRange = (cluster: string, from: number, to: number, onChunk: (b: Buffer) => void | Promise<void>) => Promise<{ bytes: number }>;

export interface SourceOptions {
  token?: string;
  ca?: Buffer;
  /**
   * Receive and check ranges on this thread instead of a worker thread. The worker (the
   * default) reads the socket and checks every record's checksum while this thread installs.
   */
  inThread?: boolean;
}

/** `http://host:port` or `host:port` for HTTP; `recov://host:port` (or `tcp://`) for the recov port. */
export function logSource(addr: string, o: SourceOptions = {}): LogSource {
  const { info, base, rawRange } = rawSource(addr, o);
  const range: LogSource['range'] = o.inThread
    ? async (cluster, from, to, onEntries) => {
        const check = new RangeCheck(from);
        const r = await rawRange(cluster, from, to, (b) => check.push(b, onEntries));
        check.end(to, `got ${check.next - from} of ${to - from + 1} entries`);
        return { count: to - from + 1, bytes: r.bytes };
      }
    : (cluster, from, to, onEntries) => rangeOffThread({ addr, token: o.token, ca: o.ca }, cluster, from, to, onEntries);
  const rangePrepared: LogSource['rangePrepared'] = o.inThread
    ? async (cluster, from, to, slabBytes, onBatch) => {
        const check = new RangeCheck(from);
        const builder = new PreparedBatchBuilder(slabBytes, (batch) => {
          check.followPrepared(batch);
          onBatch(batch);
        });
        const r = await rawRange(cluster, from, to, (b) => {
          for (const records of check.records(b)) builder.add(records);
        });
        builder.flush();
        check.end(to, `got ${check.next - from} of ${to - from + 1} entries`);
        return { count: to - from + 1, bytes: r.bytes };
      }
    : (cluster, from, to, slabBytes, onBatch) => preparedRangeOffThread({ addr, token: o.token, ca: o.ca }, cluster, from, to, slabBytes, onBatch);
  return { info, base, range, rangePrepared };
}

/** The three questions of a source, the range answered as raw bytes. */
export function rawSource(addr: string, o: SourceOptions = {}): Omit<LogSource, 'range' | 'rangePrepared'> & { rawRange: RawRange } {
  const m = /^(recov|tcp):\/\/(.+)$/.exec(addr);
  if (m) return recovSource(m[2]);
  return httpSource(/^https?:\/\//.test(addr) ? addr.replace(/\/$/, '') : `${o.ca ? 'https' : 'http'}://${addr}`, o);
}

function recovSource(addr: string) {
  return {
    info: async () => (await recovInfo(addr)) as LogInfo[],
    base: (cluster: string) => recovBase(addr, cluster),
    rawRange: (async (cluster, from, to, onChunk) => {
      const r = await recovRawRange(addr, cluster, from, to, onChunk);
      if (r.from !== from || r.to !== to) throw new Error(`${addr} answered ${r.from}..${r.to} to a request for ${from}..${to}`);
      return { bytes: r.bytes };
    }) as RawRange,
  };
}

function get(url: string, o: SourceOptions, accept: string, onData?: (b: Buffer) => void | Promise<void>): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.request(url, { method: 'GET', headers: { accept, ...(o.token ? { 'x-raftkv-token': o.token } : {}) }, timeout: 120_000, ...(o.ca ? { ca: o.ca } : {}) }, (res) => {
      const parts: Buffer[] = [];
      const streaming = onData && res.statusCode === 200;
      const fail = (e: Error) => {
        res.destroy(e);
        reject(e);
      };
      let paused: Promise<void> | undefined;
      res.on('data', (d: Buffer) => {
        if (!streaming) return void parts.push(d);
        try {
          const p = onData(d);
          if (p) {
            res.pause();
            paused = p.then(() => {
              paused = undefined;
              res.resume();
            }, fail);
          }
        } catch (e) {
          fail(e as Error);
        }
      });
      const done = () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) });
      res.on('end', () => (paused ? paused.then(done) : done()));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

function failure(url: string, r: { status: number; body: Buffer }): Error {
  let msg = r.body.toString().slice(0, 500);
  try {
    msg = (JSON.parse(msg) as { error: string }).error ?? msg;
  } catch {
    // not JSON
  }
  return new Error(`${url}: HTTP ${r.status}: ${msg}`);
}

function httpSource(base: string, o: SourceOptions) {
  return {
    info: async () => {
      const r = await get(`${base}/v1/log`, o, 'application/json');
      if (r.status !== 200) throw failure(`${base}/v1/log`, r);
      return (JSON.parse(r.body.toString()) as { clusters: LogInfo[] }).clusters;
    },
    base: async (cluster: string) => {
      const url = `${base}/v1/log/${encodeURIComponent(cluster)}/base`;
      const r = await get(url, o, 'application/octet-stream');
      if (r.status === 404 && /no base snapshot/.test(r.body.toString())) return undefined;
      if (r.status !== 200) throw failure(url, r);
      return decodeSnapshot(r.body);
    },
    rawRange: (async (cluster, from, to, onChunk) => {
      const url = `${base}/v1/log/${encodeURIComponent(cluster)}?from=${from}&to=${to}`;
      let bytes = 0;
      const r = await get(url, o, 'application/octet-stream', (d) => {
        bytes += d.length;
        return onChunk(d);
      });
      if (r.status !== 200) throw failure(url, r);
      return { bytes };
    }) as RawRange,
  };
}

/** The log of `cluster` (an id or member name; '' or '-' when the source keeps exactly one). */
export function pickLog(logs: LogInfo[], cluster: string | undefined): LogInfo {
  if (!cluster || cluster === '-') {
    if (logs.length === 1) return logs[0];
    throw new Error(`the source keeps ${logs.length} logs (${logs.map((l) => `${l.name}=${l.clusterId}`).join(', ')}): name one with --cluster`);
  }
  const l = logs.find((x) => x.clusterId === cluster || x.name === cluster);
  if (!l) throw new Error(`the source keeps no log of cluster '${cluster}' (it keeps ${logs.map((x) => `${x.name}=${x.clusterId}`).join(', ') || 'none'})`);
  return l;
}
