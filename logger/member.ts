/**
 * A logger's membership in one cluster: a non-voting Raft node (it never campaigns, votes or
 * counts for a quorum) with its own durable Raft storage, whose committed entries go to the
 * cluster's command log. One logger process runs one of these per cluster it serves.
 */
import { join } from 'node:path';
import { DiskStorage, FileSystem, Message, RaftDriver, RaftNode, Snapshot, isDamage, nodeFs } from '../raft/index.js';
import { HostPort, dialHost, formatHostPort } from '../replica/addr.js';
import { JoinRefusedError, MemberFiles, joinThrough } from '../replica/join.js';
import type { TlsMaterial } from '../replica/tls.js';
import { PeerTransport } from '../replica/transport.js';
import { CommandLog, ReceivedBase } from './command-log.js';
import { LogMachine } from './log-machine.js';

/**
 * Open a logger's own Raft state. It is fsync'd before the logger acknowledges entries, as any
 * member's: its acknowledgements count for no quorum, but the leader never sends a follower
 * anything below what it acknowledged, so a logger that lost acknowledged entries to a power cut
 * (as it did when this log was not synced: the whole-replica simulator, seed 364) waited behind
 * that leader for ever. Not preallocated (that only spares fdatasync work on a hot path a
 * logger does not have). The state is expendable, though, since the command log is what must
 * survive: one that does not open (damaged) is discarded, and the logger, now fresh, joins
 * again (the leader removes and re-adds it and resends what the command log lacks; entries it
 * holds are skipped). I/O errors are not papered over.
 */
export async function openLoggerRaftState(dir: string, log: (line: string) => void, o: { fs?: FileSystem; segmentBytes?: number; sync?: boolean } = {}): Promise<DiskStorage> {
  const fs = o.fs ?? nodeFs;
  const open = () => DiskStorage.open(dir, { fs, fsync: o.sync === false ? 'never' : 'batch', preallocateBytes: 0, segmentBytes: o.segmentBytes });
  try {
    return await open();
  } catch (e) {
    if (!isDamage(e)) throw e;
    log(`its Raft state did not survive a crash (${(e as Error).message}): discarded; it joins again, keeping its command log`);
    await fs.rm(dir, { recursive: true, force: true });
    return open();
  }
}

export interface LoggerMemberOptions {
  /** This logger's member id in the cluster (the seed's --id entry). */
  id: string;
  raft: HostPort;
  /** Raft address announced to peers instead of the listen address (a proxy's, a Service's). */
  advertiseRaft?: string;
  /** HTTP addresses of members to join through. */
  join: string[];
  /** This cluster's directory: raft/ (the logger's Raft state) and log/ (the command log). */
  dir: string;
  /** The logger's HTTP address, announced to peers so replicas can find it. */
  httpAddr: () => string;
  advertiseHost?: string;
  token?: string;
  tls?: TlsMaterial;
  electionTimeoutMs: number;
  heartbeatMs: number;
  /** Sync the command log on every group commit (default true). */
  sync?: boolean;
  crashAt?: string;
  log: (line: string) => void;
  /** Another member of this process already serves this cluster id (refuse a second copy). */
  claimCluster: (clusterId: string, by: string) => string | undefined;
  onFatal: (e: Error) => void;
}

export interface PeerInfo {
  httpAddr: string;
  raftAddr: string;
  role: string;
}

export class LoggerMember {
  readonly log: CommandLog;
  raftAddr = '';
  clusterId = '';
  readonly peers = new Map<string, PeerInfo>();
  private driver!: RaftDriver;
  private transport!: PeerTransport;
  private storage!: DiskStorage;
  private readonly files: MemberFiles;
  private stopping = false;
  private joinDone: Promise<boolean> | undefined;
  private introduceTimer: NodeJS.Timeout | undefined;
  private lastLeader = '';
  /** When each commit index was first seen, to report how far behind the log is in seconds. */
  private commitSeen: { index: number; at: number }[] = [];
  baseInstalls = 0;

  private constructor(
    readonly opts: LoggerMemberOptions,
    log: CommandLog,
  ) {
    this.log = log;
    this.files = new MemberFiles(opts.dir, true);
  }

  static async start(o: LoggerMemberOptions): Promise<LoggerMember> {
    const log = await CommandLog.open(join(o.dir, 'log'), { sync: o.sync, crashAt: o.crashAt });
    const m = new LoggerMember(o, log);
    try {
      await m.boot();
    } catch (e) {
      await m.stop().catch(() => undefined);
      throw e;
    }
    return m;
  }

  private async boot(): Promise<void> {
    const o = this.opts;
    if (this.log.report.tornBytesRepaired > 0) o.log(`${o.id}: repaired a torn command-log tail (${this.log.report.tornBytesRepaired} bytes never acknowledged)`);
    for (const f of this.log.report.leftoversRemoved) o.log(`${o.id}: finished an interrupted truncation: removed ${f}`);
    this.storage = await openLoggerRaftState(join(o.dir, 'raft'), (line) => o.log(`${o.id}: ${line}`), { sync: o.sync });
    const machine = new LogMachine(this.log);
    machine.onError = (e) => this.fatal(e);
    machine.onBaseInstalled = (index) => {
      this.baseInstalls++;
      o.log(`${o.id}: the leader sent a snapshot at ${index} (it no longer had the entries this logger lacked): the log now starts there`);
    };
    const advertise = { raftAddr: '', clientAddr: '', httpAddr: '', role: 'logger' };
    this.transport = new PeerTransport({
      id: o.id,
      listen: o.raft,
      advertise,
      token: o.token,
      resolve: (id) => this.driver?.node.membership.addrs[id],
      clusterId: () => this.clusterId,
      membership: () => this.driver?.node.membership,
      commitIndex: () => this.commitIndex(),
      onMessage: (msg: Message) => this.driver?.step(msg),
      onUnreachable: (id) => this.driver?.reportUnreachable(id),
      onHello: (h) => {
        const known = this.peers.get(h.from);
        this.peers.set(h.from, { httpAddr: h.httpAddr || known?.httpAddr || '', raftAddr: h.raftAddr || known?.raftAddr || '', role: h.role || known?.role || '' });
        if (!this.clusterId && h.clusterId) this.adoptCluster(h.clusterId);
      },
      tls: o.tls,
    });
    const port = await this.transport.start();
    this.raftAddr = advertise.raftAddr = o.advertiseRaft ?? formatHostPort(o.advertiseHost ?? dialHost(o.raft), port);
    advertise.httpAddr = o.httpAddr();

    const st = this.storage.initialState();
    const fresh = (st.hardState?.term ?? 0) === 0 && (st.entries?.length ?? 0) === 0 && !st.snapshot;
    if (fresh && o.join.length === 0) throw new Error(`logger ${o.id} has no state in ${o.dir} and no --join address: a logger joins an existing cluster, it never starts one`);
    const known = this.files.clusterId();
    if (known) this.adoptCluster(known);
    if (st.snapshot) await machine.restore(st.snapshot);
    const tickMs = o.heartbeatMs;
    const node = new RaftNode(
      {
        id: o.id,
        electionTicks: Math.max(2, Math.round(o.electionTimeoutMs / tickMs)),
        heartbeatTicks: 1,
        candidate: false,
        clock: () => performance.now(),
        tickMs,
        entryReader: this.storage,
      },
      st,
    );
    this.driver = new RaftDriver({
      node,
      storage: this.storage,
      stateMachine: machine,
      transport: { send: (msgs) => this.transport.send(msgs) },
      tickMs,
      onMembership: (m) => {
        for (const id of this.peers.keys()) if (!m.voters.includes(id) && !m.learners.includes(id)) this.transport.drop(id);
      },
      // Which leader it follows, as replicas print theirs: a logger that hears no leader is
      // falling behind, and this is where an operator sees it.
      onSoftState: (s) => {
        if (s.leader === this.lastLeader) return;
        this.lastLeader = s.leader;
        o.log(`${o.id}: ${s.leader ? `following ${s.leader}` : 'no leader'} (term ${s.term})`);
      },
      onFatal: (e) => this.fatal(e),
    });
    this.driver.start();
    if (!fresh) this.introduceWhileLeaderless();
    o.log(`${o.id}: ${fresh ? 'new, joining' : 'recovered'}; raft ${this.raftAddr}, command log ${this.log.info().first}..${this.log.info().last}`);
    if (fresh || this.files.joining()) {
      this.files.markJoining(o.join);
      this.joinDone = joinThrough(o.join, { id: o.id, addr: this.raftAddr, voter: false, clusterId: this.clusterId || undefined, role: 'logger', fresh }, {
        token: o.token,
        ca: o.tls?.ca,
        log: o.log,
        stopped: () => this.stopping,
      })
        .then((joined) => {
          if (joined) this.files.joined();
          return joined !== undefined;
        })
        // A logger serves other clusters too: a refusal (logged by joinThrough) leaves this one unjoined.
        .catch((e: unknown) => {
          if (e instanceof JoinRefusedError) return false;
          throw e;
        });
    }
  }

  /**
   * While no leader is known, say hello to every voter each election timeout: restarted at a new
   * address (a pod's new IP), this is how the leader learns where to send entries, since a
   * logger never campaigns and so would never speak first.
   */
  private introduceWhileLeaderless(): void {
    const tick = () => {
      if (this.stopping) return;
      if (!this.leader()) for (const id of this.voters()) if (id !== this.opts.id) this.transport.introduce(id);
      this.introduceTimer = setTimeout(tick, this.opts.electionTimeoutMs);
      this.introduceTimer.unref();
    };
    tick();
  }

  private adoptCluster(id: string): void {
    const clash = this.opts.claimCluster(id, this.opts.id);
    if (clash) {
      this.fatal(new Error(`${this.opts.id} and ${clash} of this logger both joined cluster ${id}: one logger keeps one log per cluster`));
      return;
    }
    this.clusterId = id;
    this.files.setClusterId(id);
  }

  /** Resolves with whether joining succeeded (true at once for a member that was already in). */
  joined(): Promise<boolean> {
    return this.joinDone ?? Promise.resolve(true);
  }

  get node(): RaftNode {
    return this.driver.node;
  }

  commitIndex(): number {
    return this.driver?.node.log.committed ?? 0;
  }

  voters(): string[] {
    return this.driver?.node.membership.voters ?? [];
  }

  leader(): string {
    return this.driver?.node.leader ?? '';
  }

  /** Entries and seconds the durable log is behind the commit index this logger has seen. */
  lag(now = performance.now()): { entries: number; seconds: number } {
    const commit = this.commitIndex();
    const last = this.log.info().last;
    const seen = this.commitSeen;
    if (seen.length === 0 || seen[seen.length - 1].index < commit) seen.push({ index: commit, at: now });
    while (seen.length > 0 && seen[0].index <= last) seen.shift();
    if (seen.length > 1000) seen.splice(0, seen.length - 1000);
    return { entries: Math.max(0, commit - last), seconds: seen.length > 0 ? (now - seen[0].at) / 1000 : 0 };
  }

  /** Truncate, keeping the log able to rebuild the state when a base snapshot is given. */
  truncate(upTo: number, base?: Snapshot | ReceivedBase): Promise<number> {
    return this.log.truncatePrefix(upTo, base);
  }

  private fatal(e: Error): void {
    this.opts.log(`${this.opts.id}: FATAL ${e.message}`);
    this.opts.onFatal(e);
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.introduceTimer);
    await this.driver?.stop();
    await this.transport?.stop();
    await this.log.close().catch(() => undefined);
    await this.storage?.close();
  }
}
