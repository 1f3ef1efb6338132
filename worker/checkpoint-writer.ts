// Stores one job's checkpoints in index order, in the worker's main thread, while the job goes
// on. Checkpoints that pile up (a synchronous loop taking many small ones) are written together
// in one transaction. A write that fails because the store is away (a restarted server,
// connections terminated) is retried until it is back (store-retry.ts); a write the store refuses,
// or one still failing after `retryForMs`, fails the checkpoint for good and every one after it
// (a job's history has no holes). A write the store refuses for want of disk space is retried
// for NBJOB_STORE_WAIT_MS (store-retry.ts) while the job is told so; then the checkpoint fails
// with a message naming the disk and the bytes it needed. The checkpoint rows go in one
// transaction (putCheckpoints), so a refused write leaves no half-stored checkpoint.
import { CheckpointConflictError, putCheckpoints } from "../store/checkpoints";
import type { CheckpointInput } from "../store/checkpoints";
import type { Db } from "../store";
import { ClaimLostError } from "../store/jobs";
import { isDiskFull } from "../store/errors";
import { diskFullMessage, fullDiskLocation } from "../store/disk";
import { retryWhileAway, StoreAvailability } from "./store-retry";

export interface CheckpointWriterOptions {
  log: (line: string) => void;
  /** The worker's view of the store (shared by its writers). Default: one of its own. */
  availability?: StoreAvailability;
  /** How long an unreachable store is waited for before the checkpoint fails. Default: as long as it takes. */
  retryForMs?: number;
  /** Most bytes / checkpoints written in one transaction. Defaults 64 MiB / 500. */
  batchBytes?: number;
  batchCount?: number;
  /** The claim the job's run holds (fencing); checkpoints are stored only while the job is running under it. */
  claim?: () => string | undefined;
  /** A checkpoint was refused because the claim is gone (told once; it and every later one fail). */
  onClaimLost?: (err: ClaimLostError) => void;
  /** The store's disk is full: `waiting` true when a checkpoint starts waiting for space, false once it is stored or has failed. */
  onDiskFull?: (waiting: boolean, message: string) => void;
}

interface Pending extends CheckpointInput {
  bytes: number;
  resolve(): void;
  reject(err: Error): void;
}

export class CheckpointWriter {
  private readonly queue: Pending[] = [];
  private draining = false;
  private failure?: Error;
  private readonly retryForMs: number;
  private readonly availability: StoreAvailability;
  private readonly batchBytes: number;
  private readonly batchCount: number;
  /** Bytes sent to the server so far (0 for values it held already). */
  uploaded = 0;

  constructor(private readonly db: Db, private readonly jobId: number, private readonly options: CheckpointWriterOptions) {
    this.retryForMs = options.retryForMs ?? Infinity;
    this.availability = options.availability ?? new StoreAvailability(options.log);
    this.batchBytes = options.batchBytes ?? 64 * 1024 * 1024;
    this.batchCount = options.batchCount ?? 500;
  }

  /** `metrics`: where the job's metric series stood (for a resume). Resolves once checkpoint `idx` is stored; rejects if it cannot be (nor can any after it). */
  write(idx: number, values: Record<string, Uint8Array>, metrics?: CheckpointInput["metrics"]): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      const bytes = Object.values(values).reduce((sum, v) => sum + v.byteLength, 0);
      this.queue.push({ idx, values, metrics, bytes, resolve, reject });
      if (!this.draining) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const batch: Pending[] = [];
        let bytes = 0;
        while (this.queue.length > 0 && batch.length < this.batchCount && (batch.length === 0 || bytes + this.queue[0].bytes <= this.batchBytes)) {
          const next = this.queue.shift()!;
          batch.push(next);
          bytes += next.bytes;
        }
        try {
          await this.store(batch);
          for (const item of batch) item.resolve();
        } catch (err) {
          const fenced = (err as Error).cause instanceof ClaimLostError ? ((err as Error).cause as ClaimLostError) : undefined;
          if (fenced && !this.failure) {
            this.options.log(`job ${this.jobId}: ${fenced.message}; no later checkpoint is stored`);
            this.options.onClaimLost?.(fenced);
          }
          this.failure = err as Error;
          for (const item of [...batch, ...this.queue.splice(0)]) item.reject(this.failure);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private async store(batch: Pending[]): Promise<void> {
    const started = Date.now();
    const which = batch.length === 1 ? `checkpoint ${batch[0].idx}` : `checkpoints ${batch[0].idx}..${batch[batch.length - 1].idx}`;
    const bytes = batch.reduce((sum, item) => sum + item.bytes, 0);
    let attempts = 0;
    let diskFullAt: number | undefined;
    let disk: Promise<string> = Promise.resolve("");
    try {
      await retryWhileAway(this.availability, async () => {
        attempts++;
        // A released disk reserve holds checkpoints back until a gc ran (store/disk-reserve.ts).
        await this.db.holdCheckpoints?.();
        try {
          const { uploaded } = await putCheckpoints(this.db, this.jobId, batch, this.options.claim?.());
          this.uploaded += uploaded;
        } catch (err) {
          // An earlier attempt committed but its answer was lost with the connection.
          if (err instanceof CheckpointConflictError && err.kind === "duplicate" && attempts > 1) return;
          throw err;
        }
      }, {
        giveUpAfterMs: this.retryForMs,
        retrying: (err, attempt) => {
          if (attempt === 0) this.options.log(`job ${this.jobId}: storing ${which} failed (${err.message}); retrying`);
        },
        diskFull: (err) => {
          diskFullAt = Date.now();
          disk = fullDiskLocation(this.db, err).then((where) => (where ? ` on ${where}` : ""));
          void disk.then((on) => {
            const message = `the store's disk${on} is full: ${which} (${formatBytes(bytes)}) could not be stored (${oneLine(diskFullMessage(err))}); the job waits and retries for up to ${Math.round(this.availability.waitLimitMs / 1000)} s (NBJOB_STORE_WAIT_MS) while space is freed on the PostgreSQL server's disk (nbjob rm old jobs, then nbjob gc)`;
            this.options.log(`job ${this.jobId}: ${message}`);
            this.options.onDiskFull?.(true, message);
          });
        },
      });
    } catch (err) {
      const waited = Date.now() - started;
      if (diskFullAt !== undefined && isDiskFull(err)) {
        const message = `${which} of job ${this.jobId} could not be stored: the store's disk${await disk} is full (${oneLine(diskFullMessage(err))}); it needed ${formatBytes(bytes)} and no room came in ${Math.round(waited / 1000)} s (NBJOB_STORE_WAIT_MS=${this.availability.waitLimitMs}); free space on the PostgreSQL server's disk (nbjob rm old jobs, then nbjob gc) and resume the job from its last checkpoint`;
        this.options.onDiskFull?.(false, message);
        throw new Error(message, { cause: err });
      }
      const tried = attempts > 1 ? ` (tried for ${Math.round(waited / 1000)} s)` : "";
      throw new Error(`${which} of job ${this.jobId} could not be stored${tried}: ${(err as Error).message}`, { cause: err });
    }
    if (diskFullAt !== undefined) {
      // After the waiting note (told once the disk's location is known).
      await disk;
      const message = `${which} (${formatBytes(bytes)}) stored after waiting ${Math.round((Date.now() - diskFullAt) / 1000)} s for room on the store's disk`;
      this.options.log(`job ${this.jobId}: ${message}`);
      this.options.onDiskFull?.(false, message);
    } else if (attempts > 1) this.options.log(`job ${this.jobId}: stored ${which} after ${attempts} attempts`);
  }
}

function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} bytes`;
}

/** PostgreSQL's messages are one line, but a driver's may not be; a job's note stays one line. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}
