/**
 * The operator's view into a running cluster: each replica's /v1/status at its pod IP, and the
 * membership calls it makes through the leader (remove a member, hand leadership over).
 */
import type { ReplicaStatus } from '../replica/server.js';
import { requestJson } from '../replica/tls.js';
import { PORTS } from './resources.js';

/** A replica's /v1/status (the server's own type), and which pod at which IP answered. */
export type ReplicaView = ReplicaStatus & { pod: string; ip: string };

export async function replicaStatus(pod: string, ip: string, timeoutMs = 1500): Promise<ReplicaView | undefined> {
  try {
    const r = await requestJson(`http://${ip}:${PORTS.http}/v1/status`, { method: 'GET', timeoutMs });
    if (r.status !== 200 || !r.json) return undefined;
    return { pod, ip, ...(r.json as ReplicaStatus) };
  } catch {
    return undefined;
  }
}

export async function removeMember(leaderIp: string, id: string): Promise<{ status: number; text: string }> {
  const r = await requestJson(`http://${leaderIp}:${PORTS.http}/v1/members/${encodeURIComponent(id)}`, { method: 'DELETE', timeoutMs: 35_000 });
  return { status: r.status, text: r.text };
}

export async function transferLeadership(leaderIp: string, to: string): Promise<{ status: number; text: string }> {
  const r = await requestJson(`http://${leaderIp}:${PORTS.http}/v1/leader/transfer`, { method: 'POST', timeoutMs: 10_000, body: JSON.stringify({ to }), headers: { 'content-type': 'application/json' } });
  return { status: r.status, text: r.text };
}
