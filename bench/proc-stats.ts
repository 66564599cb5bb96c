/** CPU time and resident memory of running processes, from /proc (Linux). */
import { readFileSync } from 'node:fs';
import { monotonicMs } from '../loadgen/run.js';

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux this runs on

/** User + system CPU seconds a process has used so far (0 once it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the command name (which may hold spaces, inside parentheses).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

export function totalCpuSeconds(pids: number[]): number {
  return pids.reduce((a, p) => a + cpuSeconds(p), 0);
}

/** Resident set size in bytes (0 once the process is gone). */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Busy and total CPU ticks of the whole machine so far (/proc/stat). */
function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0); // idle + iowait
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/**
 * Wait until the machine is quiet (under `maxBusy` of its CPU busy over a second), at most
 * `timeoutMs`: a measurement that follows heavy work (a cluster snapshotting what was just
 * written, say) is otherwise a measurement of that work too. Returns the seconds waited.
 */
export async function waitQuiet(maxBusy = 0.15, timeoutMs = 60_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    const a = machineTicks();
    await new Promise((r) => setTimeout(r, 1000));
    const b = machineTicks();
    const busy = (b.busy - a.busy) / Math.max(1, b.total - a.total);
    const waited = (performance.now() - start) / 1000;
    if (busy <= maxBusy || waited * 1000 >= timeoutMs) return waited;
  }
}

/**
 * The processes' CPU seconds sampled every `everyMs`, so the CPU used between two moments
 * another process reports afterwards (a load generator's measured window) can be read back.
 */
export class CpuTimeline {
  private readonly samples: { at: number; cpu: number }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: number[],
    everyMs = 100,
    private readonly read: (pids: number[]) => number = totalCpuSeconds,
    // CLOCK_MONOTONIC, which every process shares (a generator's monoWindow): the wall clock
    // steps on this VM, and a window read on another process's idea of it can miss the samples.
    private readonly now: () => number = monotonicMs,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  /**
   * CPU seconds used from `from` to `to` (ms on the sampling clock), interpolated between
   * samples. Throws for a window the samples do not cover rather than reading a part of it.
   */
  between(from: number, to: number): number {
    const s = this.samples;
    if (from < s[0].at || to > s[s.length - 1].at) {
      throw new Error(`CPU window ${from.toFixed(0)}..${to.toFixed(0)} ms is not covered by the samples (${s[0].at.toFixed(0)}..${s[s.length - 1].at.toFixed(0)})`);
    }
    return this.at(to) - this.at(from);
  }

  sample(): void {
    this.samples.push({ at: this.now(), cpu: this.read(this.pids) });
  }

  private at(t: number): number {
    const s = this.samples;
    if (t <= s[0].at) return s[0].cpu;
    for (let i = 1; i < s.length; i++) {
      if (t <= s[i].at) {
        const a = s[i - 1];
        const b = s[i];
        return b.at === a.at ? b.cpu : a.cpu + ((b.cpu - a.cpu) * (t - a.at)) / (b.at - a.at);
      }
    }
    return s[s.length - 1].cpu;
  }
}
