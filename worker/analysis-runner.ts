// The worker's analysis queue, in the kernel's main thread: takes `analyze` requests from the comm,
// reads the job's program and each checkpoint from the store, has the analysis thread compute the
// functions the store has no row for yet, and writes the rows itself (so a notebook that goes
// away loses nothing computed). Requests run one at a time, each checkpoint in turn.
import { SourceMap } from "node:module";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { checkLoadedBundle } from "./bundle-integrity";
import { getBundle, getJob, putAnalysisRow, readCheckpoint, storedAnalysisCells, withAnalysisLock } from "../store";
import type { Store } from "../store";
import type { ParamValues } from "../runtime/params";
import { ANALYSIS_FILE, FUNCTIONS_HOOK } from "../runtime/shared/analysis-protocol";
import type { AnalysisEvent, AnalysisFunction, AnalyzeRequest } from "../runtime/shared/analysis-protocol";
import type { AnalysisThreadEvent, AnalyzeCheckpointCommand, FunctionOutcome } from "./analysis-thread";
import { BundleCompiler } from "./compiler";
import type { CompiledBundle } from "./compiler";
import { jobTraceback } from "./traceback";
import type { ModuleLayout } from "./module-layout";
import type { PackageCache } from "./package-cache";
import { jobNeeds, knownJobFolder, prepareJobFolder } from "./job-folder";

const ANALYSIS_THREAD_FILE = join(__dirname, "analysis-thread.js");
/** The thread (a V8 isolate and the contexts it made) is given back after this long without work. */
const THREAD_IDLE_MS = 60_000;
const BUNDLE_CACHE_SIZE = 16;

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

interface QueuedRequest {
  request: AnalyzeRequest;
  send: (event: AnalysisEvent) => void;
}

const FAST_BUILTINS = [
  "Math", "JSON", "Number", "Object", "Array", "String", "Boolean", "Date", "Map", "Set", "BigInt", "Symbol", "Error", "RangeError", "TypeError",
  "Float64Array", "Float32Array", "Int32Array", "Uint32Array", "Int16Array", "Uint16Array", "Int8Array", "Uint8Array", "Uint8ClampedArray", "BigInt64Array", "BigUint64Array",
  "ArrayBuffer", "DataView", "Promise", "parseInt", "parseFloat", "isNaN", "isFinite",
];

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
    // Built-ins as locals of an outer scope: in a vm context every global lookup of `Math` goes
    // through the context's interceptor (measured ~40x slower in a numeric loop); the function's
    // own scope is inner, so it may still declare any of these names itself.
    lines.push(`(() => { const { ${FAST_BUILTINS.join(", ")} } = globalThis; return (() => {`);
    starts.push(lines.length + 1);
    lines.push(...fn.source.split("\n"), `return ${fn.name};`, "})(); })(),");
  }
  lines.push("];", `${FUNCTIONS_HOOK}(__nbjob_fns__);`, "}");
  return { source: lines.join("\n"), starts };
}

/** A thrown error's traceback: job frames at their bundle.ts lines, function frames at `name:line:col` of the function's own source. */
export function analysisTraceback(outcome: Extract<FunctionOutcome, { ok: false }>, program: CompiledBundle, compiled: CompiledBundle, layout: FunctionsProgram, functions: readonly AnalysisFunction[]): string[] {
  const map = new SourceMap({ version: 3, file: ANALYSIS_FILE, sources: [ANALYSIS_FILE], sourceRoot: "", sourcesContent: [], names: [], mappings: compiled.mappings });
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

export class AnalysisRunner {
  private readonly queue: QueuedRequest[] = [];
  private readonly compiler = new BundleCompiler();
  private readonly bundles = new Map<string, { source: string; entries: string[]; params: ParamValues }>();
  private thread?: Worker;
  private threadIdle?: NodeJS.Timeout;
  private pending?: { id: number; resolve: (event: AnalysisThreadEvent) => void; reject: (err: Error) => void; onStream: (event: Extract<AnalysisThreadEvent, { type: "stream" }>) => void };
  private nextId = 1;
  private working = false;
  private closed = false;

  constructor(private readonly options: AnalysisRunnerOptions) {}

  /** The request running now and those waiting. */
  get busy(): number {
    return this.queue.length + (this.working ? 1 : 0);
  }

  /** Queues a request; returns how many are ahead of it. Throws a message for the client when it cannot be taken. */
  submit(request: AnalyzeRequest, send: (event: AnalysisEvent) => void): number {
    if (this.closed) throw new Error("this worker is shutting down; ask another worker");
    if (!this.options.store) {
      throw new Error(`worker ${this.options.workerId} has no store (it was started with --no-store), so it cannot read checkpoints or store analysis rows; start it with a database or analyse on another worker`);
    }
    const position = this.busy;
    this.queue.push({ request, send });
    queueMicrotask(() => void this.pump());
    return position;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.queue.splice(0);
    clearTimeout(this.threadIdle);
    const thread = this.thread;
    this.thread = undefined;
    this.pending?.reject(new Error("the worker shut down"));
    await Promise.all([thread?.terminate(), this.compiler.close()]);
  }

  private async pump(): Promise<void> {
    if (this.working || this.closed) return;
    this.working = true;
    try {
      for (let next = this.queue.shift(); next && !this.closed; next = this.queue.shift()) {
        clearTimeout(this.threadIdle);
        await this.process(next.request, next.send);
      }
    } finally {
      this.working = false;
      this.scheduleThreadIdle();
    }
  }

  private async process(request: AnalyzeRequest, send: (event: AnalysisEvent) => void): Promise<void> {
    const store = this.options.store!;
    const { request_id, job_id: jobId, functions, checkpoints } = request;
    const started = Date.now();
    let checkpoint: number | undefined;
    const fail = (message: string) => send({ action: "analysis_failed", request_id, job_id: jobId, message, checkpoint });
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
      let compiled: CompiledBundle;
      try {
        compiled = await this.compiler.compile(layout.source, []);
        // With imports the JavaScript declares their bindings at its top level, under the same
        // compiled names as the job's program (already declared in that scope): in a block of
        // their own they shadow those instead of colliding. Same lines, so the map still holds.
        if (program.imports) compiled = { ...compiled, js: `{${compiled.js}\n}` };
      } catch (err) {
        return fail(`the analysis functions (${functions.map((f) => f.name).join(", ")}) do not compile on worker ${this.options.workerId}: ${(err as Error).message}`);
      }
      const hashes = functions.map((f) => f.hash);
      const stored = await storedAnalysisCells(store, jobId, hashes, checkpoints);
      const missingAt = (idx: number) => functions.filter((f) => !stored.has(`${idx}:${f.hash}`));
      // The next checkpoint's values are read while this one is computed.
      const toCompute = checkpoints.filter((idx) => missingAt(idx).length > 0);
      const reads = new Map<number, Promise<Record<string, Uint8Array>>>();
      const read = (idx: number | undefined) => {
        if (idx === undefined || reads.has(idx)) return;
        const reading = readCheckpoint(store, jobId, idx);
        reading.catch(() => undefined);
        reads.set(idx, reading);
      };
      let computedTotal = 0;
      for (const idx of checkpoints) {
        checkpoint = idx;
        const missing = missingAt(idx);
        if (missing.length === 0) {
          send({ action: "analysis_row", request_id, job_id: jobId, checkpoint: idx, computed: 0, failed: 0 });
          continue;
        }
        read(idx);
        // Under the (job, checkpoint) lock: a worker serving another analyzer of the same
        // functions waits here, then finds the rows stored instead of computing them again.
        const outcome = await withAnalysisLock(store, jobId, idx, async () => {
          const now = await storedAnalysisCells(store, jobId, missing.map((f) => f.hash), [idx]);
          const todo = missing.filter((f) => !now.has(`${idx}:${f.hash}`));
          const values = reads.get(idx)!;
          reads.delete(idx);
          if (todo.length === 0) return { computed: 0, failed: 0 };
          read(toCompute[toCompute.indexOf(idx) + 1]);
          const answer = await this.runOnThread(
            {
              type: "analyze", id: 0, program: { key: program.key, js: program.js, declaredNames: program.declaredNames, hiddenState: program.hiddenState }, functions: { key: compiled.key, js: compiled.js, declaredNames: compiled.declaredNames },
              call: todo.map((f) => functions.indexOf(f)), params: bundle.params, checkpoint: idx, values: await values, moduleDir,
              modulePaths: moduleDir !== undefined && needs.hasFiles ? Object.keys(needs.files) : undefined,
            },
            (stream) => send({ action: "analysis_stream", request_id, job_id: jobId, name: stream.name, text: stream.text }),
          );
          if (answer.type !== "result") return answer;
          let failed = 0;
          await Promise.all(todo.map((fn, i) => {
            const result = answer.outcomes[i];
            if (!result.ok) failed += 1;
            return putAnalysisRow(store, {
              functionHash: fn.hash,
              jobId,
              checkpointIdx: idx,
              workerId: this.options.workerId,
              // As [field, value] pairs: jsonb keeps array order but not object key order.
              ...(result.ok ? { value: Object.entries(result.value) as never } : { error: { name: result.name, message: result.message, traceback: analysisTraceback(result, program, compiled, layout, functions) } }),
            });
          }));
          return { computed: todo.length, failed };
        });
        if ("type" in outcome) {
          if (outcome.type !== "setup_failed") continue;
          const where = jobTraceback("x", "x", outcome.stack, program).slice(1).join("\n");
          return fail(`checkpoint ${idx} of job ${jobId} could not be set up for analysis (the job's program without its entries, then the checkpoint's values restored): ${outcome.message}${where ? `\n${where}` : ""}`);
        }
        computedTotal += outcome.computed;
        send({ action: "analysis_row", request_id, job_id: jobId, checkpoint: idx, computed: outcome.computed, failed: outcome.failed });
      }
      send({ action: "analysis_done", request_id, job_id: jobId, computed: computedTotal, duration_ms: Date.now() - started });
    } catch (err) {
      fail((err as Error).message);
    }
  }

  private async bundleOf(store: Store, jobId: number): Promise<{ source: string; entries: string[]; params: ParamValues }> {
    const job = await getJob(store, jobId);
    if (!job) throw new Error(`there is no job ${jobId} in the store of worker ${this.options.workerId}; is the worker using the notebook's database?`);
    const cached = this.bundles.get(job.bundle_hash);
    if (cached) return cached;
    const row = await getBundle(store, job.bundle_hash);
    if (!row) throw new Error(`the bundle ${job.bundle_hash.slice(0, 12)} of job ${jobId} is not in the store`);
    // The analysis runs the job's program: the same checks as before running the job.
    checkLoadedBundle({ hash: row.hash, source: row.source, params: row.params, entries: row.entries, signature: row.signature }, jobId);
    const bundle = { source: row.source, entries: row.entries, params: row.params as ParamValues };
    this.bundles.set(job.bundle_hash, bundle);
    if (this.bundles.size > BUNDLE_CACHE_SIZE) this.bundles.delete(this.bundles.keys().next().value as string);
    return bundle;
  }

  private runOnThread(command: AnalyzeCheckpointCommand, onStream: (event: Extract<AnalysisThreadEvent, { type: "stream" }>) => void): Promise<AnalysisThreadEvent> {
    const id = this.nextId++;
    return new Promise<AnalysisThreadEvent>((resolve, reject) => {
      this.pending = { id, resolve, reject, onStream };
      this.ensureThread().postMessage({ ...command, id });
    }).finally(() => {
      if (this.pending?.id === id) this.pending = undefined;
    });
  }

  private ensureThread(): Worker {
    if (this.thread) return this.thread;
    const thread = new Worker(ANALYSIS_THREAD_FILE);
    thread.on("message", (event: AnalysisThreadEvent) => {
      const pending = this.pending;
      if (!pending || pending.id !== event.id) return;
      if (event.type === "stream") pending.onStream(event);
      else pending.resolve(event);
    });
    const ended = (reason: string) => {
      if (this.thread !== thread) return;
      this.thread = undefined;
      this.pending?.reject(new Error(reason));
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
