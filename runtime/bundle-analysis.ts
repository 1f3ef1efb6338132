// Reading snippet source with the TypeScript parser: the names it declares, the names it uses
// (and whether at load time or only inside functions), and removing a redefined declaration.
import type { ts } from "ts-morph";
import { typescript } from "./bundle-ts";
import { createHash } from "node:crypto";

export type SnippetKind = "function" | "class" | "variable" | "interface" | "type" | "enum" | "namespace" | "import" | "cell";

export function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/**
 * Parses `source` as a module, as the type checks and the engine treat cells, snippets and
 * entries: only in a module is a top-level `await (x)` an await. A script parse (TypeScript's
 * default for text without import/export) reads it as a call of a function named `await`, so
 * a cell whose only await was written that way was not run as an async cell.
 */
export function parseSource(source: string, fileName = "snippet.ts"): ts.SourceFile {
  const ts = typescript();
  return ts.createSourceFile(fileName, source, { languageVersion: ts.ScriptTarget.ES2022, setExternalModuleIndicator: markAsModule }, true, ts.ScriptKind.TS);
}

// What the compiler's `moduleDetection: "force"` does (its own helper is not in the public API).
function markAsModule(file: ts.SourceFile): void {
  (file as unknown as { externalModuleIndicator?: unknown }).externalModuleIndicator = true;
}

/** Syntax errors of `source`, as `line:col message` (1-based), empty when it parses. */
export function syntaxErrors(sf: ts.SourceFile): { line: number; column: number; message: string }[] {
  const ts = typescript();
  const diagnostics = (sf as unknown as { parseDiagnostics?: ts.Diagnostic[] }).parseDiagnostics ?? [];
  return diagnostics.map((d) => {
    const pos = sf.getLineAndCharacterOfPosition(d.start ?? 0);
    return { line: pos.line + 1, column: pos.character + 1, message: ts.flattenDiagnosticMessageText(d.messageText, "\n") };
  });
}

/** Names bound by a declaration name (an identifier or a destructuring pattern). */
export function bindingNames(name: ts.BindingName | ts.DeclarationName | undefined, into: string[] = []): string[] {
  const ts = typescript();
  if (!name) return into;
  if (ts.isIdentifier(name)) into.push(name.text);
  else if (ts.isObjectBindingPattern(name) || ts.isArrayBindingPattern(name)) {
    for (const element of name.elements) if (ts.isBindingElement(element)) bindingNames(element.name, into);
  }
  return into;
}

/** The names one top-level statement declares (empty for plain statements like `f();`). */
export function statementNames(statement: ts.Statement): string[] {
  const ts = typescript();
  if (ts.isVariableStatement(statement)) {
    const names: string[] = [];
    for (const d of statement.declarationList.declarations) bindingNames(d.name, names);
    return names;
  }
  if (ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement) || ts.isInterfaceDeclaration(statement) ||
      ts.isTypeAliasDeclaration(statement) || ts.isEnumDeclaration(statement)) {
    return statement.name ? [statement.name.text] : [];
  }
  if (ts.isModuleDeclaration(statement) && ts.isIdentifier(statement.name)) return [statement.name.text];
  if (ts.isImportEqualsDeclaration(statement)) return [statement.name.text];
  if (ts.isImportDeclaration(statement) && statement.importClause) {
    const clause = statement.importClause;
    const names = clause.name ? [clause.name.text] : [];
    const bindings = clause.namedBindings;
    if (bindings && ts.isNamespaceImport(bindings)) names.push(bindings.name.text);
    if (bindings && ts.isNamedImports(bindings)) for (const s of bindings.elements) names.push(s.name.text);
    return names;
  }
  return [];
}

export function statementKind(statement: ts.Statement): Exclude<SnippetKind, "cell"> | undefined {
  const ts = typescript();
  if (ts.isVariableStatement(statement)) return "variable";
  if (ts.isFunctionDeclaration(statement)) return "function";
  if (ts.isClassDeclaration(statement)) return "class";
  if (ts.isInterfaceDeclaration(statement)) return "interface";
  if (ts.isTypeAliasDeclaration(statement)) return "type";
  if (ts.isEnumDeclaration(statement)) return "enum";
  if (ts.isModuleDeclaration(statement)) return "namespace";
  if (ts.isImportDeclaration(statement) || ts.isImportEqualsDeclaration(statement)) return "import";
  return undefined;
}

/** Every top-level name `source` declares, in order, without repeats (overloads count once). */
export function declaredNames(sf: ts.SourceFile): string[] {
  const names: string[] = [];
  for (const statement of sf.statements) for (const n of statementNames(statement)) if (!names.includes(n)) names.push(n);
  return names;
}

function isFunctionLike(node: ts.Node): boolean {
  const ts = typescript();
  return ts.isFunctionDeclaration(node) || ts.isFunctionExpression(node) || ts.isArrowFunction(node) ||
    ts.isMethodDeclaration(node) || ts.isConstructorDeclaration(node) || ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node);
}

function isScope(node: ts.Node): boolean {
  const ts = typescript();
  return isFunctionLike(node) || ts.isBlock(node) || ts.isForStatement(node) || ts.isForOfStatement(node) ||
    ts.isForInStatement(node) || ts.isCatchClause(node) || ts.isClassExpression(node);
}

/** Names declared anywhere inside a scope node (an over-approximation of what it shadows). */
function localNames(scope: ts.Node): Set<string> {
  const ts = typescript();
  const names = new Set<string>();
  const visit = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) || ts.isParameter(node) || ts.isBindingElement(node)) {
      for (const n of bindingNames(node.name)) names.add(n);
    } else if ((ts.isFunctionDeclaration(node) || ts.isFunctionExpression(node) || ts.isClassDeclaration(node) || ts.isClassExpression(node)) && node.name) {
      names.add(node.name.text);
    }
    ts.forEachChild(node, visit);
  };
  if (ts.isFunctionDeclaration(scope) && scope.name) {
    // A function's own name is the top-level binding, not a local: visit only its inside.
    ts.forEachChild(scope, (child) => { if (child !== scope.name) visit(child); });
  } else ts.forEachChild(scope, visit);
  if (ts.isFunctionExpression(scope) && scope.name) names.add(scope.name.text);
  return names;
}

/** Whether an identifier is a use of a variable/type (not a property name, label or the name being declared). */
function isReference(id: ts.Identifier): boolean {
  const ts = typescript();
  const p = id.parent;
  if ((ts.isPropertyAccessExpression(p) && p.name === id) || (ts.isQualifiedName(p) && p.right === id)) return false;
  if ((ts.isPropertyAssignment(p) || ts.isMethodDeclaration(p) || ts.isPropertyDeclaration(p) || ts.isPropertySignature(p) ||
       ts.isMethodSignature(p) || ts.isGetAccessorDeclaration(p) || ts.isSetAccessorDeclaration(p) || ts.isEnumMember(p) ||
       ts.isPropertyAccessExpression(p)) && p.name === id) return false;
  if ((ts.isVariableDeclaration(p) || ts.isFunctionDeclaration(p) || ts.isClassDeclaration(p) || ts.isClassExpression(p) ||
       ts.isFunctionExpression(p) || ts.isInterfaceDeclaration(p) || ts.isTypeAliasDeclaration(p) || ts.isEnumDeclaration(p) ||
       ts.isParameter(p) || ts.isTypeParameterDeclaration(p) || ts.isModuleDeclaration(p) || ts.isImportClause(p) ||
       ts.isNamespaceImport(p) || ts.isImportEqualsDeclaration(p)) && p.name === id) return false;
  if (ts.isBindingElement(p)) return p.name !== id && p.propertyName !== id ? true : false;
  if (ts.isImportSpecifier(p) || ts.isExportSpecifier(p)) return false;
  if (ts.isLabeledStatement(p) || ts.isBreakOrContinueStatement(p)) return false;
  if (ts.isJsxAttribute(p) || ts.isNamedTupleMember(p)) return false;
  return true;
}

/**
 * Free names a snippet uses, each marked `eager` when the use runs while the program loads
 * (top-level code, class heritage, static initialisers) rather than only when a function is
 * called, and not counting type positions (types are erased and never order a program).
 */
export function referencedNames(sf: ts.SourceFile): Map<string, { eager: boolean }> {
  const ts = typescript();
  const own = new Set(declaredNames(sf));
  const refs = new Map<string, { eager: boolean }>();
  const visit = (node: ts.Node, lazy: boolean, locals: readonly Set<string>[]): void => {
    if (ts.isIdentifier(node)) {
      if (isReference(node) && !own.has(node.text) && !locals.some((s) => s.has(node.text))) {
        const eager = !lazy;
        const seen = refs.get(node.text);
        refs.set(node.text, { eager: eager || (seen?.eager ?? false) });
      }
      return;
    }
    let childLazy = lazy;
    if (isFunctionLike(node) || ts.isTypeNode(node) || ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node)) childLazy = true;
    // Instance fields are initialised at construction time, not when the class is defined.
    if (ts.isPropertyDeclaration(node) && !node.modifiers?.some((m) => m.kind === ts.SyntaxKind.StaticKeyword)) childLazy = true;
    const childLocals = isScope(node) ? [...locals, localNames(node)] : locals;
    ts.forEachChild(node, (child) => visit(child, childLazy, childLocals));
  };
  ts.forEachChild(sf, (child) => visit(child, false, []));
  return refs;
}

/**
 * The names a program registers with `jobtracker.registerCheckpointer("name")` by a string
 * literal and without accessors, so by a top-level variable of that name (the worker reads and
 * restores the variable itself); with the 1-based position of each call.
 */
export function checkpointerNames(sf: ts.SourceFile): Array<{ name: string; line: number; column: number }> {
  const ts = typescript();
  const found: Array<{ name: string; line: number; column: number }> = [];
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && node.expression.name.text === "registerCheckpointer"
      && ts.isIdentifier(node.expression.expression) && node.expression.expression.text === "jobtracker"
      && node.arguments.length === 1 && ts.isStringLiteralLike(node.arguments[0])) {
      const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
      found.push({ name: node.arguments[0].text, line: line + 1, column: character + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/**
 * `source` without its top-level declarations of `names` (a later definition replaced them).
 * Declarators of a `const a = 1, b = 2` are removed one by one; a destructuring that binds
 * some other name too is kept whole (the bundle's type check then reports the duplicate).
 */
export function removeDeclarations(source: string, names: ReadonlySet<string>): string {
  const ts = typescript();
  const sf = parseSource(source);
  const cuts: [number, number][] = [];
  for (const statement of sf.statements) {
    const declared = statementNames(statement);
    if (declared.length === 0 || !declared.some((n) => names.has(n))) continue;
    if (declared.every((n) => names.has(n))) {
      cuts.push([statement.getFullStart(), statement.getEnd()]);
      continue;
    }
    if (!ts.isVariableStatement(statement)) continue;
    const list = statement.declarationList.declarations;
    list.forEach((d, i) => {
      const own = bindingNames(d.name);
      if (!own.every((n) => names.has(n))) return;
      // Take the comma on one side with it.
      if (i < list.length - 1) cuts.push([d.getStart(sf), list[i + 1].getStart(sf)]);
      else cuts.push([list[i - 1].getEnd(), d.getEnd()]);
    });
  }
  let out = source;
  for (const [start, end] of cuts.sort((a, b) => b[0] - a[0])) out = out.slice(0, start) + out.slice(end);
  return tidySource(out);
}

/** Drops leading/trailing blank lines and trailing spaces at line ends; keeps indentation. */
export function tidySource(source: string): string {
  const lines = source.replace(/\r\n/g, "\n").split("\n").map((l) => l.replace(/[ \t]+$/, ""));
  while (lines.length > 0 && lines[0] === "") lines.shift();
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines.join("\n");
}

/** Whether the source has any statement left (not only comments/whitespace). */
export function hasStatements(source: string): boolean {
  return parseSource(source).statements.length > 0;
}

/** Where the first top-level `await` (outside any function) is, 1-based, or undefined. */
export function topLevelAwait(sf: ts.SourceFile): { line: number; column: number } | undefined {
  const ts = typescript();
  let found: number | undefined;
  const visit = (node: ts.Node): void => {
    if (found !== undefined || isFunctionLike(node)) return;
    if (ts.isAwaitExpression(node) || (ts.isForOfStatement(node) && node.awaitModifier)) {
      found = node.getStart(sf);
      return;
    }
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(sf, visit);
  if (found === undefined) return undefined;
  const pos = sf.getLineAndCharacterOfPosition(found);
  return { line: pos.line + 1, column: pos.character + 1 };
}
