/**
 * Runnable example: a 3-node cluster embedded in this process, used through the client.
 *   npm run build && node dist/examples/embedded.js
 */
import { RaftKvClient, startReplica } from '../replica/index.js';
import { freePorts } from '../test/helpers/ports.js';

const ports = await freePorts(9);
const ids = ['e1', 'e2', 'e3'];
const peers = ids.map((id, i) => ({ id, addr: `127.0.0.1:${ports[i * 3 + 1]}` }));
const replicas = await Promise.all(
  ids.map((id, i) =>
    startReplica({
      id,
      clientAddr: `127.0.0.1:${ports[i * 3]}`,
      raftAddr: `127.0.0.1:${ports[i * 3 + 1]}`,
      httpAddr: `127.0.0.1:${ports[i * 3 + 2]}`,
      peers,
      electionTimeoutMs: 300,
      heartbeatMs: 30,
    }),
  ),
);
const client = new RaftKvClient({ targets: replicas.map((r) => r.clientAddr) });
await client.set('greeting', 'hello from an embedded cluster');
console.log(await client.getString('greeting'));
console.log(`leader: ${replicas[0].status().leader}`);
client.close();
await Promise.all(replicas.map((r) => r.stop()));
