// Analyzers: functions written in the notebook, run over every checkpoint of a job on workers.
// The notebook hands the checkpoints that have no stored rows yet to the view's workers a few at a
// time (a worker that finishes gets the next few, so faster workers do more); the workers compute
// and store the rows; the result is read back from the store, one row per checkpoint in order.
import { createHash, randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { inspect } from "node:util";
import {
  analysisBacklog, createAnalysis, deleteAnalysis, getAnalysisRows,
} from "../store";
import type { DbAnalysisRow, JobStatus, Store } from "../store";
import { chartBundle } from "./analyzer-plot";
import type { PlotOptions, PlotSeries } from "./analyzer-plot";
import { isView } from "./client";
import type { View, WorkerConnection } from "./client";
import { display } from "./display";
import type { DisplayHandle } from "./display";
import { FINAL_STATUSES, Job } from "./job";
import { currentCellSink, onKernelShutdown, runningCell, sourceOfFunction } from "./notebook";
import type { RunningCell } from "./notebook";
import { ANALYSIS_EVENTS } from "./shared/analysis-protocol";
import { WORKER_COMM_TARGET } from "./shared/protocol";
import type { AnalysisEvent, AnalysisFunction, AnalyzeCancelRequest, AnalyzePrepareRequest, AnalyzeRequest } from "./shared/analysis-protocol";
import type { TransportComm } from "./worker-transport";

export interface AnalyzerOptions {
  /**
   * Keep analysing the job's new checkpoints while it runs; `result` resolves once the job has
   * ended and every checkpoint is analysed. Default false: the checkpoints stored now.
   */
  follow?: boolean;
}

/**
 * One row per checkpoint: `checkpoint`, then the fields every function returned (a later
 * function's field wins over an earlier one's of the same name). When a function threw at that
 * checkpoint, `errors` maps its name to `"ErrorName: message"` and its fields are absent.
 */
export interface AnalysisRow {
  checkpoint: number;
  errors?: { [functionName: string]: string };
  [field: string]: unknown;
}

/** How the work went: checkpoints in the result, function rows computed by workers for this analyzer, rows that failed. */
export interface AnalyzerStats {
  checkpoints: number;
  analysed: number;
  /** Function-at-checkpoint rows workers computed for this analyzer (0 when everything was stored already). */
  computed: number;
  /** Rows whose function threw. */
  errors: number;
  /** Which worker computed how many checkpoints, by worker id. */
  byWorker: { [workerId: string]: number };
}

/** A function analysers accept: no arguments, returns an object (or a promise of one) whose fields become columns. */
export type AnalysisFunctionValue = () => object | Promise<object>;

/**
 * A value as a row holds it: rows are stored as JSON data (worker/analysis-thread.ts rowFields),
 * so a Date arrives as its ISO string, a Map as an object, a Set or typed array as an array.
 */
export type RowValue<V> =
  V extends bigint ? number | string
    : V extends Date ? string
    : V extends ArrayBufferView ? number[]
    : V extends ReadonlyMap<unknown, infer W> ? { [key: string]: RowValue<W> }
    : V extends ReadonlySet<infer W> ? RowValue<W>[]
    : V extends object ? { [K in keyof V]: RowValue<V[K]> }
    : V;

/** The fields one analysis function puts in a row: its (awaited) return type, as stored. */
type FieldsOf<F> = F extends (...args: never[]) => infer R ? RowValue<Awaited<R>> : never;

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;

/** The functions' fields merged in order: a later function's field of the same name wins, as in mergeRows. */
type MergedFields<Fns extends readonly unknown[]> =
  Fns extends readonly [infer First, ...infer Rest] ? Omit<FieldsOf<First>, keyof MergedFields<Rest>> & MergedFields<Rest>
    : Fns extends readonly [] ? {}
    // An array that is not a tuple: any of its functions may be in it.
    : UnionToIntersection<FieldsOf<Fns[number]>>;

type Flatten<T> = { [K in keyof T]: T[K] } & {};

/**
 * The row type of an analyzer over `Fns` (what `db.createAnalyzer(view, job, [f, g])` gives):
 * `checkpoint`, then the fields of every function's return type. Functions whose return type
 * names no field (plain `object`) give rows that take any field name, as AnalysisRow does. A row
 * where a function threw has `errors` and lacks that function's fields.
 */
export type AnalysisRowOf<Fns extends readonly unknown[]> = Flatten<
  { checkpoint: number; errors?: { [functionName: string]: string } }
  & ([keyof MergedFields<Fns>] extends [never] ? { [field: string]: unknown } : Omit<MergedFields<Fns>, "checkpoint" | "errors">)
>;

/** A field of the rows that analyzer.plot can draw (any name but `errors`). */
// Written so that a type error lists the names ("checkpoint" | "iteration" | …), not the alias.
export type PlotField<Row> = Exclude<keyof Row & string, "errors">;

const POLL_MS = 500;
const ACK_TIMEOUT_MS = 15_000;
/** While a batch runs, the worker's heartbeat is checked this often, so a dead worker's batch moves on. */
const LIVENESS_MS = 5_000;
/** Batches in flight per worker: the next one waits on the worker while this one computes. */
const IN_FLIGHT_PER_WORKER = 2;
const MAX_BATCH = 8;
const PROGRESS_MIN_MS = 150;

/** The worker did not take or finish the request for reasons of its own (gone, no store): its checkpoints go to another worker. */
class WorkerUnavailable extends Error {}

/** The notebook's own comm to a worker for analyses (a second `nbjob.worker` comm, so job events and analysis events never mix). */
class AnalysisChannel {
  private comm?: Promise<TransportComm>;
  private readonly handlers = new Map<string, (event: AnalysisEvent | { action: "error"; message: string }) => void>();

  constructor(readonly worker: WorkerConnection) {}

  /**
   * Runs one request to its end; `onEvent` gets each row and stream event. Rejects with
   * WorkerUnavailable or the worker's failure. When `signal` aborts (analyzer.stop()), the worker is
   * told to cancel the request and this resolves at once: what it stored by then stays stored.
   */
  async analyze(request: Omit<AnalyzeRequest, "action" | "request_id">, onEvent: (event: AnalysisEvent) => void, signal: AbortSignal): Promise<void> {
    const comm = await this.openComm();
    if (signal.aborted) return;
    const requestId = randomUUID();
    let liveness: NodeJS.Timeout | undefined;
    let ackTimer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        onAbort = () => {
          const cancel: AnalyzeCancelRequest = { action: "analyze_cancel", request_id: requestId };
          const sending = comm.send(cancel as unknown as Record<string, unknown>).catch(() => undefined);
          cancelsSending.add(sending);
          void sending.finally(() => cancelsSending.delete(sending));
          resolve();
        };
        signal.addEventListener("abort", onAbort, { once: true });
        ackTimer = setTimeout(() => reject(new WorkerUnavailable(`worker ${this.worker.workerId} did not take the analysis within ${ACK_TIMEOUT_MS / 1000} s`)), ACK_TIMEOUT_MS);
        const checkAlive = () => {
          liveness = setTimeout(() => {
            void this.worker.alive().then((alive) => {
              if (!alive) reject(new WorkerUnavailable(`worker ${this.worker.workerId} stopped answering its heartbeat`));
              else if (this.handlers.has(requestId)) checkAlive();
            });
          }, LIVENESS_MS);
        };
        checkAlive();
        this.handlers.set(requestId, (event) => {
          if (event.action === "analysis_queued") clearTimeout(ackTimer);
          else if (event.action === "analysis_done") {
            // Its last rows come with it.
            if (event.rows) onEvent(event);
            resolve();
          } else if (event.action === "analysis_failed") reject(new Error(event.message));
          else if (event.action === "error") reject(new WorkerUnavailable(event.message));
          else onEvent(event);
        });
        const message: AnalyzeRequest = { action: "analyze", request_id: requestId, ...request };
        comm.send(message as unknown as Record<string, unknown>).catch((err: Error) => reject(new WorkerUnavailable(`could not send to worker ${this.worker.workerId}: ${err.message}`)));
      });
    } finally {
      if (onAbort) signal.removeEventListener("abort", onAbort);
      clearTimeout(ackTimer);
      clearTimeout(liveness);
      this.handlers.delete(requestId);
    }
  }

  /** Tells the worker which functions of which job are about to be asked for (it compiles them meanwhile); no answer. */
  prepare(jobId: number, functions: AnalysisFunction[]): void {
    const message: AnalyzePrepareRequest = { action: "analyze_prepare", job_id: jobId, functions };
    this.openComm().then((comm) => comm.send(message as unknown as Record<string, unknown>)).catch(() => undefined);
  }

  private openComm(): Promise<TransportComm> {
    this.comm ??= this.worker.transport.openComm(WORKER_COMM_TARGET).then((comm) => {
      comm.onMsg((data) => {
        const event = data as AnalysisEvent | { action: "error"; message: string; request_id?: string };
        if (typeof event.request_id === "string" && (ANALYSIS_EVENTS.has(event.action) || event.action === "error")) this.handlers.get(event.request_id)?.(event);
      });
      comm.onClose(() => {
        this.comm = undefined;
        for (const handler of this.handlers.values()) handler({ action: "error", message: `the comm to worker ${this.worker.workerId} closed` });
      });
      return comm;
    });
    this.comm.catch(() => (this.comm = undefined));
    return this.comm;
  }
}

// One channel per worker connection, shared by every analyzer of this notebook.
const channels = new WeakMap<WorkerConnection, AnalysisChannel>();

/** Analyzers still running, and the cancels being sent: what a kernel shutdown stops and waits for. */
const running = new Set<Analyzer<object>>();
const cancelsSending = new Set<Promise<unknown>>();
// The ZeroMQ send has only queued a message when it resolves; the process exits right after a shutdown.
const CANCEL_FLUSH_MS = 100;

// A notebook that shuts down or restarts leaves nothing computing for it on the workers: a
// function that never returns would otherwise hold a worker the user cannot reach any more.
onKernelShutdown(async () => {
  if (running.size === 0) return;
  for (const analyzer of running) analyzer.stop();
  await Promise.all([...cancelsSending]);
  await new Promise((resolve) => setTimeout(resolve, CANCEL_FLUSH_MS));
});
function channelOf(worker: WorkerConnection): AnalysisChannel {
  let channel = channels.get(worker);
  if (!channel) channels.set(worker, (channel = new AnalysisChannel(worker)));
  return channel;
}

/** The declaration of each function as the notebook ran it; an error naming the first one that is not a notebook function. */
export function analysisFunctions(fns: unknown): AnalysisFunction[] {
  if (!Array.isArray(fns) || fns.length === 0) {
    throw new TypeError(`createAnalyzer(view, job, fns): fns must be a non-empty array of functions defined in notebook cells, e.g. [testPerformance]; got ${inspect(fns, { depth: 0 })}`);
  }
  const out: AnalysisFunction[] = [];
  fns.forEach((fn: unknown, i) => {
    if (typeof fn !== "function") {
      throw new TypeError(`createAnalyzer: fns[${i}] is ${fn === null ? "null" : typeof fn} (${inspect(fn, { depth: 0 })}), not a function; pass the functions themselves, e.g. [testPerformance]`);
    }
    const name = fn.name || "(anonymous)";
    const record = sourceOfFunction(fn);
    if (!record || (record.kind !== "function" && record.kind !== "variable")) {
      throw new Error(`createAnalyzer: the TypeScript source of the function ${name} (fns[${i}]) is unknown: only functions declared at the top level of a notebook cell can be sent to workers (function ${name === "(anonymous)" ? "f" : name}() { ... } or const ${name === "(anonymous)" ? "f" : name} = () => ...); define it in a cell and pass it by name`);
    }
    const hash = createHash("sha256").update(record.source).digest("hex");
    if (!out.some((f) => f.hash === hash)) out.push({ name: record.name, hash, source: record.source });
  });
  return out;
}

/** The job's number (a Job's, or the number given); whether it exists is for the store to say. */
function jobIdOf(job: unknown): number {
  if (job instanceof Job) return job.id;
  if (typeof job === "number" && Number.isSafeInteger(job) && job >= 1) return job;
  throw new TypeError(`createAnalyzer(view, job, fns): job must be a Job (from db.createJob or db.job(id)) or a job number such as 3; got ${inspect(job, { depth: 0 })}`);
}

function workersOf(view: View): WorkerConnection[] {
  return view.kind === "direct" ? [view.worker] : [...view.client.workers];
}

/**
 * Live rows over a job's checkpoints; made by `db.createAnalyzer(view, job, fns)`. `Row` is the
 * type of a row, inferred from the functions' return types (see AnalysisRowOf).
 */
export class Analyzer<Row extends object = AnalysisRow> {
  readonly #store: Store;
  readonly #functions: AnalysisFunction[];
  readonly #follow: boolean;
  readonly #workers: WorkerConnection[];
  readonly #progress?: DisplayHandle;
  readonly #result: Promise<AnalysisRow[]>;
  #rows?: AnalysisRow[];
  #stats: AnalyzerStats = { checkpoints: 0, analysed: 0, computed: 0, errors: 0, byWorker: {} };
  #lastProgress = 0;
  #progressTimer?: NodeJS.Timeout;
  #state: "working" | "following" | "done" | "stopped" | "failed" = "working";
  /** Aborted by stop(): no more checkpoints handed out, and the workers' requests cancelled. */
  readonly #stop = new AbortController();
  /** Why it stopped, as its progress line says it. */
  #stoppedBy = "analyzer.stop()";

  /** @internal made by db.createAnalyzer() */
  constructor(store: Store, readonly id: number, readonly jobId: number, functions: AnalysisFunction[], workers: WorkerConnection[], options: { follow: boolean; checkpoints: number; missing: number[]; ended: boolean; cell?: RunningCell }) {
    this.#store = store;
    this.#functions = functions;
    this.#workers = workers;
    // Each request in flight listens to it (2 per worker): no "possible leak" warning on big views.
    setMaxListeners(0, this.#stop.signal);
    this.#follow = options.follow;
    this.#stats.checkpoints = options.checkpoints;
    this.#stats.analysed = options.checkpoints - options.missing.length;
    if (currentCellSink()) this.#progress = display(this.#progressBundle());
    this.#result = this.#run({ ended: options.ended, missing: options.missing });
    running.add(this);
    void this.#result.catch(() => undefined).finally(() => running.delete(this));
    // Interrupting the cell that made it stops it, as Ctrl-C stops a loop: with the rows stored so
    // far kept, creating it again goes on from there (without a handle kept, nothing else could).
    options.cell?.onInterrupt(() => {
      if (this.#stop.signal.aborted) return;
      this.#stoppedBy = "the interrupt of the cell that created it";
      this.stop();
    });
    // Asking for the analyzer without awaiting its result must not crash the kernel on a failure.
    this.#result.catch(() => undefined);
  }

  /** The functions' names, in row-merge order. */
  get functions(): string[] {
    return this.#functions.map((f) => f.name);
  }

  /** Resolves with one row per checkpoint, in checkpoint order (see AnalysisRow), once every checkpoint is analysed. */
  get result(): Promise<Row[]> {
    // Row is what the functions' return types say the merged rows hold (AnalysisRowOf).
    return this.#result as Promise<unknown[]> as Promise<Row[]>;
  }

  /** Counts so far (checkpoints analysed, rows computed now, errors, work per worker). */
  get stats(): AnalyzerStats {
    return structuredClone(this.#stats);
  }

  /**
   * Stops the analysis (and, with follow, following the job): no more checkpoints are handed out,
   * and the workers drop the ones they were given, abandoning those being computed (even a
   * function that never returns). `result` then resolves with the rows stored so far.
   * Interrupting the cell that created the analyzer, while it runs, stops it the same way.
   */
  stop(): void {
    this.#stop.abort();
  }

  /**
   * Shows a line chart of field `y` (or several fields) against field `x` (e.g. "iteration" or
   * "checkpoint") as Vega-Lite with an SVG fallback. Rows without a number for a field are left
   * out. Before the result is in, the chart appears when it is.
   */
  plot(x: PlotField<Row>, y: PlotField<Row> | PlotField<Row>[], options: PlotOptions = {}): DisplayHandle {
    if (typeof x !== "string" || x === "") throw new TypeError(`analyzer.plot(x, y): x must be the name of a row field, such as "checkpoint" or "iteration"; got ${inspect(x, { depth: 0 })}`);
    const ys: string[] = typeof y === "string" ? [y] : y;
    if (!Array.isArray(ys) || ys.length === 0 || !ys.every((f) => typeof f === "string" && f !== "")) {
      throw new TypeError(`analyzer.plot(x, y): y must be the name of a row field (or an array of names), such as "error"; got ${inspect(y, { depth: 0 })}`);
    }
    if (typeof options !== "object" || options === null) throw new TypeError("analyzer.plot(x, y, options): options must be an object such as { logY: true }");
    if (this.#rows) return display(this.#chart(this.#rows, x, ys, options));
    const handle = display({ "text/plain": `(the chart of ${ys.join(", ")} by ${x} appears when the analysis of job ${this.jobId} is done)` });
    this.#result.then(
      (rows) => {
        try {
          handle.update(this.#chart(rows, x, ys, options));
        } catch (err) {
          handle.update({ "text/plain": `analyzer.plot: ${(err as Error).message}` });
        }
      },
      (err: Error) => handle.update({ "text/plain": `analyzer.plot: no chart, the analysis failed: ${err.message}` }),
    );
    return handle;
  }

  [inspect.custom](): string {
    return `Analyzer ${this.id} (job ${this.jobId}: ${this.functions.join(", ")}; ${this.#stats.analysed}/${this.#stats.checkpoints} checkpoints, ${this.#state})`;
  }

  #chart(rows: AnalysisRow[], x: string, ys: string[], options: PlotOptions) {
    const fields = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((f) => f !== "errors");
    for (const field of [x, ...ys]) {
      if (!fields.includes(field)) {
        throw new Error(`analyzer.plot: no row has a field ${JSON.stringify(field)}; the rows' fields are ${fields.join(", ")}`);
      }
    }
    const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
    const series: PlotSeries[] = ys.map((field) => ({
      name: field,
      points: rows.flatMap((row) => {
        const px = num(row[x]);
        const py = num(row[field]);
        if (px === undefined || py === undefined || (options.logY && py <= 0)) return [];
        return [{ x: px, y: py }];
      }),
    }));
    const empty = series.find((s) => s.points.length === 0);
    if (empty) throw new Error(`analyzer.plot: no row has numbers for both ${x} and ${empty.name}${options.logY ? " (positive, for logY)" : ""}`);
    const title = options.title ?? `${ys.join(", ")} by ${x} (job ${this.jobId})`;
    return chartBundle(series, x, ys.length === 1 ? ys[0] : "value", { ...options, title });
  }

  /** `first`: what createAnalyzer found a moment ago (the first pass does not ask the store again). */
  async #run(first?: { ended: boolean; missing: number[] }): Promise<AnalysisRow[]> {
    const hashes = this.#functions.map((f) => f.hash);
    try {
      for (let known = first; ; known = undefined) {
        let ended: boolean;
        let missing: number[];
        if (known) {
          ({ ended, missing } = known);
          // Nothing is handed out before the code that made the analyzer has run on (it may stop()
          // it at once). Two turns of the event loop: after a long await the kernel resumes a cell
          // through an immediate of its own (kernel/engine/stepper.ts), queued after the first of these.
          await new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
        } else {
          // The status with the checkpoints (one snapshot): a job's checkpoints are all stored
          // before it ends, so when it had ended then, the missing checkpoints read are the last.
          let status: JobStatus;
          let checkpoints: number;
          ({ status, checkpoints, missing } = await analysisBacklog(this.#store, this.jobId, hashes));
          ended = FINAL_STATUSES.includes(status);
          this.#stats.checkpoints = checkpoints;
          this.#stats.analysed = checkpoints - missing.length;
        }
        if (missing.length > 0) await this.#share(missing);
        this.#showProgress(true);
        // A job's checkpoints are all stored before it ends, so once it has ended one more pass is the last.
        if (!this.#follow || this.#stop.signal.aborted || (ended && missing.length === 0)) break;
        this.#state = "following";
        if (missing.length === 0) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      const rows = mergeRows(await getAnalysisRows(this.#store, this.jobId, hashes), this.#functions);
      this.#rows = rows;
      this.#stats.errors = rows.reduce((n, r) => n + Object.keys(r.errors ?? {}).length, 0);
      this.#state = this.#stop.signal.aborted ? "stopped" : "done";
      this.#showProgress(true);
      return rows;
    } catch (err) {
      this.#state = "failed";
      this.#showProgress(true, (err as Error).message);
      throw err;
    } finally {
      clearTimeout(this.#progressTimer);
    }
  }

  /** Hands `checkpoints` out to the workers in small batches until all are stored. */
  async #share(checkpoints: number[]): Promise<void> {
    const pending = [...checkpoints];
    const usable = new Set(this.#workers);
    const unavailable: string[] = [];
    let failure: Error | undefined;
    // Each lane takes its share of what is left (at most MAX_BATCH): large batches first, as each
    // request costs messages both ways and the worker its lock statements, then smaller ones down
    // to 1 at the end, so the workers finish together.
    const batchSize = () => Math.max(1, Math.min(MAX_BATCH, Math.ceil(pending.length / (usable.size * IN_FLIGHT_PER_WORKER))));
    const lane = async (worker: WorkerConnection) => {
      while (pending.length > 0 && usable.has(worker) && !failure && !this.#stop.signal.aborted) {
        const batch = pending.splice(0, batchSize());
        const done = new Set<number>();
        try {
          await channelOf(worker).analyze({ job_id: this.jobId, functions: this.#functions, checkpoints: batch }, (event) => {
            const stored = event.action === "analysis_rows" || event.action === "analysis_done" ? event.rows ?? [] : event.action === "analysis_row" ? [event] : [];
            for (const row of stored) {
              done.add(row.checkpoint);
              this.#stats.analysed += 1;
              this.#stats.computed += row.computed;
              if (row.computed > 0) this.#stats.byWorker[worker.workerId] = (this.#stats.byWorker[worker.workerId] ?? 0) + 1;
            }
            if (stored.length > 0) {
              this.#showProgress(false);
            } else if (event.action === "analysis_stream") {
              currentCellSink()?.stream(event.name, event.text);
            }
          }, this.#stop.signal);
        } catch (err) {
          // What the worker did not get to goes back to the others.
          pending.unshift(...batch.filter((c) => !done.has(c)));
          if (err instanceof WorkerUnavailable) {
            if (usable.delete(worker)) unavailable.push(`worker ${worker.workerId}: ${err.message}`);
          } else {
            failure ??= err as Error;
          }
        }
      }
    };
    await Promise.all([...this.#workers].flatMap((worker) => Array.from({ length: IN_FLIGHT_PER_WORKER }, () => lane(worker))));
    if (failure) throw new Error(`the analysis of job ${this.jobId} stopped: ${failure.message}`, { cause: failure });
    if (this.#stop.signal.aborted) return;
    if (pending.length > 0) {
      throw new Error(`no worker could analyse job ${this.jobId} (${pending.length} checkpoint${pending.length === 1 ? "" : "s"} left; the rows stored so far are kept):\n${unavailable.join("\n")}`);
    }
  }

  #progressBundle(note?: string): { "text/plain": string; "text/html": string } {
    const { analysed, checkpoints, computed, errors } = this.#stats;
    const names = this.functions.join(", ");
    let status: string;
    const rows = `${computed === 0 ? "all rows from the store" : `${computed} row${computed === 1 ? "" : "s"} computed`}${errors ? `, ${errors} with errors (see row.errors)` : ""}`;
    if (this.#state === "done") status = `done: ${rows}`;
    else if (this.#state === "stopped") status = `stopped by ${this.#stoppedBy}: ${computed === 0 ? "no rows computed" : rows}`;
    else if (this.#state === "failed") status = `failed: ${note ?? "see the error"}`;
    else if (this.#state === "following") status = "following the running job";
    else status = `on ${this.#workers.length} worker${this.#workers.length === 1 ? "" : "s"}`;
    const text = `analysed ${analysed}/${checkpoints} checkpoints of job ${this.jobId} (${names}); ${status}`;
    const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    const html = `<div class="nbjob-analyzer"><progress value="${analysed}" max="${Math.max(checkpoints, 1)}" style="width:240px;vertical-align:middle"></progress> <span>${esc(text)}</span></div>`;
    return { "text/plain": text, "text/html": html };
  }

  /** Updates the progress display in place, at most every PROGRESS_MIN_MS unless `now`. */
  #showProgress(now: boolean, note?: string): void {
    if (!this.#progress) return;
    const wait = this.#lastProgress + PROGRESS_MIN_MS - Date.now();
    if (!now && wait > 0) {
      this.#progressTimer ??= setTimeout(() => {
        this.#progressTimer = undefined;
        this.#showProgress(true);
      }, wait);
      return;
    }
    clearTimeout(this.#progressTimer);
    this.#progressTimer = undefined;
    this.#lastProgress = Date.now();
    try {
      this.#progress.update(this.#progressBundle(note));
    } catch {
      // The cell that showed it is gone; the analysis goes on.
    }
  }
}

/** Stored rows (by checkpoint, then function order) merged into one row per checkpoint. */
export function mergeRows(stored: DbAnalysisRow[], functions: AnalysisFunction[]): AnalysisRow[] {
  const nameOf = new Map(functions.map((f) => [f.hash, f.name]));
  const rows = new Map<number, AnalysisRow>();
  for (const cell of stored) {
    let row = rows.get(cell.checkpoint_idx);
    if (!row) rows.set(cell.checkpoint_idx, (row = { checkpoint: cell.checkpoint_idx }));
    if (cell.error) {
      row.errors = { ...row.errors, [nameOf.get(cell.function_hash) ?? cell.function_hash]: `${cell.error.name}: ${cell.error.message}` };
    } else if (Array.isArray(cell.value)) {
      // Stored as [field, value] pairs, in the order the function returned them.
      for (const pair of cell.value) if (Array.isArray(pair) && typeof pair[0] === "string" && pair[0] !== "checkpoint") row[pair[0]] = pair[1];
    } else if (cell.value && typeof cell.value === "object") {
      Object.assign(row, cell.value, { checkpoint: cell.checkpoint_idx });
    }
  }
  // `errors` last, so the fields read first in a printed row.
  return [...rows.values()].map(({ errors, ...fields }) => (errors ? { ...fields, errors } : fields) as AnalysisRow);
}

/** db.createAnalyzer: checks the arguments, records the analysis, starts it. */
export async function createAnalyzer(store: Store, view: unknown, job: unknown, fns: unknown, options: AnalyzerOptions = {}): Promise<Analyzer> {
  if (!isView(view)) {
    throw new TypeError(`createAnalyzer(view, job, fns): the first argument must be a view: rc.view(0) or rc.loadBalanced() from const rc = await Client.connect(); got ${inspect(view, { depth: 0 })}`);
  }
  if (typeof options !== "object" || options === null) throw new TypeError("createAnalyzer(view, job, fns, options): options must be an object such as { follow: true }");
  const unknownKeys = Object.keys(options).filter((k) => k !== "follow");
  if (unknownKeys.length > 0) throw new TypeError(`createAnalyzer: unknown option${unknownKeys.length === 1 ? "" : "s"} ${unknownKeys.join(", ")}; the only option is follow`);
  if (options.follow !== undefined && typeof options.follow !== "boolean") throw new TypeError("createAnalyzer: follow must be true or false");
  // Read before the first await: the cell that called, not one that runs when the store answers.
  const cell = runningCell();
  const functions = analysisFunctions(fns);
  const jobId = jobIdOf(job);
  const workers = workersOf(view);
  if (workers.length === 0) throw new Error("createAnalyzer: the view has no workers; start some (npx nbjob cluster start -n 2) and connect again with Client.connect()");
  // The workers compile the functions while the store is read below.
  for (const worker of workers) channelOf(worker).prepare(jobId, functions);
  // The record is made meanwhile (the functions' source must be stored before a worker stores a
  // row of theirs), and removed if there is nothing to analyse. A job that does not exist fails
  // it too: the backlog's error, which says so, is the one to see.
  const creating = createAnalysis(store, jobId, functions.map((f) => ({ name: f.name, source: f.source })));
  creating.catch(() => undefined);
  const { status, checkpoints, missing } = await analysisBacklog(store, jobId, functions.map((f) => f.hash));
  const analysis = await creating;
  const follow = options.follow ?? false;
  const running = !FINAL_STATUSES.includes(status);
  if (checkpoints === 0 && !(follow && running)) {
    // Left behind if the store fails now: a record without rows, harmless; the error below is the one to see.
    await deleteAnalysis(store, analysis.id).catch(() => undefined);
    throw new Error(running
      ? `job ${jobId} has no checkpoints yet (it is ${status}); pass { follow: true } to analyse its checkpoints as they are taken`
      : `job ${jobId} has no checkpoints (it is ${status}): there is nothing to analyse. Its code takes them with jobtracker.registerCheckpointer("name") and jobtracker.checkpoint()`);
  }
  if (checkpoints === 0) currentCellSink()?.stream("stderr", `job ${jobId} has no checkpoints yet; the analyzer follows it and analyses each as it is stored\n`);
  return new Analyzer(store, analysis.id, jobId, functions, workers, { follow, checkpoints, missing, ended: !running, cell });
}
