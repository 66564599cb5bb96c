/**
 * The helm binary the generators and tests use: $HELM (or $HELM3 for v3), else one cached in
 * .cache/helm/, fetched there by ../shared/tools/helm/get.sh when this checkout has it, else
 * `helm` on the PATH (v4 only). Helm wants a writable HOME: `helmEnv` gives it one.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const REPO = fileURLToPath(new URL('../..', import.meta.url));
const GET = join(REPO, '..', 'shared', 'tools', 'helm', 'get.sh');

export async function helmBinary(major: 3 | 4 = 4): Promise<string> {
  const fromEnv = major === 4 ? process.env.HELM : process.env.HELM3;
  if (fromEnv) return fromEnv;
  const cached = join(REPO, '.cache', 'helm', `helm${major}`);
  if (existsSync(cached)) return cached;
  if (existsSync(GET)) {
    mkdirSync(join(REPO, '.cache', 'helm'), { recursive: true });
    await run('bash', [GET, cached, String(major)]);
    return cached;
  }
  if (major === 4) {
    try {
      await run('helm', ['version', '--short']);
      return 'helm';
    } catch {
      // fall through
    }
  }
  throw new Error(`no helm v${major}: set ${major === 4 ? 'HELM' : 'HELM3'} to a helm binary, or put one on the PATH`);
}

let home: string | undefined;
export function helmEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  home ??= mkdtempSync(join(tmpdir(), 'raftkv-helm-home-'));
  return { ...process.env, HOME: home, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data'), ...extra };
}

/** `helm ARGS`, its stdout; a failure throws with helm's stderr in the message. */
export async function helm(args: string[], o: { major?: 3 | 4; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const bin = await helmBinary(o.major ?? 4);
  try {
    return (await run(bin, args, { env: helmEnv(o.env), maxBuffer: 64 << 20 })).stdout;
  } catch (e) {
    const x = e as { stderr?: string; message: string };
    throw new Error(`helm ${args.join(' ')}: ${x.stderr?.trim() || x.message}`);
  }
}
