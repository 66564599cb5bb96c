/** Optional TLS: PEM files given on the command line, loaded once. */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

export function loadTls(files: TlsFiles | undefined): TlsMaterial | undefined {
  if (!files) return undefined;
  const read = (what: string, f: string) => {
    try {
      return readFileSync(f);
    } catch (e) {
      throw new Error(`--tls-${what} ${f}: ${(e as Error).message}`);
    }
  };
  return { cert: read('cert', files.cert), key: read('key', files.key), ca: read('ca', files.ca) };
}

/**
 * A GET whose answer is read as it arrives (a snapshot of any size): resolves with the response
 * once its head is in; its body is an async iterable of Buffers. `timeoutMs` bounds each wait
 * for data, not the whole transfer.
 */
export function requestStream(url: string, opts: { headers?: Record<string, string>; timeoutMs: number; ca?: Buffer }): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.request(url, { method: 'GET', headers: opts.headers, timeout: opts.timeoutMs, ...(opts.ca ? { ca: opts.ca } : {}) }, resolve);
    req.on('timeout', () => req.destroy(new Error(`no data from ${url} within ${opts.timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * A JSON request to another member's HTTP API, over https with our CA when TLS is on (fetch
 * cannot take a private CA).
 */
export function requestJson(
  url: string,
  opts: { method: string; headers?: Record<string, string>; body?: string; timeoutMs: number; ca?: Buffer; binary?: boolean },
): Promise<{ status: number; json: unknown; text: string; body?: Buffer }> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.request(url, { method: opts.method, headers: opts.headers, timeout: opts.timeoutMs, ...(opts.ca ? { ca: opts.ca } : {}) }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        const body = Buffer.concat(parts);
        const text = opts.binary && res.statusCode === 200 ? '' : body.toString('utf8');
        if (opts.binary && res.statusCode === 200) return resolve({ status: 200, json: undefined, text, body });
        let json: unknown = undefined;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, json, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${opts.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}
