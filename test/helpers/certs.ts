/** A throwaway CA and certificates for 127.0.0.1, made with openssl at test time. */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  ca: string;
  cert: string;
  key: string;
}

/** `sans`: extra subjectAltName entries, e.g. `IP:10.0.0.1` or `DNS:kubernetes.default.svc`. */
export function makePki(dir: string, name: string, sans: string[] = []): TestPki {
  const p = (f: string) => join(dir, `${name}-${f}`);
  const ossl = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-subj', `/CN=${name}-ca`, '-days', '2']);
  ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('node.key'), '-out', p('node.csr'), '-subj', `/CN=${name}-node`]);
  writeFileSync(p('ext.cnf'), `subjectAltName=${['IP:127.0.0.1', ...sans].join(',')}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  ossl(['x509', '-req', '-in', p('node.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('node.crt'), '-days', '2', '-extfile', p('ext.cnf')]);
  return { ca: p('ca.crt'), cert: p('node.crt'), key: p('node.key') };
}
