/**
 * A history of client operations for the linearizability checker, recorded as real clients
 * run: each put and get with when it was called and when it returned (a put that got no answer
 * stays open: it may still take effect).
 */
import { RaftKvClient } from '../../replica/client.js';
import { Operation } from '../sim/linearizability.js';

export class History {
  readonly ops: Operation[] = [];
  private nextId = 0;

  async put(cl: RaftKvClient, client: string, key: string, value: string): Promise<boolean> {
    const op: Operation = { id: this.nextId++, client, key, kind: 'put', value, call: performance.now(), ret: Infinity };
    this.ops.push(op);
    try {
      await cl.set(key, value);
      op.ret = performance.now();
      return true;
    } catch {
      return false; // outcome unknown
    }
  }

  /** A failed read observed nothing and is not recorded; `throws` makes it the caller's failure. */
  async get(cl: RaftKvClient, client: string, key: string, o: { throws?: boolean } = {}): Promise<void> {
    const call = performance.now();
    try {
      const v = await cl.getString(key);
      this.ops.push({ id: this.nextId++, client, key, kind: 'get', value: v ?? null, call, ret: performance.now() });
    } catch (e) {
      if (o.throws) throw e;
    }
  }

  acknowledgedWrites(): number {
    return this.ops.filter((p) => p.kind === 'put' && p.ret !== Infinity).length;
  }
}
