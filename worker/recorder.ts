// Writes one job's life to the store: running (with who runs it), its output line by line, then
// done with the result, failed with the error, or cancelled. The job row is the source of truth,
// so the worker writes it itself and nothing depends on the notebook staying open. Every write
// is retried while the store is away (store-retry.ts); a store away past its wait limit makes the
// job wait at its next output or checkpoint, and the job's log says so once the store is back.
import { ClaimLostError, getJob, IllegalTransitionError, releaseCancelledClaim, transitionJob } from "../store";
import type { Db, Json } from "../store";
import { CheckpointWriter } from "./checkpoint-writer";
import type { JobListener } from "./job-runner";
import { JobLogWriter } from "./log-writer";
import { MetricsWriter } from "./metrics-writer";
import type { WorkerIdentity } from "../runtime/shared/protocol";
import { recordJobEnvironment } from "./environment";
import { resultAsJson } from "./result-json";
import { retryWhileAway, StoreAvailability } from "./store-retry";
import type { AvailabilityEvent } from "./store-retry";

/** How a result is kept in jobs.result: the v8.serialize bytes, base64 (Map, Date, typed arrays survive). */
export interface StoredResult {
  encoding: "v8";
  data: string;
}

export function storedResult(bytes: Buffer): StoredResult {
  return { encoding: "v8", data: bytes.toString("base64") };
}

export interface JobRecorder {
  listener: JobListener;
  /** For a job sent over the comm: marks the row running as it starts; says skip when it must not run. */
  gate(): Promise<true | { skip: string }>;
}

/**
 * `claimed`: the row is already running on this worker (claimed from the queue), so starting
 * writes nothing. Write failures are logged, never thrown into the job.
 */
export interface RecordOptions {
  claimed: boolean;
  log: (line: string) => void;
  /** Writes still in flight are kept here, so a worker shutting down can wait for them. */
  inFlight: Set<Promise<unknown>>;
  /** The job's bundle source as read from the store, when the worker has it: spares the environment a query. */
  bundleSource?: string;
  /** The worker's view of the store, shared by all its writers. Default: one of the recorder's own. */
  availability?: StoreAvailability;
  /** The claim the row got when this worker claimed it from the queue (claimed: true). */
  claim?: string | null;
  /**
   * A write for the job was refused because its claim is gone (marked lost, cancelled or resumed
   * while this worker could not write): the worker stops the job. Told once.
   */
  onClaimLost?: (jobId: number, reason: string) => void;
  /**
   * A job sent over the comm: its time limit, read from its row as it is marked running (a
   * claimed job's limit came with the claim). The worker's runner enforces it.
   */
  onTimeLimit?: (jobId: number, timeoutMs: number) => void;
}

export function recordJob(db: Db, jobId: number, identity: WorkerIdentity, options: RecordOptions): JobRecorder {
  const { claimed, log, inFlight } = options;
  const availability = options.availability ?? new StoreAvailability(log);
  const retried = <T>(write: () => Promise<T>) => retryWhileAway(availability, write);
  let writes: Promise<unknown> = Promise.resolve();
  let skipped = false;
  // Fencing: every write names the claim this run holds (from the queue's claim, or the gate's
  // own move to running); once one is refused the job is stopped and nothing more is written.
  let claim: string | undefined = options.claim === null || options.claim === undefined ? undefined : String(options.claim);
  let claimLost = false;
  const onClaimLost = (err: ClaimLostError) => {
    if (claimLost) return;
    claimLost = true;
    log(`job ${jobId}: stopping it: a write for it was refused because this worker's claim on it is gone (${err.message})`);
    options.onClaimLost?.(jobId, `this worker's claim on job ${jobId} is gone (marked lost, cancelled or resumed in the store); its writes are refused`);
  };
  const fence = { claim: () => claim, onClaimLost };
  // Lines pile up faster than the store takes them: the job waits rather than have them dropped.
  let setWaiting: ((reason: string, waiting: boolean) => void) | undefined;
  const logs = new JobLogWriter(db, jobId, { log, availability, ...fence, onBehind: (behind) => setWaiting?.("output", behind && !availability.away) });
  // Checkpoints are stored in index order while the job runs; the job's final write waits for them.
  // A full disk on the store's server: the job is told in its log, and held at its next output
  // or checkpoint while the checkpoint waits for room (checkpoint-writer.ts bounds the wait).
  const onDiskFull = (waiting: boolean, message: string) => {
    setWaiting?.("disk", waiting);
    logs.note(message);
  };
  const checkpoints = new CheckpointWriter(db, jobId, { log, availability, ...fence, onDiskFull });
  let checkpointsStored: Promise<unknown> = Promise.resolve();
  let checkpointsHanded: Promise<unknown> = Promise.resolve();
  // Logged metrics likewise: stored in order while the job runs; the final write waits for them.
  const metrics = new MetricsWriter(db, jobId, { log, availability, ...fence });
  let metricsStored: Promise<unknown> = Promise.resolve();
  // A store away past its limit holds the job until it is back; its log then says for how long.
  let waitingSince: number | undefined;
  const onStore = (event: AvailabilityEvent) => {
    if (event.kind === "wait" && waitingSince === undefined) {
      waitingSince = Date.now();
      setWaiting?.("store", true);
      log(`job ${jobId} waits for the store (unreachable for ${Math.round(event.awayMs / 1000)} s)`);
    } else if (event.kind === "back" && waitingSince !== undefined) {
      const waited = Date.now() - waitingSince;
      waitingSince = undefined;
      setWaiting?.("store", false);
      logs.note(`the store was unreachable for ${seconds(event.awayMs)} (from ${clock(event.since)} UTC); the job waited ${seconds(waited)} for it (NBJOB_STORE_WAIT_MS=${availability.waitLimitMs})`);
      log(`job ${jobId} goes on: the store is back`);
    }
  };
  const unwatch = availability.watch(onStore);
  // A job cancelled in the store: once its last writes are in, say the run is over (job.cancel() waits for it).
  const releaseCancelled = () => claim === undefined
    ? undefined
    : retried(() => releaseCancelledClaim(db, jobId, claim!)).catch((err: Error) => log(`job ${jobId}: could not mark its cancelled run over: ${err.message}`));
  const finalWrite = (write: () => Promise<unknown>) => {
    if (skipped) return;
    unwatch();
    writes = writes
      .then(() => checkpointsStored)
      .then(() => metricsStored)
      .then(() => logs.close())
      .then(write)
      .catch((err: Error) => {
        // Cancelled in the meantime: the row already tells the story (the run is marked over).
        // Marked lost (by another worker or a notebook, while this worker could not heartbeat):
        // the outcome is not kept.
        if (err instanceof IllegalTransitionError && err.from === "cancelled") return releaseCancelled();
        if (err instanceof ClaimLostError) onClaimLost(err);
        else if (!(err instanceof IllegalTransitionError)) log(`could not record the end of job ${jobId}: ${err.message}`);
        else if (err.from === "lost") log(`job ${jobId} was marked lost in the store while it ran here; its outcome is not recorded (${err.message})`);
        else if (claim !== undefined) log(`job ${jobId}: its outcome is not recorded (${err.message})`);
      });
    const tracked = writes;
    inFlight.add(tracked);
    void tracked.finally(() => inFlight.delete(tracked));
  };
  // The environment (worker/environment.ts) is linked after the final write, so the
  // result is never held up by it.
  const linkEnvironment = (row: { bundle_hash: string }) =>
    retried(() => recordJobEnvironment(db, jobId, row.bundle_hash, options.bundleSource)).catch((err: Error) => log(`could not record the environment of job ${jobId}: ${err.message}`));
  const listener: JobListener = {
    started: () => {},
    backpressure: (set) => {
      setWaiting = set;
      if (availability.waiting) onStore({ kind: "wait", awayMs: availability.waitLimitMs });
    },
    stream: (name, text) => {
      if (!skipped) logs.write(name, text);
    },
    checkpoint: (index, values, metricsAt) => {
      if (skipped) return;
      // After the row is marked running (the gate's write), and after the metric batches the job
      // sent before it (job-thread.ts sends them first): a stored checkpoint's series is complete
      // up to it, so a resume from it copies every value logged before it (runtime/resume.ts).
      // Handed to the writer in index order (each waits for the one before to be handed over).
      const metricsBefore = metricsStored;
      const handed = checkpointsHanded.then(() => writes).then(() => metricsBefore);
      checkpointsHanded = handed;
      const stored = handed.then(() => (skipped ? undefined : checkpoints.write(index, values, metricsAt)));
      checkpointsStored = stored.catch(() => undefined);
      return stored;
    },
    metrics: (batch) => {
      if (skipped) return;
      const stored = writes.then(() => (skipped ? undefined : metrics.write(batch)));
      metricsStored = metricsStored.then(() => stored).catch(() => undefined);
      return stored;
    },
    done: ({ result, resultText }) => finalWrite(() => retried(() => transitionJob(db, jobId, "done", { result: storedResult(result) as unknown as Json, resultText, resultJson: resultAsJson(result), claim })).then(linkEnvironment)),
    failed: ({ ename, evalue, traceback }) => finalWrite(() => retried(() => transitionJob(db, jobId, "failed", { error: { name: ename, message: evalue, traceback }, claim })).then(linkEnvironment)),
    cancelled: (reason) => finalWrite(() => retried(() => transitionJob(db, jobId, "cancelled", { error: { name: "Cancelled", message: reason }, claim })).then(releaseCancelled)),
  };
  const markRunning = async (): Promise<true | { skip: string }> => {
    if (claimed) return true;
    try {
      const row = await retried(() => transitionJob(db, jobId, "running", { workerId: identity.worker_id, host: identity.host, pid: identity.pid }));
      claim = row.claim === null ? undefined : String(row.claim);
      if (row.timeout_ms !== null && row.timeout_ms !== undefined) options.onTimeLimit?.(jobId, row.timeout_ms);
      return true;
    } catch (err) {
      if (!(err instanceof IllegalTransitionError)) {
        skipped = true;
        throw err;
      }
      // Already running here (this worker claimed it from the queue a moment before) is fine.
      const row = await retried(() => getJob(db, jobId));
      if (row?.status === "running" && row.worker_id === identity.worker_id && row.pid === identity.pid) {
        claim = row.claim === null ? undefined : String(row.claim);
        return true;
      }
      skipped = true;
      return { skip: `job ${jobId} is ${row?.status ?? "gone"} in the store${row?.worker_id ? ` (worker ${row.worker_id})` : ""}; it was not run again` };
    }
  };
  const gate = (): Promise<true | { skip: string }> => {
    const answer = markRunning();
    // The final write must come after the row is running.
    writes = answer.catch(() => undefined);
    return answer;
  };
  return { listener, gate };
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

function clock(at: Date): string {
  return at.toISOString().slice(11, 19);
}
