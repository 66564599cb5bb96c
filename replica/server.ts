/**
 * One raftkv replica: consensus (RaftNode + RaftDriver), durable storage, the peer transport,
 * a key-value state machine, and the client-facing servers (seed TCP protocol, HTTP API).
 */
import { join } from 'node:path';
import {
  CapturedSnapshot,
  HeldSnapshot,
  SnapshotMeta,
  encodeSnapshotStream,
  ConfChangeType,
  DiskStorage,
  Entry,
  FileSystem,
  InitialState,
  MemoryStorage,
  Message,
  MessageType,
  RaftDriver,
  RaftError,
  RaftNode,
  Role,
  Snapshot,
  SaveRequest,
  Storage,
  clusterIdOf,
  isEmptyStorage,
  loadOrBootstrap,
} from '../raft/index.js';
import { HostPort, dialHost, formatHostPort, parseHostPort } from './addr.js';
import { ClientServer } from './client-server.js';
import { Connection } from './client.js';
import { REPLICA_DEFAULTS } from './defaults.js';
import { DiskStorageEngine } from './engines/diskstorage.js';
import { KvEngine, stateDigest } from './engines/engine.js';
import { MemoryEngine } from './engines/memory.js';
import { HttpApi } from './http.js';
import { KvStateMachine } from './kv-machine.js';
import { ReplicaMetrics } from './metrics.js';
import { Command, Op, Response, Status } from './proto.js';
import { CommandExecutor } from './executor.js';
import { PeerTransport } from './transport.js';
import { TlsFiles, TlsMaterial, loadTls, requestJson } from './tls.js';
import { JoinInterruptedError, Joiner, JoinsInFlight, MemberFiles, admitJoiner, confChangeMayBeRetried, joinSteps, joinThrough } from './join.js';
import { CommandLog } from '../logger/command-log.js';
import { RecovServer } from '../logger/recov.js';
import { logSource, pickLog } from '../logger/client.js';
import { rebuild } from '../logger/rebuild.js';

export type AppName = 'kvstore' | 'diskstorage' | 'lmdb';
export type FsyncSetting = 'always' | 'batch' | 'never' | 'memory';

export interface ReplicaOptions {
  id: string;
  /** Client TCP address (seed --port). */
  clientAddr: string;
  /** Raft peer address (seed --raft). */
  raftAddr: string;
  /** HTTP API address. */
  httpAddr: string;
  /** Host other nodes and clients use to reach this one when listening on all interfaces. */
  advertiseHost?: string;
  /** Raft address to announce, when peers reach this node through something else (a proxy, a Service). */
  advertiseRaft?: string;
  /** Seed --hjoin: bootstrap alone (when new) and accept join requests on this address too. */
  hjoin?: string;
  /** Seed --join: HTTP/join addresses of existing members to join through (when new). */
  join?: string[];
  /** Join as a voter (default) or as a non-voter. */
  voter?: boolean;
  /** Static bootstrap: every initial member, the same list on each. */
  peers?: { id: string; addr: string }[];
  dataDir: string;
  app: AppName;
  fsync: FsyncSetting;
  /** WAL segment size (default 64 MB). */
  walSegmentBytes?: number;
  /** Make WAL segments this long before use (default: DiskStorage's, a whole segment up to 64 MB). */
  walPreallocateBytes?: number;
  logFolder?: string;
  /** The seed's state-transfer port: serves this replica's applog (needs logFolder). */
  recov?: string;
  /**
   * A logger's HTTP address (or recov://host:port): the recovery source. A replica that starts
   * empty, or far behind, takes the state from it instead of from the leader.
   */
  logger?: string;
  /** Catch up from the logger when it is at least this many entries ahead (default 1000). */
  loggerCatchupMin?: number;
  /** After each snapshot, ask the cluster's loggers to truncate their logs up to it. */
  loggerTruncate?: boolean;
  electionTimeoutMs: number;
  heartbeatMs: number;
  preload: number;
  valueSize: number;
  keys: number;
  maxValueBytes: number;
  snapshotEvery: number;
  readMode: 'safe' | 'lease';
  /**
   * 'thrifty' (default): a leader sends new entries at once to just enough voters for a
   * quorum, the others in batches (RaftConfig.thrifty). 'all': to every voter at once.
   */
  replication?: 'thrifty' | 'all';
  /** Client sessions kept; beyond this the least recently active expires. */
  maxSessions: number;
  /** A client session unused this long (log time) expires. */
  sessionTtlMs: number;
  /** Shared cluster secret: required on peer connections and on membership/transfer calls. */
  token?: string;
  /** Optional bearer token required on the HTTP key-value and status API. */
  clientToken?: string;
  /** TLS for peer (mutual), client and HTTP traffic. */
  tls?: TlsFiles;
  log?: (line: string) => void;
  /** The file system under the Raft storage (tests pass one that can lose unsynced writes). */
  fs?: FileSystem;
}

export interface MemberStatus {
  id: string;
  raftAddr: string;
  clientAddr?: string;
  httpAddr?: string;
  /** A logger is a non-voter that announced itself as one: it is never promoted. */
  role: 'voter' | 'non-voter' | 'logger';
  match?: number;
}

export interface ReplicaStatus {
  id: string;
  role: Role;
  term: number;
  leader: string;
  leaderClientAddr?: string;
  leaderHttpAddr?: string;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  clusterId: string;
  members: MemberStatus[];
  app: AppName;
  fsync: FsyncSetting;
  keys: number;
  clientAddr: string;
  raftAddr: string;
  httpAddr: string;
  /**
   * The latest snapshot, kept for followers that need entries before the log's start: in
   * `file` its bytes are read from its file when one does; in `memory` they are held (memory
   * storage, or a snapshot just installed and not yet durable).
   */
  snapshot?: { index: number; term: number; bytes: number; heldIn: 'file' | 'memory' };
}

export class Replica {
  readonly metrics: ReplicaMetrics;
  sm!: KvStateMachine;
  /** Advertised addresses (the bound ports, so port 0 works for embedded replicas). */
  clientAddr = '';
  raftAddr = '';
  httpAddr = '';
  recovAddr = '';
  private recov: RecovServer | undefined;
  private driver!: RaftDriver;
  private transport!: PeerTransport;
  private clientServer!: ClientServer;
  private http!: HttpApi;
  private storage!: Storage;
  /** What each peer announced in its hello: how its clients reach it, and its raft address. */
  private peerInfo = new Map<string, { clientAddr: string; httpAddr: string; raftAddr: string; role?: string }>();
  private leaderConn: Connection | undefined;
  private readonly executor: CommandExecutor;
  private heartbeatSent = new Map<string, number>();
  private gaugeTimer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private lastLeader = '';
  /** Unmarked loggers this leader is marking now (see markLoggers). */
  private markingLoggers = new Set<string>();
  private readonly joins = new JoinsInFlight();
  readonly tlsMaterial: TlsMaterial | undefined;
  /** Which cluster this node belongs to ('' for a new node until it is let in). */
  private clusterId = '';
  /** This start's incarnation, if it joined with no state (MemberFiles.incarnation). */
  private incarnation: string | undefined;
  private readonly log: (line: string) => void;
  private readonly files: MemberFiles;
  /** Resolves when the node stops on its own (fatal storage error). */
  readonly stopped: Promise<Error | undefined>;
  private resolveStopped!: (e: Error | undefined) => void;

  private constructor(
    readonly opts: ReplicaOptions,
    private readonly ports: { client: HostPort; raft: HostPort; http: HostPort },
  ) {
    this.executor = new CommandExecutor({
      id: opts.id,
      sessionTtlMs: opts.sessionTtlMs,
      driver: () => this.driver,
      stopping: () => this.stopping !== undefined,
      engine: () => this.sm.engine,
      leaderClientAddr: () => this.leaderClientAddr(),
      forwardToLeader: (cmd, addr) => this.forwardToLeader(cmd, addr),
      onProposal: (result) => this.metrics.proposals.labels({ result }).inc(),
    });
    this.log = opts.log ?? ((l) => console.log(l));
    this.metrics = new ReplicaMetrics({ node: opts.id });
    this.stopped = new Promise((r) => (this.resolveStopped = r));
    this.tlsMaterial = loadTls(opts.tls);
    this.files = new MemberFiles(opts.dataDir, opts.fsync !== 'memory');
  }

  /** Start a replica: recover or bootstrap, then serve. */
  static async start(opts: ReplicaOptions): Promise<Replica> {
    validateOptions(opts);
    const ports = {
      client: parseHostPort(opts.clientAddr, '--port'),
      raft: parseHostPort(opts.raftAddr, '--raft'),
      http: parseHostPort(opts.httpAddr, '--http'),
    };
    const r = new Replica(opts, ports);
    try {
      await r.boot();
    } catch (e) {
      // Release whatever was opened (ports, files) before reporting the failure.
      await r.stop().catch(() => undefined);
      throw e;
    }
    return r;
  }

  private async boot(): Promise<void> {
    const o = this.opts;
    const applog = o.logFolder ? await CommandLog.open(join(o.logFolder, `${o.id}.applog`), { sync: o.fsync !== 'never' && o.fsync !== 'memory' }) : undefined;
    this.sm = new KvStateMachine(await makeEngine(o), { applog, nodeId: o.id, sessions: { maxSessions: o.maxSessions, ttlMs: o.sessionTtlMs } });
    this.storage =
      o.fsync === 'memory' ? new MemoryStorage() : await DiskStorage.open(join(o.dataDir, 'raft'), { fsync: o.fsync, fs: o.fs, segmentBytes: o.walSegmentBytes, preallocateBytes: o.walPreallocateBytes });
    if (this.storage instanceof DiskStorage) {
      const rec = this.storage.recovery;
      if (rec.tornBytesRepaired > 0) this.log(`${o.id}: repaired a torn WAL tail (${rec.tornBytesRepaired} bytes of an unacknowledged write)`);
      for (const s of rec.skippedSnapshots) this.log(`${o.id}: skipped snapshot ${s.file}: ${s.reason}`);
    }
    // Bind every port first (requests that arrive before the node runs are told to retry),
    // then advertise what was bound.
    const advertise = { raftAddr: '', clientAddr: '', httpAddr: '' };
    // Counted on every peer read and write: the two children resolved once.
    const peerBytes = { sent: this.metrics.peerBytes.labels({ direction: 'sent' }), received: this.metrics.peerBytes.labels({ direction: 'received' }) };
    this.transport = new PeerTransport({
      id: o.id,
      listen: this.ports.raft,
      advertise,
      token: o.token,
      // A new member knows nobody's address until it has the log: fall back to the address a
      // peer announced when it connected to us (the leader always does, first).
      resolve: (id) => this.driver?.node.membership.addrs[id],
      clusterId: () => this.clusterId,
      // Only members may talk Raft to us; a new node that knows no members yet accepts the
      // leader that is adding it (the cluster token and cluster id still apply).
      membership: () => this.driver?.node.membership,
      commitIndex: () => this.driver?.node.log.committed ?? 0,
      onMessage: (m) => this.onPeerMessage(m),
      onUnreachable: (id) => this.driver?.reportUnreachable(id),
      onRefused: (id) => this.driver?.leaderGone(id),
      onHello: (h) => {
        // An empty field never erases what the peer told us before (found by fuzzing the raft
        // port: a hello with empty addresses made followers forget how to reach the leader).
        const known = this.peerInfo.get(h.from);
        this.peerInfo.set(h.from, {
          clientAddr: h.clientAddr || known?.clientAddr || '',
          httpAddr: h.httpAddr || known?.httpAddr || '',
          raftAddr: h.raftAddr || known?.raftAddr || '',
          role: h.role || known?.role || '',
        });
        // A new node adopts the cluster of the first member that contacts it (the leader that
        // added it); from then on peers of any other cluster are refused.
        if (!this.clusterId && h.clusterId) this.setClusterId(h.clusterId);
        if (h.role === 'logger') this.markLoggers();
      },
      onBytes: (dir, n) => peerBytes[dir].inc(n),
      tls: this.tlsMaterial,
    });
    const adv = (hp: HostPort, port: number) => formatHostPort(o.advertiseHost ?? dialHost(hp), port);
    const raftPort = await this.transport.start();
    this.raftAddr = advertise.raftAddr = o.advertiseRaft ?? adv(this.ports.raft, raftPort);
    this.clientServer = new ClientServer(this, this.ports.client, o.maxValueBytes, this.tlsMaterial);
    this.clientAddr = advertise.clientAddr = adv(this.ports.client, await this.clientServer.start());
    this.http = new HttpApi(this, o.maxValueBytes);
    this.httpAddr = advertise.httpAddr = adv(this.ports.http, await this.http.start(this.ports.http, o.hjoin ? parseHostPort(o.hjoin, '--hjoin') : undefined));

    const fresh = isEmptyStorage(this.storage);
    let members: { id: string; addr: string }[] | undefined;
    if (fresh) {
      if (o.peers && o.peers.length > 0) members = o.peers;
      else if (!o.join || o.join.length === 0) {
        // A node that crashed while joining has no data yet; bootstrapping it alone now would
        // make a second cluster out of a member of the first.
        if (this.files.joining()) {
          throw new Error(`${o.id} was joining a cluster (${join(o.dataDir, 'joining')}): start it with --join again, or remove its data directory to start a new cluster`);
        }
        members = [{ id: o.id, addr: this.raftAddr }];
      } else this.files.markJoining(o.join);
    }
    this.clusterId = this.files.clusterId() ?? '';
    if (fresh && members) this.setClusterId(clusterIdOf(members));
    let initial = await loadOrBootstrap(this.storage, members);
    if (initial.snapshot) await this.sm.restore(initial.snapshot);
    else if (o.preload > 0) this.preload();
    const joining = fresh && !members;
    // A fresh joiner is a new start of its id: the configuration will name it (see RaftConfig.incarnation).
    this.incarnation = joining ? this.files.newIncarnation() : this.files.incarnation();
    if (o.logger && o.logger !== 'off') initial = await this.catchUpFromLogger(o.logger, initial, joining);
    else if (!o.logger && joining && o.join?.length) {
      // Told by the cluster: a new member takes its state from one of the cluster's loggers
      // rather than from the leader, whose disk and network serve the clients.
      for (const addr of await loggersOfCluster(o.join, o.token, this.tlsMaterial?.ca)) {
        const next = await this.catchUpFromLogger(addr, initial, true);
        if (next !== initial) {
          initial = next;
          break;
        }
      }
    }
    if (applog && o.recov) {
      this.recov = new RecovServer(() => [{ name: o.id, clusterId: this.clusterId, log: applog, commitIndex: () => this.driver?.node.log.committed ?? 0 }]);
      this.recovAddr = formatHostPort(o.advertiseHost ?? dialHost(parseHostPort(o.recov, '--recov')), await this.recov.start(parseHostPort(o.recov, '--recov')));
    }

    const tickMs = o.heartbeatMs;
    const storage = new MeteredStorage(this.storage, this.metrics);
    const node = new RaftNode(
      {
        id: o.id,
        electionTicks: Math.max(2, Math.round(o.electionTimeoutMs / tickMs)),
        heartbeatTicks: 1,
        readMode: o.readMode,
        thrifty: (o.replication ?? REPLICA_DEFAULTS.replication) === 'thrifty',
        // The lease is measured in real time, so a blocked event loop cannot stretch it.
        clock: () => performance.now(),
        tickMs,
        // A joiner may be a voter that lost its data: no votes until it has been re-admitted,
        // across restarts too (the joining marker stays until the join completed).
        withholdVotes: this.files.joining() || (fresh && !members),
        incarnation: this.incarnation,
        // A new cluster has no leader to wait for: its first election comes within one
        // timeout of the start instead of after one (a local cluster leads ~1 s sooner).
        advanceFirstElection: fresh && members !== undefined,
        entryReader: storage,
      },
      initial,
    );
    this.driver = new RaftDriver({
      node,
      storage,
      stateMachine: new MeteredMachine(this.sm, this.metrics),
      transport: { send: (msgs) => this.sendPeers(msgs), flush: () => this.transport.flushAll() },
      tickMs,
      snapshotEvery: o.snapshotEvery,
      // Every engine is rebuilt from the snapshot and the log at start (none resumes from an
      // applied index of its own).
      volatileStateMachine: true,
      onSoftState: (s) => {
        if (s.leader !== this.lastLeader) {
          this.metrics.leaderChanges.inc();
          this.lastLeader = s.leader;
          this.leaderConn?.close();
          this.leaderConn = undefined;
          this.log(`${o.id}: ${s.role}${s.leader ? `, leader ${s.leader}` : ', no leader'} (term ${s.term})`);
          if (s.role === Role.Leader) this.markLoggers();
        }
      },
      onSnapshot: (index) => {
        if (o.loggerTruncate) void this.askLoggersToTruncate(index);
      },
      onMembership: (m) => {
        for (const id of this.peerInfo.keys()) if (!m.voters.includes(id) && !m.learners.includes(id)) this.transport.drop(id);
      },
      onFatal: (e) => this.fatal(e),
    });
    this.driver.start();
    this.gaugeTimer = setInterval(() => this.updateGauges(), 1000);
    this.gaugeTimer.unref();
    this.log(
      `${o.id}: ${fresh ? (members ? `bootstrapped a cluster of ${members.length}` : 'new, joining') : 'recovered'}; ` +
        `app ${o.app}, fsync ${o.fsync}, client ${this.clientAddr}, raft ${this.raftAddr}, http ${this.httpAddr}`,
    );
    if (((fresh && !members) || this.files.joining()) && o.join) void this.joinCluster(o.join);
    else if (this.files.joining()) this.log(`${o.id}: its join never completed and no --join address was given: it casts no vote until it rejoins`);
  }

  private setClusterId(id: string): void {
    this.clusterId = id;
    this.files.setClusterId(id);
  }

  getClusterId(): string {
    return this.clusterId;
  }

  private preload(): void {
    const { preload, valueSize } = this.opts;
    const value = new Uint8Array(Math.max(0, this.opts.app === 'diskstorage' ? valueSize - 4 : valueSize)).fill(0x61);
    this.sm.engine.bulk(() => {
      for (let k = 0; k < preload; k++) this.sm.engine.put(String(k), value);
    });
    this.log(`${this.opts.id}: preloaded ${preload} keys of ${value.length} bytes`);
  }

  // ---------------------------------------------------------------------------------------
  // Client operations (shared by the TCP and HTTP front ends)

  /** Execute a client command here or at the leader. Never throws; errors become responses. */
  execute(cmd: Command): Promise<Response> {
    return this.executor.execute(cmd);
  }

  /** Register a client session through the log; returns its id. */
  registerSession(): Promise<string> {
    return this.executor.registerSession();
  }

  /** Send a command to the leader over the client protocol (the executor's way to forward). */
  private async forwardToLeader(cmd: Command, addr: string): Promise<Response> {
    const base = { id: cmd.id, value: EMPTY, error: '' };
    if (!this.leaderConn || this.leaderConn.closed || this.leaderConn.address !== addr) {
      this.leaderConn?.close();
      this.leaderConn = new Connection(addr, 5000, this.tlsMaterial && { ca: this.tlsMaterial.ca }, { batched: true });
    }
    try {
      const r = await this.leaderConn.request({ ...cmd, forwarded: true });
      // Named in the answer, so that a client that can reach the leader sends its next writes
      // there itself (RaftKvClient's leader discovery): no second hop, no work here.
      return { ...r, id: cmd.id, leader: r.leader || addr };
    } catch (e) {
      // A socket error before the connection was made means nothing was sent; anything later
      // (a timeout, a dropped connection) may have reached the leader.
      const neverSent = typeof (e as NodeJS.ErrnoException).code === 'string';
      return {
        ...base,
        status: neverSent || cmd.op === Op.GET ? Status.UNAVAILABLE : Status.UNKNOWN,
        leader: addr,
        error: `forwarding to the leader failed: ${(e as Error).message}`,
      };
    }
  }

  /** How clients reach the current leader (undefined while none is known). */
  private leaderInfo(): { clientAddr: string; httpAddr: string } | undefined {
    const leader = this.driver?.node.leader;
    if (!leader) return undefined;
    return leader === this.opts.id ? { clientAddr: this.clientAddr, httpAddr: this.httpAddr } : this.peerInfo.get(leader);
  }

  leaderClientAddr(): string | undefined {
    return this.leaderInfo()?.clientAddr;
  }

  leaderHttpAddr(): string | undefined {
    return this.leaderInfo()?.httpAddr;
  }

  // ---------------------------------------------------------------------------------------
  // Membership

  /** Admit a joiner (run on the leader): the steps of joinSteps, each once it can be taken. */
  async addMember(id: string, raftAddr: string, voter: boolean, o: { fresh?: boolean; logger?: boolean; incarnation?: string; timeoutMs?: number } = {}): Promise<void> {
    parseHostPort(raftAddr, 'member address');
    const deadline = performance.now() + (o.timeoutMs ?? 60_000);
    const m = this.driver.node.membership;
    if (o.fresh && id === this.opts.id) throw new RaftError('invalid-conf-change', `${id} is this leader: a node with no state cannot join under its id`);
    const joiner: Joiner = { id, addr: raftAddr, voter, fresh: o.fresh ?? false, logger: o.logger, incarnation: o.incarnation };
    // Refused here, before it can supersede a join in flight (admitJoiner would refuse it too).
    try {
      joinSteps(m, joiner);
    } catch (e) {
      throw new RaftError('invalid-conf-change', (e as Error).message);
    }
    const flight = this.joins.begin(joiner);
    try {
      await admitJoiner(joiner, {
        membership: () => this.driver.node.membership,
        superseded: flight.superseded,
        change: async (cc) => {
          if (cc.type === ConfChangeType.RemoveNode) {
            this.log(`${this.opts.id}: ${id} joins with no state but is a member (it was at ${this.driver.node.progressOf(id)?.match ?? 0}): it lost its data; removing it and adding it back as a new member`);
          }
          // The configuration refuses to promote a logger it has marked (validateConfChange); one
          // that joined before loggers were marked is known by its hello.
          if (cc.type === ConfChangeType.AddVoter && this.peerInfo.get(id)?.role === 'logger') throw new RaftError('invalid-conf-change', `${id} is a logger: loggers are never promoted to voters`);
          await this.retryConfChange(cc, deadline);
        },
      });
    } catch (e) {
      if (e instanceof RaftError) throw e;
      // Interrupted: a 503, on which a joiner asks again. Otherwise joinSteps refused (409).
      throw new RaftError(e instanceof JoinInterruptedError ? 'conf-change-pending' : 'invalid-conf-change', (e as Error).message);
    } finally {
      flight.end();
    }
  }

  /**
   * Mark in the configuration the loggers this leader has heard from that joined before loggers
   * were marked (unmarked non-voters whose hello says 'logger'): until then only a leader that
   * has heard the hello would refuse to promote them, and a voter whose Raft log is never
   * fsync'd could lose acknowledged writes.
   */
  private markLoggers(): void {
    if (this.driver?.node.role !== Role.Leader || this.stopping) return;
    const m = this.driver.node.membership;
    for (const [id, p] of this.peerInfo) {
      if (p.role !== 'logger' || !m.learners.includes(id) || m.loggers?.includes(id) || this.markingLoggers.has(id)) continue;
      this.markingLoggers.add(id);
      this.retryConfChange({ type: ConfChangeType.AddLearner, node: id, logger: true }, performance.now() + 30_000)
        .then(
          () => this.log(`${this.opts.id}: marked ${id} as a logger in the configuration (it joined before loggers were marked)`),
          (e) => {
            // Leadership moved on: the next leader marks it when it hears the logger.
            if (!(e instanceof RaftError && e.code === 'not-leader')) this.log(`${this.opts.id}: marking ${id} as a logger failed: ${(e as Error).message}`);
          },
        )
        .finally(() => this.markingLoggers.delete(id));
    }
  }

  async removeMember(id: string, timeoutMs = 30_000): Promise<void> {
    const m = this.driver.node.membership;
    if (!m.voters.includes(id) && !m.learners.includes(id)) throw new RaftError('invalid-conf-change', `${id} is not a member`);
    await this.retryConfChange({ type: ConfChangeType.RemoveNode, node: id }, performance.now() + timeoutMs);
  }

  private async retryConfChange(cc: Parameters<RaftDriver['proposeConfChange']>[0], deadline: number): Promise<void> {
    for (;;) {
      try {
        await this.driver.proposeConfChange(cc);
        return;
      } catch (e) {
        if (!confChangeMayBeRetried(e) || performance.now() > deadline) throw e;
        await sleep(100);
      }
    }
  }

  /** Hand leadership to `to` and wait until it leads (like hashicorp's LeadershipTransfer). */
  async transferLeadership(to: string): Promise<void> {
    await this.driver.transferLeadership(to);
    const deadline = performance.now() + 2 * this.opts.electionTimeoutMs + 500;
    while (performance.now() < deadline) {
      if (this.driver.node.leader === to) return;
      await sleep(Math.max(5, this.opts.heartbeatMs / 2));
    }
    throw new RaftError('transfer-in-progress', `leadership did not move to ${to} within ${2 * this.opts.electionTimeoutMs + 500} ms; ${this.driver.node.leader || 'no one'} leads`);
  }

  /**
   * The state as of the last applied entry, as a snapshot file's bytes (encodeSnapshot): what a
   * logger keeps as its base when it truncates. The state is captured at once and serialized
   * as the pieces are taken, so a large state neither stops the node nor sits whole in memory.
   */
  async currentSnapshot(): Promise<{ meta: SnapshotMeta; bytes: AsyncIterable<Buffer> }> {
    const { meta, captured } = await this.driver.withNode((n) => {
      const index = this.driver.appliedIndex;
      return { meta: { index, term: n.log.term(index), membership: n.membershipAt(index) }, captured: this.sm.captureSnapshot() };
    });
    const pause = () => new Promise<void>((r) => setImmediate(r));
    const size = await captured.size(pause);
    return { meta, bytes: encodeSnapshotStream(meta, size, captured.chunks(pause)) };
  }

  /**
   * Take the state from a logger instead of the leader when this node is new or far behind:
   * rebuild it from the logger's base snapshot and range, and make that a local snapshot. Only
   * when the logger is past everything this node's log holds, so nothing it acknowledged is
   * dropped (the same rule as installing a leader's snapshot).
   */
  private async catchUpFromLogger(addr: string, initial: InitialState, joining: boolean): Promise<InitialState> {
    const o = this.opts;
    const src = logSource(addr, { token: o.token, ca: this.tlsMaterial?.ca });
    let cluster = this.clusterId;
    try {
      if (!cluster && joining && o.join?.length) cluster = await clusterOfMember(o.join, o.token, this.tlsMaterial?.ca);
      const info = pickLog(await src.info(), cluster || undefined);
      const entries = initial.entries ?? [];
      const have = Math.max(initial.snapshot?.meta.index ?? 0, entries.length > 0 ? entries[entries.length - 1].index : 0);
      const min = joining ? 1 : (o.loggerCatchupMin ?? 1000);
      if (info.last - have < min) return initial;
      const snapIndex = initial.snapshot?.meta.index ?? 0;
      const haveState = initial.snapshot ? { index: snapIndex, term: initial.snapshot.meta.term, membership: initial.snapshot.meta.membership } : undefined;
      const sm = this.sm;
      const r = await rebuild(src, { applyBatch: (b) => sm.applyToEngine(b), restoreState: (s) => sm.restoreState(s), prepared: sm.preparedInstall() }, { cluster: info.clusterId || info.name, have: haveState, mode: 'streaming' });
      if (r.index <= have) return initial;
      const snapshot: Snapshot = { meta: { index: r.index, term: r.term, membership: r.membership }, data: this.sm.snapshot() };
      await this.sm.applog?.installBase(snapshot);
      const hs = initial.hardState ?? { term: 0, vote: '', commit: 0 };
      const hardState = { term: Math.max(hs.term, r.term), vote: hs.term >= r.term ? hs.vote : '', commit: r.index };
      await this.storage.save({ snapshot, entries: [], hardState });
      if (!this.clusterId && r.clusterId) this.setClusterId(r.clusterId);
      this.log(`${o.id}: caught up from the logger at ${addr}: state at ${r.index} (${r.commands} entries, ${r.bytes} bytes${r.baseIndex ? `, base snapshot at ${r.baseIndex}` : ''}) instead of from the leader`);
      return { hardState, snapshot, entries: [] };
    } catch (e) {
      // The leader remains a source: a logger that cannot help only makes catching up slower.
      this.log(`${o.id}: could not catch up from the logger at ${addr} (${(e as Error).message}); the leader will send the state`);
      if (initial.snapshot) this.sm.restoreState(initial.snapshot);
      else this.sm.engine.clear();
      return initial;
    }
  }

  private async askLoggersToTruncate(index: number): Promise<void> {
    const loggers = [...this.peerInfo].filter(([, p]) => p.role === 'logger' && p.httpAddr);
    for (const [id, p] of loggers) {
      const cluster = encodeURIComponent(id);
      try {
        await requestJson(`${this.tlsMaterial ? 'https' : 'http'}://${p.httpAddr}/v1/log/${cluster}/truncate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(this.opts.token ? { 'x-raftkv-token': this.opts.token } : {}) },
          body: JSON.stringify({ member: this.opts.id, index, http: this.httpAddr }),
          timeoutMs: 130_000,
          ca: this.tlsMaterial?.ca,
        });
      } catch (e) {
        this.log(`${this.opts.id}: asking logger ${id} to truncate to ${index} failed: ${(e as Error).message}`);
      }
    }
  }

  /** A digest of the data as of the last applied entry (and that index). */
  digest(): Promise<{ index: number; keys: number; digest: string }> {
    return this.driver.withNode(() => ({ index: this.driver.appliedIndex, keys: this.sm.engine.size(), digest: stateDigest(this.sm.engine) }));
  }

  hasNode(): boolean {
    return this.driver !== undefined;
  }

  isLeader(): boolean {
    return this.driver?.node.isLeader() ?? false;
  }

  /** Stop on our own with `e`: logged, then `stopped` resolves with it (the process exits 1). */
  private fatal(e: Error): void {
    this.log(`${this.opts.id}: FATAL ${e.message}`);
    void this.stop().then(() => this.resolveStopped(e));
  }

  private async joinCluster(targets: string[]): Promise<void> {
    let joined: { incarnation?: string } | undefined;
    try {
      joined = await joinThrough(
        targets,
        // Only a node that started with no state joins, so every join says so.
        { id: this.opts.id, addr: this.raftAddr, voter: this.opts.voter ?? true, clusterId: this.clusterId || undefined, fresh: true, incarnation: this.incarnation },
        { token: this.opts.token, ca: this.tlsMaterial?.ca, log: this.log, stopped: () => this.stopping !== undefined },
      );
    } catch (e) {
      // Refused for good (JoinRefusedError): up but never admitted, it would only wait, so it
      // stops with the reason, which an operator (or Kubernetes, restarting it) then sees.
      this.fatal(e as Error);
      return;
    }
    if (joined) {
      if (this.incarnation && joined.incarnation !== this.incarnation) {
        // Admitted by a leader from before incarnations: the configuration does not name this
        // one, so a newer leader would never count acknowledgments that carry it.
        this.log(`${this.opts.id}: the leader did not record this member's incarnation; going without`);
        this.files.forgetIncarnation();
        this.incarnation = undefined;
        await this.driver.withNode((n) => n.forgetIncarnation());
      }
      // Durably no longer joining first: a crash in between only makes it rejoin again.
      this.files.joined();
      await this.driver.withNode((n) => n.allowVotes());
    }
  }

  // ---------------------------------------------------------------------------------------

  status(): ReplicaStatus {
    const n = this.driver.node;
    const m = n.membership;
    const member = (id: string, role: MemberStatus['role']): MemberStatus => {
      const info = id === this.opts.id ? { clientAddr: this.clientAddr, httpAddr: this.httpAddr } : this.peerInfo.get(id);
      return { id, raftAddr: m.addrs[id] ?? '', clientAddr: info?.clientAddr, httpAddr: info?.httpAddr, role, match: n.progressOf(id)?.match };
    };
    return {
      id: this.opts.id,
      role: n.role,
      term: n.term,
      leader: n.leader,
      leaderClientAddr: this.leaderClientAddr(),
      leaderHttpAddr: this.leaderHttpAddr(),
      commitIndex: n.log.committed,
      appliedIndex: this.driver.appliedIndex,
      lastIndex: n.log.lastIndex(),
      clusterId: this.clusterId,
      members: [...m.voters.map((id) => member(id, 'voter')), ...m.learners.map((id) => member(id, m.loggers?.includes(id) || this.peerInfo.get(id)?.role === 'logger' ? 'logger' : 'non-voter'))],
      app: this.opts.app,
      fsync: this.opts.fsync,
      keys: this.sm.engine.size(),
      clientAddr: this.clientAddr,
      raftAddr: this.raftAddr,
      httpAddr: this.httpAddr,
      snapshot: snapshotStatus(n.latestSnapshot()),
    };
  }

  /** Ready to serve: a leader is known and this replica has applied what it committed. */
  ready(): boolean {
    if (!this.driver) return false;
    const n = this.driver.node;
    return n.leader !== '' && this.driver.appliedIndex >= n.log.committed && !this.stopping;
  }

  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        if (this.gaugeTimer) clearInterval(this.gaugeTimer);
        await this.clientServer?.stop();
        await this.recov?.stop();
        await this.http?.stop();
        await this.driver?.stop();
        await this.transport?.stop();
        this.leaderConn?.close();
        await this.storage?.close();
        await this.sm?.engine.close();
        await this.sm?.close();
      })();
    }
    return this.stopping;
  }

  private sendPeers(msgs: Message[]): void {
    const now = performance.now();
    for (const m of msgs) if (m.type === MessageType.Heartbeat) this.heartbeatSent.set(`${m.to}/${m.seq}`, now);
    if (this.heartbeatSent.size > 10_000) this.heartbeatSent.clear();
    this.transport.send(msgs);
  }

  private onPeerMessage(m: Message): void {
    if (m.type === MessageType.HeartbeatResp) {
      const k = `${m.from}/${m.seq}`;
      const t = this.heartbeatSent.get(k);
      if (t !== undefined) {
        this.heartbeatSent.delete(k);
        this.metrics.peerRtt.observe({ peer: m.from }, (performance.now() - t) / 1000);
      }
    }
    this.driver.step(m);
  }

  private updateGauges(): void {
    const n = this.driver.node;
    this.metrics.term.set(n.term);
    this.metrics.commitIndex.set(n.log.committed);
    this.metrics.appliedIndex.set(this.driver.appliedIndex);
    this.metrics.isLeader.set(n.isLeader() ? 1 : 0);
    this.metrics.keys.set(this.sm.engine.size());
  }
}

const EMPTY = new Uint8Array(0);


/** The cluster id a member reports (its /v1/status), to pick the right log at a logger. */
/** The status of the first of `targets` (HTTP addresses of members) that answers. */
async function statusOfMember(targets: string[], token?: string, ca?: Buffer): Promise<Partial<ReplicaStatus> | undefined> {
  for (const t of targets) {
    try {
      const hp = parseHostPort(t, '--join');
      const res = await requestJson(`${ca ? 'https' : 'http'}://${formatHostPort(dialHost(hp), hp.port)}/v1/status`, { method: 'GET', timeoutMs: 5000, ca, headers: token ? { 'x-raftkv-token': token } : {} });
      if (res.status === 200 && res.json && typeof res.json === 'object') return res.json as Partial<ReplicaStatus>;
    } catch {
      // try the next
    }
  }
  return undefined;
}

async function clusterOfMember(targets: string[], token?: string, ca?: Buffer): Promise<string> {
  return (await statusOfMember(targets, token, ca))?.clusterId ?? '';
}

/**
 * The HTTP addresses of the cluster's loggers, as its members know them. The leader hears every
 * logger's hello, so when the member asked knows none it is asked too.
 */
async function loggersOfCluster(targets: string[], token?: string, ca?: Buffer): Promise<string[]> {
  const loggers = (st: Partial<ReplicaStatus> | undefined) => (Array.isArray(st?.members) ? st.members : []).filter((m) => m.role === 'logger' && m.httpAddr).map((m) => m.httpAddr!);
  const st = await statusOfMember(targets, token, ca);
  const found = loggers(st);
  if (found.length > 0 || !st?.leaderHttpAddr) return found;
  return loggers(await statusOfMember([st.leaderHttpAddr], token, ca));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function makeEngine(o: ReplicaOptions): Promise<KvEngine> {
  switch (o.app) {
    case 'kvstore':
      return new MemoryEngine(o.maxValueBytes);
    case 'diskstorage':
      return new DiskStorageEngine(join(o.dataDir, 'state.dat'), o.keys, o.valueSize, o.fsync !== 'never' && o.fsync !== 'memory');
    case 'lmdb': {
      // Loaded only when used: it is the heaviest engine to load.
      const { LmdbEngine } = await import('./engines/lmdb.js');
      return new LmdbEngine(join(o.dataDir, 'lmdb'), o.maxValueBytes);
    }
  }
}

function validateOptions(o: ReplicaOptions): void {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.id)) throw new Error(`--id '${o.id}' must be 1-64 letters, digits, '.', '_' or '-'`);
  if (o.peers && o.peers.length > 0) {
    if (!o.peers.some((p) => p.id === o.id)) throw new Error(`--peers does not list this node's id '${o.id}'`);
    if (o.join && o.join.length > 0) throw new Error('--peers (static bootstrap) and --join (join an existing cluster) are exclusive');
    const ids = new Set(o.peers.map((p) => p.id));
    if (ids.size !== o.peers.length) throw new Error('--peers lists an id twice');
    for (const p of o.peers) parseHostPort(p.addr, `--peers address of ${p.id}`);
  }
  if (o.heartbeatMs <= 0 || o.electionTimeoutMs < 2 * o.heartbeatMs) {
    throw new Error('--election-timeout must be at least twice --heartbeat');
  }
}

function snapshotStatus(s: HeldSnapshot | undefined): ReplicaStatus['snapshot'] {
  return s && { index: s.meta.index, term: s.meta.term, bytes: s.data.length, heldIn: s.data instanceof Uint8Array ? 'memory' : 'file' };
}

/** Storage wrapper that measures each durable batch. */
class MeteredStorage implements Storage {
  constructor(
    private readonly inner: Storage,
    private readonly metrics: ReplicaMetrics,
  ) {}
  get kind() {
    return this.inner.kind;
  }
  get fsync() {
    return this.inner.fsync;
  }
  initialState() {
    return this.inner.initialState();
  }
  save(rd: SaveRequest): Promise<boolean> {
    const t0 = performance.now();
    return this.inner.save(rd).then((wrote) => {
      // A commit index alone is not written: counted as an append, it made a leader at one
      // client look like it did two fdatasyncs per write.
      if (wrote) this.metrics.appendFsync.observe((performance.now() - t0) / 1000);
      if (rd.entries.length > 0) {
        this.metrics.batchEntries.observe(rd.entries.length);
        let bytes = 0;
        for (const e of rd.entries) bytes += e.data.length;
        this.metrics.walBytes.inc(bytes);
      }
      if (rd.snapshot) {
        this.metrics.snapshots.inc({ kind: 'installed' });
        this.metrics.snapshotBytes.set(rd.snapshot.data.length);
      }
      return wrote;
    });
  }
  async saveSnapshot(snapshot: Snapshot, compactTo: number): Promise<void> {
    await this.inner.saveSnapshot(snapshot, compactTo);
    this.metrics.snapshots.inc({ kind: 'taken' });
    this.metrics.snapshotBytes.set(snapshot.data.length);
  }
  async saveSnapshotStream(meta: SnapshotMeta, size: number, chunks: AsyncIterable<Uint8Array>, compactTo: number): Promise<HeldSnapshot> {
    const held = await this.inner.saveSnapshotStream(meta, size, chunks, compactTo);
    this.metrics.snapshots.inc({ kind: 'taken' });
    this.metrics.snapshotBytes.set(size);
    return held;
  }
  heldSnapshot(index: number): HeldSnapshot | undefined {
    return this.inner.heldSnapshot(index);
  }
  readEntries(lo: number, hi: number, maxBytes: number): Entry[] {
    const got = this.inner.readEntries(lo, hi, maxBytes);
    this.metrics.entriesReadBack.inc(got.length);
    return got;
  }
  forgetInitialState(): void {
    this.inner.forgetInitialState();
  }
  close() {
    return this.inner.close();
  }
}

class MeteredMachine {
  constructor(
    private readonly inner: KvStateMachine,
    private readonly metrics: ReplicaMetrics,
  ) {}
  apply(e: Entry): Uint8Array {
    return this.inner.apply(e);
  }
  applyBatch(entries: Entry[]): Uint8Array[] | Promise<Uint8Array[]> {
    const end = this.metrics.apply.startTimer();
    const r = this.inner.applyBatch(entries);
    if (r instanceof Promise) return r.finally(end);
    end();
    return r;
  }
  snapshot(): Uint8Array {
    return this.inner.snapshot();
  }
  captureSnapshot(): CapturedSnapshot {
    return this.inner.captureSnapshot();
  }
  restore(s: Snapshot): void | Promise<void> {
    return this.inner.restore(s);
  }
}
