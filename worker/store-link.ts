// The worker's tie to the store: heartbeats in the workers table, claims queued jobs when idle
// (woken by NOTIFY, with a slow poll in case a notification was missed), stops jobs cancelled
// in the store, and marks lost the running jobs of workers that stopped heartbeating.
import type { PoolClient } from "pg";
import {
  claimNextJob, getBundle, heartbeatWorker, JOB_CANCELLED_CHANNEL, JOB_QUEUED_CHANNEL, markLostJobs, readCheckpoint,
} from "../store";
import type { DbJob, Store } from "../store";
import type { JobRunner, RestorePoint } from "./job-runner";
import type { JobBundle, WorkerIdentity } from "../runtime/shared/protocol";
import { recordJob } from "./recorder";

export interface StoreLinkOptions {
  /** Heartbeat interval. Default 5 000 ms. */
  heartbeatMs?: number;
  /**
   * A worker silent this long is presumed dead and its running jobs are marked lost. Default
   * 20 000 ms: with a 5 s heartbeat, a dead worker's jobs are lost within 30 s of its last beat.
   */
  staleAfterMs?: number;
  /** Looks for queued jobs this often even without a notification. Default 2 000 ms. */
  pollMs?: number;
  /** Jobs for this worker in particular are left to the comm this long (see claimNextJob). Default 5 000 ms. */
  targetedGraceMs?: number;
  log: (line: string) => void;
}

const BUNDLE_CACHE_SIZE = 64;

/**
 * A bundle's second line only documents its parameter values (runtime/bundle.ts's layout); the
 * job reads them from `params`. With that line made the same for every job, the jobs of a sweep
 * are one program, which the worker compiles once instead of once per job. Line numbers (and so
 * tracebacks) do not change.
 */
export function sweepInvariantSource(source: string): string {
  return source.replace(/^(\/\/ nbjob bundle: [^\n]*\n)\/\/ params: [^\n]*\n/, "$1// params: (this job's params)\n");
}

export class WorkerStoreLink {
  private readonly heartbeatMs: number;
  private readonly staleAfterMs: number;
  private readonly pollMs: number;
  private readonly targetedGraceMs: number;
  /** A NOTIFY named this worker: take its targeted jobs without the grace. */
  private targetedNow = false;
  private readonly log: (line: string) => void;
  private readonly bundles = new Map<string, JobBundle>();
  /** Job records still being written; close() waits for them. */
  readonly writesInFlight = new Set<Promise<unknown>>();
  private heartbeatTimer?: NodeJS.Timeout;
  private pollTimer?: NodeJS.Timeout;
  private stopListening?: () => void;
  private claiming = false;
  private claimAgain = false;
  private closed = false;
  private connected = false;

  constructor(
    readonly store: Store,
    private readonly identity: WorkerIdentity,
    private readonly runner: JobRunner,
    options: StoreLinkOptions,
  ) {
    this.heartbeatMs = options.heartbeatMs ?? 5_000;
    this.staleAfterMs = options.staleAfterMs ?? 20_000;
    this.pollMs = options.pollMs ?? 2_000;
    this.targetedGraceMs = options.targetedGraceMs ?? 5_000;
    this.log = options.log;
  }

  /** Starts heartbeating and listening; keeps retrying in the background if the database is down. */
  start(): void {
    void this.beat(true);
    this.heartbeatTimer = setInterval(() => void this.beat(false), this.heartbeatMs);
    this.pollTimer = setInterval(() => this.claimSoon(), this.pollMs);
    void this.listen();
  }

  /** Records a job sent over the comm with `record: true`; its row must be queued (or running here). */
  recorder(jobId: number) {
    return recordJob(this.store, jobId, this.identity, { claimed: false, log: this.log, inFlight: this.writesInFlight });
  }

  /** Looks for a queued job now, if the runner is idle. */
  claimSoon(): void {
    if (this.closed || !this.connected) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    void this.claim();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.pollTimer);
    this.stopListening?.();
    await Promise.allSettled([...this.writesInFlight]);
    await this.store.close().catch(() => undefined);
  }

  private async beat(first: boolean): Promise<void> {
    try {
      await heartbeatWorker(this.store, { id: this.identity.worker_id, host: this.identity.host, pid: this.identity.pid, profile: this.identity.profile ?? undefined });
      const lost = await markLostJobs(this.store, { staleAfterMs: this.staleAfterMs, restartedWorker: first ? { workerId: this.identity.worker_id, pid: this.identity.pid } : undefined });
      if (lost.length > 0) this.log(`marked lost: job${lost.length === 1 ? "" : "s"} ${lost.join(", ")} (their worker stopped heartbeating)`);
      if (!this.connected) {
        this.connected = true;
        const where = await this.store.where();
        this.log(`connected to the store at ${where.url}; taking queued jobs`);
        this.claimSoon();
      }
    } catch (err) {
      if (this.connected || first) this.log(`cannot reach the store: ${(err as Error).message}; retrying every ${this.heartbeatMs / 1000} s`);
      this.connected = false;
    }
  }

  private async claim(): Promise<void> {
    this.claiming = true;
    try {
      do {
        this.claimAgain = false;
        if (this.closed || this.runner.running !== null || this.runner.queued.length > 0) return;
        const grace = this.targetedNow ? 0 : this.targetedGraceMs;
        this.targetedNow = false;
        const job = await claimNextJob(this.store, { workerId: this.identity.worker_id, host: this.identity.host, pid: this.identity.pid }, grace, [...this.bundles.keys()]);
        if (!job) continue;
        let bundle: JobBundle;
        try {
          // The claim brought the bundle along unless it is cached here.
          bundle = job.bundle_source !== null
            ? this.remember({ source: job.bundle_source, hash: job.bundle_hash, params: job.bundle_params ?? {}, entries: job.bundle_entries ?? [] })
            : await this.bundleOf(job.bundle_hash);
        } catch (err) {
          const recorder = recordJob(this.store, job.id, this.identity, { claimed: true, log: this.log, inFlight: this.writesInFlight });
          recorder.listener.failed({ ename: "BundleMissing", evalue: (err as Error).message, traceback: [], durationMs: 0 });
          this.claimAgain = true;
          continue;
        }
        const recorder = recordJob(this.store, job.id, this.identity, { claimed: true, log: this.log, inFlight: this.writesInFlight, bundleSource: bundle.source });
        try {
          this.runner.submit(job.id, bundle, recorder.listener, { restore: this.restorePoint(job) });
        } catch (err) {
          // Already here (sent over the comm a moment ago): that run goes on and records the row.
          this.log(`job ${job.id}: ${(err as Error).message}`);
        }
      } while (this.claimAgain);
    } catch (err) {
      this.log(`could not take a queued job: ${(err as Error).message}`);
    } finally {
      this.claiming = false;
    }
  }

  /** A resumed job restores its last copied checkpoint (see runtime/resume.ts) before its entries run. */
  private restorePoint(job: DbJob): (() => Promise<RestorePoint>) | undefined {
    const index = job.resumed_from_checkpoint;
    if (job.resumed_from === null || index === null || index === undefined) return undefined;
    return async () => ({ index, values: await readCheckpoint(this.store, job.id, index) });
  }

  private async bundleOf(hash: string): Promise<JobBundle> {
    const cached = this.bundles.get(hash);
    if (cached) return cached;
    const row = await getBundle(this.store, hash);
    if (!row) throw new Error(`the job's bundle ${hash.slice(0, 12)} is not in the store; it cannot be run`);
    return this.remember({ source: row.source, hash: row.hash, params: row.params as Record<string, unknown>, entries: row.entries });
  }

  private remember(stored: JobBundle & { hash: string }): JobBundle {
    const bundle: JobBundle = { ...stored, source: sweepInvariantSource(stored.source) };
    this.bundles.set(stored.hash, bundle);
    if (this.bundles.size > BUNDLE_CACHE_SIZE) this.bundles.delete(this.bundles.keys().next().value as string);
    return bundle;
  }

  /** Holds one connection with LISTEN for as long as the worker runs; reconnects if it drops. */
  private async listen(): Promise<void> {
    while (!this.closed) {
      try {
        await this.store.withClient(
          (client: PoolClient) =>
            new Promise<void>((resolve, reject) => {
              const onNotification = (note: { channel: string; payload?: string }) => {
                if (note.channel === JOB_QUEUED_CHANNEL) {
                  if (note.payload === this.identity.worker_id) this.targetedNow = true;
                  if (!note.payload || note.payload === this.identity.worker_id) this.claimSoon();
                } else if (note.channel === JOB_CANCELLED_CHANNEL) {
                  const jobId = Number(note.payload);
                  if (Number.isSafeInteger(jobId)) this.runner.cancel(jobId, "cancelled in the store");
                }
              };
              client.on("notification", onNotification);
              client.once("error", reject);
              this.stopListening = () => {
                client.off("notification", onNotification);
                client.query(`UNLISTEN *`).then(() => resolve(), () => resolve());
              };
              client.query(`LISTEN ${JOB_QUEUED_CHANNEL}; LISTEN ${JOB_CANCELLED_CHANNEL}`).then(() => this.claimSoon(), reject);
            }),
        );
      } catch (err) {
        if (this.closed) return;
        this.log(`lost the LISTEN connection to the store (${(err as Error).message}); reconnecting`);
      }
      if (!this.closed) await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}
