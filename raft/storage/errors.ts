/**
 * A storage failure the node cannot continue after: the log on disk can no longer be trusted
 * to match what the node believes (after a failed fsync the kernel may have dropped the dirty
 * pages, so retrying is not safe). The driver must stop the node with this message.
 */
export class StorageError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined = undefined,
  ) {
    super(message);
    this.name = 'StorageError';
  }
}

/** The data on disk is damaged in a way recovery must not paper over. */
export class CorruptionError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    reason: string,
  ) {
    super(`corrupt write-ahead log: ${file} at offset ${offset}: ${reason}; refusing to start (nothing was changed on disk)`);
    this.name = 'CorruptionError';
  }
}

/**
 * Whether a store refused to open for what it found on disk (damage: a CorruptionError, or an
 * inconsistency it reports without an errno) rather than for an I/O error (an errno code).
 */
export function isDamage(e: unknown): boolean {
  return e instanceof CorruptionError || typeof (e as NodeJS.ErrnoException | undefined)?.code !== 'string';
}

export function describeIoError(what: string, file: string, e: unknown): StorageError {
  const err = e as NodeJS.ErrnoException;
  const code = err?.code;
  const hint = code === 'ENOSPC' ? ' (disk full)' : code === 'EIO' ? ' (I/O error from the device)' : code === 'EDQUOT' ? ' (quota exceeded)' : '';
  return new StorageError(`storage failed: ${what} ${file}: ${err?.message ?? String(e)}${hint}; stopping, the log cannot be trusted past this point`, code);
}
