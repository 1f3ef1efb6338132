// Loads what cells import, resolved from the notebook's folder: CommonJS and ES packages,
// `node:` builtins and local TypeScript files (compiled on require; reloaded when edited).
import { readFileSync, statSync } from "node:fs";
import Module, { createRequire } from "node:module";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { types } from "node:util";
import type { ImportBinding } from "./cell-analysis";
import type { CellFrame } from "./errors";
import { preloadLocalEsm } from "../../runtime/esm-preload";
import { collectLocalFiles } from "../../runtime/local-files";
import { PACKAGE_NAME, RUNTIME_ENTRY } from "./runtime-globals";
import { SourceMapLookup } from "./source-map";
import { ts } from "./typescript";

type LoaderFunction = (module: { _compile(code: string, filename: string): void }, filename: string) => void;

// A dynamic import() that survives compilation to CommonJS (which would turn it into require).
const importEsm = new Function("url", "return import(url)") as (url: string) => Promise<Record<string, unknown>>;

const tsCompileOptions = (): ts.CompilerOptions => ({
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2022,
  esModuleInterop: true,
  sourceMap: true,
});

/** Source maps of the local .ts files loaded, so that tracebacks show their TypeScript lines. */
const localSourceMaps = new Map<string, { map: SourceMapLookup; lines: string[] }>();

/** A local .ts file's text as the kernel loaded it (what its cells run), by absolute path. */
export function loadedLocalText(file: string): string | undefined {
  return localSourceMaps.get(file)?.lines.join("\n");
}

/** Lets require() load .ts files, as cells' imports of local modules need (unless a hook exists). */
function registerTypeScriptExtension(): void {
  const extensions = (Module as unknown as { _extensions: Record<string, LoaderFunction> })._extensions;
  for (const extension of [".ts", ".mts", ".cts"]) {
    if (extensions[extension]) continue;
    extensions[extension] = (module, filename) => {
      const source = readFileSync(filename, "utf8");
      const output = ts.transpileModule(source, { fileName: filename, compilerOptions: tsCompileOptions() });
      if (output.sourceMapText) localSourceMaps.set(filename, { map: SourceMapLookup.fromJson(output.sourceMapText), lines: source.split("\n") });
      module._compile(output.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n"), filename);
    };
  }
}

// Errors that mean "this module is ESM only, use import()".
const NEEDS_IMPORT = new Set(["ERR_REQUIRE_ESM", "ERR_PACKAGE_PATH_NOT_EXPORTED", "ERR_REQUIRE_ASYNC_MODULE", "ERR_REQUIRE_CYCLE_MODULE"]);

export class ModuleLoader {
  private readonly requireFromCwd: NodeJS.Require;
  private readonly loadedMtimes = new Map<string, number>();

  constructor(private readonly cwd: string) {
    registerTypeScriptExtension();
    const fromCwd = createRequire(join(cwd, "__nbjob_notebook__.js"));
    // "nbjob" is the kernel's own runtime (see RUNTIME_ENTRY), for require("nbjob") as for imports.
    const own = (id: string) => (id === PACKAGE_NAME ? RUNTIME_ENTRY : id);
    const resolveOwn = Object.assign((id: string, options?: { paths?: string[] }) => fromCwd.resolve(own(id), options), { paths: fromCwd.resolve.paths });
    this.requireFromCwd = Object.assign((id: string): unknown => fromCwd(own(id)), fromCwd, { resolve: resolveOwn }) as NodeJS.Require;
  }

  /** The require() cells see: resolves from the notebook's folder ("nbjob" to the kernel's runtime). */
  get require(): NodeJS.Require {
    return this.requireFromCwd;
  }

  /** The module object: CommonJS exports, or an ES module namespace. */
  async load(specifier: string): Promise<unknown> {
    if (specifier === PACKAGE_NAME) return this.requireFromCwd(RUNTIME_ENTRY);
    this.forgetEditedLocalFile(specifier);
    // A local ES module importing a local .ts one is imported through nbjob's hooks first, as a
    // job's worker does (runtime/esm-preload.ts), since require() of it would fail.
    if (specifier.startsWith("./") || specifier.startsWith("../")) {
      const paths = collectLocalFiles([`import ${JSON.stringify(specifier)};`], this.cwd).map((file) => file.path);
      await preloadLocalEsm(this.cwd, paths);
    }
    try {
      return this.requireFromCwd(specifier);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code !== "string" || !NEEDS_IMPORT.has(code)) throw error;
    }
    const file = this.resolveEsm(specifier);
    if (!file) throw new Error(`Cannot find module '${specifier}' from ${this.cwd}: it is an ES module and no "import" entry of its package.json matched`);
    return importEsm(pathToFileURL(file).href);
  }

  /** A frame in a local .ts file, at its TypeScript line (labelled by its path from the notebook). */
  mapFrame(file: string, line: number, column: number): CellFrame | undefined {
    const loaded = localSourceMaps.get(file);
    const position = loaded?.map.originalPosition({ line: line - 1, column: column - 1 });
    if (!loaded || !position) return undefined;
    const label = file.startsWith(`${this.cwd}/`) ? file.slice(this.cwd.length + 1) : file;
    return { label, line: position.line + 1, column: position.column + 1, sourceLine: loaded.lines[position.line] };
  }

  /** Values of an import's bindings, with the interop TypeScript's esModuleInterop promises. */
  static bindingValue(moduleObject: unknown, binding: ImportBinding): unknown {
    const record = (moduleObject ?? {}) as Record<string, unknown>;
    const isNamespace = types.isModuleNamespaceObject(moduleObject);
    switch (binding.form) {
      case "default":
        return isNamespace || record.__esModule ? record.default : moduleObject;
      case "named":
        return record[binding.imported];
      case "namespace":
      case "require":
        return moduleObject;
    }
  }

  /** A local .ts file edited since it was loaded is loaded again (a notebook's helper module). */
  private forgetEditedLocalFile(specifier: string): void {
    if (!specifier.startsWith(".") && !isAbsolute(specifier)) return;
    let file: string;
    try {
      file = this.requireFromCwd.resolve(specifier);
    } catch {
      return;
    }
    if (!/\.[cm]?ts$/.test(file)) return;
    const mtime = statSync(file).mtimeMs;
    const previous = this.loadedMtimes.get(file);
    this.loadedMtimes.set(file, mtime);
    if (previous !== undefined && previous !== mtime) delete this.requireFromCwd.cache[file];
  }

  /** Resolves like Node's ESM loader for the common cases: package "exports" with conditions, "main". */
  private resolveEsm(specifier: string): string | undefined {
    if (specifier.startsWith(".") || isAbsolute(specifier)) return resolve(this.cwd, specifier);
    const parts = specifier.split("/");
    const nameLength = specifier.startsWith("@") ? 2 : 1;
    const name = parts.slice(0, nameLength).join("/");
    const subpath = parts.length > nameLength ? `./${parts.slice(nameLength).join("/")}` : ".";
    for (let dir = this.cwd; ; dir = dirname(dir)) {
      const packageDir = join(dir, "node_modules", name);
      let manifest: { exports?: unknown; main?: unknown } | undefined;
      try {
        manifest = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")) as { exports?: unknown; main?: unknown };
      } catch {
        manifest = undefined;
      }
      if (manifest) {
        if (manifest.exports !== undefined) {
          const target = resolveExports(manifest.exports, subpath);
          return target ? join(packageDir, target) : undefined;
        }
        if (subpath !== ".") return join(packageDir, subpath);
        return join(packageDir, typeof manifest.main === "string" ? manifest.main : "index.js");
      }
      if (dirname(dir) === dir) return undefined;
    }
  }
}

const CONDITIONS = new Set(["node", "import", "default", "module-sync"]);

function resolveConditions(target: unknown): string | undefined {
  if (typeof target === "string") return target;
  if (Array.isArray(target)) {
    for (const entry of target) {
      const found = resolveConditions(entry);
      if (found) return found;
    }
    return undefined;
  }
  if (typeof target === "object" && target !== null) {
    for (const [condition, value] of Object.entries(target)) {
      if (!CONDITIONS.has(condition)) continue;
      const found = resolveConditions(value);
      if (found) return found;
    }
  }
  return undefined;
}

function resolveExports(exportsField: unknown, subpath: string): string | undefined {
  const isSubpathMap = typeof exportsField === "object" && exportsField !== null && !Array.isArray(exportsField)
    && Object.keys(exportsField).some((key) => key.startsWith("."));
  if (!isSubpathMap) return subpath === "." ? resolveConditions(exportsField) : undefined;
  const map = exportsField as Record<string, unknown>;
  if (subpath in map) return resolveConditions(map[subpath]);
  for (const [pattern, target] of Object.entries(map)) {
    const star = pattern.indexOf("*");
    if (star === -1) continue;
    const before = pattern.slice(0, star);
    const after = pattern.slice(star + 1);
    if (subpath.startsWith(before) && subpath.endsWith(after) && subpath.length >= pattern.length - 1) {
      const resolved = resolveConditions(target);
      return resolved?.replace("*", subpath.slice(before.length, subpath.length - after.length));
    }
  }
  return undefined;
}
