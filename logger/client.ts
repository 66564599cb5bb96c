/**
 * Reading a logger (or a replica's applog) from outside: over its HTTP API or its recov port,
 * the same three questions: what logs are there, what state does one start from, and give me
 * the entries i..n. Used by replicas catching up, `raftkv recovery` and `raftkv restore`.
 */
import http from 'node:http';
import https from 'node:https';
import { Entry, Snapshot } from '../raft/types.js';
import { decodeSnapshot } from '../raft/storage/snapshots.js';
import { RecordSplitter } from './command-log.js';
import { recovBase, recovInfo, recovRange } from './recov.js';

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
  range(cluster: string, from: number, to: number, onEntries: (batch: Entry[]) => void): Promise<{ count: number; bytes: number }>;
}

export interface SourceOptions {
  token?: string;
  ca?: Buffer;
}

/** `http://host:port` or `host:port` for HTTP; `recov://host:port` (or `tcp://`) for the recov port. */
export function logSource(addr: string, o: SourceOptions = {}): LogSource {
  const m = /^(recov|tcp):\/\/(.+)$/.exec(addr);
  if (m) return recovSource(m[2]);
  return httpSource(/^https?:\/\//.test(addr) ? addr.replace(/\/$/, '') : `${o.ca ? 'https' : 'http'}://${addr}`, o);
}

function recovSource(addr: string): LogSource {
  return {
    info: async () => (await recovInfo(addr)) as LogInfo[],
    base: (cluster) => recovBase(addr, cluster),
    range: async (cluster, from, to, onEntries) => {
      const r = await recovRange(addr, cluster, from, to, onEntries);
      return { count: r.count, bytes: r.bytes };
    },
  };
}

function get(url: string, o: SourceOptions, accept: string, onData?: (b: Buffer) => void): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.request(url, { method: 'GET', headers: { accept, ...(o.token ? { 'x-raftkv-token': o.token } : {}) }, timeout: 120_000, ...(o.ca ? { ca: o.ca } : {}) }, (res) => {
      const parts: Buffer[] = [];
      const streaming = onData && res.statusCode === 200;
      res.on('data', (d: Buffer) => {
        if (!streaming) return void parts.push(d);
        try {
          onData(d);
        } catch (e) {
          res.destroy(e as Error);
          reject(e as Error);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
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

function httpSource(base: string, o: SourceOptions): LogSource {
  return {
    info: async () => {
      const r = await get(`${base}/v1/log`, o, 'application/json');
      if (r.status !== 200) throw failure(`${base}/v1/log`, r);
      return (JSON.parse(r.body.toString()) as { clusters: LogInfo[] }).clusters;
    },
    base: async (cluster) => {
      const url = `${base}/v1/log/${encodeURIComponent(cluster)}/base`;
      const r = await get(url, o, 'application/octet-stream');
      if (r.status === 404 && /no base snapshot/.test(r.body.toString())) return undefined;
      if (r.status !== 200) throw failure(url, r);
      return decodeSnapshot(r.body);
    },
    range: async (cluster, from, to, onEntries) => {
      const url = `${base}/v1/log/${encodeURIComponent(cluster)}?from=${from}&to=${to}`;
      const splitter = new RecordSplitter();
      let next = from;
      let bytes = 0;
      const r = await get(url, o, 'application/octet-stream', (d) => {
        bytes += d.length;
        const batch = splitter.push(d);
        for (const e of batch) {
          if (e.index !== next) throw new Error(`stream out of order: got ${e.index}, expected ${next}`);
          next++;
        }
        if (batch.length > 0) onEntries(batch);
      });
      if (r.status !== 200) throw failure(url, r);
      if (splitter.pending() > 0 || next !== to + 1) throw new Error(`${url}: stream ended early at ${next - 1}`);
      return { count: to - from + 1, bytes };
    },
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
