// How a worker lives through a store that goes away. Every write the worker makes for its jobs
// (output, checkpoints, status, environment) and its heartbeat goes through `retryWhileAway`:
// while the store cannot be reached the write is tried again with backoff; an error the store
// gave for what was sent (bad data, a constraint) comes back at once, since sending it again
// would fail the same way. One `StoreAvailability` per worker knows whether the store is away
// and since when: the worker's log says so once, a success by any writer wakes the others at
// once, and a store away longer than `waitLimitMs` makes running jobs wait for it.
// A server whose disk is full answers, but refuses what needs room (53100): such a write is
// retried too (nothing of it was kept, and space may be freed: `nbjob rm`, `nbjob gc`). A writer
// that asks (checkpoints) retries it only for `waitLimitMs`, then fails with the disk error, so a
// job does not hang on a disk nobody frees; that does not count as the store being away (other
// writes, heartbeats, still work). Other writes wait for room as for an unreachable store.
import { isStoreUnreachable } from "../store";
import { isDiskFull } from "../store/errors";

/** Retries start 250 ms apart and double up to this; a success elsewhere wakes them sooner. */
const MAX_BACKOFF_MS = 2_000;

/** A store away this long makes running jobs wait (NBJOB_STORE_WAIT_MS). */
export const DEFAULT_STORE_WAIT_MS = 60_000;

export type AvailabilityEvent = { kind: "wait"; awayMs: number } | { kind: "back"; awayMs: number; since: Date };

export class StoreAvailability {
  readonly waitLimitMs: number;
  private awaySince?: number;
  private closing = false;
  private limitTimer?: NodeJS.Timeout;
  private readonly wakeups = new Set<() => void>();
  private readonly watchers = new Set<(event: AvailabilityEvent) => void>();

  constructor(private readonly log: (line: string) => void, options: { waitLimitMs?: number } = {}) {
    this.waitLimitMs = options.waitLimitMs ?? DEFAULT_STORE_WAIT_MS;
  }

  /** Unreachable now, and for longer than the wait limit. */
  get waiting(): boolean {
    return this.awaySince !== undefined && Date.now() - this.awaySince >= this.waitLimitMs;
  }

  get away(): boolean {
    return this.awaySince !== undefined;
  }

  /** A write failed because the store cannot be reached. */
  failed(err: Error): void {
    if (this.awaySince !== undefined) return;
    this.awaySince = Date.now();
    this.log(`cannot reach the store (${err.message}); jobs go on, their output and checkpoints are kept and written when it is back`);
    this.limitTimer = setTimeout(() => {
      const awayMs = Date.now() - this.awaySince!;
      this.log(`the store has been unreachable for ${Math.round(awayMs / 1000)} s; a running job now waits at its next output or checkpoint until it is back (NBJOB_STORE_WAIT_MS=${this.waitLimitMs})`);
      this.emit({ kind: "wait", awayMs });
    }, this.waitLimitMs);
    this.limitTimer.unref();
  }

  /** A write reached the store. */
  succeeded(): void {
    if (this.awaySince === undefined) return;
    const since = this.awaySince;
    this.awaySince = undefined;
    clearTimeout(this.limitTimer);
    const awayMs = Date.now() - since;
    this.log(`the store is back after ${(awayMs / 1000).toFixed(1)} s; writing what was kept`);
    for (const wake of [...this.wakeups]) wake();
    this.emit({ kind: "back", awayMs, since: new Date(since) });
  }

  /** The worker is shutting down: writes stop waiting for an unreachable store (retryWhileAway gives up). */
  close(): void {
    this.closing = true;
    clearTimeout(this.limitTimer);
    for (const wake of [...this.wakeups]) wake();
  }

  get closed(): boolean {
    return this.closing;
  }

  /** Waits `ms`, or less if the store comes back meanwhile. */
  pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeups.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeups.add(done);
    });
  }

  /** Calls `watcher` when the store has been away past the limit, and when it is back; returns the unsubscribe. */
  watch(watcher: (event: AvailabilityEvent) => void): () => void {
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  private emit(event: AvailabilityEvent): void {
    for (const watcher of [...this.watchers]) {
      try {
        watcher(event);
      } catch (err) {
        this.log(`a store watcher threw: ${(err as Error).stack ?? err}`);
      }
    }
  }
}

export interface RetryOptions {
  /** Give up (rethrow the last error) once the store has been unreachable this long. Default: never. */
  giveUpAfterMs?: number;
  /** Told of each failed attempt that will be retried. */
  retrying?: (err: Error, attempt: number) => void;
  /**
   * Told once, when the store first refuses this write for want of disk space; given, such a
   * write is retried for `diskFullForMs` only (a checkpoint: the job waits, then fails clearly).
   * Without it a full disk is waited out like an unreachable store (output lines, job rows).
   */
  diskFull?: (err: Error) => void;
  /** How long a write refused for want of disk space is retried. Default: the availability's waitLimitMs. */
  diskFullForMs?: number;
}

/**
 * Runs `write` until it succeeds or fails for another reason than an unreachable store. `write`
 * must be safe to run again after a failure (an attempt may have committed although its answer
 * was lost: see JobLogWriter and CheckpointWriter for how they tell).
 */
export async function retryWhileAway<T>(availability: StoreAvailability, write: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const started = Date.now();
  let diskFullSince: number | undefined;
  let diskFullAttempt = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await write();
      availability.succeeded();
      return result;
    } catch (err) {
      if (options.diskFull && isDiskFull(err)) {
        diskFullSince ??= Date.now();
        if (availability.closed || Date.now() - diskFullSince >= (options.diskFullForMs ?? availability.waitLimitMs)) throw err;
        if (diskFullAttempt === 0) options.diskFull?.(err as Error);
        await availability.pause(Math.min(250 * 2 ** diskFullAttempt++, MAX_BACKOFF_MS));
        continue;
      }
      if (!isStoreUnreachable(err)) throw err;
      availability.failed(err as Error);
      if (availability.closed || Date.now() - started >= (options.giveUpAfterMs ?? Infinity)) throw err;
      options.retrying?.(err as Error, attempt);
      await availability.pause(Math.min(250 * 2 ** attempt, MAX_BACKOFF_MS));
    }
  }
}
