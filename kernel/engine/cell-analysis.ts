// Reads a cell's top level: the names it declares (of every kind), its imports, whether it
// awaits at the top level, and whether it ends with an expression whose value to show.
import type { DeclarationRecord } from "./types";
import { ts } from "./typescript";
import { parseSource } from "../../runtime/bundle-analysis";

export type DeclarationKind = DeclarationRecord["kind"];

export interface DeclaredName {
  name: string;
  kind: DeclarationKind;
  statement: ts.Statement;
  /** Whether the name exists at run time (false for interfaces, type aliases, `declare`d names). */
  hasValue: boolean;
}

export type ImportBinding =
  | { local: string; form: "default" }
  | { local: string; form: "namespace" }
  | { local: string; form: "named"; imported: string }
  | { local: string; form: "require" };

export interface CellImport {
  statement: ts.ImportDeclaration | ts.ImportEqualsDeclaration;
  specifier: string;
  /** Bindings that exist at run time (type-only ones left out). */
  bindings: ImportBinding[];
  /** Every name the import declares, type-only ones included. */
  allNames: string[];
  /** Whether the module is loaded at run time (not for `import type`, nor when every name is a type). */
  loads: boolean;
}

export interface CellAnalysis {
  code: string;
  sourceFile: ts.SourceFile;
  names: DeclaredName[];
  imports: CellImport[];
  hasTopLevelAwait: boolean;
  /** The final statement when it is an expression statement (its value is the cell's result). */
  lastExpression?: ts.ExpressionStatement;
}

/** The cell parsed as the module the checker sees (so `await (x)` at the top level is an await). */
export function parseCell(code: string, fileName = "cell.ts"): ts.SourceFile {
  return parseSource(code, fileName);
}

function hasModifier(node: ts.Node, kind: ts.SyntaxKind): boolean {
  return ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((modifier) => modifier.kind === kind);
}

export function isAmbient(statement: ts.Statement): boolean {
  return hasModifier(statement, ts.SyntaxKind.DeclareKeyword);
}

function bindingNames(name: ts.BindingName, into: string[]): void {
  if (ts.isIdentifier(name)) {
    into.push(name.text);
    return;
  }
  for (const element of name.elements) {
    if (!ts.isOmittedExpression(element)) bindingNames(element.name, into);
  }
}

export function variableNames(list: ts.VariableDeclarationList): string[] {
  const names: string[] = [];
  for (const declaration of list.declarations) bindingNames(declaration.name, names);
  return names;
}

function readImport(statement: ts.ImportDeclaration): CellImport | undefined {
  if (!ts.isStringLiteral(statement.moduleSpecifier)) return undefined;
  const specifier = statement.moduleSpecifier.text;
  const clause = statement.importClause;
  const bindings: ImportBinding[] = [];
  const allNames: string[] = [];
  const typeOnly = clause?.isTypeOnly === true;
  if (clause?.name) {
    allNames.push(clause.name.text);
    if (!typeOnly) bindings.push({ local: clause.name.text, form: "default" });
  }
  const named = clause?.namedBindings;
  if (named && ts.isNamespaceImport(named)) {
    allNames.push(named.name.text);
    if (!typeOnly) bindings.push({ local: named.name.text, form: "namespace" });
  } else if (named) {
    for (const element of named.elements) {
      allNames.push(element.name.text);
      if (typeOnly || element.isTypeOnly) continue;
      const imported = element.propertyName ? element.propertyName.text : element.name.text;
      bindings.push({ local: element.name.text, form: "named", imported });
    }
  }
  // `import type { A } from "m"` loads nothing; `import "m"` loads m for its side effects.
  if (typeOnly) return { statement, specifier, bindings: [], allNames, loads: false };
  const onlyTypeNames = allNames.length > 0 && bindings.length === 0;
  return { statement, specifier, bindings, allNames, loads: !onlyTypeNames };
}

/** True when `node` awaits outside any function (so the cell needs an async wrapper). */
function awaitsAtTopLevel(node: ts.Node): boolean {
  if (ts.isAwaitExpression(node)) return true;
  if (ts.isForOfStatement(node) && node.awaitModifier) return true;
  if (ts.isFunctionLike(node) || ts.isClassLike(node)) return false;
  return ts.forEachChild(node, awaitsAtTopLevel) === true;
}

export function analyzeCell(code: string): CellAnalysis {
  const sourceFile = parseCell(code);
  const names: DeclaredName[] = [];
  const imports: CellImport[] = [];
  let hasTopLevelAwait = false;
  const add = (name: string, kind: DeclarationKind, statement: ts.Statement, hasValue: boolean) =>
    names.push({ name, kind, statement, hasValue });

  for (const statement of sourceFile.statements) {
    if (!hasTopLevelAwait && awaitsAtTopLevel(statement)) hasTopLevelAwait = true;
    const ambient = isAmbient(statement);
    if (ts.isVariableStatement(statement)) {
      for (const name of variableNames(statement.declarationList)) add(name, "variable", statement, !ambient);
    } else if (ts.isFunctionDeclaration(statement) && statement.name) {
      add(statement.name.text, "function", statement, !ambient && statement.body !== undefined);
    } else if (ts.isClassDeclaration(statement) && statement.name) {
      add(statement.name.text, "class", statement, !ambient);
    } else if (ts.isInterfaceDeclaration(statement)) {
      add(statement.name.text, "interface", statement, false);
    } else if (ts.isTypeAliasDeclaration(statement)) {
      add(statement.name.text, "type", statement, false);
    } else if (ts.isEnumDeclaration(statement)) {
      add(statement.name.text, "enum", statement, !ambient);
    } else if (ts.isModuleDeclaration(statement) && ts.isIdentifier(statement.name)) {
      add(statement.name.text, "variable", statement, !ambient);
    } else if (ts.isImportDeclaration(statement)) {
      const cellImport = readImport(statement);
      if (cellImport) {
        imports.push(cellImport);
        for (const name of cellImport.allNames) add(name, "import", statement, cellImport.bindings.some((b) => b.local === name));
      }
    } else if (ts.isImportEqualsDeclaration(statement)) {
      const reference = statement.moduleReference;
      if (ts.isExternalModuleReference(reference) && ts.isStringLiteral(reference.expression)) {
        const local = statement.name.text;
        const bindings: ImportBinding[] = statement.isTypeOnly ? [] : [{ local, form: "require" }];
        imports.push({ statement, specifier: reference.expression.text, bindings, allNames: [local], loads: !statement.isTypeOnly });
        add(local, "import", statement, !statement.isTypeOnly);
      } else {
        add(statement.name.text, "variable", statement, !statement.isTypeOnly);
      }
    }
  }
  const last = sourceFile.statements[sourceFile.statements.length - 1];
  const lastExpression = last && ts.isExpressionStatement(last) ? last : undefined;
  return { code, sourceFile, names, imports, hasTopLevelAwait, lastExpression };
}

/**
 * The latest exact source of each name the cell declares: the whole statement (all of a
 * name's statements, e.g. overloads or merged interfaces, joined by a blank line).
 */
export function declarationRecords(analysis: CellAnalysis): Map<string, DeclarationRecord> {
  const records = new Map<string, DeclarationRecord>();
  for (const declared of analysis.names) {
    const source = declared.statement.getText(analysis.sourceFile);
    const earlier = records.get(declared.name);
    if (earlier && earlier.source.includes(source)) continue;
    records.set(declared.name, {
      name: declared.name,
      kind: earlier?.kind ?? declared.kind,
      source: earlier ? `${earlier.source}\n${source}` : source,
    });
  }
  return records;
}
