// Job handles: a job's record followed through the store (status, output, result or error), its
// output streamed into the cell that awaits it, cancel, diff; JobError; JobGroup for sweeps.
import { inspect } from "node:util";
import { deserialize } from "node:v8";
import type { CellSink } from "./cell-types";
import {
  diffJobs, getBundle, getEnvironment, getWorker, WORKER_STALE_MS, IllegalTransitionError, isStoreUnreachable, listCheckpoints, listWorkers, markLostJobs, readLogs, requireJob, UnknownJobError,
} from "../store";
import type { CheckpointSummary, DbJob, JobStatus, MetricSeries, Store } from "../store";
import { formatLastMetrics, lastMetricsOf, metricNameProblem, missingMetricText, readMetrics, setJobNote } from "../store";
import { checkPlotArguments, MetricsPlot } from "./metrics-plot";
import type { MetricsPlotOptions } from "./metrics-plot";
import { collectGarbage, deleteJobs } from "../store/cleanup";
import type { BundlePart, ParamValues } from "./bundle";
import { mapTraceback, storedBundleParts } from "./traceback";
import type { View, WorkerConnection } from "./client";
import { display } from "./display";
import type { DisplayHandle } from "./display";
import { currentCellSink } from "./notebook";
import { resumeJob } from "./resume";
import { GroupProgress, readProgress } from "./group-progress";
import { sampleKeys } from "./random-search";
import type { SampleSettings } from "./random-search";
import { CANCEL_SETTLE_MS, cancelGroupJobs, cancelJob, getJobsByIds, unfinishedAmong, untilCancelledRunsOver } from "../store";
import type { WorkerEvent } from "./shared/protocol";

// Where it always was, for code that imports it from here.
export { mapTraceback } from "./traceback";

export const FINAL_STATUSES: readonly JobStatus[] = ["done", "failed", "cancelled", "lost"];
const POLL_MS = 250;
/** How soon a sweep's waiter looks again after some of its jobs ended. */
const GROUP_POLL_MIN_MS = 20;
const MAX_POLL_FAILURES = 20;
const LIVE_TAIL_MS = 1_000;
const LOST_CHECK_MS = 4_000;
/** How long a wait for a job goes on while the store cannot be reached (NBJOB_STORE_GIVE_UP_MS). */
export const DEFAULT_STORE_GIVE_UP_MS = 600_000;

function storeGiveUpMs(): number {
  const value = Number(process.env.NBJOB_STORE_GIVE_UP_MS);
  return process.env.NBJOB_STORE_GIVE_UP_MS && Number.isFinite(value) && value > 0 ? value : DEFAULT_STORE_GIVE_UP_MS;
}

/** A wait for a job ended because the store stayed unreachable; the job itself goes on. */
export class StoreUnreachableError extends Error {
  override name = "StoreUnreachableError";
}

/** What a Job knows of its program (from the bundle it was created with, or the stored one). */
export interface JobProgram {
  source: string;
  params: ParamValues;
  entries: string[];
  /** Line ranges of snippets and entries in `source`, for mapping tracebacks; absent if unknown. */
  parts?: BundlePart[];
  /** The bundle's signature (store/signing.ts), sent with it to a direct view's worker; null: stored unsigned. */
  signature: string | null;
}

/** What `job.environment()` gives: where and with what the job ran. */
export interface JobEnvironment {
  node: string;
  nbjob: string;
  /** sha256 over nbjob's package-lock.json and the worker directory's, if it has one. */
  lockfileHash: string | null;
  /** Package name -> installed version, for each package the job's code imports. */
  packages: Record<string, string>;
  /** Where packages came from (name → origin): the npm registry into the worker's cache for pinned ones. */
  packageSources: Record<string, string>;
  host: string | null;
  worker: string | null;
  /** The stored environment's hash (jobs with the same environment share it). */
  hash: string;
}

/** The job ended without a result: failed on its worker, cancelled or lost. */
export class JobError extends Error {
  override name = "JobError";
  constructor(
    readonly jobId: number,
    readonly status: JobStatus,
    /** The worker's error name, e.g. `TypeError` (or `Cancelled`, `WorkerLost`). */
    readonly ename: string,
    /** The worker's error message. */
    readonly evalue: string,
    /** The worker's traceback, frames mapped to the snippet or entry and line they came from. */
    readonly traceback: string[],
    readonly workerId: string | null,
  ) {
    const frames = traceback.filter((line) => !line.startsWith(`${ename}: `));
    const how = status === "failed" ? `failed${workerId ? ` on worker ${workerId}` : ""}` : status === "cancelled" ? "was cancelled" : `was ${status}`;
    super([`job ${jobId} ${how}: ${ename}: ${evalue}`, ...frames].join("\n"));
  }
}

/** A stored job result (`{ encoding: "v8", data }` written by the worker) as the value it was. */
export function decodeResult(stored: unknown): unknown {
  if (typeof stored === "object" && stored !== null && (stored as { encoding?: unknown }).encoding === "v8" && typeof (stored as { data?: unknown }).data === "string") {
    return deserialize(Buffer.from((stored as { data: string }).data, "base64"));
  }
  return stored;
}

/** The error a job that ended without a result rejects with. */
export function jobErrorOf(row: DbJob, parts?: BundlePart[]): JobError {
  const ename = row.error_name ?? (row.status === "cancelled" ? "Cancelled" : row.status === "lost" ? "WorkerLost" : "Error");
  const evalue = row.error_message ?? (row.status === "cancelled" ? "the job was cancelled" : `the job is ${row.status}`);
  return new JobError(row.id, row.status, ename, evalue, mapTraceback(row.error_traceback ?? [], parts), row.worker_id);
}

/** A job's program from the store, with its parts recovered when its layout can be rebuilt. */
export async function loadProgram(store: Store, bundleHash: string): Promise<JobProgram> {
  const stored = await getBundle(store, bundleHash);
  if (!stored) throw new Error(`the bundle ${bundleHash.slice(0, 12)} of this job is missing from the store`);
  // As stored, signature included: a worker that is sent this program checks it like one it claims.
  const program: JobProgram = { source: stored.source, params: stored.params as ParamValues, entries: stored.entries, signature: stored.signature };
  const parts = storedBundleParts(stored);
  if (parts) program.parts = parts;
  return program;
}

export interface WaitOptions {
  /** Give up waiting after this many milliseconds (the job goes on). Default: no limit. */
  timeout?: number;
}

/**
 * Handle of one stored job; `await job.result` for its value. `T` is the type of that value as
 * the caller declares it (`db.createJob<number>(…)`, `db.job<number>(id)`): the worker's value is
 * not checked against it, as with any value that crosses a process boundary.
 */
export class Job<T = unknown> {
  #row: DbJob;
  readonly #store: Store;
  readonly #program: JobProgram;
  #worker?: WorkerConnection;
  /** Output comes over the worker comm (else it is read from the store's logs). */
  #live = false;
  #logCursor = 0;
  #target?: CellSink;
  #buffered: { name: "stdout" | "stderr"; text: string }[] = [];
  #finished?: Promise<DbJob>;
  #result?: Promise<T>;
  #wake?: () => void;
  #rerun?: (view: View | undefined) => Promise<Job<T>>;
  /** The worker's comm said the job ended (so all its live output has arrived). */
  #sawEnd = false;
  #streamedLive = false;
  #lostCheckedAt = 0;

  /** @internal made by DBWrapper (createJob, job(id)). */
  constructor(store: Store, row: DbJob, program: JobProgram) {
    this.#store = store;
    this.#row = row;
    this.#program = program;
  }

  /** @internal how rerun() creates the new job (set by DBWrapper). */
  setRerun(rerun: (view: View | undefined) => Promise<Job<T>>): void {
    this.#rerun = rerun;
  }

  /**
   * Runs the same bundle again (same code, same parameters) as a new job, on `view` or, without
   * one, on whichever worker is idle. The new job's record points back at this one.
   */
  async rerun(view?: View): Promise<Job<T>> {
    if (!this.#rerun) throw new Error(`job ${this.id} cannot be rerun from here; reattach with db.job(${this.id}) first`);
    return this.#rerun(view);
  }

  /**
   * Continues this failed, cancelled or lost job as a new job (same bundle, on `view` or any idle
   * worker): its checkpoints so far become the new job's, the last one is restored after the
   * program's top level ran, and the entries run from there (the next checkpoint is last + 1).
   */
  async resume(view?: View): Promise<Job<T>> {
    const { id } = await resumeJob(this.#store, this.id, view);
    return new Job<T>(this.#store, await requireJob(this.#store, id), this.#program);
  }

  /** @internal: the job was sent to `worker` over its comm; its events arrive here. */
  followWorker(worker: WorkerConnection): void {
    this.#worker = worker;
    this.#live = true;
  }

  /** @internal: a job reattached after it ended: its output is in job.logs(), not replayed into the cell. */
  skipStoredOutput(): void {
    this.#logCursor = Number.MAX_SAFE_INTEGER;
  }

  /** @internal: the comm lost track of the job (taken from the queue instead): read output from the store. */
  followStore(): void {
    this.#live = false;
  }

  /** @internal an event from the worker about this job. */
  handleWorkerEvent(event: WorkerEvent): void {
    if (event.action === "stream") {
      this.#streamedLive = true;
      this.#emit(event.name, event.text);
    } else if (event.action === "error" && !this.#streamedLive) {
      // The worker did not take it over the comm (e.g. it had claimed it from the queue): the
      // store's logs are the output. Once output came live, switching would repeat it.
      this.#live = false;
    }
    if (event.action === "done" || event.action === "failed" || event.action === "cancelled") this.#sawEnd = true;
    if (event.action !== "stream" && event.action !== "queued" && event.action !== "started") this.#wake?.();
  }

  get id(): number {
    return this.#row.id;
  }

  /** Last known status; `await job.refresh()` reads it again. */
  get status(): JobStatus {
    return this.#row.status;
  }

  get name(): string | null {
    return this.#row.name;
  }

  get tags(): string[] {
    return [...this.#row.tags];
  }

  /** The job's free-text note (set here or on the dashboard's job page), as last read. */
  get note(): string | null {
    return this.#row.note ?? null;
  }

  /** Sets the job's note (null or "" clears it); the dashboard and `nbjob show` show it. */
  async setNote(note: string | null): Promise<void> {
    if (note !== null && typeof note !== "string") throw new TypeError(`job.setNote(note): note is a string (or null to clear it); got ${typeof note}`);
    await setJobNote(this.#store, this.id, note);
    this.#row = { ...this.#row, note: note === "" ? null : note };
  }

  /** The worker running (or that ran) it, once known. */
  get worker(): string | null {
    return this.#row.worker_id ?? this.#row.target_worker;
  }

  /** The whole bundle as TypeScript: snippets, then the entry expressions. */
  get source(): string {
    return this.#program.source;
  }

  /** The job's parameter values (overrides applied). */
  get params(): ParamValues {
    return structuredClone(this.#program.params);
  }

  get entries(): string[] {
    return [...this.#program.entries];
  }

  /** @internal The bundle's signature, for dispatch to a direct view (null: stored unsigned). */
  get bundleSignature(): string | null {
    return this.#program.signature;
  }

  /** The stored record as last read. */
  get record(): DbJob {
    return { ...this.#row };
  }

  /** Reads the job's record again; returns its status. */
  async refresh(): Promise<JobStatus> {
    this.#row = await requireJob(this.#store, this.id);
    return this.#row.status;
  }

  /**
   * The value of the last entry expression, read from the store once the job is done. Rejects
   * with JobError when it failed, was cancelled or lost. While a cell awaits it, the job's output
   * streams into that cell.
   */
  get result(): Promise<T> {
    this.#streamToCurrentCell();
    if (!this.#result) {
      this.#result = this.#followToEnd().then((row) => {
        if (row.status === "done") return decodeResult(row.result) as T;
        throw jobErrorOf(row, this.#program.parts);
      });
      // Asking for the promise without awaiting it must not crash the kernel on a failure.
      this.#result.catch(() => undefined);
    }
    return this.#result;
  }

  /** Waits until the job ends (whatever its status) and returns that status; the job's output streams into this cell. */
  async wait(options: WaitOptions = {}): Promise<JobStatus> {
    this.#streamToCurrentCell();
    const finished = this.#followToEnd();
    if (options.timeout === undefined) return (await finished).status;
    if (typeof options.timeout !== "number" || !(options.timeout >= 0)) throw new TypeError(`job.wait({ timeout }): timeout must be a number of milliseconds; got ${inspect(options.timeout)}`);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), options.timeout);
    });
    try {
      const outcome = await Promise.race([finished, timedOut]);
      if (outcome !== "timeout") return outcome.status;
    } finally {
      clearTimeout(timer);
    }
    throw new Error(`job ${this.id} is still ${this.#row.status} after ${options.timeout} ms; it goes on (wait again, or job.cancel())${await this.#whyWaiting()}`);
  }

  /** For a queued job: whom it waits for, and when that worker was last heard from. "" otherwise. */
  async #whyWaiting(): Promise<string> {
    if (this.#row.status !== "queued") return this.#row.status === "running" && this.#row.worker_id ? `; it runs on worker ${this.#row.worker_id}` : "";
    const ago = (worker: { last_heartbeat_at: Date }) => `${Math.round((Date.now() - worker.last_heartbeat_at.getTime()) / 1000)} s ago`;
    try {
      const target = this.#row.target_worker;
      if (target !== null) {
        const worker = await getWorker(this.#store, target);
        return worker
          ? `; it is queued for worker ${target}, whose last heartbeat was ${ago(worker)}`
          : `; it is queued for worker ${target}, which has never checked in with the store`;
      }
      const workers = await listWorkers(this.#store);
      const alive = workers.filter((w) => Date.now() - w.last_heartbeat_at.getTime() < WORKER_STALE_MS);
      if (alive.length > 0) return `; it waits for one of the ${alive.length} live worker${alive.length === 1 ? "" : "s"} to be free`;
      return workers.length > 0
        ? `; no worker is alive (the last heartbeat, from worker ${workers[0].id}, was ${ago(workers[0])}); start some with "npx nbjob cluster start -n 2"`
        : `; no worker has ever checked in with the store; start some with "npx nbjob cluster start -n 2"`;
    } catch {
      return ""; // the store is away: the plain message says enough
    }
  }

  /** Everything the job printed so far, as stored (stdout and stderr in order). */
  async logs(): Promise<string> {
    const lines = await readLogs(this.#store, this.id);
    return lines.map((l) => l.line).join("\n");
  }

  /** The job's checkpoints in order: index, time, and per variable its value's hash and size in bytes. */
  async checkpoints(): Promise<CheckpointSummary[]> {
    return listCheckpoints(this.#store, this.id);
  }

  /**
   * The values the job logged with `jobtracker.log`, by metric name: `{ loss: { steps, values,
   * backwards } }`, each in the order logged (`backwards`: positions whose step was smaller than
   * the one before). NaN and ±Infinity come back as such; an array metric's values are arrays.
   * With `name`, that metric only. A queued or running job gives what is stored so far (`{}`
   * when it has not logged `name` yet: it may later). A job that has ended and never logged
   * `name` rejects with an Error naming the metrics it did log (a misspelled name, most likely).
   */
  async metrics(name?: string): Promise<{ [name: string]: MetricSeries }> {
    if (name === undefined) return (await readMetrics(this.#store, this.id)).series;
    const problem = metricNameProblem(name);
    if (problem) throw new TypeError(`job.metrics(name): ${problem}`);
    // The status first: a job seen ended had stored every value before, so none can be missed.
    this.#row = await requireJob(this.#store, this.id);
    const { series } = await readMetrics(this.#store, this.id, { name });
    if (series[name] || !FINAL_STATUSES.includes(this.#row.status)) return series;
    const logged = Object.keys(lastMetricsOf(this.#row)).sort();
    throw new Error(missingMetricText(this.id, name, logged) ?? `job ${this.id} (${this.#row.status}) logged no metric "${name}"; it logged no metrics (jobtracker.log in its code records them)`);
  }

  /**
   * Draws metric `name` by step (Vega-Lite, with an SVG for frontends without it) and keeps the
   * chart current while the job runs (display id). Values that cannot be drawn (NaN, Infinity,
   * arrays) are counted under the chart.
   */
  plotMetrics(name: string, options: MetricsPlotOptions = {}): MetricsPlot {
    checkPlotArguments("job.plotMetrics", name, options);
    return new MetricsPlot(this.#store, [{ id: this.id, label: `job ${this.id}` }], name, options.title ?? `${name} by step (job ${this.id})`, options);
  }

  /**
   * Deletes the job from the store: its row, logs, checkpoints, result and analysis rows, then
   * the stored values nothing else refers to. A queued or running job must be cancelled first;
   * a job tagged "keep" must lose the tag first. Jobs rerun or resumed from it stay.
   */
  async delete(): Promise<void> {
    await deleteJobs(this.#store, { ids: [this.id] });
    await collectGarbage(this.#store);
  }

  /**
   * Stops the job: a queued job never starts, a running one is stopped on its worker. Resolves
   * with the job's status afterwards (a job that already ended keeps its status); for a running
   * job, once its worker has stored what it printed, checkpointed and logged before the stop (at
   * most CANCEL_SETTLE_MS), so job.metrics() and job.logs() right after have all of it.
   */
  async cancel(): Promise<JobStatus> {
    const outcome = await cancelJob(this.#store, this.id, "cancelled from the notebook (job.cancel())", { settleMs: CANCEL_SETTLE_MS });
    this.#row = outcome.row;
    if (outcome.cancelled) {
      if (this.#worker) await this.#worker.cancel(this.id).catch(() => undefined);
      this.#wake?.();
    }
    return this.#row.status;
  }

  /**
   * Where the job ran: Node and nbjob versions, the lock files' hash, the packages its code
   * imports with their versions, host and worker. Undefined until its worker has recorded it
   * (just after the job ends); a job that just ended is waited for briefly.
   */
  async environment(): Promise<JobEnvironment | undefined> {
    let row = await requireJob(this.#store, this.id);
    // The worker links the environment right after the final write (off the job's critical path).
    for (let i = 0; i < 20 && !row.environment_hash && (row.status === "done" || row.status === "failed") && row.finished_at && Date.now() - row.finished_at.getTime() < 5_000; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      row = await requireJob(this.#store, this.id);
    }
    this.#row = row;
    const env = row.environment_hash ? await getEnvironment(this.#store, row.environment_hash) : undefined;
    if (!env) return undefined;
    return { node: env.node_version, nbjob: env.nbjob_version, lockfileHash: env.lockfile_hash, packages: { ...env.packages }, packageSources: { ...(env.package_sources ?? {}) }, host: row.host, worker: row.worker_id, hash: env.hash };
  }

  /** The unified diff of this job's code and parameters against `other`'s ("" when identical). */
  async diff(other: Job | number): Promise<string> {
    const otherId = typeof other === "number" ? other : other instanceof Job ? other.id : NaN;
    if (!Number.isSafeInteger(otherId)) throw new TypeError(`job.diff(other): other must be a Job or a job id; got ${inspect(other, { depth: 0 })}`);
    return diffJobs(this.#store, this.id, otherId);
  }

  /**
   * @internal the job's row as its group read it (group.results): its status and result, without
   * following it (a later `await job.result` still shows its output).
   */
  noteRow(row: DbJob): void {
    if (row.id === this.#row.id) this.#row = row;
  }

  /** @internal settles with the final record, never rejects for the job's own failure. */
  finished(): Promise<DbJob> {
    return this.#followToEnd();
  }

  [inspect.custom](): string {
    const worker = this.worker ? ` on ${this.worker}` : "";
    return `Job ${this.id}${this.name ? ` "${this.name}"` : ""} (${this.status}${worker})`;
  }

  #streamToCurrentCell(): void {
    const sink = currentCellSink();
    if (!sink) return;
    this.#target = sink;
    const pending = this.#buffered;
    this.#buffered = [];
    for (const chunk of pending) this.#emit(chunk.name, chunk.text);
  }

  #emit(name: "stdout" | "stderr", text: string): void {
    // Only the cell that awaits the job gets its output; once another cell runs, keep it for the next waiter.
    if (this.#target && this.#target === currentCellSink()) {
      try {
        this.#target.stream(name, text);
        return;
      } catch {
        // The cell's request is gone: keep the text.
      }
    }
    this.#buffered.push({ name, text });
  }

  async #pumpLogs(): Promise<void> {
    const lines = await readLogs(this.#store, this.id, { afterId: this.#logCursor });
    for (const line of lines) {
      this.#logCursor = line.id;
      this.#emit(line.stream, `${line.line}\n`);
    }
  }

  #followToEnd(): Promise<DbJob> {
    this.#finished ??= (async () => {
      let failures = 0;
      // While the store cannot be reached (a restart, a dropped link) the wait goes on: the job
      // runs on its worker, which keeps its output and outcome until the store is back.
      let awaySince: number | undefined;
      for (;;) {
        let final: boolean;
        try {
          this.#row = await requireJob(this.#store, this.id);
          final = FINAL_STATUSES.includes(this.#row.status);
          // A job's logs are all stored before its final status, so one more read catches the tail.
          if (!this.#live) await this.#pumpLogs();
          else if (final && !this.#sawEnd) {
            await this.#nap(LIVE_TAIL_MS); // its last output is on the way over the comm
            // Nothing came over the comm: another process ran it (e.g. its worker restarted and took
            // it from the queue), and the store's logs are its output.
            if (!this.#sawEnd && !this.#streamedLive) await this.#pumpLogs();
          }
        } catch (err) {
          if (err instanceof UnknownJobError) throw err;
          if (isStoreUnreachable(err)) {
            const now = Date.now();
            if (awaySince === undefined) {
              awaySince = now;
              this.#note(`the store is unreachable (${(err as Error).message}); still waiting for job ${this.id} (workers go on meanwhile)`);
            }
            const giveUpMs = storeGiveUpMs();
            if (now - awaySince >= giveUpMs) throw await this.#storeUnreachable(err as Error, now - awaySince, giveUpMs);
            // Reads are cheap and the store may be back any moment: try again every second or so.
            await this.#nap(Math.min(POLL_MS * 2 ** Math.min(failures++, 4), 2_000));
            continue;
          }
          // Anything else may be passing too (a lost race), but not forever.
          if (++failures > MAX_POLL_FAILURES) throw err;
          await this.#nap(POLL_MS * failures);
          continue;
        }
        failures = 0;
        if (awaySince !== undefined) {
          this.#note(`the store is back after ${((Date.now() - awaySince) / 1000).toFixed(1)} s; following job ${this.id} again`);
          awaySince = undefined;
        }
        if (final) {
          this.#worker?.forget(this.id);
          return this.#row;
        }
        if (this.#row.status === "running" || (this.#row.status === "queued" && this.#row.target_worker !== null)) await this.#markLostIfSilent();
        await this.#nap(POLL_MS);
      }
    })();
    // A failure to read the store is not the job's outcome: asking again tries again.
    this.#finished.catch(() => {
      this.#finished = undefined;
      this.#result = undefined;
    });
    return this.#finished;
  }

  /** A line of nbjob's own in the cell that awaits this job (none when no cell does). */
  #note(text: string): void {
    if (!this.#target || this.#target !== currentCellSink()) return;
    try {
      this.#target.stream("stderr", `[nbjob: ${text}]\n`);
    } catch {
      // The cell's request is gone.
    }
  }

  async #storeUnreachable(err: Error, awayMs: number, giveUpMs: number): Promise<StoreUnreachableError> {
    const url = await this.#store.where().then((where) => where.url, () => "(its URL is unknown)");
    return new StoreUnreachableError(
      `job ${this.id}: stopped waiting: the store at ${url} has been unreachable for ${Math.round(awayMs / 1000)} s (${err.message}); `
        + `the job goes on on its worker, which writes its output and outcome once the store is back: await job.result (or job.wait()) again then `
        + `(NBJOB_STORE_GIVE_UP_MS=${giveUpMs})`,
      { cause: err },
    );
  }

  /**
   * Every few seconds while waiting: marks lost the running jobs whose worker stopped
   * heartbeating, and the queued jobs of a direct view whose worker is gone (workers do this for
   * each other; this covers a job whose every worker died).
   */
  async #markLostIfSilent(): Promise<void> {
    if (Date.now() - this.#lostCheckedAt < LOST_CHECK_MS) return;
    this.#lostCheckedAt = Date.now();
    await markLostJobs(this.#store, { staleAfterMs: WORKER_STALE_MS }).catch(() => undefined);
  }

  /** Sleeps `ms`, or less if the worker reports something first. */
  #nap(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        if (self.#wake === done) self.#wake = undefined;
        resolve();
      }
      this.#wake = done;
    });
  }
}

/** One row of a sweep's results; `T` as in `Job<T>`. */
export interface JobGroupRow<T = unknown> {
  id: number;
  params: ParamValues;
  status: JobStatus;
  /** The job's value when done. */
  result?: T;
  /** `ename: evalue` when it failed, was cancelled or lost. */
  error?: string;
}

/**
 * The jobs of a sweep (db.createJobs): one per combination of the grid's values, times the
 * random search's draws when there is one (`sample`: its spec, count and seed).
 */
export class JobGroup<T = unknown> {
  readonly #store: Store;

  /** @internal made by DBWrapper (createJobs, group(id)). */
  constructor(readonly id: number, readonly jobs: Job<T>[], readonly grid: Record<string, unknown[]>, store: Store, readonly sample: SampleSettings | null = null) {
    this.#store = store;
  }

  /**
   * The jobs' counts by status, read from the store (`(await group.progress).running`). As a
   * cell's result it shows a progress line that updates in place until every job has ended.
   */
  get progress(): Promise<GroupProgress> {
    return readProgress(this.#store, this.id);
  }

  /**
   * Cancels every job of the sweep that is queued or running, at once (none is claimed in
   * between): queued ones never start, running ones are stopped by their workers. Jobs that
   * already ended keep their status. Returns the progress after it, once the running ones'
   * workers have stored what they printed, checkpointed and logged before the stop (at most
   * CANCEL_SETTLE_MS, as job.cancel()).
   */
  async cancel(): Promise<GroupProgress> {
    const cancelled = await cancelGroupJobs(this.#store, this.id, `cancelled with its group ${this.id} (group.cancel())`);
    // As job.cancel(): the running ones' last lines, checkpoints and values are stored first.
    await untilCancelledRunsOver(this.#store, cancelled.filter((job) => job.was === "running").map((job) => job.id), CANCEL_SETTLE_MS);
    await this.#readRows();
    return this.progress;
  }

  /**
   * Resolves with the progress once every job has ended (whatever its status). With `timeout`
   * (ms), rejects after that long if some are still queued or running, saying how many; they go on.
   */
  async wait(options: WaitOptions = {}): Promise<GroupProgress> {
    const timeout = options.timeout;
    if (timeout !== undefined && (typeof timeout !== "number" || !(timeout >= 0))) {
      throw new TypeError(`group.wait({ timeout }): timeout must be a number of milliseconds; got ${inspect(timeout)}`);
    }
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    // One count query per look, however many jobs the sweep has.
    for (let pause = 100; ; pause = Math.min(pause * 2, 1_000)) {
      const now = await this.progress;
      if (now.finished) {
        // One read of every row, so what is shown next (group.table(), job.status) is the
        // ended state the counts just saw, not the rows as they were when the sweep was created.
        await this.#readRows();
        return now;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`group ${this.id}: ${now.pending} of ${now.total} job${now.total === 1 ? " is" : "s are"} still pending after ${timeout} ms (${now.running} running, ${now.queued} queued); they go on (wait again, or group.cancel())`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
    }
  }

  /**
   * Resolves when every job has ended: one row per job, in the grid's order. The sweep is waited
   * for as a whole (one count query per look, then one read of every row), not job by job: a
   * thousand jobs each polling the store took the CPU the workers needed.
   */
  get results(): Promise<JobGroupRow<T>[]> {
    return (async () => {
      await this.#waitUntilEnded(this.jobs.map((job) => job.id));
      const byId = await this.#readRows();
      return this.jobs.map((job): JobGroupRow<T> => {
        const row = byId.get(job.id);
        if (!row) throw new UnknownJobError(job.id);
        const base = { id: job.id, params: job.params, status: row.status };
        if (row.status === "done") return { ...base, result: decodeResult(row.result) as T };
        const err = jobErrorOf(row);
        return { ...base, error: `${err.ename}: ${err.evalue}` };
      });
    })();
  }

  /** Every job's row, read at once; each Job keeps its row (its status, result and metrics as stored now). */
  async #readRows(): Promise<Map<number, DbJob>> {
    const byId = new Map((await getJobsByIds(this.#store, this.jobs.map((job) => job.id))).map((row) => [Number(row.id), row]));
    for (const job of this.jobs) {
      const row = byId.get(job.id);
      if (row) job.noteRow(row);
    }
    return byId;
  }

  /**
   * Until none of the jobs is queued or running. Looks often while jobs end (a fast sweep is
   * not kept waiting), less often while nothing changes (a long one costs the store little);
   * every few seconds marks lost the jobs of workers that went silent, as a waiting Job does.
   */
  async #waitUntilEnded(ids: number[]): Promise<void> {
    let pause = GROUP_POLL_MIN_MS;
    let lastPending = -1;
    let lostCheckedAt = Date.now();
    let awaySince: number | undefined;
    for (;;) {
      let pending: number;
      try {
        const unfinished = await unfinishedAmong(this.#store, ids);
        pending = unfinished.count;
        // The jobs below the lowest unfinished one have ended, and an ended job stays so: the next
        // look asks about the rest (jobs are claimed oldest first, so it shrinks as the sweep goes).
        if (unfinished.lowest !== null) ids = ids.filter((id) => id >= unfinished.lowest!);
        awaySince = undefined;
      } catch (err) {
        if (!isStoreUnreachable(err)) throw err;
        const now = Date.now();
        awaySince ??= now;
        const giveUpMs = storeGiveUpMs();
        if (now - awaySince >= giveUpMs) {
          throw new StoreUnreachableError(`group ${this.id}: stopped waiting: the store has been unreachable for ${Math.round((now - awaySince) / 1000)} s (${(err as Error).message}); the jobs go on on their workers: await group.results again once it is back (NBJOB_STORE_GIVE_UP_MS=${giveUpMs})`, { cause: err });
        }
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        continue;
      }
      if (pending === 0) return;
      pause = pending === lastPending ? Math.min(pause * 2, POLL_MS) : GROUP_POLL_MIN_MS;
      lastPending = pending;
      if (Date.now() - lostCheckedAt >= LOST_CHECK_MS) {
        lostCheckedAt = Date.now();
        await markLostJobs(this.#store, { staleAfterMs: WORKER_STALE_MS }).catch(() => undefined);
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /**
   * Draws metric `name` of every job of the sweep, one line per job (labelled with its swept
   * parameters), and keeps the chart current while they run.
   */
  plotMetrics(name: string, options: MetricsPlotOptions = {}): MetricsPlot {
    checkPlotArguments("group.plotMetrics", name, options);
    const keys = this.#sweptKeys();
    const jobs = this.jobs.map((job) => {
      const swept = keys.map((k) => `${k}=${JSON.stringify(job.params[k])}`).join(" ");
      return { id: job.id, label: swept ? `job ${job.id} ${swept}` : `job ${job.id}` };
    });
    return new MetricsPlot(this.#store, jobs, name, options.title ?? `${name} by step (group ${this.id}, ${jobs.length} jobs)`, options);
  }

  #sweptKeys(): string[] {
    return [...Object.keys(this.grid), ...(this.sample ? sampleKeys(this.sample) : [])];
  }

  /** Shows the sweep as a table (job, the swept parameters, status, result, last metrics) in the cell; updates it as jobs end. */
  table(): DisplayHandle {
    const keys = this.#sweptKeys();
    const render = (rows: { job: Job; status: JobStatus; text: string; metrics: string }[]) => {
      const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
      const head = ["job", ...keys, "status", "result", "metrics"];
      const cells = rows.map((r) => [String(r.job.id), ...keys.map((k) => JSON.stringify(r.job.params[k])), r.status, r.text, r.metrics]);
      const html = `<table class="nbjob-sweep"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${cells.map((c) => `<tr>${c.map((v) => `<td>${esc(v)}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
      // reduce, not Math.max(...cells): a sweep can have more jobs than a call takes arguments.
      const widths = head.map((h, i) => cells.reduce((w, c) => Math.max(w, c[i].length), h.length));
      const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
      return { "text/html": html, "text/plain": [line(head), ...cells.map(line)].join("\n") };
    };
    const outcome = (final: DbJob) => final.status === "done" ? inspect(decodeResult(final.result), { colors: false, breakLength: Infinity }) : `${jobErrorOf(final).ename}: ${jobErrorOf(final).evalue}`;
    // A job already known to have ended (after `await group.results`, say) shows its outcome in the first display.
    const rows = this.jobs.map((job): { job: Job; status: JobStatus; text: string; metrics: string } => {
      const ended = FINAL_STATUSES.includes(job.record.status);
      return { job, status: job.status, text: ended ? outcome(job.record) : "", metrics: formatLastMetrics(lastMetricsOf(job.record)) };
    });
    const handle = display(render(rows));
    // The other rows change as their jobs end, in place.
    rows.forEach((row) => {
      if (FINAL_STATUSES.includes(row.job.record.status)) return;
      void row.job.finished().then((final) => {
        row.status = final.status;
        row.metrics = formatLastMetrics(lastMetricsOf(final));
        row.text = outcome(final);
        handle.update(render(rows));
      }, () => undefined);
    });
    return handle;
  }

  [inspect.custom](): string {
    return `JobGroup ${this.id} (${this.jobs.length} jobs: ${this.jobs.map((j) => j.id).join(", ")})`;
  }
}
