// The worker's analysis queue, in the kernel's main thread: takes `analyze` requests from the comm,
// reads the job's program and each checkpoint from the store, has the analysis thread compute the
// functions the store has no row for yet, and writes the rows itself (so a notebook that goes
// away loses nothing computed). The thread computes one checkpoint at a time, in the order it is
// handed them; around it everything is overlapped so that it never waits: the next checkpoint is
// handed over before the current one is back, values are read a few checkpoints ahead, rows are
// written while the next checkpoint computes, and the next request is set up (job, compile, locks)
// while the last checkpoint of the current one computes. Per request: one statement to lock its
// checkpoints, one to find their stored rows, one to unlock; values are read a few checkpoints a
// statement and rows written at most every WRITE_EVERY_MS (each statement costs a socket write).
import { SourceMap } from "node:module";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { checkLoadedBundle } from "./bundle-integrity";
import { getBundle, getJob, lastCheckpointIndex, putAnalysisRows, storedAnalysisCells, withAnalysisLocks } from "../store";
import type { AnalysisRowInput, Queryable, Store } from "../store";
import type { ParamValues } from "../runtime/params";
import { ANALYSIS_FILE, ANALYSIS_ROWS_EVERY_MS, FUNCTIONS_HOOK } from "../runtime/shared/analysis-protocol";
import type { AnalysisEvent, AnalysisFunction, AnalysisRowsStored, AnalyzeRequest } from "../runtime/shared/analysis-protocol";
import type { AnalysisThreadEvent, AnalyzeCheckpointCommand, CompiledScript, FunctionOutcome } from "./analysis-thread";
import { phaseClock, recordPhases } from "./analysis-timing";
import { CheckpointCache } from "./checkpoint-cache";
import { BundleCompiler } from "./compiler";
import type { CompiledBundle, CompiledFunctionsScript } from "./compiler";
import { jobTraceback } from "./traceback";
import type { ModuleLayout } from "./module-layout";
import type { PackageCache } from "./package-cache";
import { jobNeeds, knownJobFolder, prepareJobFolder } from "./job-folder";

const ANALYSIS_THREAD_FILE = join(__dirname, "analysis-thread.js");
/** The thread (a V8 isolate and the contexts it made) is given back after this long without work. */
const THREAD_IDLE_MS = 60_000;
const BUNDLE_CACHE_SIZE = 16;
const JOB_CACHE_SIZE = 1024;
/** Most checkpoints locked together (an analyzer sends at most 8 a request). */
const LOCK_GROUP = 8;
/** Checkpoints whose values are read ahead of the one being computed. */
const READ_AHEAD = 3;
/** Rows are written at most this often (a worker that dies loses at most this much computed work). */
const WRITE_EVERY_MS = 200;
/** Checkpoint values a worker keeps in memory for the next analyses of the same checkpoints. */
const CHECKPOINT_CACHE_BYTES = 64 * 1024 * 1024;
/** Checkpoints handed to the analysis thread before the one it computes is back. */
const THREAD_AHEAD = 1;

export interface AnalysisRunnerOptions {
  /** Without a store the worker cannot read checkpoints or write rows: every request is refused. */
  store?: Store;
  workerId: string;
  log: (line: string) => void;
  /** Lays out a job's local modules, so its program's imports resolve as they did when it ran. */
  modules?: ModuleLayout;
  /** Installs a job's npm packages (the set its bundle pins), for the same reason. */
  packages?: PackageCache;
}

/** A request the notebook cancelled (analyze_cancel) stops with this where it is. */
class AnalysisCancelled extends Error {
  constructor() {
    super("the analysis was cancelled");
  }
}

/** A command the analysis thread has not answered yet. */
interface Pending {
  command: AnalyzeCheckpointCommand;
  /** The request it computes for (none: a context set up ahead). */
  requestId?: string;
  resolve: (event: AnalysisThreadEvent) => void;
  reject: (err: Error) => void;
  onStream: (event: Extract<AnalysisThreadEvent, { type: "stream" }>) => void;
}

interface QueuedRequest {
  request: AnalyzeRequest;
  send: (event: AnalysisEvent) => void;
}

/** The analysis functions laid out as one TypeScript program; `starts[i]` is the 1-based line where function i's source begins. */
export interface FunctionsProgram {
  source: string;
  starts: number[];
}

/**
 * Each declaration inside its own arrow function, so it sees the job's top-level names but
 * declares nothing at the top level itself (a function named like a job variable shadows, never
 * collides). A block statement, not an expression, so the compiler finds no entries in it.
 */
export function functionsProgram(functions: readonly AnalysisFunction[], imports = ""): FunctionsProgram {
  // The job's imports (CompiledProgram.imports) share the first line, so line numbers stay put.
  const lines = [imports ? `${imports} {` : "{", "const __nbjob_fns__ = ["];
  const starts: number[] = [];
  for (const fn of functions) {
    // The built-ins (Math…) are read from the script-scope bindings the job's context made for
    // them (JobContext.bindGlobals), as the job's own functions read them, never through the
    // context's interceptor. Not copied into locals of an outer closure: V8 then compiles a new
    // function's first calls (on-stack replacement) much slower (measured ~30 and ~26 ms against
    // ~17 and ~13 for a 13 ms checkpoint).
    lines.push("(() => {");
    starts.push(lines.length + 1);
    lines.push(...fn.source.split("\n"), `return ${fn.name};`, "})(),");
  }
  lines.push("];", `${FUNCTIONS_HOOK}(__nbjob_fns__);`, "}");
  return { source: lines.join("\n"), starts };
}

/** A thrown error's traceback: job frames at their bundle.ts lines, function frames at `name:line:col` of the function's own source. */
export function analysisTraceback(outcome: Extract<FunctionOutcome, { ok: false }>, program: CompiledBundle, mappings: string, layout: FunctionsProgram, functions: readonly AnalysisFunction[]): string[] {
  const map = new SourceMap({ version: 3, file: ANALYSIS_FILE, sources: [ANALYSIS_FILE], sourceRoot: "", sourcesContent: [], names: [], mappings });
  const at = new RegExp(`${ANALYSIS_FILE.replace(".", "\\.")}:(\\d+):(\\d+)`, "g");
  return jobTraceback(outcome.name, outcome.message, outcome.stack, program).map((line, i) => {
    if (i === 0) return line;
    return line.replace(at, (whole, lineText: string, columnText: string) => {
      const entry = map.findEntry(Number(lineText) - 1, Number(columnText) - 1);
      if (!("originalLine" in entry)) return whole;
      const tsLine = entry.originalLine + 1;
      for (let f = layout.starts.length - 1; f >= 0; f--) {
        if (tsLine >= layout.starts[f]) return `${functions[f].name}:${tsLine - layout.starts[f] + 1}:${entry.originalColumn + 1}`;
      }
      return whole;
    });
  });
}

/** The job's local modules' paths for the analysis thread (AnalyzeCheckpointCommand.modulePaths), when it has any. */
function modulePathsOf(needs: ReturnType<typeof jobNeeds>, moduleDir: string | undefined): string[] | undefined {
  return moduleDir !== undefined && needs.hasFiles ? Object.keys(needs.files) : undefined;
}

/** What the analysis thread needs of a compiled program. */
function scriptOf(compiled: CompiledFunctionsScript & { hiddenState?: string }): CompiledScript {
  return { key: compiled.key, js: compiled.js, declaredNames: compiled.declaredNames, hiddenState: compiled.hiddenState };
}

/**
 * Writes rows on one connection, one statement at a time and at most one every WRITE_EVERY_MS:
 * rows added meanwhile go in the next statement (quick checkpoints share a statement; a
 * checkpoint longer than that gets its own, written as soon as it is added). Each addition's
 * `then` runs once its rows are stored, in the order added. `stored()` writes what is left at once.
 */
class RowWriter {
  private readonly queued: Array<{ rows: AnalysisRowInput[]; then: () => void }> = [];
  private writing?: Promise<void>;
  private lastWrite = -Infinity;
  private pause?: { timer: NodeJS.Timeout; end: () => void };
  private flushing = false;
  /** The first write's error; nothing is written after it. */
  failed?: { error: unknown };

  constructor(private readonly db: Queryable) {}

  add(rows: AnalysisRowInput[], then: () => void): void {
    this.queued.push({ rows, then });
    this.writing ??= this.drain();
  }

  /** Resolves once every row added is stored; rejects with the first write's error. */
  async stored(): Promise<void> {
    this.flushing = true;
    if (this.pause) {
      clearTimeout(this.pause.timer);
      this.pause.end();
    }
    while (this.writing) await this.writing;
    if (this.failed) throw this.failed.error;
  }

  private async drain(): Promise<void> {
    while (this.queued.length > 0 && !this.failed) {
      const wait = this.lastWrite + WRITE_EVERY_MS - performance.now();
      if (wait > 0 && !this.flushing) {
        await new Promise<void>((end) => (this.pause = { timer: setTimeout(end, wait), end }));
        this.pause = undefined;
      }
      const batch = this.queued.splice(0);
      this.lastWrite = performance.now();
      try {
        await putAnalysisRows(this.db, batch.flatMap((b) => b.rows));
      } catch (error) {
        this.failed = { error };
        break;
      }
      for (const { then } of batch) then();
    }
    this.writing = undefined;
  }
}

export class AnalysisRunner {
  private readonly queue: QueuedRequest[] = [];
  private readonly compiler = new BundleCompiler();
  private readonly checkpointValues = new CheckpointCache(CHECKPOINT_CACHE_BYTES);
  private readonly bundles = new Map<string, { source: string; entries: string[]; params: ParamValues }>();
  private readonly jobBundles = new Map<number, string>();
  private thread?: Worker;
  private threadIdle?: NodeJS.Timeout;
  /** Commands the thread has not answered yet, by id (it computes them one at a time, in order). */
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private working = false;
  /** Requests under way: at most two, the second set up while the first's last checkpoint computes. */
  private readonly running = new Set<Promise<void>>();
  /** The ids of the requests running now, and of those among them the notebook cancelled. */
  private readonly active = new Set<string>();
  private readonly cancelled = new Set<string>();
  private wake?: () => void;
  private closed = false;

  constructor(private readonly options: AnalysisRunnerOptions) {}

  /** The requests running now and those waiting. */
  get busy(): number {
    return this.queue.length + this.running.size;
  }

  /** Queues a request; returns how many are ahead of it. Throws a message for the client when it cannot be taken. */
  submit(request: AnalyzeRequest, send: (event: AnalysisEvent) => void): number {
    if (this.closed) throw new Error("this worker is shutting down; ask another worker");
    if (!this.options.store) {
      throw new Error(`worker ${this.options.workerId} has no store (it was started with --no-store), so it cannot read checkpoints or store analysis rows; start it with a database or analyse on another worker`);
    }
    const position = this.busy;
    this.queue.push({ request, send });
    this.wake?.();
    queueMicrotask(() => void this.pump());
    return position;
  }

  /**
   * Stops a request (analyze_cancel): a waiting one is dropped; a running one hands the thread no
   * more checkpoints, and one of its checkpoints on the thread is abandoned by ending the thread
   * (a function may never return), whose other work goes to a new thread in the same order. Its
   * locks are released; the rows it stored stay. An id this worker does not know is ignored.
   */
  cancel(requestId: string): void {
    const waiting = this.queue.findIndex((queued) => queued.request.request_id === requestId);
    if (waiting >= 0) {
      this.queue.splice(waiting, 1);
      return;
    }
    if (!this.active.has(requestId)) return;
    this.cancelled.add(requestId);
    // The thread runs its commands in the order they were posted (the map's order): when the one
    // it runs now is another request's, that one finishes, and the thread ends only when one of
    // the cancelled request's comes up (see the message handler), not computing it again.
    if (this.oldestPending()?.requestId === requestId) this.abandonThread();
  }

  /** The command the analysis thread is running (or will run next). */
  private oldestPending(): Pending | undefined {
    return this.pending.values().next().value;
  }

  /** Ends the thread under a cancelled request's command: its commands fail, the others go to a new thread in order. */
  private abandonThread(): void {
    const thread = this.thread;
    this.thread = undefined;
    void thread?.terminate();
    for (const [id, p] of [...this.pending]) {
      if (p.requestId !== undefined && this.cancelled.has(p.requestId)) {
        this.pending.delete(id);
        p.reject(new AnalysisCancelled());
      } else {
        this.ensureThread().postMessage({ ...p.command, id });
      }
    }
  }

  /**
   * Gets ready for the request that will ask for these functions of this job (analyze_prepare):
   * starts the analysis thread, compiles the job's program and the functions (the request then
   * finds them compiled, or being compiled), and when idle has the thread set up the job's context
   * meanwhile. Errors are left to the request.
   */
  prepare(jobId: number, functions: readonly AnalysisFunction[]): void {
    const store = this.options.store;
    if (!store || this.closed) return;
    // A thread that ended when idle starts again now, while the notebook reads the store (its start takes tens of ms).
    this.ensureThread();
    clearTimeout(this.threadIdle);
    void (async () => {
      const bundle = await this.bundleOf(store, jobId);
      const program = await this.compiler.compile(bundle.source, bundle.entries);
      // Compiled meanwhile (tens of ms); the request awaits the same compilation.
      void this.compileFunctions(program, functionsProgram(functions, program.imports)).catch(() => undefined);
      // With nothing else to do, the analysis thread also sets up the job's context now, on the
      // job's last checkpoint, while the functions compile: the request's first checkpoint then
      // adds them to it instead of waiting for the set-up (3-30 ms).
      // A busy runner keeps its thread's context for the work it has.
      const needs = jobNeeds(bundle.source);
      const moduleDir = knownJobFolder(needs, { modules: this.options.modules, packages: this.options.packages });
      if (moduleDir === null || this.busy > 0) return;
      const idx = await lastCheckpointIndex(store, jobId);
      if (idx === undefined) return;
      const values = (await this.checkpointValues.read(store, jobId, [idx])).get(idx)!;
      if (this.busy > 0 || this.closed) return;
      await this.runOnThread({
        type: "analyze", id: 0, program: scriptOf(program), call: [], params: bundle.params, checkpoint: idx, values, moduleDir,
        modulePaths: modulePathsOf(needs, moduleDir),
      }, () => undefined);
    })().catch(() => undefined).finally(() => {
      if (!this.working) this.scheduleThreadIdle();
    });
  }

  /** The functions' program compiled (`withMap`: with its source map): with the job's imports, in a block of its own. */
  private async compileFunctions(program: CompiledBundle, layout: FunctionsProgram, withMap = false): Promise<CompiledFunctionsScript> {
    const compiled = await this.compiler.compileFunctions(layout.source, withMap);
    // With imports the JavaScript declares their bindings at its top level, under the same
    // compiled names as the job's program (already declared in that scope): in a block of
    // their own they shadow those instead of colliding. Same lines, so the map still holds.
    return program.imports ? { ...compiled, js: `{${compiled.js}\n}` } : compiled;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.queue.splice(0);
    clearTimeout(this.threadIdle);
    const thread = this.thread;
    this.thread = undefined;
    this.rejectPending(new Error("the worker shut down"));
    await Promise.all([thread?.terminate(), this.compiler.close()]);
  }

  private async pump(): Promise<void> {
    if (this.working || this.closed) return;
    this.working = true;
    try {
      while (!this.closed && (this.queue.length > 0 || this.running.size > 0)) {
        const next = this.queue.shift();
        if (!next) {
          // Until a request ends or another comes.
          await Promise.race([...this.running, new Promise<void>((resolve) => (this.wake = resolve))]);
          this.wake = undefined;
          continue;
        }
        clearTimeout(this.threadIdle);
        // The next request starts once this one's last checkpoint is with the thread: its set-up,
        // locks and first reads overlap this one's last computation, so the thread never waits
        // between two requests. The thread computes in the order it is handed checkpoints.
        let handOver!: () => void;
        const handedOver = new Promise<void>((resolve) => (handOver = resolve));
        const done: Promise<void> = this.process(next.request, next.send, handOver).finally(() => {
          this.running.delete(done);
          handOver();
        });
        this.running.add(done);
        await handedOver;
      }
    } finally {
      this.working = false;
      this.scheduleThreadIdle();
    }
  }

  /** Runs one request; `handOver` is called once its last checkpoint is with the thread (or it ended). */
  private async process(request: AnalyzeRequest, send: (event: AnalysisEvent) => void, handOver: () => void): Promise<void> {
    const store = this.options.store!;
    const { request_id, job_id: jobId, functions, checkpoints } = request;
    this.active.add(request_id);
    const stopIfCancelled = () => {
      if (this.cancelled.has(request_id)) throw new AnalysisCancelled();
    };
    const started = Date.now();
    const clock = phaseClock();
    let checkpoint: number | undefined;
    // Stored rows are reported together, at most ANALYSIS_ROWS_EVERY_MS after the first of them
    // (each message costs both sides a signed ZeroMQ message), and always before the request's end.
    const rowsStored: AnalysisRowsStored[] = [];
    let rowsTimer: NodeJS.Timeout | undefined;
    const reportRows = () => {
      clearTimeout(rowsTimer);
      rowsTimer = undefined;
      if (rowsStored.length > 0) send({ action: "analysis_rows", request_id, job_id: jobId, rows: rowsStored.splice(0) });
    };
    const rowStored = (row: AnalysisRowsStored) => {
      rowsStored.push(row);
      rowsTimer ??= setTimeout(reportRows, ANALYSIS_ROWS_EVERY_MS);
    };
    const fail = (message: string) => {
      reportRows();
      send({ action: "analysis_failed", request_id, job_id: jobId, message, checkpoint });
    };
    try {
      const bundle = await this.bundleOf(store, jobId);
      const program = await this.compiler.compile(bundle.source, bundle.entries);
      // The job's own folder: its local modules and npm packages, as when it ran (npm's output, if
      // it installs here first, goes to the analysis's stream).
      const needs = jobNeeds(bundle.source);
      const makers = { modules: this.options.modules, packages: this.options.packages };
      const known = knownJobFolder(needs, makers);
      const moduleDir = known !== null ? known
        : await prepareJobFolder(needs, makers, (text) => send({ action: "analysis_stream", request_id, job_id: jobId, name: "stderr", text }));
      const layout = functionsProgram(functions, program.imports);
      // New functions take the compiler thread 5-30 ms: compiled while the first checkpoints are
      // locked and read, awaited before the first goes to the analysis thread.
      const compiling = this.compileFunctions(program, layout);
      compiling.catch(() => undefined);
      let compiled: CompiledFunctionsScript | undefined;
      let functionsScript: CompiledScript | undefined;
      const hashes = functions.map((f) => f.hash);
      clock?.lap("request set-up (job)");
      // The checkpoints are locked a group at a time (one statement to lock the group, one to
      // find its stored rows, one to unlock, not three per checkpoint). The analyzer asks only for
      // checkpoints missing rows, so they are not looked up before: under the locks is enough.
      const groups: number[][] = [];
      for (const idx of checkpoints) {
        const last = groups[groups.length - 1];
        if (last && last.length < LOCK_GROUP && !last.includes(idx)) last.push(idx);
        else groups.push([idx]);
      }
      // The checkpoints' values are read ahead of their turn, in order, a few in one statement
      // (when at most one is left ahead; at most READ_AHEAD are held besides the one computing).
      const reads = new Map<number, Promise<Record<string, Uint8Array>>>();
      let read = 0;
      const readAhead = (upTo: number) => {
        const end = Math.min(upTo, checkpoints.length);
        if (read >= end || read - taken > 1) return;
        const reading = this.checkpointValues.read(store, jobId, checkpoints.slice(read, end));
        for (; read < end; read++) {
          const idx = checkpoints[read];
          const values = reading.then((byIndex) => byIndex.get(idx)!);
          values.catch(() => undefined);
          reads.set(read, values);
        }
      };
      let taken = 0;
      let computedTotal = 0;
      /** When timing: each checkpoint's time on the thread, [start, end] in epoch ms. */
      const windows: Array<[number, number]> = [];
      const programScript = scriptOf(program);
      for (const group of groups) {
        stopIfCancelled();
        readAhead(taken + READ_AHEAD);
        // Under the group's locks: a worker serving another analyzer of the same functions waits
        // here, then finds the rows stored instead of computing them again.
        clock?.lap("other");
        const setupFailure = await withAnalysisLocks(store, jobId, group, async (locked) => {
          clock?.lap("lock");
          const stored = await storedAnalysisCells(locked, jobId, hashes, group);
          clock?.lap("stored rows under the lock");
          if (!compiled) {
            try {
              compiled = await compiling;
            } catch (err) {
              return { compileError: err as Error };
            }
            functionsScript = scriptOf(compiled);
            clock?.lap("compile (the rest, after the first lock)");
          }
          // The thread gets the next checkpoint before it has finished this one (so it never waits
          // for this thread between two checkpoints); a checkpoint's rows are written while the
          // thread computes the next; it is reported once they are stored, in order. The
          // locks are released only when every row of the group is stored.
          const writer = new RowWriter(locked);
          const inFlight: Array<{ idx: number; todo: AnalysisFunction[]; answer?: Promise<AnalysisThreadEvent> }> = [];
          /** Takes the oldest checkpoint's answer: its rows go to the store; a set-up failure ends the group. */
          const settleOldest = async (): Promise<{ idx: number; answer: Extract<AnalysisThreadEvent, { type: "setup_failed" }> } | undefined> => {
            const { idx, todo, answer: answering } = inFlight.shift()!;
            if (!answering) {
              writer.add([], () => rowStored({ checkpoint: idx, computed: 0, failed: 0 }));
              return undefined;
            }
            clock?.lap("other");
            const answer = await answering;
            clock?.lap("waiting for the analysis thread");
            if (answer.type === "result" && answer.phases) for (const [phase, ms] of Object.entries(answer.phases)) clock?.add(`thread: ${phase}`, ms);
            if (answer.type === "result" && answer.window) windows.push(answer.window);
            if (answer.type === "setup_failed") return { idx, answer };
            if (answer.type !== "result") return undefined;
            const failed = answer.outcomes.filter((result) => !result.ok).length;
            // A thrown error's traceback maps to the functions' own lines: the map is compiled once, when first needed.
            const mappings = failed > 0 ? (await this.compileFunctions(program, layout, true).catch(() => undefined))?.mappings ?? "" : "";
            const rows = todo.map((fn, i) => {
              const result = answer.outcomes[i];
              return {
                functionHash: fn.hash,
                jobId,
                checkpointIdx: idx,
                workerId: this.options.workerId,
                // As [field, value] pairs: jsonb keeps array order but not object key order.
                ...(result.ok ? { value: Object.entries(result.value) as never } : { error: { name: result.name, message: result.message, traceback: analysisTraceback(result, program, mappings, layout, functions) } }),
              };
            });
            writer.add(rows, () => {
              computedTotal += todo.length;
              rowStored({ checkpoint: idx, computed: todo.length, failed });
            });
            return undefined;
          };
          try {
            for (const idx of group) {
              if (writer.failed) break;
              stopIfCancelled();
              checkpoint = idx;
              const values = reads.get(taken)!;
              reads.delete(taken);
              taken += 1;
              readAhead(taken + READ_AHEAD);
              const todo = functions.filter((f) => !stored.has(`${idx}:${f.hash}`));
              if (todo.length === 0) {
                inFlight.push({ idx, todo });
              } else {
                const checkpointValues = await values;
                clock?.lap("read values");
                const answer = this.runOnThread(
                  {
                    type: "analyze", id: 0, program: programScript, functions: functionsScript!,
                    call: todo.map((f) => functions.indexOf(f)), params: bundle.params, checkpoint: idx, values: checkpointValues, moduleDir,
                    modulePaths: modulePathsOf(needs, moduleDir),
                  },
                  (stream) => send({ action: "analysis_stream", request_id, job_id: jobId, name: stream.name, text: stream.text }),
                  request_id,
                );
                // Settled below (or left behind after a failure): never an unhandled rejection.
                answer.catch(() => undefined);
                inFlight.push({ idx, todo, answer });
              }
              while (inFlight.length > THREAD_AHEAD || (inFlight.length > 0 && !inFlight[inFlight.length - 1].answer)) {
                const failure = await settleOldest();
                if (failure) return failure;
              }
            }
            if (group === groups[groups.length - 1]) handOver();
            while (inFlight.length > 0 && !writer.failed) {
              const failure = await settleOldest();
              if (failure) return failure;
            }
          } finally {
            await writer.stored().catch(() => undefined);
            clock?.lap("rows written (the group's last)");
          }
          // A failed write fails the request (with the store's error).
          await writer.stored();
          return undefined;
        });
        clock?.lap("unlock");
        if (setupFailure && "compileError" in setupFailure) {
          return fail(`the analysis functions (${functions.map((f) => f.name).join(", ")}) do not compile on worker ${this.options.workerId}: ${setupFailure.compileError.message}`);
        }
        if (setupFailure) {
          const { idx, answer } = setupFailure;
          checkpoint = idx;
          const where = jobTraceback("x", "x", answer.stack, program).slice(1).join("\n");
          return fail(`checkpoint ${idx} of job ${jobId} could not be set up for analysis (the job's program without its entries, then the checkpoint's values restored): ${answer.message}${where ? `\n${where}` : ""}`);
        }
      }
      clock?.lap("other");
      recordPhases(clock, { workerId: this.options.workerId, computed: computedTotal, received: started, windows });
      // The rows not reported yet go with it: one message fewer per request.
      clearTimeout(rowsTimer);
      rowsTimer = undefined;
      const rows = rowsStored.splice(0);
      send({ action: "analysis_done", request_id, job_id: jobId, computed: computedTotal, duration_ms: Date.now() - started, ...(rows.length > 0 ? { rows } : {}) });
    } catch (err) {
      fail((err as Error).message);
    } finally {
      reportRows();
      this.active.delete(request_id);
      this.cancelled.delete(request_id);
    }
  }

  private async bundleOf(store: Store, jobId: number): Promise<{ source: string; entries: string[]; params: ParamValues }> {
    // A job's bundle never changes (and job ids are not reused): looked up once per job.
    let bundleHash = this.jobBundles.get(jobId);
    if (bundleHash === undefined) {
      const job = await getJob(store, jobId);
      if (!job) throw new Error(`there is no job ${jobId} in the store of worker ${this.options.workerId}; is the worker using the notebook's database?`);
      bundleHash = job.bundle_hash;
      this.jobBundles.set(jobId, bundleHash);
      if (this.jobBundles.size > JOB_CACHE_SIZE) this.jobBundles.delete(this.jobBundles.keys().next().value as number);
    }
    const cached = this.bundles.get(bundleHash);
    if (cached) return cached;
    const row = await getBundle(store, bundleHash);
    if (!row) throw new Error(`the bundle ${bundleHash.slice(0, 12)} of job ${jobId} is not in the store`);
    // The analysis runs the job's program: the same checks as before running the job.
    checkLoadedBundle({ hash: row.hash, source: row.source, params: row.params, entries: row.entries, signature: row.signature }, jobId);
    const bundle = { source: row.source, entries: row.entries, params: row.params as ParamValues };
    this.bundles.set(bundleHash, bundle);
    if (this.bundles.size > BUNDLE_CACHE_SIZE) this.bundles.delete(this.bundles.keys().next().value as string);
    return bundle;
  }

  private runOnThread(command: AnalyzeCheckpointCommand, onStream: (event: Extract<AnalysisThreadEvent, { type: "stream" }>) => void, requestId?: string): Promise<AnalysisThreadEvent> {
    const id = this.nextId++;
    return new Promise<AnalysisThreadEvent>((resolve, reject) => {
      this.pending.set(id, { command, requestId, resolve, reject, onStream });
      this.ensureThread().postMessage({ ...command, id });
    }).finally(() => {
      this.pending.delete(id);
    });
  }

  private rejectPending(err: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const { reject } of pending) reject(err);
  }

  private ensureThread(): Worker {
    if (this.thread) return this.thread;
    const thread = new Worker(ANALYSIS_THREAD_FILE);
    thread.on("message", (event: AnalysisThreadEvent) => {
      // A thread ended by cancel() may still answer a command that went on to its successor.
      if (this.thread !== thread) return;
      const pending = this.pending.get(event.id);
      if (!pending) return;
      if (event.type === "stream") {
        pending.onStream(event);
        return;
      }
      this.pending.delete(event.id);
      pending.resolve(event);
      // The thread has just begun the next command: one of a cancelled request is not computed.
      const next = this.oldestPending();
      if (next?.requestId !== undefined && this.cancelled.has(next.requestId)) this.abandonThread();
    });
    const ended = (reason: string) => {
      if (this.thread !== thread) return;
      this.thread = undefined;
      this.rejectPending(new Error(reason));
    };
    thread.on("error", (err) => ended(`the analysis thread failed: ${err.message}`));
    thread.on("exit", (code) => ended(`the analysis thread exited with code ${code} (did an analysis function call process.exit or run out of memory?)`));
    this.thread = thread;
    return thread;
  }

  private scheduleThreadIdle(): void {
    clearTimeout(this.threadIdle);
    if (!this.thread || this.closed) return;
    this.threadIdle = setTimeout(() => {
      const thread = this.thread;
      if (this.working || !thread) return;
      this.thread = undefined;
      void thread.terminate();
    }, THREAD_IDLE_MS);
    this.threadIdle.unref();
  }
}
