/** `npm run gen:crd`: write crds/raftclusters.raftkv.io.yaml and deploys/operator.yaml from the code. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { raftClusterCrdYaml } from './crd.js';
import { operatorYaml } from './manifests.js';

export const CRD_FILE = fileURLToPath(new URL('../../crds/raftclusters.raftkv.io.yaml', import.meta.url));
export const OPERATOR_FILE = fileURLToPath(new URL('../../deploys/operator.yaml', import.meta.url));

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(fileURLToPath(new URL('../../crds/', import.meta.url)), { recursive: true });
  writeFileSync(CRD_FILE, raftClusterCrdYaml());
  writeFileSync(OPERATOR_FILE, operatorYaml());
  console.log(`wrote ${CRD_FILE} and ${OPERATOR_FILE}`);
}
