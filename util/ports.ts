import net from 'node:net';

/**
 * Ports below the kernel's ephemeral range (32768-60999 on Linux), so that neither a socket bound
 * to port 0 nor the local end of an outgoing connection, of this or a concurrent test process,
 * can take a port between the moment it is handed out here and the moment it is bound.
 */
const LOW = 20_000;
const HIGH = 32_000;

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * Every port this process handed out: a port handed out but not bound yet still looks free, so
 * without this two calls (two nodes defined before either starts) could get the same one.
 */
const handedOut = new Set<number>();

/** Ports free on 127.0.0.1 right now, chosen at random outside the ephemeral range, never one handed out before. */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < n; tries++) {
    if (tries > 10_000) throw new Error(`no ${n} free ports in ${LOW}-${HIGH}`);
    const p = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (handedOut.has(p)) continue;
    if (await canBind(p)) {
      ports.push(p);
      handedOut.add(p);
    }
  }
  // A long test file may need more ports than the range holds: forget the oldest.
  if (handedOut.size > (HIGH - LOW) / 2) for (const p of [...handedOut].slice(0, handedOut.size / 2)) handedOut.delete(p);
  return ports;
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0];
}
