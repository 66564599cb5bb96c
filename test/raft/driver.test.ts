/**
 * The driver's bookkeeping of proposals and reads (issue 10), with the core replaced by a
 * scripted stand-in so each case is exact.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStorage, RaftDriver, RaftError, RaftNode } from '../../raft/index.js';

/** A core that hands out the indexes and terms a test scripts, and never has work. */
function scriptedCore(proposals: { index: number; term: number }[]): RaftNode {
  const core = {
    leader: 'me',
    log: { applied: 0, snapshotIndex: 0 },
    propose: () => proposals.shift()!,
    ready: () => undefined,
    hasReady: () => false,
    tick: () => undefined,
  };
  return core as unknown as RaftNode;
}

const noTransport = { send: () => undefined };
const noMachine = { apply: () => new Uint8Array(0), snapshot: () => new Uint8Array(0), restore: () => undefined };

describe('RaftDriver', () => {
  it('a leader that reuses an index (it lost that entry) fails the earlier proposal at once as dropped, not after a timeout', async () => {
    const driver = new RaftDriver({
      node: scriptedCore([
        { index: 5, term: 2 },
        { index: 5, term: 4 },
      ]),
      storage: new MemoryStorage(),
      stateMachine: noMachine,
      transport: noTransport,
    });
    driver.start();
    try {
      const first = driver.propose(new Uint8Array([1]), 3_000);
      const outcome = first.then(
        () => 'applied',
        (e: unknown) => (e instanceof RaftError ? e.code : String(e)),
      );
      await new Promise((r) => setImmediate(r));
      const second = driver.propose(new Uint8Array([2]), 3_000);
      second.catch(() => undefined);
      assert.equal(await outcome, 'dropped', 'the entry of term 2 at index 5 is gone: never applied, safe to retry');
    } finally {
      await driver.stop();
    }
  });

  it('ReadIndex contexts differ between two processes of the same node', async () => {
    const contexts: string[] = [];
    for (let boot = 0; boot < 2; boot++) {
      const core = { ...(scriptedCore([]) as unknown as object), readIndex: (ctx: string) => contexts.push(ctx) } as unknown as RaftNode;
      const driver = new RaftDriver({ node: core, storage: new MemoryStorage(), stateMachine: noMachine, transport: noTransport });
      driver.start();
      driver.readBarrier(2000).catch(() => undefined);
      // The request reaches the core on the driver's next turn; wait for it, however busy the machine.
      for (let i = 0; i < 2000 && contexts.length <= boot; i++) await new Promise((r) => setTimeout(r, 1));
      await driver.stop();
    }
    assert.equal(contexts.length, 2);
    assert.notEqual(contexts[0], contexts[1], 'an answer to the first process\'s read can never complete the second\'s');
  });
});
