// Bundles: the program a job runs, built from collectors, parameters and entry expressions.
//
// Convention for running `source` (what a worker does):
//   - Run the whole text as one TypeScript program/cell with the globals `params`
//     (ParamLogger.forJob(bundle.params)) and `jobtracker` defined. Snippets load synchronously
//     (a top-level `await` in a snippet is refused when the bundle is built); entries may await.
//   - The snippets come first, each after the declarations it uses; then every entry expression
//     as an expression statement of its own, in order.
//   - The job's result is the value of the LAST statement, which is always the last entry's
//     expression statement: exactly what a notebook cell shows as its execute_result. A runner
//     can also find the entries as the source's last `entries.length` statements (the worker
//     rewrites them into entry functions) or take `entryStatements(bundle)`.
//   - `parts` maps every line of `source` (1-based) to the snippet or entry it came from, so a
//     worker's traceback can be shown in the user's own code (`locateBundleLine`).
import { resolve } from "node:path";
import type { ts } from "ts-morph";
import { typescript } from "./bundle-ts";
import type { SnippetKind } from "./bundle-analysis";
import { checkpointerNames, hasStatements, parseSource, removeDeclarations, sha256, syntaxErrors, topLevelAwait } from "./bundle-analysis";
import { dependencyOrder, orderItemFromSource } from "./bundle-order";
import { typeCheckProgram } from "./bundle-check";
import type { BundleFile } from "./local-files";
import { collectLocalFiles, filesLine } from "./local-files";
import type { PackageSet } from "./packages";
import { collectPackages, PackagePinError, packagesLine } from "./packages";
import type { JsonValue, ParamValues } from "./params";
import { ParamLogger, toJsonValue } from "./params";
import { SnippetCollector } from "./snippets";
import { currentCellSink, loadedModuleText } from "./notebook";

/** A snippet as stored with a job (stored once by hash). */
export interface BundleSnippet {
  hash: string;
  names: string[];
  kind: SnippetKind;
  source: string;
}

/** Where a snippet or entry sits in `source` (1-based, inclusive lines of its own code). */
export interface BundlePart {
  kind: "snippet" | "entry";
  /** Index into `snippets` or `entries`. */
  index: number;
  /** `snippet norm` / `snippet a, b` / `entry 2 "norm(origin)"`, for messages. */
  label: string;
  firstLine: number;
  lastLine: number;
}

export interface Bundle {
  /** In program order. */
  snippets: BundleSnippet[];
  /** The job's parameter values (overrides applied). */
  params: ParamValues;
  /** Entry expressions as given; the last one's value is the job's result. */
  entries: string[];
  /** The whole program as TypeScript; the same inputs give byte-identical text. */
  source: string;
  /** sha256 (hex) of `source`. */
  hash: string;
  parts: BundlePart[];
  /**
   * Local modules the snippets import (relative paths, transitively), by path. `source` names
   * each with its sha256 on its third line (`// files: {...}`), so `hash` covers them.
   */
  files: BundleFile[];
  /**
   * npm packages the snippets and local modules import, with their dependencies, pinned as the
   * notebook's project resolved them (runtime/packages.ts). `source` holds them on its
   * `// packages:` line (after the files line), so `hash` covers them.
   */
  packages: PackageSet;
}

export interface BundleOptions {
  /** The notebook's ParamLogger, or plain parameter values (e.g. a stored job's). */
  params?: object;
  /** Values that replace parameters for this job; each must name an existing parameter. */
  overrides?: Record<string, unknown>;
  /** Where `import`s in snippets resolve from while type-checking (default: the current directory). */
  baseDir?: string;
  /** Type-check the bundle (default true). */
  typeCheck?: boolean;
}

/** One problem found while building or checking a bundle. */
export interface BundleProblem {
  /** `snippet norm`, `entry 1 "norm(origin)"`, a local module (`./lib/util.ts`), or `bundle`. */
  part: string;
  /** 1-based position inside that snippet or entry, when there is one. */
  line?: number;
  column?: number;
  message: string;
}

/** The bundle could not be built; `problems` lists every reason, `message` summarises them. */
export class BundleError extends Error {
  constructor(readonly problems: BundleProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.name = "BundleError";
  }
}

function formatProblem(p: BundleProblem): string {
  const at = p.line !== undefined ? ` (line ${p.line}, column ${p.column ?? 1})` : "";
  return `${p.part}${at}: ${p.message}`;
}

function snippetLabel(names: readonly string[]): string {
  return names.length === 0 ? "snippet (statements only)" : `snippet ${names.join(", ")}`;
}

function entryLabel(index: number, entry: string): string {
  const short = entry.length > 60 ? `${entry.slice(0, 57)}...` : entry;
  return `entry ${index + 1} "${short}"`;
}

/**
 * The parameter values of a job: the notebook's values with the overrides applied, checked.
 * `source` names where the overrides came from in messages (`overrides.lr`, or `grid.lr` for a sweep's values).
 */
export function jobParams(params: object | undefined, overrides: Record<string, unknown> | undefined, source: "overrides" | "grid" = "overrides"): ParamValues {
  let values: ParamValues = {};
  if (params !== undefined) {
    if (ParamLogger.isParamLogger(params)) values = ParamLogger.values(params);
    else if (typeof params === "object" && params !== null && !Array.isArray(params)) {
      for (const [k, v] of Object.entries(params)) values[k] = toJsonValue(v, `params.${k}`);
    } else throw new TypeError("options.params must be a ParamLogger (const params = new ParamLogger()) or an object of parameter values");
  }
  if (overrides !== undefined) {
    if (typeof overrides !== "object" || overrides === null || Array.isArray(overrides)) {
      throw new TypeError("options.overrides must be an object of parameter values, e.g. { overrides: { x: 7 } }");
    }
    const known = Object.keys(values);
    for (const [k, v] of Object.entries(overrides)) {
      if (!(k in values)) {
        throw new Error(`${source}.${k} is not a parameter; the parameters are ${known.length === 0 ? "none (pass { params })" : known.join(", ")}. Set params.${k} in the notebook first, or fix the name`);
      }
      values[k] = toJsonValue(v, `${source}.${k}`);
    }
  }
  // Sorted keys: the same values give the same text whatever order they were set in.
  return Object.fromEntries(Object.keys(values).sort().map((k) => [k, values[k]]));
}

/** Checks that every entry is one expression; returns them trimmed, without a final `;`. */
export function checkEntries(entries: readonly unknown[]): string[] {
  const ts = typescript();
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new BundleError([{ part: "entries", message: 'a job needs at least one entry expression, e.g. ["train()"]; the last one\'s value is the job\'s result' }]);
  }
  const problems: BundleProblem[] = [];
  const out = entries.map((raw, i) => {
    const label = entryLabel(i, String(raw));
    if (typeof raw !== "string" || raw.trim() === "") {
      problems.push({ part: `entry ${i + 1}`, message: `expected a non-empty string holding an expression such as "norm(origin)"; got ${typeof raw === "string" ? "an empty string" : typeof raw}` });
      return "";
    }
    let text = raw.trim().replace(/;\s*$/, "");
    const sf = parseSource(text, "entry.ts");
    const syntax = syntaxErrors(sf);
    if (syntax.length > 0) {
      problems.push({ part: label, line: syntax[0].line, column: syntax[0].column, message: `syntax error: ${syntax[0].message}` });
    } else if (sf.statements.length !== 1 || !ts.isExpressionStatement(sf.statements[0])) {
      problems.push({ part: label, message: "expected one expression (like train() or norm(origin)), not a statement or declaration; declare things in a snippet and call them here" });
    } else {
      // A trailing comment (`iteration // n`) would swallow the `;` the bundle puts after the
      // entry and join it with the next one; the entry is the expression alone.
      const end = sf.statements[0].expression.getEnd();
      if (text.slice(end).trim() !== "") text = text.slice(0, end).trimEnd();
    }
    return text;
  });
  if (problems.length > 0) throw new BundleError(problems);
  return out;
}

/**
 * The snippets of `collectors` merged in argument order: a later definition of a name replaces
 * the earlier one, and identical snippets appear once.
 */
export function mergeCollectors(collectors: readonly unknown[]): BundleSnippet[] {
  let merged: BundleSnippet[] = [];
  collectors.forEach((collector, i) => {
    if (!SnippetCollector.isCollector(collector)) {
      throw new TypeError(`collector ${i + 1} is not a SnippetCollector; pass collectors made with new SnippetCollector() (got ${collector === null ? "null" : typeof collector})`);
    }
    for (const s of collector.snippets) {
      if (merged.some((m) => m.hash === s.hash)) continue;
      const names = new Set(s.names);
      merged = merged.flatMap((m) => {
        if (!m.names.some((n) => names.has(n))) return [m];
        const source = removeDeclarations(m.source, names);
        if (!hasStatements(source)) return [];
        const sf = parseSource(source);
        return [{ ...m, source, hash: sha256(source), names: orderItemFromSource(source, sf).names.slice() }];
      });
      merged.push({ hash: s.hash, names: [...s.names], kind: s.kind, source: s.source });
    }
  });
  return merged;
}

/** Lays out the program text and records which lines belong to which part (snippets in the order given). */
export function layoutBundle(snippets: readonly BundleSnippet[], params: ParamValues, entries: readonly string[], files: readonly BundleFile[], packages: PackageSet = {}): { source: string; parts: BundlePart[] } {
  const lines: string[] = [
    `// nbjob bundle: ${snippets.length} snippet${snippets.length === 1 ? "" : "s"}, ${entries.length} entr${entries.length === 1 ? "y" : "ies"}; the last entry's value is the result.`,
    paramsLine(params),
  ];
  // Only a bundle with local modules has this line: the others keep the text (and hash) they had.
  if (files.length > 0) lines.push(filesLine(files));
  // Likewise only a bundle that imports npm packages has this one.
  if (Object.keys(packages).length > 0) lines.push(packagesLine(packages));
  const parts: BundlePart[] = [];
  const add = (kind: BundlePart["kind"], index: number, label: string, text: string): void => {
    lines.push("", `// ${label}`);
    const own = text.split("\n");
    parts.push({ kind, index, label, firstLine: lines.length + 1, lastLine: lines.length + own.length });
    lines.push(...own);
  };
  snippets.forEach((s, i) => add("snippet", i, `${snippetLabel(s.names)} (${s.kind})`, s.source));
  entries.forEach((e, i) => add("entry", i, entryLabel(i, e), `${e};`));
  return { source: lines.join("\n") + "\n", parts };
}

/** The part of the bundle a line of `source` (1-based) belongs to, and the line within it. */
export function locateBundleLine(bundle: Pick<Bundle, "parts">, line: number): { part: BundlePart; line: number } | undefined {
  const part = bundle.parts.find((p) => line >= p.firstLine && line <= p.lastLine);
  return part ? { part, line: line - part.firstLine + 1 } : undefined;
}

/** The entry expressions as statements, for a runner that takes the result itself: the last one is the result. */
export function entryStatements(bundle: Pick<Bundle, "entries">): { expression: string; isResult: boolean }[] {
  return bundle.entries.map((expression, i) => ({ expression, isResult: i === bundle.entries.length - 1 }));
}

/**
 * Builds a job's bundle: the collectors' snippets merged (later wins), ordered so each comes
 * after what it uses, the parameters (with overrides) and the entries; then type-checks it as a
 * standalone program. Throws `BundleError` naming the snippet or entry and the missing or wrong
 * name; nothing else is touched.
 */
export function buildBundle(entries: readonly string[], collectors: readonly SnippetCollector[], options: BundleOptions = {}): Bundle {
  const checkedEntries = checkEntries(entries);
  const params = jobParams(options.params, options.overrides);
  const bundle = assembleBundle(mergeCollectors(collectors), checkedEntries, params, { ...options, paramsGiven: options.params !== undefined });
  noteEditedModules(bundle.files, options.baseDir ?? process.cwd());
  return bundle;
}

/**
 * A local module edited on disk after the kernel loaded it: the job takes the file as it is now,
 * while the notebook's cells still run the version loaded. Said in the cell, so that the job and
 * the notebook do not differ silently.
 */
function noteEditedModules(files: readonly BundleFile[], baseDir: string): void {
  const edited = files.filter((f) => {
    const loaded = loadedModuleText(resolve(baseDir, f.path));
    return loaded !== undefined && loaded !== f.text;
  }).map((f) => f.path);
  if (edited.length === 0) return;
  const one = edited.length === 1;
  currentCellSink()?.stream("stderr", `note: ${edited.join(", ")} changed on disk since this kernel loaded ${one ? "it" : "them"}; the job runs ${one ? "it" : "them"} as ${one ? "it is" : "they are"} now, this notebook's cells the version loaded (import ${one ? "it" : "them"} again in a cell to load the new version)\n`);
}

/**
 * A bundle from snippets that are already merged (e.g. a stored job's, or what is left after a
 * review dropped some): ordered, laid out and type-checked like `buildBundle`.
 */
export function assembleBundle(snippets: readonly BundleSnippet[], entries: readonly string[], params: ParamValues,
  options: { baseDir?: string; typeCheck?: boolean; paramsGiven?: boolean; files?: readonly BundleFile[]; packages?: PackageSet } = {}): Bundle {
  const checkedEntries = checkEntries(entries);
  const order = dependencyOrder(snippets.map((s) => orderItemFromSource(s.source)));
  const ordered = order.map((i) => ({ ...snippets[i], names: [...snippets[i].names] }));
  // A stored bundle brings its own files; a new one takes them from the notebook's folder now.
  const files = options.files ? options.files.map((f) => ({ ...f })) : collectLocalFiles(ordered.map((s) => s.source), options.baseDir ?? process.cwd());
  // Likewise the package pins: a stored bundle's own, else what the notebook's project has now.
  let packages: PackageSet;
  if (options.files || options.packages) packages = { ...options.packages };
  else {
    try {
      const code = [...ordered.map((s) => s.source), ...files.filter((f) => /\.[cm]?[jt]s$/.test(f.path)).map((f) => f.text)];
      packages = collectPackages(code, options.baseDir ?? process.cwd());
    } catch (err) {
      if (err instanceof PackagePinError) throw new BundleError([{ part: "bundle", message: err.message }]);
      throw err;
    }
  }
  const { source, parts } = layoutBundle(ordered, params, checkedEntries, files, packages);
  const bundle: Bundle = { snippets: ordered, params, entries: checkedEntries, source, hash: sha256(source), parts, files, packages };
  if (options.typeCheck !== false) {
    const problems = [...awaitProblems(ordered), ...checkpointerProblems(ordered), ...typeProblems(bundle, options.baseDir, options.paramsGiven ?? true)];
    if (problems.length > 0) throw new BundleError(problems);
  }
  return bundle;
}

/**
 * The params line of `layout` (the bundle's second line). JSON.stringify escapes \n and \r but
 * writes U+2028/U+2029 as they are, and TypeScript ends a comment at either: they are escaped
 * (still the same JSON), so a string value holding one stays in the comment.
 */
function paramsLine(params: ParamValues): string {
  return `// params: ${JSON.stringify(params).replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029")}`;
}

/**
 * `bundle` with other parameter values: byte-identical to `assembleBundle(bundle.snippets,
 * bundle.entries, params)`, without ordering and laying out the snippets again. Only the params
 * line (the second line: `layout` puts it there, and JSON.stringify never writes a line break)
 * and so the hash change; `parts` (line numbers) stay the same. A sweep makes its jobs' bundles
 * this way. `typeCheck` (default true) checks the new bundle like assembleBundle: a sweep asks for
 * it once per shape of values (the check sees parameters only through their types).
 */
export function withParams(bundle: Bundle, params: ParamValues, options: { baseDir?: string; typeCheck?: boolean } = {}): Bundle {
  const firstBreak = bundle.source.indexOf("\n");
  const secondBreak = bundle.source.indexOf("\n", firstBreak + 1);
  if (firstBreak < 0 || secondBreak < 0 || bundle.source.slice(firstBreak + 1, secondBreak) !== paramsLine(bundle.params)) {
    throw new Error(`withParams: bundle ${bundle.hash.slice(0, 12)} was not laid out by assembleBundle (its second line is not its params); assemble it with assembleBundle`);
  }
  const source = `${bundle.source.slice(0, firstBreak + 1)}${paramsLine(params)}${bundle.source.slice(secondBreak)}`;
  const out: Bundle = {
    snippets: bundle.snippets.map((s) => ({ ...s, names: [...s.names] })),
    params,
    entries: [...bundle.entries],
    source,
    hash: sha256(source),
    parts: bundle.parts.map((p) => ({ ...p })),
    files: bundle.files.map((f) => ({ ...f })),
    packages: { ...bundle.packages },
  };
  if (options.typeCheck !== false) {
    const problems = [...awaitProblems(out.snippets), ...checkpointerProblems(out.snippets), ...typeProblems(out, options.baseDir)];
    if (problems.length > 0) throw new BundleError(problems);
  }
  return out;
}

/**
 * Workers load snippets synchronously and only entries may wait: a top-level `await` in a
 * snippet is refused here rather than failing on the worker.
 */
function awaitProblems(snippets: readonly BundleSnippet[]): BundleProblem[] {
  return snippets.flatMap((s) => {
    const at = topLevelAwait(parseSource(s.source));
    return at ? [{ part: snippetLabel(s.names), ...at, message: "top-level await in a snippet does not run on workers; move it into an async function and call that from an entry (e.g. await setup())" }] : [];
  });
}

/**
 * `jobtracker.registerCheckpointer("name")` without accessors reads the job's top-level variable
 * of that name: one that no snippet declares would fail on the worker, after the job was stored
 * and sent (the type check sees only a string). Refused here instead.
 */
function checkpointerProblems(snippets: readonly BundleSnippet[]): BundleProblem[] {
  const declared = new Set(snippets.flatMap((s) => s.names));
  return snippets.flatMap((s) => checkpointerNames(parseSource(s.source)).filter((c) => !declared.has(c.name)).map((c) => ({
    part: snippetLabel(s.names), line: c.line, column: c.column,
    message: `jobtracker.registerCheckpointer("${c.name}") names no top-level variable of the job; declare ${c.name} in a snippet (@sc or %%snip), correct the name, or pass accessors ({ get, set })`,
  })));
}

const CANNOT_FIND_NAME = new Set([2304, 2552]);

/** Type errors of a bundle, each placed in its snippet or entry. */
export function typeProblems(bundle: Bundle, baseDir?: string, paramsGiven = true): BundleProblem[] {
  const diagnostics = typeCheckProgram(bundle.source, bundle.params, baseDir, bundle.files.map((f) => f.path));
  const lineStarts = [0];
  for (let i = 0; i < bundle.source.length; i++) if (bundle.source[i] === "\n") lineStarts.push(i + 1);
  const problems = diagnostics.map((d): BundleProblem => {
    if (d.file !== undefined) return { part: d.file.startsWith("../") ? d.file : `./${d.file}`, line: d.line, column: d.column, message: d.message };
    if (d.start < 0) return { part: "bundle", message: d.message };
    let line = lineStarts.findIndex((s) => s > d.start);
    line = line === -1 ? lineStarts.length : line; // 1-based line of the offset
    const column = d.start - lineStarts[line - 1] + 1;
    const located = locateBundleLine(bundle, line);
    let message = d.message;
    const missing = /Cannot find name '([^']+)'/.exec(message);
    if (missing && CANNOT_FIND_NAME.has(d.code)) {
      message += missing[1] === "params"
        ? " Pass { params } when creating the job."
        : ` No snippet in this job declares ${missing[1]}: mark its declaration with @sc (or record its cell with %%snip; an import goes in a %%snip cell) in a collector you pass to the job.`;
    } else if (!paramsGiven && /on type '\{\}'/.test(message)) {
      message += " The job was given no params: pass { params } when creating it.";
    }
    if (!located) return { part: "bundle", line, column, message };
    return { part: located.part.label.replace(/ \((function|class|variable|interface|type|enum|namespace|import|cell)\)$/, ""), line: located.line, column, message };
  });
  // One report per missing name per part: the first use says it all.
  const seen = new Set<string>();
  return problems.filter((p) => {
    const missing = /^Cannot find name '([^']+)'/.exec(p.message);
    if (!missing) return true;
    const key = `${p.part}\0${missing[1]}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export type { BundleFile, JsonValue, PackageSet, ParamValues };
