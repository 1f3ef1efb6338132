// The fresh global scope each job runs in: Node's usual globals, `require` resolved from the
// job's local modules (laid out by worker/module-layout.ts) or else the worker's directory, a console whose output goes back to the worker, timers that end with the
// job, and the job's `params` and `jobtracker`.
import { Console } from "node:console";
import { readFileSync } from "node:fs";
import Module, { createRequire } from "node:module";
import { join } from "node:path";
import { Writable } from "node:stream";
import * as vm from "node:vm";
import { ParamLogger } from "../runtime/params";
import type { ParamValues } from "../runtime/params";
import { WorkerJobTracker } from "../runtime/shared/jobtracker";
import type { CheckpointSink, MetricSink } from "../runtime/shared/jobtracker";
import type { ClassLookup } from "../runtime/shared/value-codec";
import { COMPILED_DIR } from "./module-layout";

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

export type StreamName = "stdout" | "stderr";

export interface JobHooks {
  write(name: StreamName, text: string): void;
  checkpoint: CheckpointSink;
  /** Receives each value jobtracker.log records (none: logged values are checked and dropped). */
  metric?: MetricSink;
  /** Resolves once every checkpoint handed to `checkpoint` is stored. */
  flush?: () => Promise<void>;
}

/** Host globals a job sees besides the language's own (which every context has). */
const HOST_GLOBALS = [
  "Buffer", "URL", "URLSearchParams", "TextEncoder", "TextDecoder", "AbortController", "AbortSignal",
  "Event", "EventTarget", "MessageChannel", "MessagePort", "BroadcastChannel", "Blob", "atob", "btoa",
  "performance", "fetch", "Headers", "Request", "Response", "FormData", "structuredClone",
  "queueMicrotask", "crypto",
] as const;

/**
 * The language's globals every context has, as a fresh context lists them, less the ones that
 * cannot or need not be bound. A non-configurable global property (undefined, NaN, Infinity, and
 * `gc` once the job thread has exposed it) makes a `let` of that name a SyntaxError, so those are
 * out; globalThis is special, and eval stays a plain global so direct eval is unmistakable.
 */
const LANGUAGE_GLOBALS = (
  vm.runInNewContext("Object.getOwnPropertyNames(globalThis).filter((name) => Object.getOwnPropertyDescriptor(globalThis, name).configurable)") as string[]
).filter((name) => IDENTIFIER.test(name) && !["globalThis", "eval"].includes(name));

/** Prelude scripts by their text; a vm.Script is not tied to a context, so one serves every job with the same names. */
const preludes = new Map<string, vm.Script>();
const PRELUDE_CACHE_SIZE = 32;

function preludeScript(lets: readonly string[], consts: readonly string[]): vm.Script {
  const declare = (keyword: string, names: readonly string[]) => (names.length > 0 ? `${keyword} ${names.map((name) => `${name} = globalThis.${name}`).join(",\n  ")};\n` : "");
  const text = declare("let", lets) + declare("const", consts);
  let script = preludes.get(text);
  if (!script) {
    script = new vm.Script(text, { filename: "nbjob-globals.js" });
    preludes.set(text, script);
    if (preludes.size > PRELUDE_CACHE_SIZE) preludes.delete(preludes.keys().next().value as string);
  }
  return script;
}

// One require for every job: the module cache is shared, so a package loads once per worker.
const requireFromCwd = createRequire(join(process.cwd(), "[nbjob job]"));
/** A require per folder of local modules (one per set of files), so a module loads once per worker too. */
const requireFromModules = new Map<string, NodeJS.Require>();

/** The require a job sees: from its local modules' folder when it has one (they stand where the notebook was). */
function requireFor(moduleDir: string | undefined): NodeJS.Require {
  if (moduleDir === undefined) return requireFromCwd;
  let found = requireFromModules.get(moduleDir);
  if (!found) {
    found = createRequire(join(moduleDir, "[nbjob job]"));
    requireFromModules.set(moduleDir, found);
  }
  return found;
}

type LoaderFunction = (module: { _compile(code: string, filename: string): void }, filename: string) => void;

/**
 * The JavaScript the worker's compiler thread made for a laid-out local module
 * (worker/module-layout.ts: `<key>/.nbjob-js/<path under key>.js`); undefined if there is none.
 */
function compiledModule(filename: string): string | undefined {
  const match = /^(.*\/[0-9a-f]{64})\/(.+)$/.exec(filename);
  if (!match) return undefined;
  try {
    return readFileSync(join(match[1], COMPILED_DIR, `${match[2]}.js`), "utf8");
  } catch {
    return undefined;
  }
}

/**
 * Lets require() load a job's local .ts modules, as the notebook's engine does for cells: the
 * JavaScript compiled when they were laid out, else compiled here (the compiler then loads in
 * this thread, once).
 */
function registerTypeScriptExtension(): void {
  const extensions = (Module as unknown as { _extensions: Record<string, LoaderFunction> })._extensions;
  let transpile: ((source: string, fileName: string) => string) | undefined;
  for (const extension of [".ts", ".mts", ".cts"]) {
    if (extensions[extension]) continue;
    extensions[extension] = (module, filename) => {
      // Frames in the module show its TypeScript lines (its JavaScript carries an inline source map).
      process.setSourceMapsEnabled(true);
      const laidOut = compiledModule(filename);
      if (laidOut !== undefined) {
        module._compile(laidOut, filename);
        return;
      }
      if (!transpile) {
        const { loadTypeScript } = require("../runtime/typescript-loader") as typeof import("../runtime/typescript-loader");
        const { ts } = loadTypeScript("transpile");
        transpile = (source, fileName) => ts.transpileModule(source, {
          fileName,
          compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true },
        }).outputText;
      }
      module._compile(transpile(readFileSync(filename, "utf8"), filename), filename);
    };
  }
}
registerTypeScriptExtension();

/** The context whose job runs now; the shared console writes to it. */
let activeContext: JobContext | undefined;

function streamTo(name: StreamName): Writable {
  return new Writable({
    // Strings as printed: encoding them to UTF-8 here would turn a lone surrogate into U+FFFD.
    decodeStrings: false,
    write(chunk: Buffer | string, _encoding, done) {
      activeContext?.write(name, typeof chunk === "string" ? chunk : chunk.toString("utf8"));
      done();
    },
  });
}

// One console for all jobs (making one per job costs more than the job's context itself).
const jobConsole = new Console({ stdout: streamTo("stdout"), stderr: streamTo("stderr"), colorMode: false });

/**
 * A context made before its job is known (so a worker can have the next one ready while idle);
 * `begin` gives it the job's parameters and output hooks.
 */
export class JobContext {
  readonly context: vm.Context;
  private readonly sandbox: Record<string, unknown>;
  private readonly timeouts = new Set<NodeJS.Timeout>();
  private readonly intervals = new Set<NodeJS.Timeout>();
  private readonly immediates = new Set<NodeJS.Immediate>();
  private hooks?: JobHooks;
  private disposed = false;
  private bound = false;
  /** The names bindGlobals bound as script-scope lets. */
  private boundNames: string[] = [];
  private readonly hostKeys: Set<string>;
  /** Names given by `define`: hooks that may change, so never bound. */
  private readonly defined = new Set<string>();

  constructor() {
    const sandbox: Record<string, unknown> = {};
    const host = globalThis as unknown as Record<string, unknown>;
    for (const name of HOST_GLOBALS) if (host[name] !== undefined) sandbox[name] = host[name];
    sandbox.console = jobConsole;
    sandbox.process = process;
    sandbox.require = requireFromCwd;
    // CommonJS output of a bundle with imports writes `exports.__esModule`; give it somewhere to go.
    const moduleObject = { exports: {} as Record<string, unknown> };
    sandbox.module = moduleObject;
    sandbox.exports = moduleObject.exports;
    Object.assign(sandbox, this.timerFunctions());
    this.sandbox = sandbox;
    this.hostKeys = new Set([...Object.keys(sandbox), "params", "jobtracker"]);
    this.context = vm.createContext(sandbox, { name: "nbjob job" });
  }

  /** Makes the context the given job's: its parameters, its output and checkpoint hooks. */
  begin(params: ParamValues, hooks: JobHooks, moduleDir?: string): void {
    this.hooks = hooks;
    this.sandbox.require = requireFor(moduleDir);
    activeContext = this;
    this.sandbox.params = ParamLogger.forJob(params);
    this.sandbox.jobtracker = new WorkerJobTracker((name) => this.variableAccess(name), (index, values) => hooks.checkpoint(index, values), hooks.flush, hooks.metric);
  }

  /** Defines a global the program can call (used to receive its entry functions). */
  define(name: string, value: unknown): void {
    this.sandbox[name] = value;
    this.defined.add(name);
  }

  /**
   * Binds the globals (Math, JSON, Float64Array…, and the ones the sandbox gives: console,
   * Buffer, the timers, params, jobtracker…) as script-scope bindings, so the program reads them
   * like local variables. Without this every read of a global in a context made from a sandbox
   * object goes through V8's interceptor, 50–80x slower than in plain Node (see
   * bench/job-realm.ts). `declaredNames` are the names the scripts about to run declare in
   * the global scope (CompiledProgram.declaredNames): binding one of them would make the program
   * fail with "Identifier 'X' has already been declared", so they stay unbound. Call once, after
   * `begin` (params and jobtracker are the job's) and before the program runs.
   * `assignedNames` (CompiledProgram.assignedNames): the names the program may assign. The others
   * are bound as consts, so V8 knows `Math.sqrt` is the built-in and inlines it (a loop of Math
   * calls runs 1.1–1.25x faster, as fast as in plain Node). The assigned ones, `params` (renewParams)
   * and, without the list, all of them are `let`s, so a sloppy-mode program that assigns a global
   * (`Math = mine`) keeps working.
   */
  bindGlobals(declaredNames: Iterable<string>, assignedNames?: readonly string[]): void {
    if (this.bound) return;
    this.bound = true;
    const skip = new Set([...declaredNames, ...this.defined]);
    const names = new Set<string>();
    for (const name of [...LANGUAGE_GLOBALS, ...Object.keys(this.sandbox)]) {
      if (!skip.has(name) && IDENTIFIER.test(name)) names.add(name);
    }
    this.boundNames = [...names];
    const assigned = assignedNames && new Set(assignedNames);
    const reassignable = (name: string) => assigned === undefined || name === "params" || assigned.has(name);
    if (names.size > 0) preludeScript(this.boundNames.filter(reassignable), this.boundNames.filter((name) => !reassignable(name))).runInContext(this.context);
  }

  /** The globals bindGlobals bound (the ones the program may assign as lets, the others as consts). */
  get boundGlobals(): readonly string[] {
    return this.boundNames;
  }

  /**
   * The names the context's global object got from the worker (console, process, require,
   * timers, params, jobtracker, hooks); not the program's own global vars and functions, which
   * vm also writes to the sandbox.
   */
  get hostNames(): string[] {
    return [...Object.keys(this.sandbox).filter((name) => this.hostKeys.has(name)), ...this.defined];
  }

  /**
   * Gives a reused context fresh parameters (a job's are read-only, but a nested object or array
   * in them can be changed in place).
   */
  renewParams(params: ParamValues): void {
    this.sandbox.params = ParamLogger.forJob(params);
    if (this.boundNames.includes("params")) vm.runInContext("params = globalThis.params;", this.context);
  }

  /** The job's tracker (made by `begin`). */
  get jobtracker(): WorkerJobTracker {
    return this.sandbox.jobtracker as WorkerJobTracker;
  }

  /**
   * Finds a class (or any function) declared at the top level of the program in this context by
   * name; undefined when there is none or it is not initialised yet. Built-in names (Map,
   * Float64Array) give this context's own.
   */
  classLookup(): ClassLookup {
    const found = new Map<string, Function | undefined>();
    return (name: string) => {
      if (typeof name !== "string" || !IDENTIFIER.test(name)) return undefined;
      if (found.has(name)) return found.get(name);
      let value: Function | undefined;
      try {
        value = vm.runInContext(`typeof ${name} === "function" ? ${name} : undefined`, this.context) as Function | undefined;
      } catch {
        value = undefined; // declared with class/let but not reached yet
      }
      if (value !== undefined) found.set(name, value);
      return value;
    };
  }

  write(name: StreamName, text: string): void {
    if (this.hooks && !this.disposed) this.hooks.write(name, text);
  }

  /** Ends what the job left behind (timers, intervals), so nothing of it runs during the next job. */
  dispose(): void {
    this.disposed = true;
    if (activeContext === this) activeContext = undefined;
    this.cancelTimers();
  }

  /** Ends the timers, intervals and immediates still pending, keeping the context usable. */
  cancelTimers(): void {
    for (const t of this.timeouts) clearTimeout(t);
    for (const t of this.intervals) clearInterval(t);
    for (const i of this.immediates) clearImmediate(i);
    this.timeouts.clear();
    this.intervals.clear();
    this.immediates.clear();
  }

  private variableAccess(name: string): { get: () => unknown; set: (value: unknown) => void } {
    const get = vm.runInContext(`(() => ${name})`, this.context) as () => unknown;
    try {
      get();
    } catch (err) {
      // Declared but not yet initialised (the checkpointer is registered before its `let`) is fine.
      if (!/before initialization/.test(String((err as Error).message))) throw err;
    }
    const set = vm.runInContext(`((value) => { ${name} = value; })`, this.context) as (value: unknown) => void;
    return { get, set };
  }

  private timerFunctions(): Record<string, unknown> {
    return {
      setTimeout: (callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
        if (this.disposed) return undefined;
        const timer = setTimeout(() => {
          this.timeouts.delete(timer);
          callback(...args);
        }, ms);
        this.timeouts.add(timer);
        return timer;
      },
      clearTimeout: (timer: NodeJS.Timeout | undefined) => {
        if (!timer) return;
        this.timeouts.delete(timer);
        clearTimeout(timer);
      },
      setInterval: (callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
        if (this.disposed) return undefined;
        const timer = setInterval(callback, ms, ...args);
        this.intervals.add(timer);
        return timer;
      },
      clearInterval: (timer: NodeJS.Timeout | undefined) => {
        if (!timer) return;
        this.intervals.delete(timer);
        clearInterval(timer);
      },
      setImmediate: (callback: (...args: unknown[]) => void, ...args: unknown[]) => {
        if (this.disposed) return undefined;
        const immediate = setImmediate(() => {
          this.immediates.delete(immediate);
          callback(...args);
        });
        this.immediates.add(immediate);
        return immediate;
      },
      clearImmediate: (immediate: NodeJS.Immediate | undefined) => {
        if (!immediate) return;
        this.immediates.delete(immediate);
        clearImmediate(immediate);
      },
    };
  }
}
