// The compiler options and ignored diagnostics of a type check, shared by the notebook's cell
// check (kernel/engine/checker.ts) and the bundle check (runtime/bundle-check.ts): what
// type-checks in a cell must type-check as a job's bundle, and the other way round (issue 14).
// Each caller adds only what its own program needs (the cell check: declaration emit, source
// maps, the libs as one root file; the bundle check: no emit, the lib by name).
import type { ts } from "ts-morph";

type TsApi = typeof ts;

/** "Could not find a declaration file for module": an untyped package is still usable (as any). */
export const IGNORED_DIAGNOSTICS: ReadonlySet<number> = new Set([7016]);

/** The options both checks resolve modules and check types with. */
export function sharedCheckOptions(typescript: TsApi): ts.CompilerOptions {
  return {
    target: typescript.ScriptTarget.ES2022,
    // "preserve": ES imports, top-level await and `import x = require("m")` all allowed, as in
    // the engine, which runs each form; resolution as bundlers do (package exports, no extensions).
    module: typescript.ModuleKind.Preserve,
    moduleResolution: typescript.ModuleResolutionKind.Bundler,
    strict: true,
    esModuleInterop: true,
    skipLibCheck: true,
    // A const enum stays an object at run time, as a cell's other declarations do.
    preserveConstEnums: true,
    allowImportingTsExtensions: true,
    resolveJsonModule: true,
  };
}
