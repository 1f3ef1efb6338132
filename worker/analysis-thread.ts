// The analysis thread: one worker_threads thread per worker kernel (started by analysis-runner.ts)
// that computes analysis rows. For each checkpoint it makes a fresh job context, runs the job's
// program there without its entries (so the snippets' declarations exist), restores the
// checkpoint's values, then calls the analysis functions in that same scope. A fresh context per
// checkpoint keeps one checkpoint's analysis from leaking into the next.
import { inspect } from "node:util";
import * as vm from "node:vm";
import { parentPort } from "node:worker_threads";
import type { ParamValues } from "../runtime/params";
import { JobContext } from "./job-context";
import type { StreamName } from "./job-context";
import { ANALYSIS_FILE, FUNCTIONS_HOOK } from "../runtime/shared/analysis-protocol";
import { ENTRY_HOOK, PROGRAM_FILE } from "./program";


export interface CompiledScript {
  key: string;
  js: string;
  /** CompiledProgram.declaredNames; when both scripts give them, the context binds the other globals lexically (fast lookups). */
  declaredNames?: string[];
}

/** Main thread → analysis thread: one checkpoint to compute. */
export interface AnalyzeCheckpointCommand {
  type: "analyze";
  id: number;
  /** The job's program (entries are registered, never run). */
  program: CompiledScript;
  /** The analysis functions' program: hands FUNCTIONS_HOOK an array of the functions, in order. */
  functions: CompiledScript;
  /** Which of the functions to call (indexes into the functions' program), in order; outcomes come in this order. */
  call: number[];
  params: ParamValues;
  checkpoint: number;
  /** The checkpoint's encoded values by variable name. */
  values: Record<string, Uint8Array>;
  /** Where the job's local modules are laid out (see worker/module-layout.ts); absent: none. */
  moduleDir?: string;
}

/** What one function gave at one checkpoint: the row's fields (JSON), or what it threw. */
export type FunctionOutcome =
  | { ok: true; value: { [key: string]: unknown } }
  | { ok: false; name: string; message: string; stack: string };

/** Analysis thread → main thread. */
export type AnalysisThreadEvent =
  | { type: "stream"; id: number; name: StreamName; text: string }
  | { type: "result"; id: number; outcomes: FunctionOutcome[] }
  /** The context could not be set up (the program's top level threw, a value would not restore). */
  | { type: "setup_failed"; id: number; message: string; stack: string };

const SCRIPT_CACHE_SIZE = 16;
const scripts = new Map<string, vm.Script>();

function scriptFor(compiled: CompiledScript, filename: string): vm.Script {
  let script = scripts.get(compiled.key);
  if (!script) {
    script = new vm.Script(compiled.js, { filename });
    scripts.set(compiled.key, script);
    if (scripts.size > SCRIPT_CACHE_SIZE) scripts.delete(scripts.keys().next().value as string);
  }
  return script;
}

function describeThrown(err: unknown): { name: string; message: string; stack: string } {
  if (typeof err === "object" && err !== null && typeof (err as Error).message === "string") {
    const e = err as Error;
    const name = typeof e.name === "string" && e.name ? e.name : "Error";
    return { name, message: e.message, stack: typeof e.stack === "string" ? e.stack : `${name}: ${e.message}` };
  }
  const message = `Uncaught ${inspect(err, { colors: false })}`;
  return { name: "Error", message, stack: `Error: ${message}` };
}

/**
 * The row fields as JSON data (what analysis_rows.value holds): typed arrays and Sets become
 * arrays, Maps objects, bigints numbers (strings when too large), Dates ISO strings; NaN and
 * Infinity become null, as in JSON.
 */
export function rowFields(value: unknown, functionName: string): { [key: string]: unknown } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`the analysis function ${functionName} returned ${inspect(value, { depth: 0, colors: false })}; it must return an object whose fields become the row's columns, e.g. { iteration, error }`);
  }
  const text = JSON.stringify(value, function replacer(this: unknown, key: string, item: unknown) {
    if (typeof item === "bigint") return Number.isSafeInteger(Number(item)) ? Number(item) : item.toString();
    if (typeof item === "function" || typeof item === "symbol") {
      throw new TypeError(`the analysis function ${functionName} returned a ${typeof item} in field ${key}; row fields must be data (numbers, strings, booleans, arrays, objects)`);
    }
    if (ArrayBuffer.isView(item) && !(item instanceof DataView)) return Array.from(item as unknown as ArrayLike<number | bigint>, (n) => (typeof n === "bigint" ? Number(n) : n));
    if (item instanceof Map || Object.prototype.toString.call(item) === "[object Map]") return Object.fromEntries(item as Map<unknown, unknown>);
    if (item instanceof Set || Object.prototype.toString.call(item) === "[object Set]") return [...(item as Set<unknown>)];
    return item;
  });
  return JSON.parse(text) as { [key: string]: unknown };
}

/** Sets the registered variables from the checkpoint's values, in the job's own scope. */
function restoreCheckpoint(job: JobContext, checkpoint: number, values: Record<string, Uint8Array>): void {
  job.jobtracker.restore(checkpoint, values, job.classLookup());
}

let current: { id: number; fail: (err: unknown) => void } | undefined;

async function analyzeCheckpoint(command: AnalyzeCheckpointCommand, post: (event: AnalysisThreadEvent) => void): Promise<void> {
  const { id } = command;
  const job = new JobContext();
  // Output of the job's own top level would repeat at every checkpoint: only the functions' output is kept.
  let forward = false;
  job.begin(command.params, {
    write: (name, text) => {
      if (forward) post({ type: "stream", id, name, text });
    },
    checkpoint: () => undefined,
  }, command.moduleDir);
  const failure = new Promise<never>((_, reject) => (current = { id, fail: reject }));
  failure.catch(() => undefined);
  try {
    let functions: Function[] = [];
    try {
      job.define(ENTRY_HOOK, () => undefined);
      job.define(FUNCTIONS_HOOK, (fns: Function[]) => (functions = fns));
      // Both scripts run in this context, so neither's own names may be bound.
      if (command.program.declaredNames && command.functions.declaredNames) job.bindGlobals([...command.program.declaredNames, ...command.functions.declaredNames]);
      scriptFor(command.program, PROGRAM_FILE).runInContext(job.context, { displayErrors: false });
      restoreCheckpoint(job, command.checkpoint, command.values);
      scriptFor(command.functions, ANALYSIS_FILE).runInContext(job.context, { displayErrors: false });
    } catch (err) {
      const { name, message, stack } = describeThrown(err);
      post({ type: "setup_failed", id, message: `${name}: ${message}`, stack });
      return;
    }
    const outcomes: FunctionOutcome[] = [];
    forward = true;
    for (const fn of command.call.map((i) => functions[i])) {
      try {
        const returned = await Promise.race([fn(), failure]);
        outcomes.push({ ok: true, value: rowFields(returned, fn.name || "(anonymous)") });
      } catch (err) {
        outcomes.push({ ok: false, ...describeThrown(err) });
      }
    }
    forward = false;
    post({ type: "result", id, outcomes });
  } finally {
    current = undefined;
    job.dispose();
  }
}

if (parentPort) {
  const port = parentPort;
  const post = (event: AnalysisThreadEvent) => port.postMessage(event);
  for (const name of ["stdout", "stderr"] as const) {
    const stream = process[name];
    stream.write = ((chunk: unknown) => {
      const text = typeof chunk === "string" ? chunk : Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? Buffer.from(chunk).toString("utf8") : String(chunk);
      if (current) post({ type: "stream", id: current.id, name, text });
      return true;
    }) as typeof stream.write;
  }
  // A function's stray timer error or unawaited rejection fails that function, not the thread.
  process.on("uncaughtException", (err) => current?.fail(err));
  process.on("unhandledRejection", (reason) => current?.fail(reason));
  // One checkpoint at a time: the runner sends the next once this one's result is back.
  port.on("message", (command: AnalyzeCheckpointCommand) => {
    if (command.type === "analyze") void analyzeCheckpoint(command, post);
  });
}
