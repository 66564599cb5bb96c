import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runScenario } from './scenario.js';

describe('fault injection against real processes (Jepsen-style)', () => {
  for (const [nodes, seed, readMode, loggers] of [[3, 101, 'lease', 1], [5, 202, 'safe', 2], [3, 303, 'safe', 2]] as const) {
    it(`${nodes} nodes, ${readMode} reads: power cuts, pauses, partitions, flaky links, transfers (old leader cut off), restarts inside the lease and membership changes keep the history linearizable; ${loggers} logger(s), killed, paused and cut off too, keep a gap-free copy of the committed log`, async (t) => {
      const s = Number(process.env.RAFTKV_FAULT_SEED ?? seed);
      const r = await runScenario({ seed: s, timeS: Number(process.env.RAFTKV_FAULT_TIME ?? 15), nodes, readMode, loggers });
      t.diagnostic(`seed ${s}: ${r.ops} ops, ${r.writesAcked} writes acked, ${r.writesIndeterminate} indeterminate, faults ${JSON.stringify(r.faults)}`);
      assert.deepEqual(r.violations, [], `seed ${s} (rerun: npm run test:faults -- --seed ${s} --nodes ${nodes} --loggers ${loggers} --verbose)\n${r.log.join('\n')}`);
      assert.ok(r.writesAcked > 20, 'the cluster kept accepting writes through the faults');
      assert.ok(Object.values(r.faults).reduce((a, b) => a + b, 0) >= 5, 'faults were injected');
    });
  }
});
