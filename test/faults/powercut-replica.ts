/**
 * `node dist/test/faults/powercut-replica.js <raftkv replica flags>`: the real replica command
 * over a PowerCutFs, so that kill -9 loses (or tears) everything written since the last fsync,
 * as a power cut would. Used by the fault suite; test infrastructure only.
 */
import { runReplica } from '../../replica/cli.js';
import { PowerCutFs } from './powercut-fs.js';

await runReplica(process.argv.slice(2), { fs: new PowerCutFs() });
