// The compiler thread: transpiles bundles on request. It holds the TypeScript compiler (tens of
// MiB), so the worker starts it only when a bundle is not in its cache and ends it when idle.
import { parentPort } from "node:worker_threads";
import { transpileFunctions, transpileLocalModule, transpileProgram } from "./transpile";
import type { CompiledFunctions, CompiledProgram } from "./transpile";

export interface CompileRequest {
  id: number;
  source: string;
  entries: string[];
  /** Instead of a bundle: a job's local .ts modules (path → TypeScript), for worker/module-layout.ts. */
  modules?: Record<string, string>;
  /** Instead of a bundle: an analysis's functions' program (`source`), with its source map or not. */
  functions?: { withMap: boolean };
}

export type CompileResponse =
  | ({ id: number; ok: true } & CompiledProgram)
  | { id: number; ok: true; modules: Record<string, string> }
  | { id: number; ok: true; functions: CompiledFunctions }
  | { id: number; ok: false; name: string; message: string };

if (parentPort) {
  const port = parentPort;
  port.on("message", (request: CompileRequest) => {
    let response: CompileResponse;
    try {
      if (request.modules) {
        response = { id: request.id, ok: true, modules: Object.fromEntries(Object.entries(request.modules).map(([path, text]) => [path, transpileLocalModule(text, path)])) };
      } else if (request.functions) {
        response = { id: request.id, ok: true, functions: transpileFunctions(request.source, request.functions.withMap) };
      } else {
        response = { id: request.id, ok: true, ...transpileProgram(request.source, request.entries) };
      }
    } catch (err) {
      response = { id: request.id, ok: false, name: (err as Error).name, message: (err as Error).message };
    }
    port.postMessage(response);
  });
}
