// Loads the TypeScript compiler (the `typescript` 6 package, ~9 MB of JavaScript) with
// V8's code cache kept under $NBJOB_HOME/cache. Node 20 has no built-in compile cache (Node 22's
// module.enableCompileCache), and a general one (v8-compile-cache) would hook every module the
// notebook requires and cache only what is compiled at load. Here the cache is written once the
// caller has done its first real work, so it also holds the functions compiled lazily for it:
// a worker's first transpile waits about half as long (0.54 s → 0.27 s), a kernel loads the
// compiler in ~0.1 s instead of ~0.3 s.
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import Module, { createRequire, wrap } from "node:module";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import { Script } from "node:vm";
import type { ts as TypeScript } from "ts-morph";

type TypeScriptApi = typeof TypeScript;

/** The compiler: the `typescript` package nbjob depends on. */
export const COMPILER_BUNDLE = "typescript/lib/typescript.js";

// ts-morph's own copy of the compiler (@ts-morph/common bundles one, which it loads with
// `require("./typescript")`): the compiler above is registered under its name as well, so
// ts-morph works with the same compiler, one version in every report, loaded once.
const TS_MORPH_BUNDLE = "@ts-morph/common/dist/typescript.js";

/** Where code caches go: NBJOB_HOME's rule (store/config.ts), without loading the store here. */
function cacheDir(): string {
  const home = process.env.NBJOB_HOME?.trim() ? process.env.NBJOB_HOME : join(homedir(), ".nbjob");
  return join(home, "cache");
}

/**
 * The compiler, from the code cache of `purpose` when there is a valid one. Each purpose (the
 * kernel's type checks, a worker's transpiles) keeps its own cache, since each holds the
 * functions its first use compiled. `saveCache()` writes it after that first use; it does
 * nothing when the cache was accepted.
 */
export function loadTypeScript(purpose: string): { ts: TypeScriptApi; saveCache: () => void } {
  const file = require.resolve(COMPILER_BUNDLE);
  const stat = statSync(file);
  // The cache is only valid for this exact file and this V8 (V8 also rejects a mismatch itself).
  const key = createHash("sha256").update(`${file}\0${stat.size}\0${stat.mtimeMs}\0${process.version}\0${process.arch}`).digest("hex").slice(0, 16);
  const cacheFile = join(cacheDir(), `typescript-${purpose}-${key}.v8cache`);
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // First use: saveCache() makes it.
  }
  const script = new Script(wrap(readFileSync(file, "utf8")), { filename: file, cachedData });
  // Registered as Node would, so ts-morph's own require() of the bundle gets this instance.
  const moduleObject = new Module(file, module);
  moduleObject.filename = file;
  moduleObject.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(dirname(file));
  (script.runInThisContext() as (...args: unknown[]) => void).call(moduleObject.exports, moduleObject.exports, createRequire(file), moduleObject, file, dirname(file));
  moduleObject.loaded = true;
  require.cache[file] = moduleObject;
  try {
    require.cache[require.resolve(TS_MORPH_BUNDLE)] = moduleObject;
  } catch {
    // ts-morph is not installed (a worker's transpiles need the compiler alone).
  }
  let needsSaving = cachedData === undefined || script.cachedDataRejected === true;
  return {
    ts: moduleObject.exports as TypeScriptApi,
    saveCache() {
      if (!needsSaving) return;
      needsSaving = false;
      try {
        mkdirSync(dirname(cacheFile), { recursive: true, mode: 0o700 });
        const partial = `${cacheFile}.${process.pid}.tmp`;
        writeFileSync(partial, script.createCachedData(), { mode: 0o600 });
        renameSync(partial, cacheFile);
        // Caches of other compiler files or Node versions (an upgrade) are never read again.
        const prefix = `typescript-${purpose}-`;
        for (const name of readdirSync(dirname(cacheFile))) {
          if (name.startsWith(prefix) && name.endsWith(".v8cache") && name !== basename(cacheFile)) rmSync(join(dirname(cacheFile), name), { force: true });
        }
      } catch {
        // A read-only home only costs speed.
      }
    },
  };
}

/**
 * The version of the compiler loadTypeScript() loads ("6.0.3"), read from the head of its file
 * without loading it; undefined for an unusual layout of the package.
 */
export function compilerVersion(): string | undefined {
  try {
    const head = Buffer.alloc(256 * 1024);
    const fd = openSync(require.resolve(COMPILER_BUNDLE), "r");
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    return /\bvar version = "([^"]+)"/.exec(head.toString("utf8"))?.[1];
  } catch {
    return undefined;
  }
}
