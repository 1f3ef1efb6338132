// The environment a job ran in, as the worker sees it: Node's version, nbjob's version, a hash of
// the lock files, and the version of every package the bundle imports (resolved from the
// worker's directory, as a job's `require` resolves them). Host and worker are on the job row.
//
// Computed once per set of import lines (a sweep's bundles differ only in parameters, so they
// share one computation) and stored once by content; linked to the job after its final write,
// so a job never waits for it.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { builtinModules } from "node:module";
import { packagesOfSource, packageSetKey } from "../runtime/shared/bundle-packages";
import { getBundle, linkJobEnvironments } from "../store";
import type { Db, EnvironmentInput } from "../store";

/** The nbjob checkout this code runs from (dist/worker/ → the root). */
const NBJOB_ROOT = resolve(__dirname, "..", "..");

let processFacts: { node_version: string; nbjob_version: string; lockfile_hash: string | null } | undefined;

function fileHash(path: string): string | undefined {
  try {
    return createHash("sha256").update(readFileSync(path)).digest("hex");
  } catch {
    return undefined;
  }
}

/**
 * What is the same for every job of this worker process. The lock file hash covers nbjob's own
 * package-lock.json and, when the worker runs from another project, that project's lock file
 * too (a job's imports resolve from there): either changing changes the hash.
 */
export function processEnvironment(cwd = process.cwd()): { node_version: string; nbjob_version: string; lockfile_hash: string | null } {
  if (processFacts && cwd === process.cwd()) return processFacts;
  const nbjobVersion = (JSON.parse(readFileSync(join(NBJOB_ROOT, "package.json"), "utf8")) as { version?: string }).version ?? "0.0.0";
  const parts: string[] = [];
  const own = fileHash(join(NBJOB_ROOT, "package-lock.json"));
  if (own) parts.push(`nbjob package-lock.json ${own}`);
  if (resolve(cwd) !== NBJOB_ROOT) {
    const project = fileHash(join(cwd, "package-lock.json"));
    if (project) parts.push(`project package-lock.json ${project}`);
  }
  const facts = {
    node_version: process.version,
    nbjob_version: nbjobVersion,
    lockfile_hash: parts.length ? createHash("sha256").update(parts.join("\n")).digest("hex") : null,
  };
  if (cwd === process.cwd()) processFacts = facts;
  return facts;
}

/** `lodash/fp` → `lodash`, `@scope/pkg/x` → `@scope/pkg`; undefined for relative paths, builtins and URLs. */
export function packageName(specifier: string): string | undefined {
  if (specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("node:") || /^[a-z][a-z0-9+.-]*:/i.test(specifier)) return undefined;
  const parts = specifier.split("/");
  const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
  if (builtinModules.includes(name)) return undefined;
  return name;
}

/** The installed version of each package, found from `cwd` the way Node's require looks (node_modules up the tree). */
export function packageVersions(names: Iterable<string>, cwd = process.cwd()): { [name: string]: string } {
  const requireFromCwd = createRequire(join(cwd, "[nbjob job]"));
  const out: { [name: string]: string } = {};
  for (const name of [...new Set(names)].sort()) {
    let version = "not installed";
    for (const dir of requireFromCwd.resolve.paths(name) ?? []) {
      const manifest = join(dir, name, "package.json");
      if (!existsSync(manifest)) continue;
      try {
        version = (JSON.parse(readFileSync(manifest, "utf8")) as { version?: string }).version ?? "unknown";
      } catch {
        version = "unknown";
      }
      break;
    }
    out[name] = version;
  }
  return out;
}

/** Lines that can hold an import: the cache key (bundles differing only in other lines import the same). */
function importLines(source: string): string {
  return source.split("\n").filter((line) => /\b(import|require|from)\b/.test(line) || line.startsWith("// packages: ")).join("\n");
}

// The scanner runs in a short-lived thread: the TypeScript compiler is tens of MiB that a worker
// should not keep for the rare new set of imports.
const SCANNER = `
const { parentPort, workerData } = require("node:worker_threads");
const { loadTypeScript } = require(workerData.loader);
const { ts } = loadTypeScript("transpile");
const info = ts.preProcessFile(workerData.source, true, true);
parentPort.postMessage(info.importedFiles.map((f) => f.fileName));
`;

/** Module specifiers the source imports or requires (static and dynamic), found by TypeScript's own pre-processor. */
export function importedSpecifiers(source: string): Promise<string[]> {
  if (!/\b(import|require)\b/.test(source)) return Promise.resolve([]);
  return new Promise((resolvePromise, reject) => {
    const thread = new Worker(SCANNER, { eval: true, workerData: { source, loader: join(__dirname, "..", "runtime", "typescript-loader.js") } });
    let answered = false;
    thread.once("message", (specifiers: string[]) => {
      answered = true;
      resolvePromise(specifiers);
      void thread.terminate();
    });
    thread.once("error", reject);
    thread.once("exit", (code) => {
      if (!answered) reject(new Error(`the import scanner thread exited with code ${code}`));
    });
  });
}

/**
 * The environment of a bundle's job on this worker. Packages the bundle pins (its `// packages:`
 * line) came from the npm registry into the worker's package cache (worker/package-cache.ts):
 * they say so, with the cache folder; a dependency nested under another package is named
 * `parent > name`. Any other imported package resolved from the worker's directory.
 */
export async function bundleEnvironment(source: string, cwd = process.cwd()): Promise<EnvironmentInput> {
  const names = (await importedSpecifiers(source)).map(packageName).filter((name): name is string => name !== undefined);
  const pins = packagesOfSource(source);
  const packages: { [name: string]: string } = {};
  const sources: { [name: string]: string } = {};
  if (Object.keys(pins).length > 0) {
    const where = `npm registry → $NBJOB_HOME/cache/packages/${packageSetKey(pins).slice(0, 12)} (pinned by the notebook's project)`;
    for (const [place, pin] of Object.entries(pins)) {
      const name = place.split("node_modules/").slice(1).map((part) => part.replace(/\/$/, "")).join(" > ");
      packages[name] = pin.version;
      sources[name] = where;
    }
  }
  const unpinned = names.filter((name) => !pins[`node_modules/${name}`]);
  return { ...processEnvironment(cwd), packages: { ...packageVersions(unpinned, cwd), ...packages }, package_sources: sources };
}

/** import lines → the environment of bundles with them; bundle hash → import lines. Small: a worker sees few. */
const byImports = new Map<string, Promise<EnvironmentInput>>();
const importsOfBundle = new Map<string, string>();
const CACHE_SIZE = 256;

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.set(key, value);
  if (map.size > CACHE_SIZE) map.delete(map.keys().next().value as K);
}

/**
 * The environment of a job of `bundleHash` (computed on first use). `source`: the bundle's source
 * when the worker already has it from the store (the claim brings it), so no query is needed; a
 * sweep's jobs each have their own bundle, but their import lines are the same, so the
 * environment is computed once for all of them. Without it the bundle is read from the store
 * once per bundle hash.
 */
export async function environmentFor(db: Db, bundleHash: string, source?: string): Promise<EnvironmentInput> {
  let key = source !== undefined ? importLines(source) : importsOfBundle.get(bundleHash);
  if (key === undefined) {
    const bundle = await getBundle(db, bundleHash);
    if (!bundle) throw new Error(`bundle ${bundleHash.slice(0, 12)} is not in the store`);
    source = bundle.source;
    key = importLines(source);
    remember(importsOfBundle, bundleHash, key);
  }
  let env = byImports.get(key);
  if (!env) {
    const text = source ?? (await getBundle(db, bundleHash))?.source ?? "";
    const cacheKey = key;
    env = bundleEnvironment(text);
    // A failure is not cached: the next job tries again.
    env.catch(() => byImports.delete(cacheKey));
    remember(byImports, key, env);
  }
  return env;
}

/**
 * Links are written in batches: they gather for LINK_DELAY_MS (and while the previous UPDATE is
 * in flight), so a busy worker spends one statement on many jobs and an idle one a single small
 * statement a moment after the job ended.
 */
const LINK_DELAY_MS = 100;
interface LinkBatch {
  links: Map<number, EnvironmentInput>;
  written: Promise<void>;
}
const linkState = new WeakMap<Db, { gathering?: LinkBatch; last?: Promise<void> }>();

function linkLater(db: Db, jobId: number, env: EnvironmentInput): Promise<void> {
  let state = linkState.get(db);
  if (!state) linkState.set(db, (state = {}));
  if (!state.gathering) {
    const links = new Map<number, EnvironmentInput>();
    const batchState = state;
    const delay = new Promise((resolve) => setTimeout(resolve, LINK_DELAY_MS));
    const written = Promise.all([(state.last ?? Promise.resolve()).catch(() => undefined), delay]).then(async () => {
      // From here on new links go to the next batch.
      if (batchState.gathering?.links === links) batchState.gathering = undefined;
      await linkJobEnvironments(db, links);
    });
    state.gathering = { links, written };
    state.last = written;
  }
  state.gathering.links.set(jobId, env);
  return state.gathering.written;
}

/**
 * Links a finished job to the environment it ran in (only if it has none yet). `source`: the
 * job's bundle source as read from the store, when the worker has it (see environmentFor).
 */
export async function recordJobEnvironment(db: Db, jobId: number, bundleHash: string, source?: string): Promise<void> {
  await linkLater(db, jobId, await environmentFor(db, bundleHash, source));
}
