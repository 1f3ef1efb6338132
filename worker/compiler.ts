// Compiled programs by key, in the worker's main thread: a bundle is transpiled once, then every
// job that runs it (and the job thread recreated after a cancel) reuses the JavaScript.
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { CompileRequest, CompileResponse } from "./compiler-thread";
import { compiledText, programKey } from "./program";
import type { CompiledFunctions, CompiledProgram } from "./transpile";

export interface CompiledBundle extends CompiledProgram {
  key: string;
}

/** An analysis's functions' program compiled (compileFunctions). */
export interface CompiledFunctionsScript extends CompiledFunctions {
  key: string;
}

/** A bundle that does not parse; its message gives `bundle.ts:line:col`. */
export class BundleCompileError extends Error {
  constructor(readonly ename: string, message: string) {
    super(message);
    this.name = ename;
  }
}

export interface BundleCompilerOptions {
  /** Compiled programs kept; the least recently used go first. Default 256. */
  cacheSize?: number;
  /** The compiler thread ends after this long without work, giving its memory back. Default 20 000 ms. */
  idleMs?: number;
}

/** A request on the compiler thread: `settle` takes its successful response. */
interface PendingCompile {
  settle(response: Extract<CompileResponse, { ok: true }>): void;
  reject(err: Error): void;
}

export class BundleCompiler {
  private readonly cache = new Map<string, CompiledBundle>();
  private readonly functionsCache = new Map<string, CompiledFunctionsScript>();
  private readonly inFlight = new Map<string, Promise<CompiledBundle | CompiledFunctionsScript>>();
  private readonly pending = new Map<number, PendingCompile>();
  private readonly cacheSize: number;
  private readonly idleMs: number;
  private thread?: Worker;
  private idleTimer?: NodeJS.Timeout;
  private nextId = 1;

  constructor(options: BundleCompilerOptions = {}) {
    this.cacheSize = options.cacheSize ?? 256;
    this.idleMs = options.idleMs ?? 20_000;
  }

  /**
   * The cached program, without waiting; undefined when it must be compiled first. Bundles that
   * differ only in their parameters share one program (program.ts compiledText).
   */
  cached(source: string, entries: readonly string[]): CompiledBundle | undefined {
    const key = programKey(compiledText(source), entries);
    const hit = this.cache.get(key);
    if (hit) remember(this.cache, key, hit, this.cacheSize);
    return hit;
  }

  compile(source: string, entries: readonly string[]): Promise<CompiledBundle> {
    const hit = this.cached(source, entries);
    if (hit) return Promise.resolve(hit);
    const text = compiledText(source);
    const key = programKey(text, entries);
    return this.once(key, () => this.request<CompiledBundle>({ source: text, entries: [...entries] }, (response) => {
      const { id: _id, ok: _ok, ...program } = response as Extract<CompileResponse, { ok: true }> & CompiledProgram;
      const compiled: CompiledBundle = { key, ...program };
      remember(this.cache, key, compiled, this.cacheSize);
      return compiled;
    }));
  }

  /**
   * An analysis's functions' program (analysis-runner.ts functionsProgram), cached as programs
   * are; `withMap`: with its source map (for a traceback), which the first compile leaves out.
   */
  compileFunctions(source: string, withMap = false): Promise<CompiledFunctionsScript> {
    const key = programKey(`functions\0${source}`, []);
    const hit = this.functionsCache.get(key);
    if (hit && (!withMap || hit.mappings !== undefined)) {
      remember(this.functionsCache, key, hit, this.cacheSize);
      return Promise.resolve(hit);
    }
    return this.once(withMap ? `${key}\0map` : key, () => this.request<CompiledFunctionsScript>({ source, entries: [], functions: { withMap } }, (response) => {
      const compiled: CompiledFunctionsScript = { key, ...(response as { functions: CompiledFunctions }).functions };
      remember(this.functionsCache, key, compiled, this.cacheSize);
      return compiled;
    }));
  }

  /** A job's local .ts modules (path → TypeScript) as CommonJS (path → JavaScript), on the compiler thread. */
  transpileModules(modules: Record<string, string>): Promise<Record<string, string>> {
    return this.request({ source: "", entries: [], modules }, (response) => (response as { modules: Record<string, string> }).modules);
  }

  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    const thread = this.thread;
    this.thread = undefined;
    if (thread) await thread.terminate();
  }

  private ensureThread(): Worker {
    if (this.thread) return this.thread;
    const thread = new Worker(join(__dirname, "compiler-thread.js"));
    thread.on("message", (response: CompileResponse) => this.received(response));
    thread.on("error", (err) => this.threadEnded(thread, `the compiler thread failed: ${err.message}`));
    thread.on("exit", (code) => this.threadEnded(thread, `the compiler thread exited (code ${code})`));
    this.thread = thread;
    return thread;
  }

  /** The compilation under `key` already asked for, or `start`'s: one compile per key at a time. */
  private once<T extends CompiledBundle | CompiledFunctionsScript>(key: string, start: () => Promise<T>): Promise<T> {
    const running = this.inFlight.get(key);
    if (running) return running as Promise<T>;
    const compiled = start().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, compiled);
    return compiled;
  }

  private request<T>(request: Omit<CompileRequest, "id">, settle: (response: Extract<CompileResponse, { ok: true }>) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { settle: (response) => resolve(settle(response)), reject });
      clearTimeout(this.idleTimer);
      this.ensureThread().postMessage({ id, ...request } satisfies CompileRequest);
    });
  }

  private received(response: CompileResponse): void {
    const request = this.pending.get(response.id);
    if (!request) return;
    this.pending.delete(response.id);
    if (response.ok) request.settle(response);
    else request.reject(new BundleCompileError(response.name, response.message));
    if (this.pending.size === 0) {
      this.idleTimer = setTimeout(() => void this.close(), this.idleMs);
      this.idleTimer.unref();
    }
  }

  private threadEnded(thread: Worker, reason: string): void {
    if (this.thread !== thread) return;
    this.thread = undefined;
    for (const [id, request] of this.pending) {
      this.pending.delete(id);
      request.reject(new BundleCompileError("Error", `${reason}; the job could not be compiled`));
    }
  }
}

/** Adds (or refreshes) `key` as the most recently used; the least recently used beyond `size` go. */
function remember<T>(cache: Map<string, T>, key: string, value: T, size: number): void {
  cache.delete(key);
  cache.set(key, value);
  while (cache.size > size) cache.delete(cache.keys().next().value as string);
}
