// Type-checks a bundle as a standalone program, with the worker's globals declared, before any job is sent.
import * as path from "node:path";
import type { Project, SourceFile, ts } from "ts-morph";
import { tsMorph, typescript } from "./bundle-ts";
import { IGNORED_DIAGNOSTICS, sharedCheckOptions } from "./check-options";
import type { JsonValue, ParamValues } from "./params";

/** One type error, as the compiler reports it, at an offset of the checked text. */
export interface CheckDiagnostic {
  /** Offset in the checked text; -1 when the error is elsewhere (a local module, the options). */
  start: number;
  code: number;
  message: string;
  /** For an error in a local module: its path as the bundle names it (`lib/broken.ts`), 1-based line and column. */
  file?: string;
  line?: number;
  column?: number;
}

// Local modules the compiler type-checks (a `.js` one is only parsed, as in a cell).
const TYPESCRIPT_FILE = /\.(ts|mts|cts|tsx)$/;

let project: Project | undefined;

// One project per process: the lib and @types/node files are parsed once, later checks take ms.
function sharedProject(): Project {
  const ts = typescript();
  if (project) return project;
  let typeRoots: string[] | undefined;
  try {
    typeRoots = [path.dirname(path.dirname(require.resolve("@types/node/package.json")))];
  } catch {
    typeRoots = undefined; // no @types/node: Node's globals are then unknown to the check
  }
  project = new (tsMorph().Project)({
    skipAddingFilesFromTsConfig: true,
    compilerOptions: {
      // The cell check's options (one module, so the two cannot drift apart): what runs in a
      // cell type-checks here too, an untyped package included.
      ...sharedCheckOptions(ts),
      lib: ["lib.es2023.d.ts"],
      noEmit: true,
      ...(typeRoots ? { types: ["node"], typeRoots } : { types: [] }),
    },
  });
  return project;
}

/** A TypeScript type for a JSON value: what `params.x` is inside the job. */
export function jsonType(value: JsonValue): string {
  if (value === null) return "null";
  if (Array.isArray(value)) {
    const items = [...new Set(value.map(jsonType))];
    if (items.length === 0) return "unknown[]";
    return items.length === 1 ? `${wrap(items[0])}[]` : `(${items.join(" | ")})[]`;
  }
  if (typeof value === "object") {
    const fields = Object.keys(value).sort().map((k) => `readonly ${JSON.stringify(k)}: ${jsonType(value[k])}`);
    return fields.length === 0 ? "{}" : `{ ${fields.join("; ")} }`;
  }
  return typeof value;
}

function wrap(type: string): string {
  return /[|&]/.test(type) && !type.startsWith("{") ? `(${type})` : type;
}

/** The ambient declarations of the worker globals a bundle may use. */
export function workerGlobals(params: ParamValues): string {
  return [
    "// Globals a job's code sees in the worker.",
    `declare const params: ${jsonType(params)};`,
    "declare const jobtracker: {",
    "  registerCheckpointer<T = unknown>(name: string, accessors?: { get?(): T; set?(value: T): void }): void;",
    "  checkpoint(): number;",
    "  flush(): Promise<void>;",
    "  log(metrics: { [name: string]: number | ArrayLike<number> }, step?: number): void;",
    "};",
    "",
  ].join("\n");
}

/**
 * Type errors of `program` (the bundle's text) given the job's parameter values. `baseDir` is
 * where imports resolve from (the notebook's directory); `localFiles` are the bundle's local
 * modules (paths relative to it), whose own errors are reported too: they travel with the job,
 * and a module that does not type-check would fail there.
 */
export function typeCheckProgram(program: string, params: ParamValues, baseDir: string = process.cwd(), localFiles: readonly string[] = []): CheckDiagnostic[] {
  const ts = typescript();
  const p = sharedProject();
  // The notebook's own modules may have been edited since the last check (the project keeps what
  // it read): read them again when changed, so the check sees what the bundle captures now. A
  // module the compiler found by resolving an import is not among the project's added files, so
  // the bundle's local modules are looked up by path too.
  const known = new Set(p.getSourceFiles().filter((file) => !file.getFilePath().includes("/node_modules/")));
  for (const rel of localFiles) {
    const file = p.getSourceFile(path.resolve(baseDir, rel));
    if (file) known.add(file);
  }
  for (const file of known) file.refreshFromFileSystemSync();
  const globals = p.createSourceFile(path.join(baseDir, "__nbjob_worker_globals__.d.ts"), workerGlobals(params), { overwrite: true });
  // `export {}` makes the file a module (top-level await) without changing the bundle's text.
  const bundle = p.createSourceFile(path.join(baseDir, "__nbjob_bundle__.ts"), `${program}\nexport {};\n`, { overwrite: true });
  // A local .ts module reached only through JavaScript (an .mjs that imports it) is not part of
  // the program by its imports: it is added for this check, so its errors are reported too.
  const added: SourceFile[] = [];
  try {
    let compiler = p.getProgram().compilerObject;
    for (const rel of localFiles) {
      const file = path.resolve(baseDir, rel);
      if (!TYPESCRIPT_FILE.test(rel) || compiler.getSourceFile(file) || p.getSourceFile(file)) continue;
      const extra = p.addSourceFileAtPathIfExists(file);
      if (extra) added.push(extra);
    }
    if (added.length > 0) compiler = p.getProgram().compilerObject;
    const modules = new Map<ts.SourceFile, string>();
    for (const rel of localFiles) {
      if (!TYPESCRIPT_FILE.test(rel)) continue;
      const file = compiler.getSourceFile(path.resolve(baseDir, rel));
      if (file) modules.set(file, rel);
    }
    const found = [...compiler.getOptionsDiagnostics(), ...ts.getPreEmitDiagnostics(compiler, bundle.compilerNode),
      ...ts.getPreEmitDiagnostics(compiler, globals.compilerNode).filter((d) => d.file === globals.compilerNode),
      ...[...modules.keys()].flatMap((file) => ts.getPreEmitDiagnostics(compiler, file).filter((d) => d.file === file))];
    const seen = new Set<string>();
    const out: CheckDiagnostic[] = [];
    for (const d of found) {
      if (IGNORED_DIAGNOSTICS.has(d.code)) continue;
      const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
      const start = d.file === bundle.compilerNode ? d.start ?? 0 : -1;
      const module = d.file ? modules.get(d.file) : undefined;
      const at = module !== undefined && d.file ? d.file.getLineAndCharacterOfPosition(d.start ?? 0) : undefined;
      const key = `${module ?? ""}:${at ? `${at.line}:${at.character}` : start}:${d.code}:${message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(at ? { start, code: d.code, message, file: module, line: at.line + 1, column: at.character + 1 } : { start, code: d.code, message });
    }
    return out;
  } finally {
    for (const extra of added) p.removeSourceFile(extra);
    p.removeSourceFile(bundle);
    p.removeSourceFile(globals);
  }
}
