// The compiler thread: transpiles bundles on request. It holds the TypeScript compiler (tens of
// MiB), so the worker starts it only when a bundle is not in its cache and ends it when idle.
import { parentPort, workerData } from "node:worker_threads";
import { SpareCpu, threadCpuMicros } from "../runtime/shared/spare-cpu";
import { transpileLocalModule, transpileProgram } from "./transpile";
import type { CompiledProgram } from "./transpile";

export interface CompileRequest {
  id: number;
  source: string;
  entries: string[];
  /** Instead of a bundle: a job's local .ts modules (path → TypeScript), for worker/module-layout.ts. */
  modules?: Record<string, string>;
}

export type CompileResponse =
  | ({ id: number; ok: true } & CompiledProgram)
  | { id: number; ok: true; modules: Record<string, string> }
  | { id: number; ok: false; name: string; message: string };

export interface CompilerThreadData {
  /** A program like the ones this thread will be asked for, compiled over and over once the thread is idle (see warmUp). */
  warmUp?: string;
}

// How many times the warm-up compiles its program: measured, a small program's compile took
// 4-10 ms (5-40 ms with both cores busy) at one compile every few hundred milliseconds, ~1 ms
// once V8 had optimised the compiler, which took a few hundred compiles.
const WARM_UP_STEPS = 300;
// How long the warm-up waits, when the thread has just worked or the machine has no spare core.
const WARM_UP_WAIT_MS = 200;

if (parentPort) {
  const port = parentPort;
  let lastRequestAt = 0;
  port.on("message", (request: CompileRequest) => {
    let response: CompileResponse;
    try {
      response = request.modules
        ? { id: request.id, ok: true, modules: Object.fromEntries(Object.entries(request.modules).map(([path, text]) => [path, transpileLocalModule(text, path)])) }
        : { id: request.id, ok: true, ...transpileProgram(request.source, request.entries) };
    } catch (err) {
      response = { id: request.id, ok: false, name: (err as Error).name, message: (err as Error).message };
    }
    port.postMessage(response);
    lastRequestAt = performance.now();
  });
  const { warmUp } = (workerData ?? {}) as CompilerThreadData;
  if (warmUp) warmUpWhileIdle(warmUp, () => performance.now() - lastRequestAt >= WARM_UP_WAIT_MS);
}

/**
 * Compiles `source` WARM_UP_STEPS times in the background, so the compiler's code is optimised
 * before the next requests come. A worker's analyses bring new functions a few at a time, each
 * compiled before its first checkpoint can run: too seldom for V8 to optimise the compiler, so
 * each compile ran slowly, and V8 optimised the compiler's functions bit by bit while the next
 * analyses computed, taking CPU from them. One compile at a time, each followed by a rest as long
 * as it took (half a core at most), only while no request has just come and other processes
 * (this worker's jobs included) leave a core and a half free: never worth slowing a job.
 */
function warmUpWhileIdle(source: string, quiet: () => boolean): void {
  const spare = new SpareCpu(threadCpuMicros);
  let left = WARM_UP_STEPS;
  const step = () => {
    if (left === 0) return;
    if (!quiet() || !spare.hasSpareCore()) {
      setTimeout(step, WARM_UP_WAIT_MS).unref();
      return;
    }
    left -= 1;
    const started = performance.now();
    try {
      transpileProgram(source, []);
    } catch {
      return; // a program that does not compile warms nothing: given up
    }
    setTimeout(step, Math.max(1, performance.now() - started)).unref();
  };
  setTimeout(step, WARM_UP_WAIT_MS).unref();
}
