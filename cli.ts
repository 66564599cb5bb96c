#!/usr/bin/env node
/**
 * The `raftkv` command. Subcommands arrive as their issues land; each lives in its own module
 * and is loaded on demand so `raftkv --help` stays instant.
 */
const DEMO_HELP = `usage: raftkv demo [SEED]

Replays one simulated cluster schedule (seed SEED, default 7) and prints its story: elections,
crashes, partitions, snapshots and membership changes, then what was checked.

Example:
  raftkv demo 42
`;

const commands: Record<string, { summary: string; run: (argv: string[]) => Promise<void> }> = {
  local: {
    summary: 'run a RaftCluster manifest (default deploys/kv-notlog.yaml) as local processes; Ctrl-C stops',
    run: async (argv) => (await import('./local/run.js')).runLocal(argv),
  },
  replica: {
    summary: 'run one replica (seed flags: --id --port --raft --join --hjoin --logfolder ...; --help for all)',
    run: async (argv) => (await import('./replica/cli.js')).runReplica(argv),
  },
  logger: {
    summary: "non-voting logger for one or more clusters (seed flags: --id 'log0,log1' --raft --join --logfolder --recov)",
    run: async (argv) => (await import('./logger/cli.js')).runLogger(argv),
  },
  recovery: {
    summary: 'state transfer from a logger or applog replica, timed (the seed recovery client: --recov ADDR --after S)',
    run: async (argv) => (await import('./logger/recovery-cli.js')).runRecovery(argv),
  },
  restore: {
    summary: "disaster recovery: a new cluster's first member from a logger's log (--from-logger --data-dir --id --raft)",
    run: async (argv) => (await import('./logger/recovery-cli.js')).runRestore(argv),
  },
  operator: {
    summary: 'the Kubernetes operator: runs RaftCluster resources (--namespace, --metrics; --help for all)',
    run: async (argv) => (await import('./operator/cli.js')).runOperator(argv),
  },
  loadgen: {
    summary: 'closed-loop load (protobuf, text, http, etcd drivers), reports, --sweep-clients plots; --help for all',
    run: async (argv) => (await import('./loadgen/cli.js')).runLoadgen(argv),
  },
  experiment: {
    summary: "one of the seed's experiments (saturation-kv, logger-scale, recovery-logger, ...): table, SVG figure, checks",
    run: async (argv) => (await import('./experiment/cli.js')).runExperiment(argv),
  },
  client: {
    summary: 'interactive client: reads set-k-v / get-k / delete-k lines from stdin (--targets host:port,...)',
    run: async (argv) => (await import('./replica/interactive-client.js')).runInteractiveClient(argv),
  },
  sim: {
    summary: 'run seeded simulated cluster schedules and check every safety property (--seeds N --from S --seed S --trace)',
    run: async (argv) => (await import('./test/sim/cli.js')).runSimCli(argv),
  },
  demo: {
    summary: 'show one simulated 3-5 node cluster surviving crashes, partitions and membership changes',
    run: async (argv) => {
      const { commandLine, reportUsage } = await import('./util/cli.js');
      const cl = commandLine('demo', DEMO_HELP, argv, {}, { positionals: 1 });
      if (!cl) return;
      const seed = Number(cl.positionals[0] ?? 7);
      if (!Number.isSafeInteger(seed) || seed < 0) return reportUsage('demo', `SEED must be a non-negative integer, got '${cl.positionals[0]}'`);
      const { runSchedule } = await import('./test/sim/cluster.js');
      const r = runSchedule({ seed, trace: true });
      const interesting = r.trace.filter((l) => /NEMESIS|is leader|CRASH|start \(|installed snapshot|conf change|config/.test(l));
      for (const line of interesting) console.log(line);
      const s = r.stats;
      console.log(
        `\nseed ${seed}: ${s.opsAcked} writes acknowledged, ${s.readsOk} linearizable reads, ${s.faults} faults, ` +
          `${s.elections} elections, log reached index ${s.maxCommit}; violations: ${r.violations.length}`,
      );
      console.log('replay any schedule with: npm run sim -- --seed N --trace');
      process.exitCode = r.violations.length > 0 ? 1 : 0;
    },
  },
};

function usage(): void {
  console.log('usage: raftkv <command> [options]\n\ncommands:');
  for (const [name, c] of Object.entries(commands)) console.log(`  ${name.padEnd(10)} ${c.summary}`);
}

const [cmd, ...rest] = process.argv.slice(2);
if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
  usage();
} else if (cmd === '--version' || cmd === 'version') {
  const { readFileSync } = await import('node:fs');
  console.log(`raftkv ${JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version} (node ${process.version})`);
} else if (!(cmd in commands)) {
  console.error(`raftkv: unknown command '${cmd}'`);
  usage();
  process.exitCode = 2;
} else {
  await commands[cmd].run(rest);
}
