// The analysis thread: one worker_threads thread per worker kernel (started by analysis-runner.ts)
// that computes analysis rows. For a job's first checkpoint it makes a job context, runs the job's
// program there without its entries (so the snippets' declarations exist), restores the
// checkpoint's values, then calls the analysis functions in that same scope. The next checkpoint
// reuses that context (its functions stay warm), restoring only the checkpoint's values, when
// nothing the last analysis did is left in it (worker/context-state.ts compares the state with
// the state after the setup); otherwise it gets a fresh context, so nothing leaks between checkpoints.
import { inspect } from "node:util";
import * as vm from "node:vm";
import { parentPort } from "node:worker_threads";
import type { ParamValues } from "../runtime/params";
import { preloadLocalEsm } from "../runtime/esm-preload";
import { JobContext } from "./job-context";
import type { StreamName } from "./job-context";
import { ANALYSIS_FILE, FUNCTIONS_HOOK } from "../runtime/shared/analysis-protocol";
import { ENTRY_HOOK, PROGRAM_FILE } from "./program";
import { matchesState, recordState, UnverifiableState } from "./context-state";
import { phaseClock } from "./analysis-timing";
import type { StateRecord, StateRoots } from "./context-state";

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;


export interface CompiledScript {
  key: string;
  js: string;
  /** CompiledProgram.declaredNames; when both scripts give them, the context binds the other globals lexically (fast lookups). */
  declaredNames?: string[];
  /** CompiledProgram.hiddenState: why a context that ran this program cannot be reused. */
  hiddenState?: string;
}

/** Main thread → analysis thread: one checkpoint to compute. */
export interface AnalyzeCheckpointCommand {
  type: "analyze";
  id: number;
  /** The job's program (entries are registered, never run). */
  program: CompiledScript;
  /**
   * The analysis functions' program: hands FUNCTIONS_HOOK an array of the functions, in order.
   * Absent: only set up the job's context on this checkpoint (call is empty), while the functions
   * still compile; the next command that brings them adds them to it.
   */
  functions?: CompiledScript;
  /** Which of the functions to call (indexes into the functions' program), in order; outcomes come in this order. */
  call: number[];
  params: ParamValues;
  checkpoint: number;
  /** The checkpoint's encoded values by variable name. */
  values: Record<string, Uint8Array>;
  /** Where the job's local modules are laid out (see worker/module-layout.ts); absent: none. */
  moduleDir?: string;
  /** The local modules' paths relative to moduleDir (the bundle's `// files:` line). */
  modulePaths?: string[];
}

/** What one function gave at one checkpoint: the row's fields (JSON), or what it threw. */
export type FunctionOutcome =
  | { ok: true; value: { [key: string]: unknown } }
  | { ok: false; name: string; message: string; stack: string };

/**
 * How the checkpoint's context came about: `fresh` when it was set up for it (the first
 * checkpoint, or the last one's analysis left something behind); the thread's totals so far; and
 * why a context of this job cannot be reused at all, when it cannot.
 */
export interface ContextUse {
  fresh: boolean;
  /** Contexts this thread set up so far. */
  contexts: number;
  /** Checkpoints this thread computed in a reused context so far. */
  reused: number;
  notReused?: string;
}

/** Analysis thread → main thread. */
export type AnalysisThreadEvent =
  | { type: "stream"; id: number; name: StreamName; text: string }
  | { type: "result"; id: number; outcomes: FunctionOutcome[]; context: ContextUse; phases?: { [phase: string]: number }; window?: [number, number] }
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
/** Where the functions' output goes now; undefined while the job's own top level runs (its output would repeat at every checkpoint). */
let forwardTo: { id: number; post: (event: AnalysisThreadEvent) => void } | undefined;

/**
 * A context prepared for one job and one set of functions: the program's top level ran once, so
 * the functions (and the job's functions they call) stay warm from checkpoint to checkpoint.
 */
interface Prepared {
  key: string;
  /** The key without the functions: what a context set up before its functions came may be given them for. */
  setupKey: string;
  job: JobContext;
  /** Undefined while the context waits for its functions (set up ahead of them). */
  functions?: Function[];
  /** The names the setup's checkpoint restored, sorted and joined: a checkpoint restoring others gets a fresh context. */
  restoredNames: string;
  /** Restored names whose object was refilled in place (a const): only what a refill leaves is compared. */
  refilled: Set<string>;
  /** The state right after the setup's restore and the functions, or why it cannot be compared (then no checkpoint reuses the context). */
  baseline: StateRecord | string;
  readNames: () => unknown[];
  names: string[];
  global: Record<string | symbol, unknown>;
  statefulPrototypes: Set<object>;
}

let prepared: Prepared | undefined;
/** Counts for tests and logs: contexts set up, and checkpoints served by a reused one. */
const counts = { fresh: 0, reused: 0 };

function setupKey(command: AnalyzeCheckpointCommand): string {
  return [command.program.key, JSON.stringify(command.params), command.moduleDir ?? ""].join("\0");
}

function preparedKey(command: AnalyzeCheckpointCommand): string {
  return `${setupKey(command)}\0${command.functions?.key ?? ""}`;
}

const TDZ = Symbol("not initialised");

/** Reads every named binding (the program's and the bound globals') in one call; an uninitialised one reads as TDZ. */
function bindingReader(job: JobContext, names: readonly string[]): () => unknown[] {
  const body = names.map((name) => `try { out.push(${name}); } catch { out.push(tdz); }`).join("\n");
  const read = vm.runInContext(`(tdz) => { const out = [];\n${body}\nreturn out; }`, job.context) as (tdz: symbol) => unknown[];
  return () => read(TDZ);
}

/** Where the state of a prepared context that one checkpoint's analysis could leave behind is reached from. */
function stateRoots(p: Pick<Prepared, "readNames" | "names" | "global" | "refilled" | "functions" | "job">, restored: ReadonlySet<string>): StateRoots {
  const values = p.readNames();
  const host = new Set(p.job.hostNames);
  const roots: StateRoots = { deep: [], shallow: [], refilled: [], opaque: [p.global, ...[...host].filter((name) => name !== "params").map((name) => p.global[name])] };
  p.names.forEach((name, i) => {
    if (name === "params") return; // renewed before each checkpoint
    if (p.refilled.has(name)) roots.refilled.push([name, values[i]]);
    else if (!restored.has(name)) (host.has(name) ? roots.shallow : roots.deep).push([name, values[i]]);
  });
  // The global object: every key, host objects by identity, the rest (built-ins included) deeply.
  for (const key of Reflect.ownKeys(p.global)) {
    const d = Reflect.getOwnPropertyDescriptor(p.global, key);
    const value = d && "value" in d ? d.value : d;
    const name = `globalThis.${String(key)}`;
    if (key === "params") roots.shallow.push([name, undefined]); // renewed before each checkpoint
    else if (typeof key === "string" && (host.has(key) || restored.has(key))) roots.shallow.push([name, host.has(key) ? value : undefined]);
    else roots.deep.push([name, value]);
  }
  p.functions?.forEach((fn, i) => roots.deep.push([`function ${i}`, fn]));
  return roots;
}

/**
 * Runs the job's program in a new context and restores the checkpoint; then, when the command
 * brings them, the functions' program (addFunctions).
 */
function prepare(command: AnalyzeCheckpointCommand): Prepared {
  counts.fresh += 1;
  const job = new JobContext();
  job.begin(command.params, {
    write: (name, text) => forwardTo?.post({ type: "stream", id: forwardTo.id, name, text }),
    checkpoint: () => undefined,
  }, command.moduleDir);
  job.define(ENTRY_HOOK, () => undefined);
  // Replaced by addFunctions; defined now so that it is a host name, never bound.
  job.define(FUNCTIONS_HOOK, () => undefined);
  const programNames = command.program.declaredNames;
  // The functions' program declares no name at the top level but inside its own block (see
  // functionsProgram in analysis-runner.ts): the job's names are the ones the context must not bind.
  if (programNames) job.bindGlobals(programNames);
  scriptFor(command.program, PROGRAM_FILE).runInContext(job.context, { displayErrors: false });
  const names = [...new Set([...(programNames ?? []), ...job.boundGlobals])].filter((name) => IDENTIFIER.test(name));
  const readNames = bindingReader(job, names);
  const before = readNames();
  restoreCheckpoint(job, command.checkpoint, command.values);
  const after = readNames();
  const restored = new Set(Object.keys(command.values));
  // A restored const object was refilled in place (the same object before and after the restore).
  const refilled = new Set(names.filter((name, i) => restored.has(name) && typeof after[i] === "object" && after[i] !== null && after[i] === before[i]));
  const global = vm.runInContext("globalThis", job.context) as Record<string | symbol, unknown>;
  const statefulPrototypes = new Set<object>(vm.runInContext(
    "[...[[][Symbol.iterator](), ''[Symbol.iterator](), /x/g[Symbol.matchAll]('x')].map((it) => Object.getPrototypeOf(it)), WeakRef.prototype, FinalizationRegistry.prototype]", job.context) as object[]);
  for (const it of [[][Symbol.iterator](), ""[Symbol.iterator](), /x/g[Symbol.matchAll]("x")]) statefulPrototypes.add(Object.getPrototypeOf(it) as object);
  statefulPrototypes.add(WeakRef.prototype).add(FinalizationRegistry.prototype);
  const p: Prepared = {
    key: preparedKey(command), setupKey: setupKey(command), job, restoredNames: [...restored].sort().join(","), refilled, readNames, names, global, statefulPrototypes,
    baseline: "the analysis functions are not in the context yet",
  };
  if (command.functions) addFunctions(p, command, command.functions);
  return p;
}

/**
 * Runs the functions' program in a context set up for the job (by prepare) and takes the state
 * every later checkpoint's is compared with. Right after the setup's restore: nothing has run since.
 */
function addFunctions(p: Prepared, command: AnalyzeCheckpointCommand, functions: CompiledScript): void {
  const clash = (functions.declaredNames ?? []).filter((name) => p.job.boundGlobals.includes(name));
  if (clash.length > 0) throw new Error(`the analysis functions' program declares ${clash.join(", ")} at its top level, which the job's context has bound`);
  let fns: Function[] = [];
  p.job.define(FUNCTIONS_HOOK, (given: Function[]) => (fns = given));
  scriptFor(functions, ANALYSIS_FILE).runInContext(p.job.context, { displayErrors: false });
  p.functions = fns;
  p.key = preparedKey(command);
  const restored = new Set(p.restoredNames ? p.restoredNames.split(",") : []);
  if (command.program.declaredNames === undefined) p.baseline = "the program's top-level names are unknown";
  else if (command.program.hiddenState) p.baseline = command.program.hiddenState;
  else {
    try {
      p.baseline = recordState(stateRoots(p, restored), p.statefulPrototypes);
    } catch (err) {
      if (!(err instanceof UnverifiableState)) throw err;
      p.baseline = `the job's state holds ${err.message}`;
    }
  }
}

/**
 * The prepared context if this checkpoint may reuse it: same job, functions and parameters, and
 * nothing the last checkpoint's analysis did is left in it; or set up for this job ahead of its
 * functions, which are added now (nothing has run in it since). Otherwise it is disposed.
 */
function reusable(command: AnalyzeCheckpointCommand): Prepared | undefined {
  const p = prepared;
  if (!p) return undefined;
  prepared = undefined;
  const sameValues = Object.keys(command.values).sort().join(",") === p.restoredNames;
  if (!p.functions && command.functions && p.setupKey === setupKey(command) && sameValues) {
    try {
      addFunctions(p, command, command.functions);
    } catch (err) {
      p.job.dispose();
      throw err;
    }
    // Only where later checkpoints may reuse it too: otherwise the checkpoint's context is made
    // just for it, as every one of such a job's is.
    if (typeof p.baseline !== "string") return p;
    p.job.dispose();
    return undefined;
  }
  let reuse = false;
  if (p.key === preparedKey(command) && typeof p.baseline !== "string" && sameValues) {
    try {
      // Compared as it is walked: stops at the first difference, builds no second record.
      reuse = matchesState(p.baseline, stateRoots(p, new Set(Object.keys(command.values))), p.statefulPrototypes);
    } catch (err) {
      if (!(err instanceof UnverifiableState)) throw err;
    }
  }
  if (reuse) return p;
  p.job.dispose();
  return undefined;
}

async function analyzeCheckpoint(command: AnalyzeCheckpointCommand, post: (event: AnalysisThreadEvent) => void): Promise<void> {
  const { id } = command;
  const failure = new Promise<never>((_, reject) => (current = { id, fail: reject }));
  failure.catch(() => undefined);
  let p: Prepared | undefined;
  const clock = phaseClock();
  const begun = clock ? performance.timeOrigin + performance.now() : 0;
  try {
    let fresh = false;
    try {
      p = reusable(command);
      clock?.lap("state check");
      if (p) {
        counts.reused += 1;
        p.job.renewParams(command.params);
        restoreCheckpoint(p.job, command.checkpoint, command.values);
        clock?.lap("restore");
      } else {
        fresh = true;
        // Local ES modules that import TypeScript, as the job had them (worker/job-thread.ts).
        const preloading = command.moduleDir !== undefined && command.modulePaths ? preloadLocalEsm(command.moduleDir, command.modulePaths) : undefined;
        if (preloading) await preloading;
        p = prepare(command);
        clock?.lap("fresh context");
      }
    } catch (err) {
      p?.job.dispose();
      p = undefined;
      const { name, message, stack } = describeThrown(err);
      post({ type: "setup_failed", id, message: `${name}: ${message}`, stack });
      return;
    }
    const outcomes: FunctionOutcome[] = [];
    forwardTo = { id, post };
    for (const fn of command.call.map((i) => p!.functions![i])) {
      try {
        const returned = await Promise.race([fn(), failure]);
        outcomes.push({ ok: true, value: rowFields(returned, fn.name || "(anonymous)") });
      } catch (err) {
        outcomes.push({ ok: false, ...describeThrown(err) });
      }
    }
    forwardTo = undefined;
    clock?.lap("functions");
    // Nothing the functions scheduled runs later: a fresh context would have none of it.
    p.job.cancelTimers();
    post({ type: "result", id, outcomes, context: { fresh, contexts: counts.fresh, reused: counts.reused, ...(typeof p.baseline === "string" ? { notReused: p.baseline } : {}) }, ...(clock ? { phases: clock.ms, window: [begun, performance.timeOrigin + performance.now()] } : {}) });
    prepared = p;
  } finally {
    forwardTo = undefined;
    current = undefined;
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
  // One checkpoint at a time, in the order they came: the runner sends the next before this
  // one's result is back, so the thread goes straight on to it.
  let queue = Promise.resolve();
  port.on("message", (command: AnalyzeCheckpointCommand) => {
    if (command.type === "analyze") queue = queue.then(() => analyzeCheckpoint(command, post)).catch(() => undefined);
  });
}
