/** `npm run gen:crd`: write crds/raftclusters.raftkv.io.yaml from the zod spec. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { raftClusterCrdYaml } from './crd.js';

export const CRD_FILE = fileURLToPath(new URL('../../crds/raftclusters.raftkv.io.yaml', import.meta.url));

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(fileURLToPath(new URL('../../crds/', import.meta.url)), { recursive: true });
  writeFileSync(CRD_FILE, raftClusterCrdYaml());
  console.log(`wrote ${CRD_FILE}`);
}
