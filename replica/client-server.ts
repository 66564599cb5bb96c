/**
 * The seed's client port (default :11000). Text lines `get-KEY`, `set-KEY-VALUE`,
 * `delete-KEY` are answered with one line each, in order: `OK`, `VALUE <value>`, `NOT_FOUND`
 * or `ERR <reason>`. Binary frames (0x00 | u32 length | protobuf Command) are answered with
 * Response frames matched by id, and may be pipelined. Anything malformed gets an error answer,
 * or the connection closed when the stream itself cannot be trusted (an oversized frame).
 */
import net from 'node:net';
import tls from 'node:tls';
import type { TlsMaterial } from './tls.js';
import { HostPort, listenHost } from './addr.js';
import { coalescedWrite } from './coalesce.js';
import { responseFrame } from './client-frames.js';
import { ClientFrameDecoder, FrameError } from './framing.js';
import { Command, Op, Response, Status, decodeCommand, newCommand } from './proto.js';
import type { Replica } from './server.js';

const MAX_IN_FLIGHT = 1024;

export function parseTextCommand(line: string): Command | string {
  const dash = line.indexOf('-');
  const verb = dash < 0 ? line : line.slice(0, dash);
  const rest = dash < 0 ? '' : line.slice(dash + 1);
  switch (verb) {
    case 'get':
      return rest ? newCommand({ op: Op.GET, key: rest }) : 'get needs a key: get-KEY';
    case 'delete':
      return rest ? newCommand({ op: Op.DELETE, key: rest }) : 'delete needs a key: delete-KEY';
    case 'set': {
      const d = rest.indexOf('-');
      if (d <= 0) return 'set needs a key and a value: set-KEY-VALUE';
      return newCommand({ op: Op.SET, key: rest.slice(0, d), value: Buffer.from(rest.slice(d + 1)) });
    }
    default:
      return `unknown command '${verb.slice(0, 32)}': expected get-KEY, set-KEY-VALUE or delete-KEY`;
  }
}

function textAnswer(r: Response): string {
  switch (r.status) {
    case Status.OK:
      return r.value.length > 0 ? `VALUE ${Buffer.from(r.value).toString()}` : 'OK';
    case Status.NOT_FOUND:
      return 'NOT_FOUND';
    default:
      return `ERR ${r.error || Status[r.status]}${r.leader ? ` (leader ${r.leader})` : ''}`;
  }
}

export class ClientServer {
  private server: net.Server | undefined;
  private sockets = new Set<net.Socket>();

  constructor(
    private readonly replica: Replica,
    private readonly listen: HostPort,
    private readonly maxValueBytes: number,
    private readonly tls?: TlsMaterial,
  ) {}

  /** Listen; returns the bound port. */
  async start(): Promise<number> {
    const server = this.tls ? tls.createServer({ key: this.tls.key, cert: this.tls.cert }, (s) => this.serve(s)) : net.createServer((s) => this.serve(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listen.port, listenHost(this.listen), () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    const closed = new Promise<void>((r) => this.server!.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const decoder = new ClientFrameDecoder(this.maxValueBytes + (64 << 10), this.maxValueBytes + 4096);
    let textChain: Promise<void> = Promise.resolve();
    let inFlight = 0;
    const done = () => {
      if (--inFlight < MAX_IN_FLIGHT && socket.isPaused()) socket.resume();
    };
    const metrics = this.replica.metrics.clientRequests;
    const run = async (cmd: Command, protocol: string): Promise<Response> => {
      const t0 = performance.now();
      const r = await this.replica.execute(cmd);
      metrics.labels({ op: Op[cmd.op] ?? 'unknown', protocol, status: Status[r.status] }).observe((performance.now() - t0) / 1000);
      return r;
    };
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (e) {
        const msg = e instanceof FrameError ? e.message : 'unreadable request';
        socket.end(`ERR ${msg}; closing the connection\n`);
        return;
      }
      for (const f of frames) {
        inFlight++;
        if (inFlight >= MAX_IN_FLIGHT) socket.pause();
        if (f.kind === 'text') {
          const cmd = parseTextCommand(f.line);
          textChain = textChain.then(async () => {
            const answer = typeof cmd === 'string' ? `ERR ${cmd}` : textAnswer(await run(cmd, 'text'));
            coalescedWrite(socket, `${answer}\n`);
            done();
          });
        } else {
          let cmd: Command;
          try {
            cmd = decodeCommand(f.payload);
          } catch (e) {
            coalescedWrite(socket, responseFrame({ id: 0, status: Status.ERROR, error: `malformed command: ${(e as Error).message}` }));
            done();
            continue;
          }
          void run(cmd, 'protobuf').then((r) => {
            coalescedWrite(socket, responseFrame(r));
            done();
          });
        }
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
  }
}
