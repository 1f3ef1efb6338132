// Lets CommonJS code (a job's program, a cell, a local `.ts` module) require() a local ES module
// that imports a local `.ts` one, in the kernel and on workers alike. Node 20's require() of an ES
// module does not run module.register() hooks, so it fails on the `.ts` import; import() does run
// them. So before the code runs, the ES modules that need the hooks (runtime/esm-typescript-hooks.ts)
// are imported through them, dependencies first, and a later require() gets them as loaded. They
// are thus evaluated before the code that imports them starts (the kernel does the same, so a cell
// and a job see the same order). The hooks thread starts only for a set of files that has both an
// ES module and a TypeScript file.
import { readFileSync } from "node:fs";
import { register } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { MessageChannel } from "node:worker_threads";
import type { MessagePort } from "node:worker_threads";
import type { PreloadRequest, PreloadResponse } from "./esm-typescript-hooks";

// A dynamic import() that survives compilation to CommonJS (which would turn it into require).
const importEsm = new Function("url", "return import(url)") as (url: string) => Promise<unknown>;

const TYPESCRIPT_FILE = /\.[cm]?ts$/;

interface HooksLink {
  port: MessagePort;
  nextId: number;
  pending: Map<number, { resolve(order: string[]): void; reject(err: Error): void }>;
}

let hooks: HooksLink | undefined;
/** Sets of files (folder and paths) already imported in this thread. */
const preloaded = new Set<string>();

/** Registers the hooks in this thread (once); they stay for the thread's life. */
function startHooks(): HooksLink {
  if (hooks) return hooks;
  const { port1, port2 } = new MessageChannel();
  // By absolute URL: the worker's and the kernel's current directory play no part.
  register(pathToFileURL(join(__dirname, "esm-typescript-hooks.js")).href, { data: { port: port2 }, transferList: [port2] });
  const link: HooksLink = { port: port1, nextId: 1, pending: new Map() };
  port1.on("message", (response: PreloadResponse) => {
    const waiting = link.pending.get(response.id);
    if (!waiting) return;
    link.pending.delete(response.id);
    if (link.pending.size === 0) port1.unref();
    if ("order" in response) waiting.resolve(response.order);
    else waiting.reject(new Error(`finding the local ES modules to load first failed: ${response.error}`));
  });
  port1.unref();
  hooks = link;
  return link;
}

function preloadOrder(baseDir: string, paths: readonly string[]): Promise<string[]> {
  const link = startHooks();
  const id = link.nextId++;
  return new Promise((resolveOrder, reject) => {
    link.pending.set(id, { resolve: resolveOrder, reject });
    link.port.ref();
    const request: PreloadRequest = { id, baseDir, paths: [...paths] };
    link.port.postMessage(request);
  });
}

/** Whether the files may hold an ES module importing TypeScript (cheap: extensions, and a look at `.js` texts). */
function mayNeedHooks(baseDir: string, paths: readonly string[]): boolean {
  if (!paths.some((path) => TYPESCRIPT_FILE.test(path))) return false;
  return paths.some((path) => {
    if (path.endsWith(".mjs")) return true;
    if (!path.endsWith(".js")) return false;
    try {
      return /^[ \t]*(?:import|export)\b/m.test(readFileSync(resolve(baseDir, path), "utf8"));
    } catch {
      return false;
    }
  });
}

/**
 * Imports the ES modules among the local files `paths` (relative to `baseDir`, where they are
 * laid out) that import TypeScript, so CommonJS code may then require() them. Undefined when
 * nothing needs importing (no promise to wait for: most jobs). A module that fails to load (a
 * syntax error in a `.ts` it imports: the error names the file) rejects.
 */
export function preloadLocalEsm(baseDir: string, paths: readonly string[]): Promise<void> | undefined {
  const key = `${resolve(baseDir)}\0${[...paths].sort().join("\0")}`;
  if (preloaded.has(key)) return undefined;
  if (!mayNeedHooks(baseDir, paths)) {
    preloaded.add(key);
    return undefined;
  }
  return (async () => {
    for (const path of await preloadOrder(baseDir, paths)) await importEsm(pathToFileURL(resolve(baseDir, path)).href);
    preloaded.add(key);
  })();
}
