import { LoadResult } from './run.js';

const ms = (us: number) => (us / 1000).toFixed(2);

export function table(results: LoadResult[]): string {
  const head = ['driver', 'clients', 'procs', 'sent', 'answered', 'errors', 'timeouts', 'ops/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'lg cpu %'];
  const rows = results.map((r) => [
    r.driver,
    String(r.clients),
    String(r.procs),
    String(r.sent),
    String(r.answered),
    String(r.errors),
    String(r.timeouts),
    r.throughput.toFixed(0),
    ms(r.latencyUs.p50),
    ms(r.latencyUs.p90),
    ms(r.latencyUs.p99),
    ms(r.latencyUs.p999),
    ms(r.latencyUs.max),
    r.cpu.percent.toFixed(0),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

export function csv(results: LoadResult[]): string {
  const head = 'driver,clients,procs,keys,value_size,write_ratio,sent,answered,errors,timeouts,elapsed_s,throughput,p50_us,p90_us,p99_us,p999_us,max_us,mean_us,lg_cpu_percent,reads,read_p99_us,writes,write_p99_us';
  const rows = results.map((r) =>
    [r.driver, r.clients, r.procs, r.keys, r.valueSize, r.writeRatio, r.sent, r.answered, r.errors, r.timeouts, r.elapsedS.toFixed(3), r.throughput.toFixed(1),
      r.latencyUs.p50, r.latencyUs.p90, r.latencyUs.p99, r.latencyUs.p999, r.latencyUs.max, r.latencyUs.mean, r.cpu.percent.toFixed(1),
      r.byKind.read.answered, r.byKind.read.latencyUs.p99, r.byKind.write.answered, r.byKind.write.latencyUs.p99].join(','),
  );
  return [head, ...rows].join('\n') + '\n';
}
