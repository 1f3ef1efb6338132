// Node's ES-module loader hooks (registered with module.register by runtime/esm-preload.ts; they
// run in a thread of their own): let an ES module (`.mjs`, or `.js` with import/export) import a
// local `.ts` file, in cells and in jobs alike. Node 20's ES loader knows no `.ts`. The hook does
// not compile the file itself: it answers with a small ES module that require()s it, so the
// TypeScript goes through the same CommonJS `.ts` loader as every other import of it (the
// kernel's, or the worker's with its JavaScript compiled when laid out) and there is one instance
// of the module whoever imports it. (A `commonjs` answer with the compiled source would be a
// second instance, and Node 20 gives such a module a require() that cannot load ES modules.)
//
// The hooks thread also answers which ES modules must be imported before a program runs
// (esmPreloadOrder): require() of an ES module (how CommonJS code, a job's program or a `.ts`
// module, loads one) does not call these hooks in Node 20.
import { readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { MessagePort } from "node:worker_threads";
import type { ts as TypeScript } from "ts-morph";
import { loadTypeScript } from "./typescript-loader";

type TypeScriptApi = typeof TypeScript;

let compiler: ReturnType<typeof loadTypeScript> | undefined;
function typescript(): TypeScriptApi {
  if (!compiler) {
    compiler = loadTypeScript("esm-hooks");
    // Once this first use has compiled what it needs (see typescript-loader).
    const loaded = compiler;
    setImmediate(() => loaded.saveCache());
  }
  return compiler.ts;
}

/** A request from esm-preload.ts: the ES modules among `paths` (relative to `baseDir`) to import first. */
export interface PreloadRequest {
  id: number;
  baseDir: string;
  paths: string[];
}

export type PreloadResponse = { id: number; order: string[] } | { id: number; error: string };

const TYPESCRIPT_FILE = /\.[cm]?ts$/;

/** Folders standing for the notebook's (from preload requests): errors name a file relative to them. */
const baseDirs = new Set<string>();

/** `./lib/y.ts` for a file under a known notebook folder, else its absolute path. */
function label(file: string): string {
  let best: string | undefined;
  for (const dir of baseDirs) if (file.startsWith(`${dir}/`) && (best === undefined || dir.length > best.length)) best = dir;
  return best === undefined ? file : `./${relative(best, file)}`;
}

export function initialize(data: { port?: MessagePort } | undefined): void {
  const port = data?.port;
  if (!port) return;
  port.on("message", (request: PreloadRequest) => {
    let response: PreloadResponse;
    baseDirs.add(resolve(request.baseDir));
    try {
      response = { id: request.id, order: esmPreloadOrder(request.baseDir, request.paths) };
    } catch (err) {
      response = { id: request.id, error: (err as Error).message };
    }
    port.postMessage(response);
  });
  port.unref();
}

interface LoadContext {
  format?: string | null;
  conditions?: string[];
  importAttributes?: Record<string, string>;
}
interface LoadResult {
  format: string;
  source?: string | ArrayBuffer | Uint8Array | null;
  shortCircuit?: boolean;
}
type NextLoad = (url: string, context?: LoadContext) => Promise<LoadResult>;

export async function load(url: string, context: LoadContext, nextLoad: NextLoad): Promise<LoadResult> {
  if (!url.startsWith("file:") || !TYPESCRIPT_FILE.test(new URL(url).pathname)) return nextLoad(url, context);
  const file = fileURLToPath(url);
  return { format: "module", source: requiringModule(file), shortCircuit: true };
}

/**
 * The ES module standing for the TypeScript file: its CommonJS exports, as named exports, and as
 * default its `export default` (else the whole exports object, as for a CommonJS module).
 */
function requiringModule(file: string): string {
  const exported = exportsOf(file, new Set());
  const lines = [
    `import { createRequire } from "node:module";`,
    `const loaded = createRequire(${JSON.stringify(pathToFileURL(file).href)})(${JSON.stringify(file)});`,
    `const exported = loaded !== null && (typeof loaded === "object" || typeof loaded === "function") ? loaded : {};`,
    `export default exported.__esModule ? exported.default : loaded;`,
  ];
  [...exported.names].filter((name) => name !== "default").sort().forEach((name, i) => {
    lines.push(`const n${i} = exported[${JSON.stringify(name)}];`, `export { n${i} as ${JSON.stringify(name)} };`);
  });
  for (const specifier of exported.starFrom) lines.push(`export * from ${JSON.stringify(specifier)};`);
  return `${lines.join("\n")}\n`;
}

/**
 * The names a TypeScript file exports (read from its syntax: the type checker is not needed) and
 * the modules it re-exports with `export *` that are not local TypeScript (those are followed). A
 * syntax error is a SyntaxError naming the file and place, as the notebook reports one.
 */
function exportsOf(file: string, seen: Set<string>): { names: Set<string>; starFrom: string[] } {
  const ts = typescript();
  const names = new Set<string>();
  const starFrom: string[] = [];
  if (seen.has(file)) return { names, starFrom };
  seen.add(file);
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const syntax = (source as unknown as { parseDiagnostics?: TypeScript.Diagnostic[] }).parseDiagnostics ?? [];
  if (syntax.length > 0) {
    const at = source.getLineAndCharacterOfPosition(syntax[0].start ?? 0);
    throw new SyntaxError(`${label(file)} (line ${at.line + 1}, column ${at.character + 1}): ${ts.flattenDiagnosticMessageText(syntax[0].messageText, "\n")} (imported by an ES module; fix the file, then restart the kernel: a process keeps an ES module that failed to load as failed)`);
  }
  const exportedHere = (node: TypeScript.Node) => ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  const isDefault = (node: TypeScript.Node) => ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.DefaultKeyword);
  const addBinding = (name: TypeScript.BindingName): void => {
    if (ts.isIdentifier(name)) names.add(name.text);
    else for (const element of name.elements) if (!ts.isOmittedExpression(element)) addBinding(element.name);
  };
  for (const statement of source.statements) {
    if (ts.isExportDeclaration(statement)) {
      if (statement.isTypeOnly) continue;
      const clause = statement.exportClause;
      const from = statement.moduleSpecifier && ts.isStringLiteral(statement.moduleSpecifier) ? statement.moduleSpecifier.text : undefined;
      if (clause && ts.isNamedExports(clause)) {
        for (const element of clause.elements) if (!element.isTypeOnly) names.add(element.name.text);
      } else if (clause && ts.isNamespaceExport(clause)) {
        names.add(clause.name.text);
      } else if (from !== undefined) {
        const local = from.startsWith("./") || from.startsWith("../") ? resolveLikeRequire(dirname(file), from) : undefined;
        if (local && TYPESCRIPT_FILE.test(local)) {
          // `export *` never re-exports a default.
          for (const name of exportsOf(local, seen).names) if (name !== "default") names.add(name);
        } else {
          starFrom.push(local ? pathToFileURL(local).href : from);
        }
      }
      continue;
    }
    if (ts.isExportAssignment(statement)) {
      if (!statement.isExportEquals) names.add("default");
      continue;
    }
    if (!exportedHere(statement)) continue;
    if (isDefault(statement)) names.add("default");
    else if (ts.isVariableStatement(statement)) for (const d of statement.declarationList.declarations) addBinding(d.name);
    else if ((ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement) || ts.isEnumDeclaration(statement)) && statement.name) names.add(statement.name.text);
    else if (ts.isModuleDeclaration(statement) && ts.isIdentifier(statement.name)) names.add(statement.name.text);
    else if (ts.isImportEqualsDeclaration(statement) && !statement.isTypeOnly) names.add(statement.name.text);
  }
  return { names, starFrom };
}

/** Endings require() tries for a local module (runtime/local-files.ts MODULE_EXTENSIONS). */
const REQUIRE_EXTENSIONS = [".js", ".json", ".ts", ".mts", ".cts"];

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The file require() finds for a relative specifier, with the `.ts` endings nbjob registers. */
function resolveLikeRequire(fromDir: string, specifier: string): string | undefined {
  const target = resolve(fromDir, specifier);
  if (isFile(target)) return target;
  for (const ext of REQUIRE_EXTENSIONS) if (isFile(target + ext)) return target + ext;
  for (const ext of REQUIRE_EXTENSIONS) if (isFile(join(target, `index${ext}`))) return join(target, `index${ext}`);
  return undefined;
}

/**
 * The ES modules among `paths` (files relative to `baseDir`) that must be imported before
 * CommonJS code require()s them, dependencies first: those whose graph of ES imports reaches a
 * TypeScript file (require() of them would meet `.ts` without these hooks). Once imported, a
 * require() of one returns it as loaded. Files outside `paths` are not followed.
 */
export function esmPreloadOrder(baseDir: string, paths: readonly string[]): string[] {
  const ts = typescript();
  const files = new Map<string, string>();
  for (const path of paths) files.set(resolve(baseDir, path), path);
  const isEsm = new Map<string, boolean>();
  const edges = new Map<string, string[]>();
  for (const file of files.keys()) {
    if (!/\.(?:[cm]?[jt]s)$/.test(file)) {
      edges.set(file, []);
      continue;
    }
    const text = readFileSync(file, "utf8");
    const esm = file.endsWith(".mjs") || (file.endsWith(".js") && hasModuleSyntax(ts, file, text));
    isEsm.set(file, esm);
    const specifiers = ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName).filter((s) => s.startsWith("./") || s.startsWith("../"));
    // An ES module names files exactly; CommonJS and TypeScript resolve as require() does.
    const targets = specifiers.map((s) => (esm ? resolve(dirname(file), s) : resolveLikeRequire(dirname(file), s))).filter((t): t is string => t !== undefined && files.has(t));
    edges.set(file, [...new Set(targets)]);
  }
  const needsHooks = new Map<string, boolean>();
  const needs = (file: string, visiting: Set<string>): boolean => {
    const known = needsHooks.get(file);
    if (known !== undefined) return known;
    if (!isEsm.get(file) || visiting.has(file)) return false;
    visiting.add(file);
    const result = (edges.get(file) ?? []).some((target) => TYPESCRIPT_FILE.test(target) || (isEsm.get(target) === true && needs(target, visiting)));
    visiting.delete(file);
    needsHooks.set(file, result);
    return result;
  };
  const order: string[] = [];
  const done = new Set<string>();
  const visit = (file: string): void => {
    if (done.has(file)) return;
    done.add(file);
    for (const target of edges.get(file) ?? []) visit(target);
    if (needs(file, new Set())) order.push(files.get(file)!);
  };
  for (const file of [...files.keys()].sort()) visit(file);
  return order;
}

/** Whether a `.js` file is an ES module by its syntax (Node's detection): an import or export statement. */
function hasModuleSyntax(ts: TypeScriptApi, file: string, text: string): boolean {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, false, ts.ScriptKind.JS);
  return source.statements.some((s) => ts.isImportDeclaration(s) || ts.isExportDeclaration(s) || ts.isExportAssignment(s)
    || (ts.canHaveModifiers(s) && (ts.getModifiers(s) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword)));
}
