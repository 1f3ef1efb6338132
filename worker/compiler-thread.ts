// The compiler thread: transpiles bundles on request. It holds the TypeScript compiler (tens of
// MiB), so the worker starts it only when a bundle is not in its cache and ends it when idle.
import { parentPort } from "node:worker_threads";
import { transpileProgram } from "./transpile";
import type { CompiledProgram } from "./transpile";

export interface CompileRequest {
  id: number;
  source: string;
  entries: string[];
}

export type CompileResponse =
  | ({ id: number; ok: true } & CompiledProgram)
  | { id: number; ok: false; name: string; message: string };

if (parentPort) {
  const port = parentPort;
  port.on("message", (request: CompileRequest) => {
    let response: CompileResponse;
    try {
      response = { id: request.id, ok: true, ...transpileProgram(request.source, request.entries) };
    } catch (err) {
      response = { id: request.id, ok: false, name: (err as Error).name, message: (err as Error).message };
    }
    port.postMessage(response);
  });
}
