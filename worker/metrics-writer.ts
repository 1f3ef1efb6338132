// Stores one job's logged metrics (jobtracker.log) in the worker's main thread, in the order the
// job logged them, while the job goes on. Batches that pile up are written together, many
// thousand values per transaction (store/metrics.ts putMetrics, which also keeps
// jobs.last_metrics). A write that fails because the store is away is retried until it is back
// (store-retry.ts); a write the store refuses, or refused under a lost claim (fencing), fails
// that batch and every later one, and the job fails with MetricsError.
import { putMetrics } from "../store/metrics";
import type { MetricPoint } from "../store/metrics";
import type { Db } from "../store";
import { ClaimLostError } from "../store/jobs";
import type { MetricBatch } from "./job-thread";
import { retryWhileAway, StoreAvailability } from "./store-retry";

export interface MetricsWriterOptions {
  log: (line: string) => void;
  availability?: StoreAvailability;
  /** Most values written in one transaction. Default 50 000. */
  batchPoints?: number;
  /** The claim the job's run holds (fencing): values are stored only while the job runs under it. */
  claim?: () => string | undefined;
  /** A write was refused because the claim is gone (told once). */
  onClaimLost?: (err: ClaimLostError) => void;
}

/** Metrics that could not be stored; the job fails with this name. */
export class MetricsError extends Error {
  override name = "MetricsError";
}

interface Pending {
  batch: MetricBatch;
  resolve(): void;
  reject(err: Error): void;
}

export class MetricsWriter {
  private readonly queue: Pending[] = [];
  private draining = false;
  private failure?: Error;
  private readonly availability: StoreAvailability;
  private readonly batchPoints: number;

  constructor(private readonly db: Db, private readonly jobId: number, private readonly options: MetricsWriterOptions) {
    this.availability = options.availability ?? new StoreAvailability(options.log);
    this.batchPoints = options.batchPoints ?? 50_000;
  }

  /** Resolves once the batch is stored; rejects if it cannot be (nor can any after it). */
  write(batch: MetricBatch): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ batch, resolve, reject });
      if (!this.draining) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const taken: Pending[] = [];
        let points = 0;
        while (this.queue.length > 0 && (taken.length === 0 || points + this.queue[0].batch.count <= this.batchPoints)) {
          const next = this.queue.shift()!;
          taken.push(next);
          points += next.batch.count;
        }
        try {
          await this.store(taken.flatMap((p) => pointsOf(p.batch)));
          for (const item of taken) item.resolve();
        } catch (err) {
          this.failure = err as Error;
          for (const item of [...taken, ...this.queue.splice(0)]) item.reject(this.failure);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private async store(points: MetricPoint[]): Promise<void> {
    const which = `metrics ${points[0].seq}..${points[points.length - 1].seq}`;
    let attempts = 0;
    try {
      // Writing a batch again replaces it (putMetrics), so a retry after a lost answer is harmless.
      await retryWhileAway(this.availability, () => {
        attempts++;
        return putMetrics(this.db, this.jobId, points, this.options.claim?.());
      }, {
        retrying: (err, attempt) => {
          if (attempt === 0) this.options.log(`job ${this.jobId}: storing ${which} failed (${err.message}); retrying`);
        },
      });
    } catch (err) {
      if (err instanceof ClaimLostError) {
        this.options.log(`job ${this.jobId}: ${err.message}; no later metric is stored`);
        this.options.onClaimLost?.(err);
      }
      throw new MetricsError(`${which} of job ${this.jobId} could not be stored: ${(err as Error).message}`, { cause: err });
    }
    if (attempts > 1) this.options.log(`job ${this.jobId}: stored ${which} after ${attempts} attempts`);
  }
}

/** A batch from the job thread as rows for the store. */
export function pointsOf(batch: MetricBatch): MetricPoint[] {
  const points: MetricPoint[] = new Array(batch.count);
  const arrays = new Map(batch.arrays);
  const backwards = new Set(batch.backwards);
  for (let i = 0; i < batch.count; i++) {
    points[i] = {
      seq: batch.firstSeq + i,
      name: batch.names[batch.nameIds[i]],
      step: batch.steps[i],
      value: arrays.get(i) ?? batch.values[i],
      backwards: backwards.has(i),
    };
  }
  return points;
}
