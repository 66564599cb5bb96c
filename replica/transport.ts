/**
 * Peer transport: TCP, one long-lived outbound connection per peer (dialed on demand, address
 * resolved at connect time because pod IPs change), length-prefixed protobuf frames, every
 * message for a peer produced in one event-loop turn written with one syscall. Raft tolerates
 * loss, so a message for an unreachable peer is dropped and the core told (it then probes).
 */
import net from 'node:net';
import tls from 'node:tls';
import type { TlsMaterial } from './tls.js';
import { sameSecret } from './secret.js';
import { Message } from '../raft/index.js';
import { HostPort, dialHost, listenHost, parseHostPort } from './addr.js';
import { FrameError, PeerFrameDecoder, peerFrame, peerFrameHeader } from './framing.js';
import { Hello, decodeHello, encodeHello } from './proto.js';
import { decodeRaftMessage, encodeRaftMessage } from './raft-message-codec.js';

const KIND_HELLO = 1;
const KIND_RAFT = 2;

export interface TransportOptions {
  id: string;
  listen: HostPort;
  advertise: { raftAddr: string; clientAddr: string; httpAddr: string; role?: string };
  /** This node's cluster identity ('' until known); peers of another cluster are refused. */
  clusterId: () => string;
  /** Shared cluster token: peers must present it in their hello. Empty = no check. */
  token?: string;
  /**
   * Raft address of a peer in the current configuration (undefined: not a member). What the
   * peer itself announced in a hello is weighed against it (AddressBook).
   */
  resolve: (id: string) => string | undefined;
  /**
   * This node's configuration (undefined while it has none): only its members, or a peer that
   * has committed more, may connect (see admitsMembersOf). Without it, anyone with the token.
   */
  membership?: () => { voters: string[]; learners: string[] } | undefined;
  /** This node's commit index: announced in its hello, and weighed in admitsMembersOf. */
  commitIndex?: () => number;
  onMessage: (m: Message) => void;
  onUnreachable: (id: string) => void;
  /**
   * A peer's established connection closed and dialling it again was refused: nothing listens
   * at its address any more (its process is gone). Its leader's followers elect a new one at
   * once (RaftNode.leaderGone) instead of after an election timeout.
   */
  onRefused?: (id: string) => void;
  onHello?: (h: Hello) => void;
  maxFrameBytes?: number;
  /** Mutual TLS between peers: only holders of a certificate signed by the CA get in. */
  tls?: TlsMaterial;
  /** Byte counters for metrics. */
  onBytes?: (direction: 'sent' | 'received', n: number) => void;
}

class OutboundPeer {
  socket: net.Socket | undefined;
  connected = false;
  pending: Buffer[] = [];
  pendingBytes = 0;
  flushScheduled = false;
  failures = 0;
  retryAt = 0;
  /** The address this connection was dialled to. */
  addr = '';
  constructor(readonly id: string) {}
}

/**
 * A dial to an address where nothing answers (a pod's old IP: no host, no refusal) would wait
 * for the kernel's SYN timeout, minutes; give up sooner and dial again, re-resolving.
 */
const CONNECT_TIMEOUT_MS = 1000;

const MAX_PENDING_BYTES = 64 << 20;

/**
 * Where to dial each peer: the address the configuration gives it, or the one the peer itself
 * announced in a hello, whichever was learned last. A member restarted on its volume at a new
 * IP announces itself before the configuration can say so; a member re-added with a new
 * address is in the configuration before it can say anything.
 */
export class AddressBook {
  private readonly announced = new Map<string, { addr: string; at: number }>();
  private readonly configured = new Map<string, { addr: string; at: number }>();
  private clock = 0;

  announce(id: string, addr: string | undefined): void {
    if (addr) this.announced.set(id, { addr, at: ++this.clock });
  }

  resolve(id: string, configAddr: string | undefined): string | undefined {
    if (configAddr) {
      const c = this.configured.get(id);
      if (!c || c.addr !== configAddr) this.configured.set(id, { addr: configAddr, at: ++this.clock });
    }
    const a = this.announced.get(id);
    const c = this.configured.get(id);
    return a && (!c || a.at > c.at) ? a.addr : c?.addr;
  }
}

/** Below this a flush is copied into one buffer; above, written gathered (see flush). */
const SMALL_WRITE_BYTES = 4096;

export class PeerTransport {
  private server: net.Server | undefined;
  private readonly peers = new Map<string, OutboundPeer>();
  private readonly addresses = new AddressBook();
  private readonly inbound = new Set<net.Socket>();
  private stopped = false;
  private readonly maxFrame: number;
  private readonly admits: ((id: string, hello: Hello) => boolean) | undefined;

  constructor(private readonly opts: TransportOptions) {
    this.maxFrame = opts.maxFrameBytes ?? 64 << 20;
    this.admits = opts.membership && admitsMembersOf(opts.membership, opts.commitIndex);
  }

  async start(): Promise<number> {
    const t = this.opts.tls;
    const server = t
      ? tls.createServer({ key: t.key, cert: t.cert, ca: t.ca, requestCert: true, rejectUnauthorized: true }, (s) => this.accept(s))
      : net.createServer((s) => this.accept(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.listen.port, listenHost(this.opts.listen), () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  }

  send(messages: Message[]): void {
    if (this.stopped) return;
    for (const m of messages) {
      let peer = this.peers.get(m.to);
      if (!peer) this.peers.set(m.to, (peer = new OutboundPeer(m.to)));
      if (!peer.connected && !peer.socket && !this.dial(peer)) {
        this.opts.onUnreachable(m.to);
        continue;
      }
      if (peer.pendingBytes > MAX_PENDING_BYTES) {
        this.opts.onUnreachable(m.to);
        continue;
      }
      const payload = encodeRaftMessage(m);
      peer.pending.push(peerFrameHeader(KIND_RAFT, payload.length), payload as Buffer);
      peer.pendingBytes += 5 + payload.length;
      if (peer.connected && !peer.flushScheduled) {
        peer.flushScheduled = true;
        setImmediate(() => this.flush(peer!));
      }
    }
  }

  /** Write out every peer's queued messages now instead of at the end of this loop turn. */
  flushAll(): void {
    for (const peer of this.peers.values()) if (peer.flushScheduled) this.flush(peer);
  }

  /**
   * Connect to a peer only to say hello, if not connected already. A member that never sends
   * first (a logger never campaigns) and restarted at a new address is otherwise dialled at its
   * old one forever: the hello tells the peer where it is now.
   */
  introduce(id: string): void {
    if (this.stopped) return;
    let peer = this.peers.get(id);
    if (!peer) this.peers.set(id, (peer = new OutboundPeer(id)));
    if (!peer.connected && !peer.socket) this.dial(peer);
  }

  /** Forget a peer (removed from the cluster): close its connection. */
  drop(id: string): void {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.peers.delete(id);
    peer.socket?.destroy();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const p of this.peers.values()) p.socket?.destroy();
    for (const s of this.inbound) s.destroy();
    this.peers.clear();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
  }

  private flush(peer: OutboundPeer): void {
    peer.flushScheduled = false;
    if (!peer.connected || !peer.socket || peer.pending.length === 0) return;
    const parts = peer.pending;
    const bytes = peer.pendingBytes;
    peer.pending = [];
    peer.pendingBytes = 0;
    if (bytes <= SMALL_WRITE_BYTES) {
      // Small: one copy into a pooled buffer costs less than a gathered write.
      peer.socket.write(parts.length === 1 ? parts[0] : Buffer.concat(parts, bytes));
    } else {
      // Large (entries): one gathered write (writev) of the frames as encoded, no copy of
      // them into one fresh buffer, which V8 would count as external memory.
      peer.socket.cork();
      for (const p of parts) peer.socket.write(p);
      peer.socket.uncork();
    }
    this.opts.onBytes?.('sent', bytes);
  }

  /** Start connecting; false while backing off after failures or when the peer is unknown. */
  private dial(peer: OutboundPeer): boolean {
    if (performance.now() < peer.retryAt) return false;
    const addr = this.addresses.resolve(peer.id, this.opts.resolve(peer.id));
    if (!addr) return false;
    let hp: HostPort;
    try {
      hp = parseHostPort(addr, `address of ${peer.id}`);
    } catch {
      return false;
    }
    const t = this.opts.tls;
    const socket = t
      ? tls.connect({ host: dialHost(hp), port: hp.port, key: t.key, cert: t.cert, ca: t.ca })
      : net.connect({ host: dialHost(hp), port: hp.port });
    socket.setNoDelay(true);
    peer.socket = socket;
    peer.addr = addr;
    const connectTimer = setTimeout(() => {
      if (!peer.connected && peer.socket === socket) socket.destroy();
    }, CONNECT_TIMEOUT_MS);
    connectTimer.unref();
    socket.on(t ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer);
      peer.connected = true;
      peer.failures = 0;
      const hello = peerFrame(KIND_HELLO, encodeHello({ from: this.opts.id, token: this.opts.token ?? '', clusterId: this.opts.clusterId(), commit: this.opts.commitIndex?.() ?? 0, ...this.opts.advertise }));
      peer.pending.unshift(hello);
      peer.pendingBytes += hello.length;
      this.flush(peer);
    });
    const down = (e?: Error) => {
      if (peer.socket !== socket) return;
      const wasConnected = peer.connected;
      peer.socket = undefined;
      peer.connected = false;
      peer.pending = [];
      peer.pendingBytes = 0;
      peer.failures++;
      // Exponential backoff with jitter, 50 ms doubling to 1 s.
      const backoff = Math.min(1000, 50 * 2 ** Math.min(peer.failures - 1, 5));
      const wait = backoff * (0.5 + Math.random() / 2);
      peer.retryAt = performance.now() + wait;
      if (this.stopped) return;
      this.opts.onUnreachable(peer.id);
      if ((e as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED') this.opts.onRefused?.(peer.id);
      // A lost connection is dialled again once, as soon as the backoff allows, even with
      // nothing to send (a follower sends its leader nothing unless spoken to): a refusal
      // says the peer's process is gone, and its followers need not wait out a timeout.
      // A peer dropped meanwhile (removed from the cluster) is not dialled again.
      // The timer may fire a little before retryAt by the precise clock (it counts from the
      // loop's cached time, behind by however long this pass has run): the redial clears it,
      // or dial() would skip it and no refusal would ever be reported.
      const redial = () => {
        if (this.peers.get(peer.id) !== peer) return;
        peer.retryAt = 0;
        this.introduce(peer.id);
      };
      if (wasConnected && this.opts.onRefused) setTimeout(redial, wait).unref();
    };
    socket.on('error', down);
    socket.on('close', () => down());
    // Nothing is expected back on an outbound connection; discard anything that arrives.
    socket.on('data', () => undefined);
    return true;
  }

  private accept(socket: net.Socket): void {
    if (this.stopped) {
      socket.destroy();
      return;
    }
    this.inbound.add(socket);
    socket.setNoDelay(true);
    const decoder = new PeerFrameDecoder(this.maxFrame);
    let hello: Hello | undefined;
    socket.on('data', (chunk: Buffer) => {
      this.opts.onBytes?.('received', chunk.length);
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (e) {
        socket.destroy(e instanceof FrameError ? undefined : (e as Error));
        return;
      }
      for (const f of frames) {
        try {
          if (!hello) {
            if (f.kind !== KIND_HELLO) throw new FrameError('peer did not introduce itself');
            const h = decodeHello(f.payload);
            if (!sameSecret(this.opts.token ?? '', h.token)) throw new FrameError(`peer ${h.from} presented a wrong cluster token`);
            if (!h.from) throw new FrameError('peer hello without an id');
            if (this.admits && !this.admits(h.from, h)) throw new FrameError(`${h.from} is not a member of this cluster`);
            const mine = this.opts.clusterId();
            if (mine && h.clusterId && mine !== h.clusterId) throw new FrameError(`peer ${h.from} belongs to cluster ${h.clusterId}, not ${mine}`);
            hello = h;
            this.addresses.announce(h.from, h.raftAddr);
            this.opts.onHello?.(h);
            // The peer says it is somewhere else now (restarted with a new IP): a connection to
            // where it was may never fail by itself, so make the next send dial it afresh.
            const out = this.peers.get(h.from);
            if (out?.socket && h.raftAddr && out.addr && out.addr !== h.raftAddr) {
              out.socket.destroy();
              out.retryAt = 0;
            }
            continue;
          }
          if (f.kind !== KIND_RAFT) throw new FrameError(`unknown frame kind ${f.kind}`);
          const m = decodeRaftMessage(f.payload);
          if (m.from !== hello.from) throw new FrameError(`peer ${hello.from} sent a message claiming to be from ${m.from}`);
          this.opts.onMessage(m);
        } catch {
          // Garbage or an impostor: drop the connection, never the node.
          socket.destroy();
          return;
        }
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.inbound.delete(socket));
  }
}

/**
 * Who may talk Raft to a node: members, once it knows its membership; before that (a new node),
 * whoever the leader adding it is (the cluster token and cluster id still apply). Also a peer it
 * does not know that has committed more than it has: this node is behind on the configuration
 * (it was down while that peer joined), and that peer, perhaps the leader now, is the only one
 * that will send it the entries that say so. Refused, it never caught up (fault suite, seed 602).
 */
export function admitsMembersOf(membership: () => { voters: string[]; learners: string[] } | undefined, commitIndex: () => number = () => 0): (id: string, hello?: Hello) => boolean {
  return (id, hello) => {
    const m = membership();
    if (!m || (m.voters.length === 0 && m.learners.length === 0)) return true;
    return m.voters.includes(id) || m.learners.includes(id) || (hello?.commit ?? 0) > commitIndex();
  };
}
