// Type-checks a bundle as a standalone program, with the worker's globals declared, before any job is sent.
import * as path from "node:path";
import type { Project, ts } from "ts-morph";
import { tsMorph, typescript } from "./bundle-ts";
import { IGNORED_DIAGNOSTICS, sharedCheckOptions } from "./check-options";
import type { JsonValue, ParamValues } from "./params";

/** One type error, as the compiler reports it, at an offset of the checked text. */
export interface CheckDiagnostic {
  start: number;
  code: number;
  message: string;
}

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
 * where imports resolve from (the notebook's directory).
 */
export function typeCheckProgram(program: string, params: ParamValues, baseDir: string = process.cwd()): CheckDiagnostic[] {
  const ts = typescript();
  const p = sharedProject();
  // The notebook's own modules may have been edited since the last check (the project keeps what
  // it read): read them again when changed, so the check sees what the bundle captures now.
  for (const file of p.getSourceFiles()) {
    if (!file.getFilePath().includes("/node_modules/")) file.refreshFromFileSystemSync();
  }
  const globals = p.createSourceFile(path.join(baseDir, "__nbjob_worker_globals__.d.ts"), workerGlobals(params), { overwrite: true });
  // `export {}` makes the file a module (top-level await) without changing the bundle's text.
  const bundle = p.createSourceFile(path.join(baseDir, "__nbjob_bundle__.ts"), `${program}\nexport {};\n`, { overwrite: true });
  try {
    const compiler = p.getProgram().compilerObject;
    const found = [...compiler.getOptionsDiagnostics(), ...ts.getPreEmitDiagnostics(compiler, bundle.compilerNode),
      ...ts.getPreEmitDiagnostics(compiler, globals.compilerNode).filter((d) => d.file === globals.compilerNode)];
    const seen = new Set<string>();
    const out: CheckDiagnostic[] = [];
    for (const d of found) {
      if (IGNORED_DIAGNOSTICS.has(d.code)) continue;
      const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
      const start = d.file === bundle.compilerNode ? d.start ?? 0 : -1;
      const key = `${start}:${d.code}:${message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ start, code: d.code, message });
    }
    return out;
  } finally {
    p.removeSourceFile(bundle);
    p.removeSourceFile(globals);
  }
}
