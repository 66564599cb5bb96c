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

/** Ports free on 127.0.0.1 right now, chosen at random outside the ephemeral range. */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < n; tries++) {
    if (tries > 10_000) throw new Error(`no ${n} free ports in ${LOW}-${HIGH}`);
    const p = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (!ports.includes(p) && (await canBind(p))) ports.push(p);
  }
  return ports;
}
