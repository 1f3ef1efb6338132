// The dispatch protocol spoken over the `nbjob.worker` comm: what a client sends a worker kernel
// and what the worker sends back. Shared by the worker and by whoever dispatches jobs to it.
import type { AnalysisEvent, AnalyzeRequest } from "./analysis-protocol";

/** The comm target every worker kernel registers. */
export const WORKER_COMM_TARGET = "nbjob.worker";

/** Jobs are named by the store's small integer ids; strings are accepted for ad-hoc runs. */
export type JobId = number | string;

/** What a job runs: the bundle's TypeScript program, its parameters and its entry expressions. */
export interface JobBundle {
  /**
   * The whole TypeScript program. As runtime/bundle.ts lays it out, it ends with the entries as
   * expression statements; the worker runs those in place (each awaited). A source that does not
   * end with its entries gets them appended.
   */
  source: string;
  /** sha256 of `source` (the bundle's hash); lets the worker reuse its compiled program. */
  hash?: string;
  /**
   * The stored bundle's signature (store/signing.ts). A run with `record: true` needs `hash` and
   * `signature`, and the worker refuses one whose source does not hash to `hash` or whose
   * signature its cluster key does not reproduce, as it does for jobs it claims.
   */
  signature?: string;
  /** Parameter values (JSON data), read inside the job as `params.name`. */
  params?: Record<string, unknown>;
  /**
   * The entry expressions, run in order once the rest of the program has run; the job's result
   * is the value of the last one (awaited when it is a promise). Without entries, the source's
   * trailing expression statements are its entries (so a runtime/bundle.ts source may be sent
   * alone, and plain code gives the value of its last expression).
   */
  entries?: string[];
}

/** Client → worker, as the `data` of comm_open or comm_msg. */
export type WorkerRequest =
  /**
   * `record: true`: job_id is a row of the store's jobs table (queued, targeted at this worker or
   * at none); the worker marks it running when it starts and stores output, result or error.
   * Without it the run is ad hoc: only comm messages tell what happened.
   */
  | { action: "run"; job_id: JobId; bundle: JobBundle; record?: boolean; request_id?: string }
  | { action: "cancel"; job_id: JobId; request_id?: string }
  | { action: "status"; request_id?: string }
  /** Analysis rows over checkpoints of a stored job (see analysis-protocol.ts). */
  | AnalyzeRequest;

/** A job's error as Jupyter shows errors; traceback lines point at `bundle.ts` lines. */
export interface JobFailure {
  ename: string;
  evalue: string;
  traceback: string[];
}

/** Who is running a job (sent with `started`). */
export interface WorkerIdentity {
  worker_id: string;
  pid: number;
  host: string;
  profile: string | null;
}

/** Worker → client, as the `data` of comm_msg on iopub (parent: the request that caused it). */
export type WorkerEvent =
  /** The run was accepted; `position` 0 means it starts now, n means n jobs are ahead of it. */
  | { action: "queued"; job_id: JobId; position: number; request_id?: string }
  | ({ action: "started"; job_id: JobId } & WorkerIdentity)
  /** Output of the job, in order; `text` holds whole lines where the job wrote whole lines. */
  | { action: "stream"; job_id: JobId; name: "stdout" | "stderr"; text: string }
  /**
   * Finished. `result_text` is the value as util.inspect prints it; the value itself, serialized
   * with v8.serialize, is the comm message's first buffer.
   */
  | { action: "done"; job_id: JobId; result_text: string; duration_ms: number }
  | ({ action: "failed"; job_id: JobId; duration_ms: number } & JobFailure)
  | { action: "cancelled"; job_id: JobId; reason: string }
  | ({ action: "status"; busy: JobId | null; queued: JobId[]; request_id?: string } & WorkerIdentity)
  /** A request the worker could not act on (bad shape, unknown job, duplicate id). */
  | { action: "error"; message: string; job_id?: JobId; request_id?: string }
  | AnalysisEvent;

/** Extra field of the worker's kernel_info_reply, so a client can tell which worker it reached. */
export interface WorkerKernelInfo extends WorkerIdentity {
  comm_target: typeof WORKER_COMM_TARGET;
}
