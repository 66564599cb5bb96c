/** `host:port`, `:port` (all interfaces for listening, 127.0.0.1 for dialing) or `port`. */
export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(s: string, what: string): HostPort {
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d{1,5})$/.exec(s.trim());
  if (!m) throw new Error(`${what}: '${s}' is not host:port or :port`);
  const port = Number(m[2]);
  if (port < 0 || port > 65535) throw new Error(`${what}: port ${port} is out of range`);
  return { host: m[1] ?? '', port };
}

export function listenHost(hp: HostPort): string {
  return hp.host || '0.0.0.0';
}

export function dialHost(hp: HostPort): string {
  return hp.host && hp.host !== '0.0.0.0' ? hp.host : '127.0.0.1';
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The index in `targets` of the address `hint` names (the same host to dial and port), or -1:
 * a client follows a replica's hint only to an address it was given.
 */
export function targetIndex(targets: readonly string[], hint: string): number {
  if (!hint) return -1;
  let h: HostPort;
  try {
    h = parseHostPort(hint, 'hint');
  } catch {
    return -1;
  }
  return targets.findIndex((t) => {
    const hp = parseHostPort(t, 'target');
    return hp.port === h.port && dialHost(hp) === dialHost(h);
  });
}
