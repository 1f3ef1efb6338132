// The worker's tie to the store: heartbeats in the workers table, claims queued jobs when idle
// (woken by NOTIFY, with a slow poll in case a notification was missed), stops jobs cancelled
// in the store, and marks lost the running jobs of workers that stopped heartbeating. A store
// that goes away is waited for (store-retry.ts): the worker keeps its jobs' writes, heartbeats
// again as soon as the store is back, and judges other workers' silence only once they too have
// had time to heartbeat since.
import type { PoolClient } from "pg";
import {
  announceClaims, claimNextJob, getBundle, getJob, heartbeatWorker, isStoreUnreachable, JOB_CANCELLED_CHANNEL, JOB_QUEUED_CHANNEL, markLostJobs, readCheckpoint, WORKER_HEARTBEAT_MS, WORKER_STALE_MS,
} from "../store";
import type { DbJob, Store } from "../store";
import type { JobRunner, RestorePoint } from "./job-runner";
import type { JobBundle, JobId, WorkerIdentity } from "../runtime/shared/protocol";
import { BundleRefusedError, checkLoadedBundle } from "./bundle-integrity";
import type { LoadedBundle } from "./bundle-integrity";
import { recordJob } from "./recorder";
import { metricsResumePoint } from "../store/metrics";
import { StoreAvailability } from "./store-retry";

export interface StoreLinkOptions {
  /** Heartbeat interval. Default WORKER_HEARTBEAT_MS (5 000 ms). */
  heartbeatMs?: number;
  /**
   * A worker silent this long is presumed dead and its running jobs are marked lost. Default
   * WORKER_STALE_MS (20 000 ms): with a 5 s heartbeat, a dead worker's jobs are lost within 30 s of its last beat.
   */
  staleAfterMs?: number;
  /** Looks for queued jobs this often even without a notification. Default 2 000 ms. */
  pollMs?: number;
  /** Jobs for this worker in particular are left to the comm this long (see claimNextJob). Default 5 000 ms. */
  targetedGraceMs?: number;
  /** A store unreachable this long makes running jobs wait for it. Default 60 000 ms (DEFAULT_STORE_WAIT_MS). */
  storeWaitMs?: number;
  log: (line: string) => void;
}

const BUNDLE_CACHE_SIZE = 64;
/** A worker tells the dashboard of its claims at most this often (the first at once). */
const ANNOUNCE_EVERY_MS = 100;

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
  /** Claimed jobs the dashboard has not been told of yet (announceClaimed), and whether a notification is on its way. */
  private readonly unannounced: number[] = [];
  private announcing = false;
  private closed = false;
  private connected = false;
  /** When the current stretch of successful heartbeats began (undefined while the store is away). */
  private connectedSince?: number;
  /** This process has heartbeated once (and marked lost what an earlier life of it left running). */
  private registered = false;
  private beating = false;
  private unwatch?: () => void;
  /** Jobs this worker records in the store (claimed, or sent over the comm with record), while here. */
  private readonly recorded = new Set<number>();
  /** The worker's view of the store, shared by every write it makes. */
  readonly availability: StoreAvailability;

  constructor(
    readonly store: Store,
    private readonly identity: WorkerIdentity,
    private readonly runner: JobRunner,
    options: StoreLinkOptions,
  ) {
    this.heartbeatMs = options.heartbeatMs ?? WORKER_HEARTBEAT_MS;
    this.staleAfterMs = options.staleAfterMs ?? WORKER_STALE_MS;
    this.pollMs = options.pollMs ?? 2_000;
    this.targetedGraceMs = options.targetedGraceMs ?? 5_000;
    this.log = options.log;
    this.availability = new StoreAvailability(this.log, { waitLimitMs: options.storeWaitMs });
  }

  /** Starts heartbeating and listening; keeps retrying in the background if the database is down. */
  start(): void {
    void this.beat();
    this.heartbeatTimer = setInterval(() => void this.beat(), this.heartbeatMs);
    // Back after an outage (any write got through): heartbeat now, not at the next tick.
    this.unwatch = this.availability.watch((event) => {
      if (event.kind === "back") void this.beat();
    });
    this.pollTimer = setInterval(() => this.claimSoon(), this.pollMs);
    void this.listen();
  }

  /** Records a job sent over the comm with `record: true`; its row must be queued (or running here). */
  recorder(jobId: number) {
    this.recorded.add(jobId);
    return recordJob(this.store, jobId, this.identity, {
      claimed: false, log: this.log, inFlight: this.writesInFlight, availability: this.availability, onClaimLost: this.stopLostJob,
      onTimeLimit: (id, ms) => this.runner.limit(id, ms),
    });
  }

  /**
   * A fenced write for a job was refused (its claim is gone): the job is stopped as a cancel
   * would stop it, so it neither runs on nor blocks the next job. Its final write is refused too.
   */
  private readonly stopLostJob = (jobId: JobId, reason: string): void => {
    const where = this.runner.cancel(jobId, reason);
    this.log(`job ${jobId}: ${where === "unknown" ? "already ended here" : `stopped (it was ${where} here)`}: ${reason}`);
    this.claimSoon();
  };

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
    this.unwatch?.();
    this.stopListening?.();
    // Writes go on while the store is reachable; an unreachable one is not waited for at shutdown.
    this.availability.close();
    await Promise.allSettled([...this.writesInFlight]);
    await this.store.close().catch(() => undefined);
  }

  private async beat(): Promise<void> {
    if (this.beating || this.closed) return;
    this.beating = true;
    try {
      await heartbeatWorker(this.store, { id: this.identity.worker_id, host: this.identity.host, pid: this.identity.pid, profile: this.identity.profile ?? undefined });
      this.availability.succeeded();
      this.connectedSince ??= Date.now();
      // Other workers' silence means something only once they have had as long as this one to
      // heartbeat since the store came back (a worker that could not reach the store is not dead).
      const judgeOthers = Date.now() - this.connectedSince >= this.staleAfterMs;
      if (!this.registered || judgeOthers) {
        const lost = await markLostJobs(this.store, {
          staleAfterMs: this.staleAfterMs,
          restartedWorker: this.registered ? undefined : { workerId: this.identity.worker_id, pid: this.identity.pid },
          skipSilent: !judgeOthers,
        });
        this.registered = true;
        if (lost.length > 0) this.log(`marked lost: job${lost.length === 1 ? "" : "s"} ${lost.join(", ")} (their worker stopped heartbeating)`);
      }
      await this.checkRunningJob();
      if (!this.connected) {
        this.connected = true;
        const where = await this.store.where();
        this.log(`connected to the store at ${where.url}; taking queued jobs`);
        this.claimSoon();
      }
    } catch (err) {
      if (isStoreUnreachable(err)) this.availability.failed(err as Error);
      else this.log(`could not heartbeat in the store: ${(err as Error).message}; retrying every ${this.heartbeatMs / 1000} s`);
      this.connected = false;
      this.connectedSince = undefined;
    } finally {
      this.beating = false;
    }
  }

  /**
   * The job running here, if the store no longer has it running on this worker (marked lost or
   * cancelled while this worker could not heartbeat, or claimed by another run), is stopped now:
   * its writes would be refused anyway, but a job that writes nothing would otherwise run on.
   */
  private async checkRunningJob(): Promise<void> {
    const running = this.runner.running;
    const waiting = new Set(this.runner.queued.map(String));
    for (const id of this.recorded) if (String(id) !== String(running) && !waiting.has(String(id))) this.recorded.delete(id);
    if (running === null || !this.recorded.has(Number(running))) return;
    const row = await getJob(this.store, Number(running));
    if (!row) return;
    const elsewhere = row.status === "running" && (row.worker_id !== this.identity.worker_id || row.pid !== this.identity.pid);
    if (row.status === "lost" || row.status === "cancelled" || elsewhere) {
      this.stopLostJob(running, `job ${row.id} is ${row.status}${elsewhere ? ` on ${row.worker_id} (pid ${row.pid})` : ""} in the store, no longer running here: this worker's claim on it is gone`);
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
        this.announceClaimed(Number(job.id));
        let bundle: JobBundle;
        try {
          // The claim brought the bundle along unless it is cached here (checked when it was loaded).
          bundle = job.bundle_source !== null
            ? this.remember({ source: job.bundle_source, hash: job.bundle_hash, params: job.bundle_params ?? {}, entries: job.bundle_entries ?? [], signature: job.bundle_signature }, job.id)
            : await this.bundleOf(job.bundle_hash, job.id);
        } catch (err) {
          const recorder = recordJob(this.store, job.id, this.identity, { claimed: true, claim: job.claim, log: this.log, inFlight: this.writesInFlight, availability: this.availability, onClaimLost: this.stopLostJob });
          const ename = err instanceof BundleRefusedError ? err.name : "BundleMissing";
          if (err instanceof BundleRefusedError) this.log(`job ${job.id}: refused: ${err.message}`);
          recorder.listener.failed({ ename, evalue: (err as Error).message, traceback: [], durationMs: 0 });
          this.claimAgain = true;
          continue;
        }
        this.recorded.add(Number(job.id));
        const recorder = recordJob(this.store, job.id, this.identity, {
          claimed: true, claim: job.claim, log: this.log, inFlight: this.writesInFlight, bundleSource: bundle.source, availability: this.availability, onClaimLost: this.stopLostJob,
        });
        try {
          this.runner.submit(job.id, bundle, recorder.listener, { restore: this.restorePoint(job), timeoutMs: job.timeout_ms ?? undefined });
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

  /**
   * Tells the dashboard a job was claimed (the claim itself commits without notifying: see
   * claimNextJob). One notification at a time, at most every ANNOUNCE_EVERY_MS; claims made
   * meanwhile go together in the next.
   * A lost one only delays a page's refresh: nothing waits for it.
   */
  private announceClaimed(jobId: number): void {
    this.unannounced.push(jobId);
    if (this.announcing) return;
    this.announcing = true;
    void (async () => {
      try {
        while (this.unannounced.length > 0 && !this.closed) {
          await announceClaims(this.store, this.unannounced.splice(0)).catch(() => undefined);
          // The claims made meanwhile go together in the next one: in a sweep of short jobs a
          // notification per claim cost PostgreSQL 0.3-0.4 ms of CPU a job (about what the claim
          // itself costs), for a dashboard that refreshes at a person's pace.
          await new Promise((resolve) => setTimeout(resolve, ANNOUNCE_EVERY_MS).unref());
        }
      } finally {
        this.announcing = false;
      }
    })();
  }

  /** A resumed job restores its last copied checkpoint (see runtime/resume.ts) before its entries run. */
  private restorePoint(job: Pick<DbJob, "id" | "resumed_from" | "resumed_from_checkpoint">): (() => Promise<RestorePoint>) | undefined {
    const index = job.resumed_from_checkpoint;
    if (job.resumed_from === null || index === null || index === undefined) return undefined;
    return async () => ({ index, values: await readCheckpoint(this.store, job.id, index), metrics: await metricsResumePoint(this.store, job.id, index) });
  }

  private async bundleOf(hash: string, jobId: number): Promise<JobBundle> {
    const cached = this.bundles.get(hash);
    if (cached) return cached;
    const row = await getBundle(this.store, hash);
    if (!row) throw new Error(`the job's bundle ${hash.slice(0, 12)} is not in the store; it cannot be run`);
    return this.remember({ source: row.source, hash: row.hash, params: row.params as Record<string, unknown>, entries: row.entries, signature: row.signature }, jobId);
  }

  /** Checks a bundle read from the store (throws BundleRefusedError) and caches it by hash. */
  private remember(stored: LoadedBundle, jobId: number): JobBundle {
    checkLoadedBundle(stored, jobId);
    const bundle: JobBundle = { source: sweepInvariantSource(stored.source), hash: stored.hash, params: stored.params, entries: [...stored.entries] };
    this.bundles.set(stored.hash, bundle);
    if (this.bundles.size > BUNDLE_CACHE_SIZE) this.bundles.delete(this.bundles.keys().next().value as string);
    return bundle;
  }

  /** Holds one connection with LISTEN for as long as the worker runs; reconnects if it drops. */
  private async listen(): Promise<void> {
    let listening = false;
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
              client.query(`LISTEN ${JOB_QUEUED_CHANNEL}; LISTEN ${JOB_CANCELLED_CHANNEL}`).then(() => {
                listening = true;
                this.claimSoon();
              }, reject);
            }),
        );
      } catch (err) {
        if (this.closed) return;
        // Said once when the connection drops; while the store is away, the outage is logged once.
        if (listening) this.log(`lost the LISTEN connection to the store (${(err as Error).message}); reconnecting`);
        else if (!isStoreUnreachable(err)) this.log(`cannot LISTEN in the store (${(err as Error).message}); retrying`);
        if (isStoreUnreachable(err)) this.availability.failed(err as Error);
        listening = false;
      }
      if (!this.closed) await this.availability.pause(1_000);
    }
  }
}
