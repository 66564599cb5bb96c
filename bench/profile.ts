/** Optional in-process V8 CPU profile for benchmarks: writes the .cpuprofile and prints hot spots. */
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export async function withProfile<T>(file: string | undefined, fn: () => Promise<T> | T): Promise<T> {
  if (!file) return fn();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  const result = await fn();
  const { profile } = (await session.post('Profiler.stop')) as { profile: { nodes: ProfileNode[] } };
  writeFileSync(file, JSON.stringify(profile));
  session.disconnect();
  const self = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    total += hits;
    const where = n.callFrame.url ? `${n.callFrame.url.replace(/^.*\/dist\//, '')}:${n.callFrame.lineNumber + 1}` : '';
    const name = `${n.callFrame.functionName || '(anonymous)'} ${where}`.trim();
    self.set(name, (self.get(name) ?? 0) + hits);
  }
  console.log(`cpu profile written to ${file}; top self time:`);
  for (const [name, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 12)) {
    console.log(`  ${((100 * hits) / Math.max(1, total)).toFixed(1).padStart(5)}%  ${name}`);
  }
  return result;
}
