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
 * busy. Its threads are told apart from V8's by watching which ones run while the pool is given
 * work (threads are all named `node` on Node 20). Needs `chrt` (util-linux; in the image).
 */
import { execFile } from 'node:child_process';
import { pbkdf2 } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);
const pbkdf2Async = promisify(pbkdf2);

/** Linux's policy numbers, as `/proc/TID/stat` reports them (field 41). */
export const SCHED_OTHER = 0;
export const SCHED_IDLE = 5;

/** libuv's pool size (its default 4, or UV_THREADPOOL_SIZE). */
function poolSize(): number {
  return Number(process.env.UV_THREADPOOL_SIZE) || 4;
}

/** This process's threads other than the main one. */
export function otherThreads(): number[] {
  return readdirSync('/proc/self/task')
    .map(Number)
    .filter((tid) => tid !== process.pid);
}

/** How many times a thread has been scheduled (`/proc/.../schedstat`'s third field); -1 if gone. */
function timesScheduled(tid: number): number {
  try {
    return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[2]);
  } catch {
    return -1;
  }
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

/** The threads that ran while the pool had four jobs per thread queued (the pool's, and any other that ran meanwhile). */
async function ranDuringPoolJobs(): Promise<Set<number>> {
  const size = poolSize();
  const before = new Map(otherThreads().map((tid) => [tid, timesScheduled(tid)]));
  await Promise.all(Array.from({ length: 4 * size }, (_, i) => pbkdf2Async(`probe${i}`, 'raftkv', 1000, 32, 'sha256')));
  const ran = new Set<number>();
  for (const tid of otherThreads()) {
    const was = before.get(tid);
    // A thread that did not exist before the jobs were queued was started by them: the pool's.
    if (was === undefined || timesScheduled(tid) > was) ran.add(tid);
  }
  return ran;
}

/**
 * The threads of libuv's pool: the ones that ran in each of three rounds of pool jobs (every
 * idle pool thread is signalled for each job queued, so each of them runs every round). V8's
 * helpers are busy at start-up and may run during a round too; one that ran in all three is
 * counted with the pool, kept at normal priority, which is the safe side.
 */
export async function poolThreads(rounds = 3): Promise<Set<number>> {
  let pool = await ranDuringPoolJobs();
  for (let i = 1; i < rounds; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const ran = await ranDuringPoolJobs();
    pool = new Set([...pool].filter((tid) => ran.has(tid)));
  }
  return pool;
}

export interface HelperThreadsResult {
  /** Threads now under SCHED_IDLE. */
  idle: number[];
  /** libuv's pool, left as it was. */
  pool: number[];
}

/**
 * Put every thread but the main one and libuv's pool under SCHED_IDLE. Call it before the
 * process gives the pool work of its own (a pool thread busy in a long call throughout the probe
 * would not be seen running). Rejects when `chrt` cannot be run.
 */
export async function idleHelperThreads(): Promise<HelperThreadsResult> {
  const pool = await poolThreads();
  const size = poolSize();
  // Fewer than the pool's size seen in every round: something else kept a pool thread busy.
  // Then nothing is changed, rather than a pool thread put under SCHED_IDLE.
  if (pool.size < size) throw new Error(`could not tell libuv's pool apart (${pool.size} of ${size} threads seen working)`);
  const helpers = otherThreads().filter((tid) => !pool.has(tid));
  const done = await Promise.allSettled(helpers.map((tid) => run('chrt', ['--idle', '--pid', '0', String(tid)])));
  // A thread that ended meanwhile fails on its own; chrt missing fails them all.
  const missing = done.find((d) => d.status === 'rejected' && (d.reason as NodeJS.ErrnoException).code === 'ENOENT');
  if (missing) throw new Error('chrt (util-linux) not found');
  return { idle: helpers.filter((tid) => schedulingPolicy(process.pid, tid) === SCHED_IDLE), pool: [...pool] };
}
