// Compiled programs by key, in the worker's main thread: a bundle is transpiled once, then every
// job that runs it (and the job thread recreated after a cancel) reuses the JavaScript.
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { CompileRequest, CompileResponse } from "./compiler-thread";
import { compiledText, programKey } from "./program";
import type { CompiledProgram } from "./transpile";

export interface CompiledBundle extends CompiledProgram {
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

interface PendingCompile {
  resolve(program: CompiledBundle): void;
  reject(err: Error): void;
  key: string;
  /** A request for local modules (transpileModules): resolved with path → JavaScript. */
  modules?: (js: Record<string, string>) => void;
}

export class BundleCompiler {
  private readonly cache = new Map<string, CompiledBundle>();
  private readonly inFlight = new Map<string, Promise<CompiledBundle>>();
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
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
    }
    return hit;
  }

  compile(source: string, entries: readonly string[]): Promise<CompiledBundle> {
    const hit = this.cached(source, entries);
    if (hit) return Promise.resolve(hit);
    const text = compiledText(source);
    const key = programKey(text, entries);
    const running = this.inFlight.get(key);
    if (running) return running;
    const compiled = new Promise<CompiledBundle>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject, key });
      clearTimeout(this.idleTimer);
      const request: CompileRequest = { id, source: text, entries: [...entries] };
      this.ensureThread().postMessage(request);
    }).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, compiled);
    return compiled;
  }

  /** A job's local .ts modules (path → TypeScript) as CommonJS (path → JavaScript), on the compiler thread. */
  transpileModules(modules: Record<string, string>): Promise<Record<string, string>> {
    return new Promise<Record<string, string>>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve: () => undefined, reject, key: "", modules: resolve });
      clearTimeout(this.idleTimer);
      const request: CompileRequest = { id, source: "", entries: [], modules };
      this.ensureThread().postMessage(request);
    });
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

  private received(response: CompileResponse): void {
    const request = this.pending.get(response.id);
    if (!request) return;
    this.pending.delete(response.id);
    if (response.ok && "modules" in response) {
      request.modules?.(response.modules);
    } else if (response.ok) {
      const { id: _id, ok: _ok, ...program } = response;
      const compiled: CompiledBundle = { key: request.key, ...program };
      this.cache.set(request.key, compiled);
      while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value as string);
      request.resolve(compiled);
    } else {
      request.reject(new BundleCompileError(response.name, response.message));
    }
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
