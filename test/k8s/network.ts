/**
 * Pod networking for the process kubelet: each pod gets its own network namespace on a bridge
 * (as root), so every pod listens on the seed's ports at its own IP like in a real cluster. The
 * host holds the bridge's first address, where pods reach the API server. Where namespaces
 * cannot be made, pods get loopback addresses (127.1.x.y) in the host's namespace instead and
 * must bind their POD_IP.
 */
import { execFileSync } from 'node:child_process';

function sh(args: string[]): void {
  execFileSync(args[0], args.slice(1), { stdio: 'pipe' });
}

export interface PodNet {
  ip: string;
  /** Prefix for running a command in the pod's namespace ([] in loopback mode). */
  exec: string[];
  release(): void;
}

export class PodNetwork {
  readonly mode: 'netns' | 'loopback';
  readonly bridge: string;
  /** The host's address on the pods' network (where the API server listens for pods). */
  readonly hostIp: string;
  private readonly subnet: number;
  private next = 2;
  private readonly used = new Set<string>();

  private constructor(mode: 'netns' | 'loopback', subnet: number) {
    this.mode = mode;
    this.subnet = subnet;
    this.bridge = `rkvbr${subnet}`;
    this.hostIp = mode === 'netns' ? `10.${200 + subnet}.0.1` : '127.0.0.1';
  }

  /** Claim a free bridge and subnet (several emulators may run at once); fall back to loopback. */
  static create(prefer: 'netns' | 'loopback' = 'netns'): PodNetwork {
    if (prefer === 'netns' && process.getuid?.() === 0) {
      for (let n = 0; n < 50; n++) {
        const net = new PodNetwork('netns', n);
        try {
          sh(['ip', 'link', 'add', net.bridge, 'type', 'bridge']);
        } catch {
          continue; // taken by another emulator (or left by a killed one)
        }
        try {
          sh(['ip', 'addr', 'add', `${net.hostIp}/16`, 'dev', net.bridge]);
          sh(['ip', 'link', 'set', net.bridge, 'up']);
          return net;
        } catch {
          try {
            sh(['ip', 'link', 'del', net.bridge]);
          } catch {
            // nothing to undo
          }
          break;
        }
      }
    }
    return new PodNetwork('loopback', Math.floor(Math.random() * 200) + 1);
  }

  attach(podKey: string): PodNet {
    let ip: string;
    do {
      const n = this.next++;
      ip = this.mode === 'netns' ? `10.${200 + this.subnet}.${n >> 8}.${n & 255}` : `127.${this.subnet}.${n >> 8}.${n & 255}`;
    } while (this.used.has(ip) || (this.next & 255) === 0 || (this.next & 255) === 255);
    this.used.add(ip);
    if (this.mode === 'loopback') return { ip, exec: [], release: () => this.used.delete(ip) };
    const id = hash(`${podKey}-${ip}`);
    const ns = `rkv-${id}`;
    const host = `rkvh${id}`;
    sh(['ip', 'netns', 'add', ns]);
    sh(['ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    sh(['ip', 'link', 'set', host, 'master', this.bridge, 'up']);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${ip}/16`, 'dev', 'eth0']);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up']);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'route', 'add', 'default', 'via', this.hostIp]);
    return {
      ip,
      exec: ['ip', 'netns', 'exec', ns],
      release: () => {
        this.used.delete(ip);
        for (const cmd of [['ip', 'link', 'del', host], ['ip', 'netns', 'del', ns]]) {
          try {
            sh(cmd);
          } catch {
            // already gone
          }
        }
      },
    };
  }

  destroy(): void {
    if (this.mode !== 'netns') return;
    try {
      sh(['ip', 'link', 'del', this.bridge]);
    } catch {
      // already gone
    }
  }
}

function hash(s: string): string {
  let h = 2166136261;
  for (const c of s) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return (h >>> 0).toString(16).padStart(8, '0');
}
