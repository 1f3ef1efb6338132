// TypeScript → JavaScript for jobs. Workers only transpile (the notebook type-checked the bundle),
// and this module loads the TypeScript compiler, so only the short-lived compiler thread imports it.
import type { ts as TypeScript } from "ts-morph";
import { loadTypeScript } from "../runtime/typescript-loader";
import { ANALYSIS_FILE } from "../runtime/shared/analysis-protocol";
import { appendEntries, describeProgramLine, ENTRY_HOOK, entryRegistration, PROGRAM_FILE } from "./program";
import type { ProgramLayout } from "./program";

export interface CompiledProgram extends ProgramLayout {
  /** CommonJS JavaScript, run as a script so top-level declarations stay reachable by name. */
  js: string;
  /** The source map's "mappings" field (generated JavaScript → the program's TypeScript). */
  mappings: string;
  /** Whether the program registers entry functions (otherwise its last statement's value is the result). */
  hasEntries: boolean;
  /**
   * Names the JavaScript declares in the global scope (var, let, const, function, class, also
   * vars inside top-level blocks): the job context leaves these out when it binds built-ins.
   */
  declaredNames: string[];
  /**
   * The names the JavaScript assigns anywhere (=, +=…, ++/--, destructuring, for-in/of heads), or
   * undefined when code it runs could assign names out of sight (eval, Function, with): the job
   * context binds the built-ins the program never assigns as consts (assignedGlobalNames).
   */
  assignedNames?: string[];
  /**
   * The program's top-level imports that bind values, on one line without comments: an analysis
   * of the job compiles its functions with them, so a function may use an imported name as the
   * notebook's cell could (the program itself binds them under compiled names).
   */
  imports: string;
  /**
   * Why state of this program's top level may hide where no name reaches it (hiddenStateRisk);
   * undefined: every piece of its state is reachable by name.
   */
  hiddenState?: string;
}

const ANALYSIS_SOURCE_FILE = ANALYSIS_FILE.replace(/\.js$/, ".ts");
const loaded = loadTypeScript("transpile");
const ts = loaded.ts;
let cacheSaved = false;

/** A syntax error in the bundle, located in the bundle's own numbering. */
export class BundleSyntaxError extends Error {
  override name = "SyntaxError";
}

export function transpileProgram(source: string, entries: readonly string[]): CompiledProgram {
  const sourceFile = ts.createSourceFile("bundle.ts", source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const where = (position: number, layout: ProgramLayout = { entryLines: [], sourceLines: Infinity }) => {
    const at = sourceFile.getLineAndCharacterOfPosition(position);
    const place = describeProgramLine(layout, at.line + 1);
    return `${place.file}:${place.line}:${at.character + 1}`;
  };
  const syntax = (sourceFile as unknown as { parseDiagnostics?: TypeScript.Diagnostic[] }).parseDiagnostics ?? [];
  if (syntax.length > 0) {
    throw new BundleSyntaxError(`${where(syntax[0].start ?? 0)}: ${ts.flattenDiagnosticMessageText(syntax[0].messageText, "\n")}`);
  }

  // Without entries, the trailing expression statements are the entries (bundle.ts's layout,
  // or plain code whose last expression is its value).
  const inSource = entries.length > 0 ? trailingEntryStatements(sourceFile, entries) : trailingExpressionStatements(sourceFile);
  let typescript: string;
  let layout: ProgramLayout;
  if (inSource) {
    // Rewritten in place, last first so earlier offsets stay valid; each keeps its first line.
    typescript = source;
    for (const statement of [...inSource].reverse()) {
      typescript = typescript.slice(0, statement.getStart(sourceFile)) + entryRegistration(statement.expression.getText(sourceFile), false) + typescript.slice(statement.end);
    }
    layout = {
      entryLines: [],
      sourceLines: source.split("\n").length,
      wrappedLines: inSource.map((statement) => sourceFile.getLineAndCharacterOfPosition(statement.getStart(sourceFile)).line + 1),
    };
  } else {
    ({ typescript, layout } = appendEntries(source, entries));
  }
  const entryStatements = new Set<TypeScript.Statement>(inSource ?? []);
  for (const statement of sourceFile.statements) {
    const awaited = entryStatements.has(statement) ? undefined : topLevelAwait(statement);
    if (awaited) {
      throw new BundleSyntaxError(`${where(awaited.getStart(sourceFile))}: top-level await outside the entries does not run on workers; move it into an async function and call that from an entry (e.g. await setup())`);
    }
  }

  const output = ts.transpileModule(typescript, {
    fileName: PROGRAM_FILE.replace(/\.js$/, ".ts"),
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      sourceMap: true,
      inlineSources: false,
    },
  });
  if (!cacheSaved) {
    cacheSaved = true;
    loaded.saveCache();
  }
  const map = JSON.parse(output.sourceMapText ?? "{}") as { mappings?: string };
  const js = output.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
  // Parsed once for the three walks below.
  const parsedJs = parseJs(js);
  const declaredNames = globalDeclarations(parsedJs);
  return {
    js,
    mappings: map.mappings ?? "",
    hasEntries: inSource !== undefined || entries.length > 0,
    declaredNames,
    assignedNames: assignedGlobalNames(parsedJs),
    imports: valueImports(sourceFile),
    hiddenState: hiddenStateRisk(parsedJs, declaredNames),
    ...layout,
  };
}

/** What the analysis thread needs of an analysis's functions' program (analysis-runner.ts functionsProgram). */
export interface CompiledFunctions {
  js: string;
  /** As CompiledProgram.declaredNames (import helpers' vars land in the global scope). */
  declaredNames: string[];
  /** The source map's mappings, when asked for. */
  mappings?: string;
}

/**
 * An analysis's functions' program: less than a job's program needs (no entries, no imports,
 * assigned names or hidden state to read), and its source map only when asked for. New functions
 * are compiled right before an analysis's first checkpoint, where each worker waits for it
 * (measured: 15 ms instead of 23 after a pause, a fifth of it the map); the map is only wanted
 * when a function throws, for its traceback (analysisTraceback).
 */
export function transpileFunctions(source: string, withMap: boolean): CompiledFunctions {
  const output = ts.transpileModule(source, {
    fileName: ANALYSIS_SOURCE_FILE,
    reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: withMap, inlineSources: false },
  });
  const syntax = output.diagnostics?.find((d) => d.category === ts.DiagnosticCategory.Error);
  if (syntax) {
    const at = syntax.file && syntax.start !== undefined ? syntax.file.getLineAndCharacterOfPosition(syntax.start) : undefined;
    throw new BundleSyntaxError(`${at ? `${ANALYSIS_SOURCE_FILE}:${at.line + 1}:${at.character + 1}: ` : ""}${ts.flattenDiagnosticMessageText(syntax.messageText, "\n")}`);
  }
  const js = output.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
  const mappings = withMap ? (JSON.parse(output.sourceMapText ?? "{}") as { mappings?: string }).mappings ?? "" : undefined;
  return { js, declaredNames: globalDeclarations(js), ...(mappings !== undefined ? { mappings } : {}) };
}

/**
 * A job's local TypeScript module as the CommonJS its require loads, with an inline source map
 * (the job thread has Node read them, so frames show the module's own lines).
 */
export function transpileLocalModule(source: string, fileName: string): string {
  return ts.transpileModule(source, {
    fileName,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true },
  }).outputText;
}

/** The compiled JavaScript as a syntax tree (with parent links, which hiddenStateRisk needs). */
function parseJs(js: string | TypeScript.SourceFile): TypeScript.SourceFile {
  return typeof js === "string" ? ts.createSourceFile(PROGRAM_FILE, js, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS) : js;
}

/**
 * The names a script declares in the global scope, read from the JavaScript that runs (so
 * import helpers and enums count, type-only declarations do not). Looks into top-level blocks and
 * loops (their vars, and sloppy-mode block functions, land in the global scope too), never into
 * functions or classes. Erring towards more names only leaves a built-in unbound.
 */
export function globalDeclarations(js: string | TypeScript.SourceFile): string[] {
  const sourceFile = parseJs(js);
  const names = new Set<string>();
  const addBinding = (name: TypeScript.BindingName): void => {
    if (ts.isIdentifier(name)) names.add(name.text);
    else for (const element of name.elements) if (!ts.isOmittedExpression(element)) addBinding(element.name);
  };
  const visit = (node: TypeScript.Node): void => {
    if (ts.isVariableDeclaration(node)) addBinding(node.name);
    if ((ts.isFunctionDeclaration(node) || ts.isClassDeclaration(node)) && node.name) names.add(node.name.text);
    if (ts.isFunctionLike(node) || ts.isClassLike(node)) return;
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(sourceFile, visit);
  return [...names].sort();
}

/**
 * Every name the script assigns, anywhere in it (a local that shadows a global counts too: erring
 * towards more names only leaves a built-in reassignable); undefined when it mentions eval or
 * Function or has a with statement, whose code could assign any name.
 */
export function assignedGlobalNames(js: string | TypeScript.SourceFile): string[] | undefined {
  const sourceFile = parseJs(js);
  const names = new Set<string>();
  let unknowable = false;
  const addTargets = (target: TypeScript.Node): void => {
    if (ts.isIdentifier(target)) names.add(target.text);
    else if (ts.isParenthesizedExpression(target) || ts.isSpreadElement(target) || ts.isSpreadAssignment(target)) addTargets(target.expression);
    else if (ts.isArrayLiteralExpression(target)) target.elements.forEach(addTargets);
    else if (ts.isObjectLiteralExpression(target)) {
      for (const property of target.properties) {
        if (ts.isShorthandPropertyAssignment(property)) names.add(property.name.text);
        else if (ts.isPropertyAssignment(property)) addTargets(property.initializer);
        else if (ts.isSpreadAssignment(property)) addTargets(property.expression);
      }
    } else if (ts.isBinaryExpression(target) && target.operatorToken.kind === ts.SyntaxKind.EqualsToken) addTargets(target.left); // a default value
  };
  const visit = (node: TypeScript.Node): void => {
    if (unknowable) return;
    if (ts.isWithStatement(node) || (ts.isIdentifier(node) && (node.text === "eval" || node.text === "Function"))) {
      unknowable = true;
      return;
    }
    if (ts.isBinaryExpression(node) && node.operatorToken.kind >= ts.SyntaxKind.FirstAssignment && node.operatorToken.kind <= ts.SyntaxKind.LastAssignment) addTargets(node.left);
    else if ((ts.isPrefixUnaryExpression(node) || ts.isPostfixUnaryExpression(node)) && (node.operator === ts.SyntaxKind.PlusPlusToken || node.operator === ts.SyntaxKind.MinusMinusToken)) addTargets(node.operand);
    else if ((ts.isForInStatement(node) || ts.isForOfStatement(node)) && !ts.isVariableDeclarationList(node.initializer)) addTargets(node.initializer);
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(sourceFile, visit);
  return unknowable ? undefined : [...names].sort();
}

/** The top-level import declarations that bind values (CompiledProgram.imports). */
function valueImports(sourceFile: TypeScript.SourceFile): string {
  const printer = ts.createPrinter({ removeComments: true });
  return sourceFile.statements
    .filter((statement) => (ts.isImportDeclaration(statement) && statement.importClause !== undefined && !statement.importClause.isTypeOnly)
      || (ts.isImportEqualsDeclaration(statement) && !statement.isTypeOnly && ts.isExternalModuleReference(statement.moduleReference)))
    .map((statement) => printer.printNode(ts.EmitHint.Unspecified, statement, sourceFile).replace(/\s*\n\s*/g, " "))
    .join(" ");
}

/** The source's last statements when they are exactly the entries, as bundle.ts lays them out. */
function trailingEntryStatements(sourceFile: TypeScript.SourceFile, entries: readonly string[]): TypeScript.ExpressionStatement[] | undefined {
  const statements = sourceFile.statements;
  if (entries.length === 0 || statements.length < entries.length) return undefined;
  const tail = statements.slice(statements.length - entries.length);
  const normal = (text: string) => text.trim().replace(/;\s*$/, "").trim();
  for (let i = 0; i < tail.length; i++) {
    const statement = tail[i];
    if (!ts.isExpressionStatement(statement) || normal(statement.expression.getText(sourceFile)) !== normal(entries[i])) return undefined;
  }
  return tail as TypeScript.ExpressionStatement[];
}

function trailingExpressionStatements(sourceFile: TypeScript.SourceFile): TypeScript.ExpressionStatement[] | undefined {
  const statements = sourceFile.statements;
  let first = statements.length;
  while (first > 0 && ts.isExpressionStatement(statements[first - 1])) first--;
  return first < statements.length ? (statements.slice(first) as TypeScript.ExpressionStatement[]) : undefined;
}

/** An await (or for await) outside any function, if the statement has one. */
function topLevelAwait(node: TypeScript.Node): TypeScript.Node | undefined {
  if (ts.isAwaitExpression(node)) return node;
  if (ts.isForOfStatement(node) && node.awaitModifier) return node;
  if (ts.isFunctionLike(node) || ts.isClassLike(node)) return undefined;
  return ts.forEachChild(node, topLevelAwait);
}

/** TypeScript's emit helpers that only wire modules together (they run no code of the job). */
const MODULE_HELPERS = new Set(["__importDefault", "__importStar", "__createBinding", "__setModuleDefault", "__exportStar", "__assign", "__rest", "__spreadArray"]);

/**
 * Why the program's top level may leave state where no name reaches it, or undefined when it
 * cannot. A call of the program's own functions, of an imported module's, an IIFE, a `new` of its
 * own classes, or a callback handed to a built-in that makes closures, may keep state in a
 * closure or a private field (a counter, a cache). The analysis thread then gives each checkpoint
 * a fresh context, as the record of named state (worker/context-state.ts) could not see it.
 */
export function hiddenStateRisk(js: string | TypeScript.SourceFile, declaredNames: readonly string[]): string | undefined {
  const sourceFile = parseJs(js);
  const declared = new Set(declaredNames);
  const line = (node: TypeScript.Node) => sourceFile.getLineAndCharacterOfPosition(node.getStart(sourceFile)).line + 1;
  let risk: string | undefined;
  const rootOf = (expression: TypeScript.Expression): TypeScript.Expression => {
    let e = expression;
    for (;;) {
      if (ts.isPropertyAccessExpression(e) || ts.isElementAccessExpression(e) || ts.isNonNullExpression(e) || ts.isParenthesizedExpression(e)) e = e.expression;
      else if (ts.isBinaryExpression(e) && e.operatorToken.kind === ts.SyntaxKind.CommaToken) e = e.right;
      else if (ts.isCallExpression(e) && !(ts.isIdentifier(e.expression) && e.expression.text === "require")) e = e.expression;
      else return e;
    }
  };
  const checkCallee = (call: TypeScript.Node, callee: TypeScript.Expression): void => {
    const root = rootOf(callee);
    if (ts.isCallExpression(root)) risk ??= `${PROGRAM_FILE} line ${line(call)} calls into a required module while the top level runs`;
    else if (ts.isIdentifier(root)) {
      if (declared.has(root.text) && !MODULE_HELPERS.has(root.text)) risk ??= `${PROGRAM_FILE} line ${line(call)} calls ${root.text} while the top level runs`;
    } else if (!ts.isArrayLiteralExpression(root) && !ts.isObjectLiteralExpression(root) && !ts.isStringLiteralLike(root) && !ts.isTemplateExpression(root) && !ts.isNumericLiteral(root) && !ts.isRegularExpressionLiteral(root)) {
      risk ??= `${PROGRAM_FILE} line ${line(call)} runs a function of its own while the top level runs`;
    }
  };
  /** Code that runs while the top level runs; `inCallback`: inside a function a built-in may call then. */
  const visit = (node: TypeScript.Node, inCallback: boolean): void => {
    if (risk) return;
    if (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isConstructorDeclaration(node) || ts.isAccessor(node)) {
      if (inCallback) risk = `${PROGRAM_FILE} line ${line(node)} makes a closure while the top level runs`;
      return;
    }
    if (ts.isFunctionExpression(node) || ts.isArrowFunction(node)) {
      if (inCallback) {
        risk = `${PROGRAM_FILE} line ${line(node)} makes a closure while the top level runs`;
        return;
      }
      // Called now only if handed to a call (Array.from(…, f), xs.map(f)): its body runs at the top level.
      const parent = node.parent;
      if ((ts.isCallExpression(parent) || ts.isNewExpression(parent)) && parent.expression !== node) visit(node.body, true);
      return;
    }
    if (ts.isClassLike(node)) {
      for (const clause of node.heritageClauses ?? []) visit(clause, inCallback);
      for (const member of node.members) {
        if (member.name && ts.isComputedPropertyName(member.name)) visit(member.name, inCallback);
        const isStatic = ts.canHaveModifiers(member) && ts.getModifiers(member)?.some((m) => m.kind === ts.SyntaxKind.StaticKeyword);
        if (ts.isClassStaticBlockDeclaration(member)) visit(member.body, inCallback);
        else if (isStatic && ts.isPropertyDeclaration(member) && member.initializer) visit(member.initializer, inCallback);
      }
      return;
    }
    // The entries are registered, and run only by a job (an analysis never calls them).
    if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === ENTRY_HOOK) return;
    if (ts.isCallExpression(node) || ts.isNewExpression(node)) checkCallee(node, node.expression);
    if (ts.isTaggedTemplateExpression(node)) checkCallee(node, node.tag);
    ts.forEachChild(node, (child) => visit(child, inCallback));
  };
  ts.forEachChild(sourceFile, (child) => visit(child, false));
  return risk;
}
