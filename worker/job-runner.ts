// The worker's job queue, in the kernel's main thread: runs one job at a time on the job thread,
// queues the rest, cancels by terminating the thread (the only way to stop a synchronous loop)
// and starts a new thread for the jobs after it.
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { ParamValues } from "../runtime/params";
import { BundleCompiler } from "./compiler";
import type { ModuleLayout } from "./module-layout";
import { jobNeeds, knownJobFolder, prepareJobFolder } from "./job-folder";
import type { JobNeeds } from "./job-folder";
import type { PackageCache } from "./package-cache";
import type { CompiledBundle } from "./compiler";
import type { StreamName } from "./job-context";
import type { JobThreadEvent, MetricBatch, MetricsPosition, RunCommand } from "./job-thread";
import { MetricStage, readStagedBatch } from "./metric-stage";
import type { MetricsResumePoint } from "../store/metrics";
import type { JobBundle, JobFailure, JobId } from "../runtime/shared/protocol";
import { jobTraceback } from "./traceback";

/** What happens to a job, in order: started, then stream/checkpoint/metrics any number of times, then exactly one of done, failed, cancelled. */
export interface JobListener {
  started(): void;
  stream(name: StreamName, text: string): void;
  /**
   * A snapshot the job took; a promise means it is being stored: the job's checkpoint() may wait
   * for it (memory bound), and the job ends (done/failed) only after it settles. A rejection
   * fails the job. No listener, or one returning nothing: acknowledged at once (ad hoc runs).
   */
  checkpoint?(index: number, values: Record<string, Uint8Array>, metrics?: MetricsPosition): void | Promise<void>;
  /**
   * A batch of values the job logged (jobtracker.log), in order; as for checkpoints, a promise
   * means it is being stored (the job's log() waits when many are pending; the job ends only
   * after it settles; a rejection fails the job).
   */
  metrics?(batch: MetricBatch): void | Promise<void>;
  /**
   * Called as the job starts with a switch: while any reason is switched on, the job waits at its
   * next output or checkpoint (the store is unreachable too long, or the output is too far behind).
   */
  backpressure?(setWaiting: (reason: string, waiting: boolean) => void): void;
  done(outcome: { result: Buffer; resultText: string; durationMs: number }): void;
  failed(outcome: JobFailure & { durationMs: number }): void;
  cancelled(reason: string): void;
}

export interface SubmitOptions {
  /**
   * Asked as the job starts (e.g. to mark its row running in the store). The job does not wait
   * for the answer, so starting costs no round trip; an answer of skip stops it with `cancelled`
   * and that reason (rare: the row was cancelled or taken elsewhere meanwhile).
   */
  gate?: () => Promise<true | { skip: string }>;
  /** A resumed job: loads the checkpoint to restore before the entries run (undefined: none). */
  restore?: () => Promise<RestorePoint | undefined>;
  /** The job's time limit (ms from its start): past it the job is stopped and fails with TimeoutError. */
  timeoutMs?: number;
}

export interface RestorePoint {
  index: number;
  values: Record<string, Uint8Array>;
  /** Where the resumed job's metric series goes on (undefined: it starts afresh). */
  metrics?: MetricsResumePoint;
}

interface QueuedJob {
  jobId: JobId;
  bundle: JobBundle;
  listener: JobListener;
  gate?: SubmitOptions["gate"];
  restore?: SubmitOptions["restore"];
  timeoutMs?: number;
}

interface ActiveJob extends QueuedJob {
  startedAt: number;
  program?: CompiledBundle;
  /** Output not yet handed to the listener; consecutive writes to one stream are sent together. */
  pending?: { name: StreamName; text: string };
  flushTimer?: NodeJS.Timeout;
  finished: boolean;
  /** Shared with the job thread: checkpoints stored so far, a failure flag and a wait flag (see RunCommand). */
  acks: Int32Array;
  /** Why the job must wait now (see JobListener.backpressure); the wait flag is set while any. */
  waitingFor: Set<string>;
  /** Settles after every checkpoint and metric batch handed to the listener so far is stored (never rejects). */
  stores: Promise<void>;
  storeError?: Error;
  /** When the job's program was handed to the job thread: its time limit counts from then. */
  runningSince?: number;
  /** Stops the job at its time limit (see limit()). */
  timeoutTimer?: NodeJS.Timeout;
  /** Shared with the job thread once the job logs a value: the values it logged and has not sent (metric-stage.ts). */
  metricStage?: MetricStage;
  /** The seq after the last metric batch received from the job thread (a staged batch below it was received already). */
  metricSeqReceived: number;
  /** Set while the job is being stopped: its thread is terminated, its last output and metrics are being collected. */
  stopping?: Promise<void>;
}

export interface JobRunnerOptions {
  compiler?: BundleCompiler;
  /** Output is handed on at most this often per job (ms), so a chatty loop sends few messages. Default 20. */
  streamFlushMs?: number;
  log?: (line: string) => void;
  /** Called whenever the runner has nothing to run (a worker then looks for queued jobs). */
  onIdle?: () => void;
  /** Lays out bundles' local modules (needs the store); without it such a bundle fails, saying why. */
  modules?: ModuleLayout;
  /** Installs bundles' npm packages; without it a bundle that pins packages fails, saying why. */
  packages?: PackageCache;
}

/** A job id that is already queued or running here. */
export class DuplicateJobError extends Error {
  override name = "DuplicateJobError";
}

const JOB_THREAD_FILE = join(__dirname, "job-thread.js");
/** Int32 slots of RunCommand.acks (job-thread.ts says what each holds). */
const ACK_SLOTS = 4;
/** A terminated job thread that has not exited after this long (ms) is given up on: the job ends without its staged metrics. */
const THREAD_EXIT_WAIT_MS = 10_000;

export class JobRunner {
  private readonly queue: QueuedJob[] = [];
  private readonly compiler: BundleCompiler;
  private readonly streamFlushMs: number;
  private readonly log: (line: string) => void;
  private readonly onIdle?: () => void;
  private readonly modules?: ModuleLayout;
  private readonly packages?: PackageCache;
  private active?: ActiveJob;
  private thread?: Worker;
  private closed = false;

  constructor(options: JobRunnerOptions = {}) {
    this.compiler = options.compiler ?? new BundleCompiler();
    this.streamFlushMs = options.streamFlushMs ?? 20;
    this.log = options.log ?? ((line) => process.stderr.write(`nbjob worker: ${line}\n`));
    this.onIdle = options.onIdle;
    this.modules = options.modules;
    this.packages = options.packages;
    // Started now so the first job does not wait for a thread to boot.
    this.ensureThread();
  }

  /** The job running now, if any. */
  get running(): JobId | null {
    return this.active ? this.active.jobId : null;
  }

  get queued(): JobId[] {
    return this.queue.map((job) => job.jobId);
  }

  /** Queues a job; returns how many jobs are ahead of it (0: it starts now). */
  submit(jobId: JobId, bundle: JobBundle, listener: JobListener, options: SubmitOptions = {}): number {
    if (this.closed) throw new Error("this worker is shutting down; send the job to another worker");
    if (this.active?.jobId === jobId || this.queue.some((job) => job.jobId === jobId)) {
      throw new DuplicateJobError(`job ${jobId} is already ${this.active?.jobId === jobId ? "running" : "queued"} on this worker; each run needs its own job id`);
    }
    const position = this.queue.length + (this.active ? 1 : 0);
    this.queue.push({ jobId, bundle, listener, gate: options.gate, restore: options.restore, timeoutMs: options.timeoutMs });
    // Deferred a microtask, so the caller can acknowledge the job before it reports `started`.
    queueMicrotask(() => this.pump());
    return position;
  }

  /**
   * Adds a listener to a job that is queued or running here (a client asking to follow a job
   * the worker already took from the queue). A running job's listener first hears `started`.
   */
  attach(jobId: JobId, listener: JobListener): boolean {
    const job = this.active?.jobId === jobId ? this.active : this.queue.find((queued) => queued.jobId === jobId);
    if (!job) return false;
    job.listener = fanOut(job.listener, listener);
    if (job === this.active && this.active.program) this.safely(() => listener.started());
    return true;
  }

  /**
   * Sets a job's time limit (ms from its start) when it is known only once the job was taken
   * (a job sent over the comm: its row says, read as it is marked running). A limit already
   * passed stops the job now. False when the job is neither queued nor running here.
   */
  limit(jobId: JobId, timeoutMs: number): boolean {
    const queued = this.queue.find((job) => job.jobId === jobId);
    if (queued) queued.timeoutMs = timeoutMs;
    else if (this.active?.jobId === jobId && !this.active.finished) {
      this.active.timeoutMs = timeoutMs;
      if (this.active.runningSince !== undefined) this.armTimeout(this.active, timeoutMs);
    } else return false;
    return true;
  }

  /** Cancels a queued job or stops the running one (its thread is terminated). */
  cancel(jobId: JobId, reason = "cancelled on request"): "running" | "queued" | "unknown" {
    const at = this.queue.findIndex((job) => job.jobId === jobId);
    if (at >= 0) {
      const [job] = this.queue.splice(at, 1);
      this.safely(() => job.listener.cancelled(reason));
      return "queued";
    }
    if (this.active && this.active.jobId === jobId) {
      this.stopActive(reason);
      return "running";
    }
    return "unknown";
  }

  /** Stops the running job (interrupt_request); queued jobs carry on. Returns the job stopped, if any. */
  interrupt(): JobId | null {
    const jobId = this.running;
    if (jobId !== null) this.stopActive("interrupted");
    return jobId;
  }

  /** Cancels everything and ends the threads. */
  async close(reason = "the worker shut down"): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) this.safely(() => job.listener.cancelled(reason));
    const stopped = this.active ? this.stopActive(reason) : undefined;
    const thread = this.thread;
    this.thread = undefined;
    await Promise.all([thread?.terminate(), stopped, this.compiler.close()]);
  }

  private pump(): void {
    if (this.active || this.closed) return;
    const next = this.queue.shift();
    if (!next) {
      if (this.onIdle) this.safely(this.onIdle);
      return;
    }
    const job: ActiveJob = {
      ...next, startedAt: Date.now(), finished: false, acks: new Int32Array(new SharedArrayBuffer(4 * ACK_SLOTS)), waitingFor: new Set(), stores: Promise.resolve(),
      metricSeqReceived: 0,
    };
    this.active = job;
    this.safely(() => job.listener.backpressure?.((reason, waiting) => this.setWaiting(job, reason, waiting)));
    this.begin(job);
    if (job.gate) {
      job.gate().then(
        (answer) => {
          if (answer !== true && this.active === job) this.stopActive(answer.skip);
        },
        (err: Error) => this.log(`job ${job.jobId}: could not check it before starting (${err.message}); it runs anyway`),
      );
    }
  }

  private begin(job: ActiveJob): void {
    if (job.finished) return;
    job.startedAt = Date.now();
    this.safely(() => job.listener.started());
    const entries = job.bundle.entries ?? [];
    const needs = jobNeeds(job.bundle.source);
    const makers = { modules: this.modules, packages: this.packages };
    const knownDir = knownJobFolder(needs, makers);
    // A cached program whose folder is ready starts without waiting a turn of the event loop.
    const cached = this.compiler.cached(job.bundle.source, entries);
    if (cached && !job.restore && knownDir !== null) {
      this.startOnThread(job, cached, undefined, knownDir, needs);
      return;
    }
    // npm's output (an install) goes to the job's log.
    const laidOut = knownDir !== null ? Promise.resolve(knownDir) : prepareJobFolder(needs, makers, (text) => this.bufferStream(job, "stderr", text));
    const restoring = job.restore ? job.restore().catch((err: Error) => {
      throw new Error(`job ${job.jobId} resumes from a checkpoint that could not be read: ${err.message}`, { cause: err });
    }) : Promise.resolve(undefined);
    Promise.all([cached ?? this.compiler.compile(job.bundle.source, entries), restoring, laidOut]).then(
      ([program, restore, moduleDir]) => this.startOnThread(job, program, restore, moduleDir, needs),
      (err: Error) => this.finish(job, (listener, durationMs) => listener.failed({ ename: err.name, evalue: err.message, traceback: [`${err.name}: ${err.message}`], durationMs })),
    );
  }

  private startOnThread(job: ActiveJob, program: CompiledBundle, restore?: RestorePoint, moduleDir?: string, needs?: JobNeeds): void {
    if (job.finished) return;
    job.program = program;
    // A resumed job's series goes on after the values copied from the old job (runtime/resume.ts;
    // the job thread starts its stage there).
    if (restore?.metrics) job.metricSeqReceived = restore.metrics.seq;
    const command: RunCommand = {
      type: "run",
      jobId: job.jobId,
      key: program.key,
      js: program.js,
      params: (job.bundle.params ?? {}) as ParamValues,
      hasEntries: program.hasEntries,
      declaredNames: program.declaredNames,
      assignedNames: program.assignedNames,
      acks: job.acks.buffer as SharedArrayBuffer,
      restore,
      moduleDir,
      modulePaths: moduleDir !== undefined && needs?.hasFiles ? Object.keys(needs.files) : undefined,
    };
    try {
      this.ensureThread().postMessage(command);
      job.runningSince = Date.now();
      if (job.timeoutMs !== undefined) this.armTimeout(job, job.timeoutMs);
    } catch (err) {
      this.finish(job, (listener, durationMs) =>
        listener.failed({ ename: "DataCloneError", evalue: `the job's params could not be sent to the job thread: ${(err as Error).message}`, traceback: [], durationMs }),
      );
    }
  }

  private ensureThread(): Worker {
    if (this.thread) return this.thread;
    const thread = new Worker(JOB_THREAD_FILE);
    let failure: string | undefined;
    thread.on("message", (event: JobThreadEvent) => this.received(event));
    // An error comes before the thread's exit; the job ends at the exit, once the thread is gone
    // (its staged metrics are read then).
    thread.on("error", (err) => (failure ??= `the job thread failed: ${err.message}`));
    thread.on("exit", (code) => this.threadEnded(thread, failure ?? `the job thread exited with code ${code} (did the job call process.exit or run out of memory?)`));
    this.thread = thread;
    return thread;
  }

  private threadEnded(thread: Worker, reason: string): void {
    if (this.thread !== thread) return; // terminated on purpose
    this.thread = undefined;
    const job = this.active;
    if (job?.program && !job.stopping) {
      this.collectStagedMetrics(job);
      this.finish(job, (listener, durationMs) => listener.failed({ ename: "WorkerThreadError", evalue: reason, traceback: [`WorkerThreadError: ${reason}`], durationMs }));
    }
    if (!this.closed) this.ensureThread();
  }

  private received(event: JobThreadEvent): void {
    const job = this.active;
    if (!job || job.jobId !== event.jobId || job.finished) return;
    // A job being stopped: what its thread sent before it was terminated still comes (Node
    // delivers it before the thread's exit); its output and metrics are kept, its outcome is the
    // stop's, and a checkpoint is not stored (the run is over; its claim may be gone already).
    if (job.stopping && event.type !== "stream" && event.type !== "metrics" && event.type !== "metric_stage") return;
    switch (event.type) {
      case "stream":
        this.bufferStream(job, event.name, event.text);
        break;
      case "checkpoint":
        this.checkpointTaken(job, event.index, event.values, event.metrics);
        break;
      case "metric_stage":
        job.metricStage = new MetricStage(event.buffer);
        break;
      case "metrics":
        this.metricsLogged(job, event.batch);
        break;
      case "done": {
        const result = Buffer.from(event.result.buffer, event.result.byteOffset, event.result.byteLength);
        // A job is done only once every checkpoint it took is stored.
        void job.stores.then(() => {
          if (job.storeError) this.finish(job, (listener, durationMs) => listener.failed({ ...checkpointFailure(job.storeError!), durationMs }));
          else this.finish(job, (listener, durationMs) => listener.done({ result, resultText: event.resultText, durationMs }));
        });
        break;
      }
      case "failed": {
        const traceback = jobTraceback(event.ename, event.evalue, event.stack, job.program);
        void job.stores.then(() => this.finish(job, (listener, durationMs) => listener.failed({ ename: event.ename, evalue: event.evalue, traceback, durationMs })));
        break;
      }
    }
  }

  /** Hands a snapshot to the listener; tells the job thread when it is stored (or that it never will be). */
  private checkpointTaken(job: ActiveJob, index: number, values: Record<string, Uint8Array>, metrics: MetricsPosition): void {
    this.track(job, 0, () => job.listener.checkpoint?.(index, values, metrics));
  }

  /** Hands a batch of logged values to the listener; the same acknowledgement, in acks[3]. */
  private metricsLogged(job: ActiveJob, batch: MetricBatch): void {
    job.metricSeqReceived = batch.firstSeq + batch.count;
    this.track(job, 3, () => job.listener.metrics?.(batch));
  }

  /**
   * The values the job logged and its thread had not sent, read from the shared stage once the
   * thread is gone (terminated to stop the job, or ended by the job). A stage whose batch was
   * received already (the thread was stopped between posting it and emptying the stage) is skipped.
   */
  private collectStagedMetrics(job: ActiveJob): void {
    if (!job.metricStage) return;
    const staged = readStagedBatch(job.metricStage);
    if (staged && staged.firstSeq >= job.metricSeqReceived) this.metricsLogged(job, staged);
  }

  /**
   * Chains a store the listener started onto the job's stores (so the job ends after it), and
   * acknowledges it in acks[slot] once stored and every earlier one is; a failure fails the job.
   */
  private track(job: ActiveJob, slot: number, start: () => void | Promise<void>): void {
    let stored: void | Promise<void>;
    try {
      stored = start();
    } catch (err) {
      stored = Promise.reject(err);
    }
    job.stores = job.stores.then(() => stored).then(
      () => {
        if (job.storeError) return;
        Atomics.add(job.acks, slot, 1);
        Atomics.notify(job.acks, slot);
      },
      (err: Error) => {
        if (job.storeError) return;
        job.storeError = err;
        Atomics.store(job.acks, 1, 1);
        Atomics.notify(job.acks, 0);
        Atomics.notify(job.acks, 3);
        this.log(`job ${job.jobId}: ${err.message}; the job fails`);
        // Still running: stop it now rather than let it compute past a hole in its history.
        if (this.active === job && !job.finished && !job.stopping) {
          this.stopActive("", { ...checkpointFailure(err) });
        }
      },
    );
  }

  private setWaiting(job: ActiveJob, reason: string, waiting: boolean): void {
    if (job.finished) return;
    if (waiting) job.waitingFor.add(reason);
    else job.waitingFor.delete(reason);
    Atomics.store(job.acks, 2, job.waitingFor.size > 0 ? 1 : 0);
    Atomics.notify(job.acks, 2);
  }

  private bufferStream(job: ActiveJob, name: StreamName, text: string): void {
    if (job.pending && job.pending.name !== name) this.flushStream(job);
    if (job.pending) job.pending.text += text;
    else job.pending = { name, text };
    job.flushTimer ??= setTimeout(() => this.flushStream(job), this.streamFlushMs);
  }

  private flushStream(job: ActiveJob): void {
    clearTimeout(job.flushTimer);
    job.flushTimer = undefined;
    const pending = job.pending;
    job.pending = undefined;
    if (pending) this.safely(() => job.listener.stream(pending.name, pending.text));
  }

  /**
   * The time limit counts from when the job's program starts on the job thread: compiling it and
   * installing its npm packages (minutes, the first time) are the worker's time, not the job's.
   * Reached, the job is stopped like a cancel (the thread is
   * terminated, so a synchronous loop stops too) but fails, with TimeoutError; the checkpoints it
   * took are stored first (the recorder's final write waits for them), so it can be resumed.
   */
  private armTimeout(job: ActiveJob, timeoutMs: number): void {
    clearTimeout(job.timeoutTimer);
    const left = Math.max(0, (job.runningSince ?? Date.now()) + timeoutMs - Date.now());
    job.timeoutTimer = setTimeout(() => {
      if (this.active !== job || job.finished) return;
      const evalue = `job ${job.jobId} ran past its time limit of ${formatMs(timeoutMs)} (timeoutMs: ${timeoutMs}) and was stopped; its checkpoints so far are kept (job.resume() goes on from the last)`;
      this.log(evalue);
      this.stopActive("", { ename: "TimeoutError", evalue, traceback: [`TimeoutError: ${evalue}`] });
    }, left);
  }

  /**
   * Stops the running job: cancelled with `reason`, or failed with `failure`. Resolves once the
   * job has ended. A job on the job thread ends only once the thread has exited, so that what it
   * logged is all handed on first: batches it sent (delivered before the exit) and the values
   * still staged (read from shared memory after it). Its outcome (and so the recorder's final
   * write, which waits for the metrics) comes after them.
   */
  private stopActive(reason: string, failure?: JobFailure): Promise<void> {
    const job = this.active;
    if (!job || job.finished) return Promise.resolve();
    if (job.stopping) return job.stopping;
    const outcome = failure
      ? (listener: JobListener, durationMs: number) => listener.failed({ ...failure, durationMs })
      : (listener: JobListener) => listener.cancelled(reason);
    const thread = job.program ? this.thread : undefined;
    if (!thread) {
      this.finish(job, outcome);
      return Promise.resolve();
    }
    // Terminating is the only way to stop a synchronous loop; the next job gets a new thread
    // (started now, so it boots while this one's metrics are collected).
    this.thread = undefined;
    if (!this.closed) this.ensureThread();
    let waited: NodeJS.Timeout | undefined;
    const exited = Promise.race([
      thread.terminate().then(() => true, () => true),
      new Promise<false>((resolve) => (waited = setTimeout(() => resolve(false), THREAD_EXIT_WAIT_MS))),
    ]);
    job.stopping = exited.then((gone) => {
      clearTimeout(waited);
      if (gone) this.collectStagedMetrics(job);
      else this.log(`job ${job.jobId}: its thread did not exit within ${THREAD_EXIT_WAIT_MS / 1000} s of being terminated; the values it logged last are not stored`);
      this.finish(job, outcome);
    });
    return job.stopping;
  }

  /** Delivers the job's last output and its outcome, then starts the next job. */
  private finish(job: ActiveJob, outcome: (listener: JobListener, durationMs: number) => void): void {
    if (job.finished) return;
    job.finished = true;
    clearTimeout(job.timeoutTimer);
    this.flushStream(job);
    this.safely(() => outcome(job.listener, Date.now() - job.startedAt));
    if (this.active === job) this.active = undefined;
    this.pump();
  }

  private safely(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.log(`a job listener threw: ${(err as Error).stack ?? err}`);
    }
  }
}

/** One listener that forwards every event to each of `listeners`, in order. */
export function fanOut(...listeners: JobListener[]): JobListener {
  return {
    started: () => listeners.forEach((l) => l.started()),
    stream: (name, text) => listeners.forEach((l) => l.stream(name, text)),
    checkpoint: (index, values, metrics) => {
      const stored = listeners.map((l) => l.checkpoint?.(index, values, metrics));
      return stored.some((s) => s instanceof Promise) ? Promise.all(stored).then(() => undefined) : undefined;
    },
    metrics: (batch) => {
      const stored = listeners.map((l) => l.metrics?.(batch));
      return stored.some((s) => s instanceof Promise) ? Promise.all(stored).then(() => undefined) : undefined;
    },
    backpressure: (setWaiting) => listeners.forEach((l) => l.backpressure?.(setWaiting)),
    done: (outcome) => listeners.forEach((l) => l.done(outcome)),
    failed: (outcome) => listeners.forEach((l) => l.failed(outcome)),
    cancelled: (reason) => listeners.forEach((l) => l.cancelled(reason)),
  };
}

/** 1500 → "1.5 s", 90000 → "90 s", 250 → "250 ms". */
function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Number((ms / 1000).toFixed(3))} s`;
}

function checkpointFailure(err: Error): JobFailure {
  // The metrics writer names its errors MetricsError (worker/metrics-writer.ts).
  const ename = err.name === "MetricsError" ? "MetricsError" : "CheckpointError";
  return { ename, evalue: err.message, traceback: [`${ename}: ${err.message}`] };
}
