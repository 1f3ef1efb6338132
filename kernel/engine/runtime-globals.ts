// The names every cell sees without importing them (display, input, SnippetCollector, ...):
// whichever of them the package's runtime entry exports, with where their types are.
import { join } from "node:path";

/** The globals API.md promises; the runtime entry may not export all of them yet. */
export const RUNTIME_GLOBAL_NAMES = ["display", "input", "nbjob", "SnippetCollector", "ParamLogger", "DBWrapper", "Client", "jobtracker"] as const;

export interface RuntimeGlobal {
  name: string;
  value: unknown;
  /** Module path (no extension) whose .d.ts declares it. */
  typesFrom: string;
}

const RUNTIME_DIR = join(__dirname, "..", "..", "runtime");

function tryRequire(path: string): Record<string, unknown> | undefined {
  try {
    return require(path) as Record<string, unknown>;
  } catch (error) {
    process.stderr.write(`nbjob engine: could not load ${path}: ${error instanceof Error ? error.message : String(error)}\n`);
    return undefined;
  }
}

export function runtimeGlobals(): RuntimeGlobal[] {
  const entry = join(RUNTIME_DIR, "index");
  const entryExports = tryRequire(entry);
  if (entryExports) {
    return RUNTIME_GLOBAL_NAMES.filter((name) => entryExports[name] !== undefined).map((name) => ({ name, value: entryExports[name], typesFrom: entry }));
  }
  // A broken runtime entry (e.g. one of its modules fails to load) still leaves display and input.
  const globals: RuntimeGlobal[] = [];
  for (const [name, file] of [["display", "display"], ["input", "input"]] as const) {
    const module = tryRequire(join(RUNTIME_DIR, file));
    if (module?.[name] !== undefined) globals.push({ name, value: module[name], typesFrom: join(RUNTIME_DIR, file) });
  }
  return globals;
}
