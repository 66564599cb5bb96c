/**
 * How a long-running subcommand stops: on SIGTERM/SIGINT, when the `raftkv local` that started
 * it goes away (its stdin pipe closes), or when the service stops on its own with an error.
 */
export function stopOnSignals(name: string, stop: () => Promise<void>, stoppedByItself: Promise<Error | undefined>, after?: () => Promise<void>): void {
  let stopping = false;
  const shutdown = async (why: string, code: number) => {
    if (stopping) return;
    stopping = true;
    console.log(`${name}: ${why}, shutting down`);
    await stop();
    await after?.();
    process.exit(code);
  };
  if (process.env.RAFTKV_EXIT_WITH_PARENT === '1') {
    process.stdin.on('end', () => void shutdown('parent exited', 0));
    process.stdin.on('error', () => void shutdown('parent exited', 0));
    process.stdin.resume();
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM', 0));
  process.on('SIGINT', () => void shutdown('SIGINT', 0));
  void stoppedByItself.then((e) => {
    if (e) void shutdown(`stopped: ${e.message}`, 1);
  });
}

/** Whether a process with this pid exists (for owner files left by a process that may be gone). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
