/**
 * A fault-injecting TCP proxy in front of one node's raft port. Peers dial the proxy; it reads
 * the first frame (the peer hello) to learn who is calling, so faults apply per directed link:
 * cut (connections dropped and refused), delay (every chunk held back), flaky (connections reset
 * at random). Only 127.0.0.1.
 */
import net from 'node:net';
import { decodeHello } from '../../replica/proto.js';
import { Prng } from '../../util/prng.js';

export class LinkFaults {
  private cut = new Set<string>();
  private delay = new Map<string, number>();
  flakiness = 0;
  constructor(readonly rng: Prng) {}
  key(from: string, to: string): string {
    return `${from}>${to}`;
  }
  isCut(from: string, to: string): boolean {
    return this.cut.has(this.key(from, to));
  }
  cutLink(from: string, to: string): void {
    this.cut.add(this.key(from, to));
  }
  delayOf(from: string, to: string): number {
    return this.delay.get(this.key(from, to)) ?? 0;
  }
  setDelay(from: string, to: string, ms: number): void {
    this.delay.set(this.key(from, to), ms);
  }
  healAll(): void {
    this.cut.clear();
    this.delay.clear();
    this.flakiness = 0;
  }
}

export class FaultProxy {
  private server: net.Server;
  private links = new Set<{ from: string; a: net.Socket; b: net.Socket }>();
  /** Every socket either side, links or not yet (a caller whose hello has not arrived). */
  private readonly sockets = new Set<net.Socket>();
  private stopped = false;
  port = 0;

  constructor(
    readonly to: string,
    private readonly targetPort: number,
    private readonly faults: LinkFaults,
  ) {
    this.server = net.createServer((a) => this.accept(a));
  }

  async start(port = 0): Promise<void> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** Drop the live connections of links that are now cut (or randomly, when flaky). */
  enforce(): void {
    for (const l of this.links) {
      if (this.faults.isCut(l.from, this.to) || (this.faults.flakiness > 0 && this.faults.rng.chance(this.faults.flakiness))) {
        l.a.destroy();
        l.b.destroy();
        this.links.delete(l);
      }
    }
  }

  async stop(): Promise<void> {
    // close() waits for every accepted connection to end: one accepted a moment before, whose
    // hello had not arrived, was in no link and kept the test waiting for ever (its caller, a
    // live replica, never closes it).
    this.stopped = true;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    this.links.clear();
    await closed;
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }

  private accept(a: net.Socket): void {
    if (this.stopped) {
      a.destroy();
      return;
    }
    this.track(a);
    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 5) return;
      const len = head.readUInt32BE(0);
      if (head.length < 4 + len) return;
      a.off('data', onHead);
      let from = '?';
      try {
        if (head[4] === 1) from = decodeHello(head.subarray(5, 4 + len)).from;
      } catch {
        // not a hello: forward as is, the node will refuse it
      }
      if (this.faults.isCut(from, this.to) || this.stopped) {
        a.destroy();
        return;
      }
      const b = net.connect(this.targetPort, '127.0.0.1');
      this.track(b);
      const link = { from, a, b };
      this.links.add(link);
      const forward = (src: net.Socket, dst: net.Socket, toward: string, fromId: string) => (data: Buffer) => {
        const d = this.faults.delayOf(fromId, toward);
        if (d > 0) {
          src.pause();
          setTimeout(() => {
            if (!dst.destroyed) dst.write(data);
            src.resume();
          }, d);
        } else if (!dst.destroyed) dst.write(data);
      };
      b.on('connect', () => {
        b.write(head);
        a.on('data', forward(a, b, this.to, from));
      });
      b.on('data', (d) => {
        if (!a.destroyed) a.write(d);
      });
      const close = () => {
        a.destroy();
        b.destroy();
        this.links.delete(link);
      };
      a.on('error', close);
      b.on('error', close);
      a.on('close', close);
      b.on('close', close);
    };
    a.on('data', onHead);
    a.on('error', () => a.destroy());
  }
}
