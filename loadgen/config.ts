/** The seed's client configuration file (TOML). */
import { readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { z } from 'zod';

const SeedClientConfig = z
  .object({
    rep: z.number().int().positive(),
    svrIps: z.array(z.string().regex(/^[^:\s]*:\d{1,5}$/, 'each server must be host:port')).min(1),
    /** The seed's UDP reply port; raftkv answers on the request's own connection, so it is only recorded. */
    udpport: z.number().int().min(0).max(65535).optional(),
    localip: z.string().optional(),
    thinkingTimeMsec: z.number().int().min(0).optional(),
  })
  .refine((c) => c.rep === c.svrIps.length, (c) => ({ message: `rep is ${c.rep} but ${c.svrIps.length} servers are listed in svrIps` }));

export type SeedClientConfig = z.infer<typeof SeedClientConfig>;

export function parseSeedConfig(text: string, file = 'config'): SeedClientConfig {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = SeedClientConfig.safeParse(raw);
  if (!r.success) throw new Error(`${file}: ${r.error.issues.map((i) => `${i.path.join('.') || 'file'}: ${i.message}`).join('; ')}`);
  return r.data;
}

export function loadSeedConfig(file: string): SeedClientConfig {
  return parseSeedConfig(readFileSync(file, 'utf8'), file);
}
