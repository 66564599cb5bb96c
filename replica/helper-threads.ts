/**
 * V8's helper threads (its optimizing compiler and concurrent garbage collector) under
 * SCHED_IDLE, so that they run only on a CPU nothing else wants.
 *
 * Why: on a 2-core VM at one client, a replica's main thread woken by a message waited 1-4.5 ms
 * on the run queue 75 times in 4 s (`perf sched timehist`), in nearly every case behind one of
 * the replicas' own helper threads running a compile or marking job of a few milliseconds on
 * that CPU, while the other CPU sat idle: a woken thread is queued where it last ran and is not
 * moved until the running one yields or the next 4 ms tick balances the queues. A SCHED_IDLE
 * thread is preempted at once by any normal one that wakes on its CPU, and the kernel counts a
 * CPU running only such threads as free when it places a woken one. The helpers' work still gets
 * done (on the CPU time nobody else takes; V8's main thread finishes what they have not).
 *
 * libuv's thread pool keeps normal scheduling: it runs file work a replica waits for (large WAL
 * writes, fdatasyncs handed off under load, snapshots), which must not starve when the CPUs are
 * busy. Its threads are found exactly (Node 20 names every thread `node`): each is made to wait
 * in the kernel for a FIFO, and seen there. Needs `mkfifo` and `chrt` (coreutils and util-linux;
 * both in the image).
 */
import { execFile } from 'node:child_process';
import { openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Linux's policy numbers, as `/proc/TID/stat` reports them (field 41). */
export const SCHED_OTHER = 0;
export const SCHED_IDLE = 5;

/** This process's threads other than the main one. */
export function otherThreads(): number[] {
  return readdirSync('/proc/self/task')
    .map(Number)
    .filter((tid) => tid !== process.pid);
}

/** A thread's scheduling policy (SCHED_OTHER, SCHED_IDLE, ...); -1 if it is gone. */
export function schedulingPolicy(pid: number, tid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) in parentheses: policy is field 41.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);
  } catch {
    return -1;
  }
}

/** Whether a thread of this process is blocked opening a FIFO that has no writer yet. */
function waitsForFifo(tid: number): boolean {
  try {
    return readFileSync(`/proc/self/task/${tid}/wchan`, 'utf8') === 'wait_for_partner';
  } catch {
    return false;
  }
}

/**
 * The threads of libuv's pool, found exactly: as many opens of a FIFO for reading as the pool
 * has threads are queued; each blocks the pool thread that takes it until a writer comes, so
 * every pool thread ends up waiting in the kernel, where it is seen (`wchan`). Then this thread
 * opens the FIFO for reading and writing, which lets every open return (and any still to come).
 * Rejects if the pool is not all seen waiting within `timeoutMs`.
 */
export async function poolThreads(timeoutMs = 1_000): Promise<Set<number>> {
  const size = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-pool-'));
  try {
    const fifo = join(dir, 'probe');
    await run('mkfifo', [fifo]);
    const opens = Array.from({ length: size }, () => open(fifo, 'r'));
    let waiting: number[] = [];
    try {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        waiting = otherThreads().filter(waitsForFifo);
        if (waiting.length >= size || Date.now() > deadline) break;
        await sleep(1);
      }
    } finally {
      const writer = openSync(fifo, 'r+');
      for (const handle of await Promise.all(opens)) await handle.close();
      closeSync(writer);
    }
    if (waiting.length < size) throw new Error(`only ${waiting.length} of libuv's ${size} pool threads were seen waiting for the probe`);
    return new Set(waiting);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface HelperThreadsResult {
  /** Threads now under SCHED_IDLE. */
  idle: number[];
  /** libuv's pool, left as it was. */
  pool: number[];
}

/**
 * Put every thread but the main one and libuv's pool under SCHED_IDLE. Rejects, having changed
 * nothing, when the pool cannot be found or `chrt` cannot be run.
 */
export async function idleHelperThreads(): Promise<HelperThreadsResult> {
  const pool = await poolThreads();
  const helpers = otherThreads().filter((tid) => !pool.has(tid));
  const done = await Promise.allSettled(helpers.map((tid) => run('chrt', ['--idle', '--pid', '0', String(tid)])));
  // A thread that ended meanwhile fails on its own; chrt missing fails them all.
  const failed = done.find((d): d is PromiseRejectedResult => d.status === 'rejected');
  if (failed && (failed.reason as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('chrt (util-linux) not found');
  const idle = helpers.filter((tid) => schedulingPolicy(process.pid, tid) === SCHED_IDLE);
  // None changed (no permission, say): say why rather than report nothing done as done.
  if (idle.length === 0 && failed) throw new Error(`chrt failed: ${(failed.reason as Error).message.trim()}`);
  return { idle, pool: [...pool] };
}
