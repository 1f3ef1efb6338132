// Writes one job's life to the store: running (with who runs it), its output line by line, then
// done with the result, failed with the error, or cancelled. The job row is the source of truth,
// so the worker writes it itself and nothing depends on the notebook staying open.
import { getJob, IllegalTransitionError, LogWriter, transitionJob } from "../store";
import type { Db, Json } from "../store";
import { CheckpointWriter } from "./checkpoint-writer";
import type { JobListener } from "./job-runner";
import type { WorkerIdentity } from "../runtime/shared/protocol";
import { recordJobEnvironment } from "./environment";

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
}

export function recordJob(db: Db, jobId: number, identity: WorkerIdentity, options: RecordOptions): JobRecorder {
  const { claimed, log, inFlight } = options;
  let writes: Promise<unknown> = Promise.resolve();
  let skipped = false;
  const logs = new LogWriter(db, jobId);
  // Checkpoints are stored in index order while the job runs; the job's final write waits for them.
  const checkpoints = new CheckpointWriter(db, jobId, { log });
  let checkpointsStored: Promise<unknown> = Promise.resolve();
  const finalWrite = (write: () => Promise<unknown>) => {
    if (skipped) return;
    writes = writes
      .then(() => checkpointsStored)
      .then(() => logs.close())
      .catch((err: Error) => log(`could not store the output of job ${jobId}: ${err.message}`))
      .then(write)
      .catch((err: Error) => {
        // Cancelled or marked lost in the meantime: the row already tells the story.
        if (!(err instanceof IllegalTransitionError)) log(`could not record the end of job ${jobId}: ${err.message}`);
      });
    const tracked = writes;
    inFlight.add(tracked);
    void tracked.finally(() => inFlight.delete(tracked));
  };
  // The environment (worker/environment.ts) is linked after the final write, so the
  // result is never held up by it.
  const linkEnvironment = (row: { bundle_hash: string }) =>
    recordJobEnvironment(db, jobId, row.bundle_hash, options.bundleSource).catch((err: Error) => log(`could not record the environment of job ${jobId}: ${err.message}`));
  const listener: JobListener = {
    started: () => {},
    stream: (name, text) => {
      if (!skipped) logs.write(name, text);
    },
    checkpoint: (index, values) => {
      if (skipped) return;
      // After the row is marked running (the gate's write).
      const stored = writes.then(() => (skipped ? undefined : checkpoints.write(index, values)));
      checkpointsStored = stored.catch(() => undefined);
      return stored;
    },
    done: ({ result, resultText }) => finalWrite(() => transitionJob(db, jobId, "done", { result: storedResult(result) as unknown as Json, resultText }).then(linkEnvironment)),
    failed: ({ ename, evalue, traceback }) => finalWrite(() => transitionJob(db, jobId, "failed", { error: { name: ename, message: evalue, traceback } }).then(linkEnvironment)),
    cancelled: (reason) => finalWrite(() => transitionJob(db, jobId, "cancelled", { error: { name: "Cancelled", message: reason } })),
  };
  const markRunning = async (): Promise<true | { skip: string }> => {
    if (claimed) return true;
    try {
      await transitionJob(db, jobId, "running", { workerId: identity.worker_id, host: identity.host, pid: identity.pid });
      return true;
    } catch (err) {
      if (!(err instanceof IllegalTransitionError)) {
        skipped = true;
        throw err;
      }
      // Already running here (this worker claimed it from the queue a moment before) is fine.
      const row = await getJob(db, jobId);
      if (row?.status === "running" && row.worker_id === identity.worker_id && row.pid === identity.pid) return true;
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
