// Local modules travel with a job (issue 14): every file a snippet imports by a relative path,
// and every file those import in turn, is captured when the bundle is built, relative to the
// notebook's folder. The bundle's source names each path with the sha256 of its text (its
// `// files:` line), so the bundle hash covers them; the worker lays them out again in a folder
// of its own (worker/module-layout.ts) and the job's `require` resolves from there.
//
// Resolution follows what runs the code: Node's require with .ts files loadable (the notebook's
// engine and the worker both register .ts, .mts, .cts), so `./m` is m, m.js, m.json, m.ts, m.mts,
// m.cts, then m/index with those endings. An ES module (`.mjs`, or `.js` with import/export) is
// captured when named with its ending and runs through Node's require of ES modules (Node 20.19+);
// one that imports a local .ts file is imported through loader hooks first (runtime/esm-preload.ts).
// Not captured: a package folder's own package.json "main", and imports built at run time
// (`require(name)`).
import { readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { sha256 } from "./bundle-analysis";
import { typescript } from "./bundle-ts";

export { filesLine, filesOfSource } from "./shared/bundle-files";

/** A local module of a bundle. */
export interface BundleFile {
  /** Relative to the notebook's folder, with `/` (`lib/other.ts`; `../shared/x.ts` outside it). */
  path: string;
  /** sha256 (hex) of `text`. */
  hash: string;
  text: string;
}

/** Endings tried after the exact name, in the order Node's require tries registered extensions. */
export const MODULE_EXTENSIONS = [".js", ".json", ".ts", ".mts", ".cts"];
/** Files whose imports are followed (JSON imports nothing). */
const CODE_FILE = /\.(?:[cm]?ts|[cm]?js)$/;

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The file `specifier` (relative) names from `fromDir`, as require would find it; undefined if none. */
export function resolveLocal(fromDir: string, specifier: string): string | undefined {
  const target = resolve(fromDir, specifier);
  if (isFile(target) && !target.endsWith(".d.ts")) return target;
  for (const ext of MODULE_EXTENSIONS) if (isFile(target + ext)) return target + ext;
  for (const ext of MODULE_EXTENSIONS) if (isFile(join(target, `index${ext}`))) return join(target, `index${ext}`);
  return undefined;
}

/** Relative module specifiers a source names: import/export from, import(), require(), import x = require(). */
export function relativeImports(source: string): string[] {
  if (!/\b(?:import|require|export)\b/.test(source)) return [];
  const found = typescript().preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
  return [...new Set(found.filter((s) => s === "." || s === ".." || s.startsWith("./") || s.startsWith("../")))];
}

/**
 * The local files reachable from `sources` (code that sits in `baseDir`), transitively, sorted
 * by path. A specifier that resolves to no file is left to the type check (it reports it).
 */
export function collectLocalFiles(sources: readonly string[], baseDir: string): BundleFile[] {
  const root = resolve(baseDir);
  const found = new Map<string, BundleFile>();
  const pending: { fromDir: string; specifier: string }[] = sources.flatMap((s) => relativeImports(s).map((specifier) => ({ fromDir: root, specifier })));
  while (pending.length > 0) {
    const { fromDir, specifier } = pending.pop()!;
    const file = resolveLocal(fromDir, specifier);
    if (!file) continue;
    const path = relative(root, file).split(sep).join("/");
    if (found.has(path) || isAbsolute(path)) continue;
    const text = readFileSync(file, "utf8");
    found.set(path, { path, hash: sha256(text), text });
    if (CODE_FILE.test(file)) for (const next of relativeImports(text)) pending.push({ fromDir: dirname(file), specifier: next });
  }
  return [...found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
