// The execution engine: type-checks each cell against the earlier ones, then runs it on this
// thread in the notebook's global scope, so declarations persist and interrupts keep state.
import { join, resolve } from "node:path";
import { inspect } from "node:util";
import * as vm from "node:vm";
import { runtimeGlobals, type RuntimeGlobal } from "./runtime-globals";
import { analyzeCell, declarationRecords, type CellAnalysis } from "./cell-analysis";
import { CellChecker } from "./checker";
import { IMPORTS_GLOBAL, rewriteCell, type CompiledCell } from "./cell-compiler";
import { compileErrorOutcome, interruptedOutcome, InterruptedError, isInterrupt, runtimeErrorOutcome, type CellFrame } from "./errors";
import { cellCompleteness } from "./completeness";
import { loadedLocalText, ModuleLoader } from "./module-loader";
import { stepThrough } from "./stepper";
import { ts } from "./typescript";
import { OutputCapture } from "./output-capture";
import { extractPagerLines, type PagerRequest } from "./pager";
import type { CellOutcome, CellRequest, CellSink, Completion, DeclarationRecord, ExecutionEngine, Inspection, MimeBundle } from "./types";
import { setCellSink, setFunctionSourceLookup, setLoadedModuleLookup, settleHeldWork, startCell } from "../../runtime/notebook";
import type { RunningCell } from "../../runtime/notebook";

export type { ExecutionEngine } from "./types";
export { typescriptVersion } from "./typescript";

/**
 * Objects may choose how they show as a cell's result: `[Symbol.for("nbjob.mimeBundle")]()`
 * returns a MIME bundle, or null for no result (a display handle: its output is already shown).
 */
export const MIME_BUNDLE = Symbol.for("nbjob.mimeBundle");

const functionSources = new WeakMap<Function, DeclarationRecord>();
/** The running cell's declarations: its functions are looked up by name until the cell ends (remember). */
let runningCellRecords: DeclarationRecord[] | undefined;

/**
 * The TypeScript declaration that a notebook cell gave this function or class (its latest
 * definition), or undefined when no cell defined it.
 */
export function sourceOfFunction(fn: Function): DeclarationRecord | undefined {
  const known = functionSources.get(fn);
  if (known) return known;
  // A function the running cell declares and already uses (e.g. passes to createAnalyzer).
  const scope = globalThis as Record<string, unknown>;
  return runningCellRecords?.find((record) => record.kind !== "import" && scope[record.name] === fn);
}

interface RanCell {
  label: string;
  compiled: CompiledCell;
  lines: string[];
}

// Names the global object has before any cell runs (Node's and JavaScript's own globals),
// less a few that notebooks commonly use as their own names and the kernel does not rely on
// as globals (`import crypto from "node:crypto"`).
const FREE_TO_REDECLARE = new Set(["crypto", "performance", "navigator", "atob", "btoa", "Event", "CustomEvent", "Blob", "File"]);
const NODE_GLOBALS = new Set(Object.getOwnPropertyNames(globalThis).filter((name) => !FREE_TO_REDECLARE.has(name)));

// Cells for warmUp(): a declaration, a function with a call, a class, an expression.
const WARM_UP_CELLS = [
  "const __nbjob_warm_value: number[] = [1, 2, 3].map((x) => x * 2);",
  "function __nbjob_warm_fn(x: number): string { return `${x + 1}`; }\n__nbjob_warm_fn(2)",
  "class __nbjob_warm_class { constructor(readonly n: number) {} twice(): number { return this.n * 2; } }",
  "Math.max(1, 2) + 1",
];
// Measured in one process on this 2-core machine (noisy): the function cells that followed took
// ~9 ms after 3 rounds, 6-7 ms after 30.
const WARM_UP_ROUNDS = 30;

// How many recently run cells keep their analysis (least recently run dropped).
const ANALYSES_KEPT = 32;

// Frames from the engine, the kernel and the runtime library (all under dist/) are hidden.
const KERNEL_ROOT = resolve(__dirname, "..", "..");

export interface EngineOptions {
  /** The notebook's folder: imports and require() resolve from here. */
  cwd: string;
  /**
   * Whether stdout written after a cell finished (timers, callbacks) goes to the last cell.
   * Default true, as in a kernel; a test runner that reports on stdout turns it off.
   */
  lateOutputToLastCell?: boolean;
  /**
   * Whether process.stdout/stderr.write are captured as well as console.* (default true).
   * Off when the process's stdout belongs to someone else, e.g. a test runner's reporter.
   */
  captureProcessStreams?: boolean;
}

export class Engine implements ExecutionEngine {
  private readonly cwd: string;
  private readonly checker: CellChecker;
  private readonly loader: ModuleLoader;
  private readonly capture: OutputCapture;
  private readonly records = new Map<string, DeclarationRecord>();
  private readonly ranCells = new Map<string, RanCell>();
  private readonly analyses = new Map<string, CellAnalysis>();
  private globals: RuntimeGlobal[] | undefined;
  private cellCount = 0;
  private rejectPending: ((error: Error) => void) | undefined;
  private readonly restoreWarnings: () => void;

  constructor(options: EngineOptions) {
    this.cwd = resolve(options.cwd);
    this.capture = new OutputCapture({
      lateStdout: options.lateOutputToLastCell ?? true,
      processStreams: options.captureProcessStreams ?? true,
    });
    this.loader = new ModuleLoader(this.cwd);
    this.checker = new CellChecker(this.cwd, () => this.globalsDeclarations());
    setFunctionSourceLookup(sourceOfFunction);
    setLoadedModuleLookup(loadedLocalText);
    this.restoreWarnings = hideDynamicImportWarning();
  }

  /** Prepares the type checker (the first check is the slow one); call when the kernel is idle. */
  warmUp(): void {
    this.checker.warmUp();
  }

  /**
   * Steps that take a few typical cells through the check, declaration emit and transpile that
   * every cell goes through, so that the user's first cells run on JIT-optimised code rather
   * than cold (they took about twice as long as later ones). Nothing is run or remembered. Each
   * step is a few milliseconds: a kernel runs them one per turn of its event loop while idle.
   */
  warmUpSteps(): Array<() => void> {
    const steps: Array<() => void> = [];
    for (let round = 0; round < WARM_UP_ROUNDS; round++) {
      for (const code of WARM_UP_CELLS) {
        steps.push(() => {
          const analysis = analyzeCell(code);
          const rewrite = rewriteCell(analysis);
          const check = this.checker.check(code, analysis, rewrite.transformers);
          if (analysis.names.length > 0) check.declarations();
          if (check.emitted) rewrite.finish(check.emitted);
        });
      }
    }
    return steps;
  }

  /** Restores process.stdout/stderr (tests; a kernel keeps its engine until it exits). */
  dispose(): void {
    this.capture.dispose();
    this.restoreWarnings();
  }

  async execute(request: CellRequest): Promise<CellOutcome> {
    const run = ++this.cellCount;
    const label = `cell ${request.executionCount ?? run}`;
    setCellSink(request.sink);
    const cell = startCell();
    this.capture.sink = request.sink;
    this.capture.running = true;
    try {
      return await this.executeCell(request, label, run, cell);
    } catch (error) {
      return runtimeErrorOutcome(error, () => undefined, KERNEL_ROOT);
    } finally {
      this.capture.running = false;
      cell.end(false);
    }
  }

  complete(code: string, cursorPos: number): Completion {
    this.installGlobals();
    const prefix = /[\w$]*$/.exec(code.slice(0, cursorPos))?.[0] ?? "";
    const names = this.checker.completions(code, cursorPos).filter((name) => name.startsWith(prefix));
    return { matches: [...new Set(names)], cursor_start: cursorPos - prefix.length, cursor_end: cursorPos, metadata: {} };
  }

  inspect(code: string, cursorPos: number, detailLevel: 0 | 1): Inspection {
    this.installGlobals();
    const info = this.checker.quickInfo(code, cursorPos);
    if (!info) return { found: false, data: {} };
    // More detail (shift-tab twice, `x??`): a notebook name's own source, as the cell declared it.
    const source = detailLevel === 1 ? this.records.get(nameAt(code, cursorPos))?.source : undefined;
    return { found: true, data: describe(info, source) };
  }

  isComplete(code: string): { status: "complete" | "incomplete" | "invalid"; indent?: string } {
    return cellCompleteness(code);
  }

  /**
   * An error as a cell's error output would show it (frames mapped to cells' lines, kernel
   * frames dropped): for errors that reach the kernel after their cell ended (timers, promises).
   */
  describeError(error: unknown): { ename: string; evalue: string; traceback: string[] } {
    const { ename, evalue, traceback } = runtimeErrorOutcome(error, (file, line, column) => this.mapFrame(file, line, column), KERNEL_ROOT);
    return { ename, evalue, traceback };
  }

  interrupt(): void {
    this.rejectPending?.(new InterruptedError());
  }

  declarations(): ReadonlyMap<string, DeclarationRecord> {
    return this.records;
  }

  evaluate(expression: string): unknown {
    this.installGlobals();
    return vm.runInThisContext(expression, { filename: "nbjob-evaluate" });
  }

  private async executeCell(request: CellRequest, label: string, run: number, cell: RunningCell): Promise<CellOutcome> {
    this.installGlobals();
    const { code, pages } = extractPagerLines(request.code);
    for (const page of pages) this.openPager(page, request.sink);
    if (code.trim() === "") return { status: "ok" };

    const analysis = this.analysisOf(code);
    const using = topLevelUsing(analysis);
    if (using) return using;
    const rewrite = rewriteCell(analysis);
    const check = this.checker.check(code, analysis, rewrite.transformers);
    // Errors quote the cell as the user wrote it (a blanked `@sc` shown, not spaces) when its lines are where code's are.
    const quoted = request.shownCode !== undefined && request.shownCode.split("\n").length === code.split("\n").length ? request.shownCode : code;
    if (check.diagnostics.length > 0) return compileErrorOutcome(quoted, check.diagnostics);
    const compiled = rewrite.finish(check.emitted!);
    // Reading the declaration emit is for cells that declare something; `1 + 1` skips it.
    const declarations = analysis.names.length > 0 ? check.declarations() : new Map<string, string[]>();
    const reserved = this.reservedDeclaration(analysis);
    if (reserved) return reserved;
    // Unique per run (silent requests share an execution count), so frames stay mappable.
    const filename = join(this.cwd, `__nbjob_cell_${run}__.js`);
    this.ranCells.set(filename, { label, compiled, lines: quoted.split("\n") });

    let value: unknown;
    try {
      const imports = await this.loadImports(analysis);
      Object.defineProperty(globalThis, IMPORTS_GLOBAL, { value: imports, configurable: true, writable: true, enumerable: false });
      makeAssignable(analysis);
      runningCellRecords = [...declarationRecords(analysis).values()];
      value = await this.run(compiled, filename);
      // Outputs the cell asked to finish first (nbjob.makeDefaultDashboard()'s first table).
      await settleHeldWork();
    } catch (error) {
      this.remember(analysis, declarations);
      if (isInterrupt(error)) {
        // What the cell started and registered to stop with it (an analyzer) stops now.
        cell.end(true);
        return interruptedOutcome();
      }
      return runtimeErrorOutcome(error, (file, line, column) => this.mapFrame(file, line, column), KERNEL_ROOT);
    }
    this.remember(analysis, declarations);
    const result = analysis.lastExpression && value !== undefined ? resultBundle(value) : undefined;
    return result ? { status: "ok", result } : { status: "ok" };
  }

  /**
   * The cell's analysis, which depends on its text alone: a cell run again unchanged (a common
   * thing in a notebook) is not analysed again.
   */
  private analysisOf(code: string): CellAnalysis {
    const cached = this.analyses.get(code);
    if (cached) {
      this.analyses.delete(code);
      this.analyses.set(code, cached);
      return cached;
    }
    const analysis = analyzeCell(code);
    this.analyses.set(code, analysis);
    if (this.analyses.size > ANALYSES_KEPT) this.analyses.delete(this.analyses.keys().next().value as string);
    return analysis;
  }

  /** Runs the script; an async cell's promise is raced against interrupt(). */
  private async run(compiled: CompiledCell, filename: string): Promise<unknown> {
    const completion: unknown = vm.runInThisContext(compiled.js, {
      filename,
      breakOnSigint: true,
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    });
    if (!compiled.isAsync) return completion;
    // A stepped cell can be stopped in a loop after an await, and at an await its rest does not run.
    const stepped = compiled.stepped ? stepThrough(completion as Generator<unknown, unknown, unknown>) : undefined;
    const promise = stepped ? stepped.promise : (completion as Promise<unknown>);
    try {
      return await new Promise((resolvePromise, reject) => {
        this.rejectPending = (error) => {
          stepped?.cancel();
          reject(error);
        };
        promise.then(resolvePromise, reject);
      });
    } finally {
      this.rejectPending = undefined;
      // An interrupted cell's promise may still fail later; that is not a new error to report.
      promise.catch(() => undefined);
    }
  }

  private async loadImports(analysis: CellAnalysis): Promise<Record<string, unknown>[]> {
    const values: Record<string, unknown>[] = [];
    for (const cellImport of analysis.imports) {
      const bindings: Record<string, unknown> = {};
      if (cellImport.loads) {
        const moduleObject = await this.loader.load(cellImport.specifier);
        for (const binding of cellImport.bindings) bindings[binding.local] = ModuleLoader.bindingValue(moduleObject, binding);
      }
      values.push(bindings);
    }
    return values;
  }

  /** Records the cell's declarations: for later cells' type checks, declarations() and function sources. */
  private remember(analysis: CellAnalysis, declarations: Map<string, string[]>): void {
    runningCellRecords = undefined;
    this.checker.commit(analysis, declarations);
    const scope = globalThis as Record<string, unknown>;
    for (const record of declarationRecords(analysis).values()) {
      this.records.set(record.name, record);
      const value = scope[record.name];
      if (typeof value === "function" && record.kind !== "import") functionSources.set(value, record);
    }
  }

  /**
   * Node's own globals (process, console, setTimeout, ...) are shared with the kernel, so a
   * cell may not declare them at its top level: it would replace them for the kernel too.
   */
  private reservedDeclaration(analysis: CellAnalysis): CellOutcome | undefined {
    const clash = analysis.names.find((declared) => declared.hasValue && NODE_GLOBALS.has(declared.name));
    if (!clash) return undefined;
    const statement = clash.statement;
    const text = statement.getText(analysis.sourceFile);
    const at = statement.getStart(analysis.sourceFile) + Math.max(0, text.search(new RegExp(`\\b${clash.name.replace(/\$/g, "\\$")}\\b`)));
    const position = analysis.sourceFile.getLineAndCharacterOfPosition(at);
    return compileErrorOutcome(analysis.code, [{
      line: position.line + 1,
      column: position.character + 1,
      code: 0,
      message: `'${clash.name}' is a global of Node.js that the kernel shares with the notebook; declaring it at the top level of a cell would replace it for the kernel too. Choose another name, or declare it inside a block or function.`,
      syntactic: false,
    }]);
  }

  private mapFrame(file: string, line: number, column: number): CellFrame | undefined {
    const cell = this.ranCells.get(file);
    if (!cell) return this.loader.mapFrame(file, line, column);
    const { compiled } = cell;
    const generated = { line: line - 1 - compiled.lineOffset, column: column - 1 };
    const original = compiled.map.originalPosition(generated);
    if (!original) return { label: cell.label, line: 1, column: 1, sourceLine: cell.lines[0] };
    return { label: cell.label, line: original.line + 1, column: original.column + 1, sourceLine: cell.lines[original.line] };
  }

  private openPager(page: PagerRequest, sink: CellSink): void {
    const info = this.checker.quickInfo(page.codeForInfo, page.position);
    if (!info) {
      sink.stream("stdout", `Object \`${page.expression}\` not found: nothing is known by that name.\n`);
      return;
    }
    sink.payload({ source: "page", data: describe(info), start: 0 });
  }

  /** Puts display, input, SnippetCollector... on the global object (once; their module loads at first use). */
  private installGlobals(): RuntimeGlobal[] {
    if (this.globals) return this.globals;
    this.globals = runtimeGlobals();
    const scope = globalThis as Record<string, unknown>;
    for (const global of this.globals) {
      const settle = (value: unknown) => Object.defineProperty(scope, global.name, { value, configurable: true, writable: true, enumerable: false });
      // An accessor until first read: then the runtime loads and the global becomes a plain value.
      Object.defineProperty(scope, global.name, {
        get: () => {
          const value = global.load();
          settle(value);
          return value;
        },
        set: settle,
        configurable: true,
        enumerable: false,
      });
    }
    // What a CommonJS module of the notebook's folder would have (Node's types declare them).
    Object.defineProperty(scope, "require", { value: this.loader.require, configurable: true, writable: true, enumerable: false });
    Object.defineProperty(scope, "__dirname", { value: this.cwd, configurable: true, writable: true, enumerable: false });
    return this.globals;
  }

  private globalsDeclarations(): string {
    const globals = this.installGlobals();
    const modules = [...new Set(globals.map((global) => global.typesFrom))];
    const imports = modules.map((path, index) => `import * as __nbjob_runtime${index} from ${JSON.stringify(path)};`);
    const aliases = globals.map((global) => `  export import ${global.name} = __nbjob_runtime${modules.indexOf(global.typesFrom)}.${global.name};`);
    return `${imports.join("\n")}\ndeclare global {\n${aliases.join("\n")}\n}\nexport {};\n`;
  }
}

/**
 * `import()` in a cell works through vm's USE_MAIN_CONTEXT_DEFAULT_LOADER, which Node 20 marks
 * experimental with a warning on first use; that warning is about the engine, not the user's
 * code, so it is not printed into their cell. Every other warning passes through.
 */
function hideDynamicImportWarning(): () => void {
  const original = process.emitWarning;
  const filtered = function emitWarning(this: unknown, warning: string | Error, ...rest: unknown[]): void {
    const text = typeof warning === "string" ? warning : warning.message;
    if (text.includes("USE_MAIN_CONTEXT_DEFAULT_LOADER")) return;
    (original as (...args: unknown[]) => void).call(process, warning, ...rest);
  };
  process.emitWarning = filtered as typeof process.emitWarning;
  return () => {
    if (process.emitWarning === filtered) process.emitWarning = original;
  };
}

/**
 * A `using` declaration is disposed when its scope ends, which for a cell's top level is the
 * cell's end: the notebook could only keep a disposed resource. Not supported, with a clear
 * error saying what works instead.
 */
function topLevelUsing(analysis: CellAnalysis): CellOutcome | undefined {
  for (const statement of analysis.sourceFile.statements) {
    if (!ts.isVariableStatement(statement)) continue;
    const kind = statement.declarationList.flags & ts.NodeFlags.BlockScoped;
    if (kind !== ts.NodeFlags.Using && kind !== ts.NodeFlags.AwaitUsing) continue;
    const keyword = kind === ts.NodeFlags.Using ? "using" : "await using";
    const position = analysis.sourceFile.getLineAndCharacterOfPosition(statement.declarationList.getStart(analysis.sourceFile));
    return compileErrorOutcome(analysis.code, [{
      line: position.line + 1,
      column: position.character + 1,
      code: 0,
      message: `a top-level '${keyword}' declaration is not supported: it would be disposed when the cell ends, so later cells could not use it. Put it in a block ({ ${keyword} x = ...; ... }) or a function, where it is disposed at the block's end.`,
      syntactic: false,
    }]);
  }
  return undefined;
}

/**
 * Some globals are accessors or read-only (e.g. `crypto`); a cell's declaration of that name
 * becomes a plain variable, as it would be in a module of its own.
 */
function makeAssignable(analysis: CellAnalysis): void {
  for (const declared of analysis.names) {
    if (!declared.hasValue) continue;
    const existing = Object.getOwnPropertyDescriptor(globalThis, declared.name);
    if (existing && existing.configurable && !("value" in existing && existing.writable)) {
      Object.defineProperty(globalThis, declared.name, { value: undefined, writable: true, configurable: true, enumerable: true });
    }
  }
}

function describe(info: { signature: string; documentation: string }, source?: string): MimeBundle {
  const fence = (text: string) => `\`\`\`typescript\n${text}\n\`\`\``;
  const plain = [info.signature, info.documentation, source && `Source:\n${source}`].filter(Boolean).join("\n\n");
  const markdown = [fence(info.signature), info.documentation, source && `Source:\n\n${fence(source)}`].filter(Boolean).join("\n\n");
  return { "text/plain": plain, "text/markdown": markdown };
}

/** The identifier around `position` in `code` ("" when there is none). */
function nameAt(code: string, position: number): string {
  const before = /[\w$]*$/.exec(code.slice(0, position))?.[0] ?? "";
  const after = /^[\w$]*/.exec(code.slice(position))?.[0] ?? "";
  return before + after;
}

function resultBundle(value: unknown): MimeBundle | undefined {
  const rich = (value as { [MIME_BUNDLE]?: unknown } | null)?.[MIME_BUNDLE];
  if (typeof rich === "function") {
    const bundle: unknown = rich.call(value);
    if (bundle === null || bundle === undefined) return undefined;
    if (typeof bundle === "object") return bundle as MimeBundle;
  }
  return { "text/plain": inspect(value, { colors: false }) };
}
