// What an analyzer (runtime/analyzer.ts) and a worker say to each other over the `nbjob.worker`
// comm: the notebook hands out a few checkpoints at a time, the worker computes them against the
// stored job and writes the rows to the store itself, and tells the notebook as each is stored.
import { createHash } from "node:crypto";

/** One analysis function as it travels: its TypeScript declaration, its name, and the source's sha256. */
export interface AnalysisFunction {
  /** The name the declaration gives the function (`function f() {}` or `const f = () => ...`). */
  name: string;
  /** sha256 of `source`: the function's key in analysis_rows (and its snippet hash). */
  hash: string;
  /** The declaration as it was written in a cell. */
  source: string;
}

/** Notebook → worker: compute these functions over these checkpoints of a stored job. */
export interface AnalyzeRequest {
  action: "analyze";
  request_id: string;
  job_id: number;
  functions: AnalysisFunction[];
  /** Checkpoint indexes, computed in this order. */
  checkpoints: number[];
}

/**
 * Notebook → worker, no answer: these functions of this job are about to be asked for, so the
 * worker compiles them while the notebook reads the store (a new function takes 5-30 ms to compile).
 */
export interface AnalyzePrepareRequest {
  action: "analyze_prepare";
  job_id: number;
  functions: AnalysisFunction[];
}

/**
 * Notebook → worker, no answer (analyzer.stop()): drop this request if it waits, or stop it where
 * it is if it runs. A checkpoint being computed is abandoned (its thread is ended, so even a
 * function that never returns lets go); the rows already stored stay.
 */
export interface AnalyzeCancelRequest {
  action: "analyze_cancel";
  request_id: string;
}

/** Worker → notebook, each with the request's id. */
export type AnalysisEvent =
  /** Taken; `position` requests are ahead of it on this worker. */
  | { action: "analysis_queued"; request_id: string; job_id: number; position: number }
  /**
   * One checkpoint's rows are in the store. `computed`: how many functions ran now (0 when every
   * row was stored already); `failed`: how many of those threw (their rows hold the error).
   */
  | { action: "analysis_row"; request_id: string; job_id: number; checkpoint: number; computed: number; failed: number }
  /**
   * Several checkpoints' rows are in the store, each as in analysis_row (a worker gathers them for
   * up to ANALYSIS_ROWS_EVERY_MS: one message, not one per checkpoint).
   */
  | { action: "analysis_rows"; request_id: string; job_id: number; rows: AnalysisRowsStored[] }
  /** Output an analysis function printed. */
  | { action: "analysis_stream"; request_id: string; job_id: number; name: "stdout" | "stderr"; text: string }
  /** Every checkpoint of the request is stored; `rows`: those not reported yet (as in analysis_rows). */
  | { action: "analysis_done"; request_id: string; job_id: number; computed: number; duration_ms: number; rows?: AnalysisRowsStored[] }
  /**
   * The request could not go on (the job's program or a checkpoint could not be set up, the
   * store failed): nothing of the failing checkpoint was stored; `checkpoint` names it if known.
   */
  | { action: "analysis_failed"; request_id: string; job_id: number; message: string; checkpoint?: number };

/** The file name the compiled analysis functions carry in stack frames. */
export const ANALYSIS_FILE = "analysis.js";
/** The global the functions' program hands its functions to (in the analysis thread's contexts). */
export const FUNCTIONS_HOOK = "__nbjob_analysis_functions__";

export const ANALYSIS_EVENTS: ReadonlySet<string> = new Set(["analysis_queued", "analysis_row", "analysis_rows", "analysis_stream", "analysis_done", "analysis_failed"]);

/** One checkpoint of an analysis_rows event. */
export interface AnalysisRowsStored {
  checkpoint: number;
  computed: number;
  failed: number;
}

/** How long a worker gathers stored rows before it reports them (analysis_rows). */
export const ANALYSIS_ROWS_EVERY_MS = 100;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** The request as sent over the comm, or a message saying what is wrong with it. */
export function readAnalyzeRequest(data: Record<string, unknown>): AnalyzeRequest | string {
  const expected = "analyze needs { request_id: string, job_id: number, functions: [{ name, hash, source }], checkpoints: number[] }";
  if (typeof data.request_id !== "string" || data.request_id === "") return `${expected}; request_id is missing`;
  const problem = jobAndFunctionsProblem(data, expected);
  if (problem) return problem;
  if (!Array.isArray(data.checkpoints) || !data.checkpoints.every((c) => Number.isInteger(c) && (c as number) >= 0)) return `${expected}; checkpoints must be an array of checkpoint indexes`;
  return {
    action: "analyze",
    request_id: data.request_id,
    job_id: data.job_id as number,
    functions: (data.functions as AnalysisFunction[]).map(({ name, hash, source }) => ({ name, hash, source })),
    checkpoints: data.checkpoints as number[],
  };
}

/** An analyze_prepare message as sent over the comm, or a message saying what is wrong with it. */
export function readAnalyzePrepare(data: Record<string, unknown>): AnalyzePrepareRequest | string {
  const problem = jobAndFunctionsProblem(data, "analyze_prepare needs { job_id: number, functions: [{ name, hash, source }] }");
  if (problem) return problem;
  return { action: "analyze_prepare", job_id: data.job_id as number, functions: (data.functions as AnalysisFunction[]).map(({ name, hash, source }) => ({ name, hash, source })) };
}

/** An analyze_cancel message as sent over the comm, or a message saying what is wrong with it. */
export function readAnalyzeCancel(data: Record<string, unknown>): AnalyzeCancelRequest | string {
  if (typeof data.request_id !== "string" || data.request_id === "") return "analyze_cancel needs { request_id: string }, the id of an analyze request sent on this comm";
  return { action: "analyze_cancel", request_id: data.request_id };
}

/** What is wrong with a message's job_id and functions, or undefined. */
function jobAndFunctionsProblem(data: Record<string, unknown>, expected: string): string | undefined {
  if (typeof data.job_id !== "number" || !Number.isSafeInteger(data.job_id) || data.job_id < 1) return `${expected}; job_id must be the number of a stored job`;
  if (!Array.isArray(data.functions) || data.functions.length === 0) return `${expected}; functions must be a non-empty array`;
  for (const fn of data.functions as unknown[]) {
    const f = fn as Partial<AnalysisFunction> | null;
    if (typeof f !== "object" || f === null || typeof f.name !== "string" || !IDENTIFIER.test(f.name) || typeof f.source !== "string" || typeof f.hash !== "string" || !/^[0-9a-f]{64}$/.test(f.hash)) {
      return `${expected}; each function needs name (an identifier), source (its declaration) and hash (sha256 of source, hex)`;
    }
  }
  const wrongHash = (data.functions as AnalysisFunction[]).find((f) => createHash("sha256").update(f.source).digest("hex") !== f.hash);
  if (wrongHash) return `${expected}; the hash of function ${wrongHash.name} is not the sha256 of its source`;
  return undefined;
}
