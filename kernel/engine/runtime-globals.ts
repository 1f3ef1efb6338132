// The names every cell sees without importing them (display, input, SnippetCollector, ...):
// whichever of them the package's runtime entry exports, with where their types are.
import { join } from "node:path";
import { RUNTIME_TYPES_MODULE } from "./runtime-types";

/** The globals API.md promises; the runtime entry may not export all of them yet. */
export const RUNTIME_GLOBAL_NAMES = ["display", "input", "nbjob", "SnippetCollector", "ParamLogger", "DBWrapper", "Client", "jobtracker"] as const;

export interface RuntimeGlobal {
  name: string;
  /** The value; the first call loads the runtime (pg, the store, ...), so it is called on first use. */
  load(): unknown;
  /** The module that declares its type, as cells' programs name it (runtime-types.ts). */
  typesFrom: string;
}

const RUNTIME_DIR = join(__dirname, "..", "..", "runtime");

/**
 * The runtime entry (no extension: index.js to run, index.d.ts to type-check). A cell's
 * `import ... from "nbjob"` means this module, the one the globals come from, wherever the
 * kernel runs: in nbjob's own checkout (examples/), where no node_modules holds an "nbjob", and
 * in a project with another copy installed, whose classes would not be the globals' classes.
 */
export const RUNTIME_ENTRY = join(RUNTIME_DIR, "index");

/** The package name that imports and require() in cells resolve to RUNTIME_ENTRY. */
export const PACKAGE_NAME = "nbjob";

let entryExports: Record<string, unknown> | undefined;

function loadEntry(): Record<string, unknown> {
  if (entryExports) return entryExports;
  const entry = RUNTIME_ENTRY;
  try {
    entryExports = require(entry) as Record<string, unknown>;
  } catch (error) {
    // A broken runtime entry (e.g. one of its modules fails to load) still leaves display and input.
    process.stderr.write(`nbjob engine: could not load ${entry}: ${error instanceof Error ? error.message : String(error)}\n`);
    entryExports = {};
    for (const [name, file] of [["display", "display"], ["input", "input"]] as const) {
      try {
        entryExports[name] = (require(join(RUNTIME_DIR, file)) as Record<string, unknown>)[name];
      } catch {
        // Reported above: the runtime does not load.
      }
    }
  }
  return entryExports;
}

/**
 * The globals, whose values load on first use: the runtime entry pulls in pg and the job
 * store, which a kernel should not pay for at start-up (in time and memory) when a notebook
 * never touches them.
 */
export function runtimeGlobals(): RuntimeGlobal[] {
  return RUNTIME_GLOBAL_NAMES.map((name) => ({ name, load: () => loadEntry()[name], typesFrom: RUNTIME_TYPES_MODULE }));
}
