/**
 * Child of the crash tests: fills a command log (entries it holds already are skipped), then
 * truncates or installs a base (at the index given, default 200) with a crash point armed.
 */
import { CommandLog } from '../../logger/command-log.js';
import { EntryType } from '../../raft/index.js';

const [dir, point, installAt] = process.argv.slice(2);
const log = await CommandLog.open(dir, { segmentBytes: 120, crashAt: point });
for (let g = 0; g < 6; g++) {
  log.append(Array.from({ length: 10 }, (_, i) => ({ index: g * 10 + i + 1, term: 1, type: EntryType.Normal, data: Buffer.from(`cmd-${g * 10 + i + 1}`) })));
  await log.flush();
}
const membership = { voters: ['a'], learners: [], addrs: { a: 'x:1' } };
if (point.startsWith('truncate')) await log.truncatePrefix(30, { meta: { index: 40, term: 1, membership }, data: Buffer.from('s') });
else await log.installBase({ meta: { index: Number(installAt ?? 200), term: 2, membership }, data: Buffer.from('s') });
console.error('crash point not reached');
process.exit(3);
