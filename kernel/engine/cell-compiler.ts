// Turns a checked cell into JavaScript that the engine runs in the notebook's global scope:
// top-level declarations become globals (so a later cell sees them and may declare them
// again), imports read modules the engine loaded beforehand, and a cell that awaits at the
// top level runs inside an async function. Lines never move, so errors map back exactly.
import type { CellAnalysis } from "./cell-analysis";
import { isAmbient } from "./cell-analysis";
import { SourceMapLookup } from "./source-map";
import { type EditedText, TextEdits } from "./text-edits";
import { ts } from "./typescript";

/** The global through which a cell reads its imports' bindings (set by the engine per cell). */
export const IMPORTS_GLOBAL = "__nbjob_imports";

export interface CompiledCell {
  /** A script for vm.runInThisContext; an async cell's script evaluates to its promise. */
  js: string;
  isAsync: boolean;
  /**
   * An async cell whose script evaluates to a generator, not a promise: its top-level awaits
   * are yields, for the engine to step through so that SIGINT can stop code after an await.
   */
  stepped: boolean;
  /** Lines the wrapper added before the transpiled code. */
  lineOffset: number;
  map: SourceMapLookup;
  edited: EditedText;
}

const transpileOptions = (): ts.CompilerOptions => ({
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  sourceMap: true,
  esModuleInterop: true,
  useDefineForClassFields: true,
});

function removeModifiers(edits: TextEdits, statement: ts.Statement, kinds: readonly ts.SyntaxKind[]): void {
  if (!ts.canHaveModifiers(statement)) return;
  for (const modifier of ts.getModifiers(statement) ?? []) {
    if (kinds.includes(modifier.kind)) edits.blank(modifier.getStart(), modifier.end);
  }
}

const exportKinds = () => [ts.SyntaxKind.ExportKeyword, ts.SyntaxKind.DefaultKeyword];

export function compileCell(analysis: CellAnalysis): CompiledCell {
  const { code, sourceFile, hasTopLevelAwait: isAsync } = analysis;
  const edits = new TextEdits(code);
  // Async cells only: names declared as globals before the wrapper, functions published from it,
  // and enums/namespaces whose `var` TypeScript emits inside the wrapper must be dropped.
  const globals: string[] = [];
  const functions: string[] = [];
  const enumLike: string[] = [];
  const importIndex = new Map(analysis.imports.map((cellImport, index) => [cellImport.statement as ts.Statement, index]));

  for (const statement of sourceFile.statements) {
    if (ts.isExportDeclaration(statement)) {
      edits.blank(statement.getStart(), statement.end);
      continue;
    }
    if (ts.isExportAssignment(statement)) {
      edits.blank(statement.getStart(), statement.expression.getStart());
      continue;
    }
    if (isAmbient(statement)) continue;
    const index = importIndex.get(statement);
    if (index !== undefined) {
      const bindings = analysis.imports[index]!.bindings;
      const assignments = bindings.map((binding) => `${binding.local} = ${IMPORTS_GLOBAL}[${index}].${binding.local}`);
      let text = "";
      if (assignments.length > 0) {
        text = isAsync ? `;(${assignments.join(", ")});` : `var ${assignments.join(", ")};`;
        if (isAsync) globals.push(...bindings.map((binding) => binding.local));
      }
      edits.replace(statement.getStart(), statement.end, text);
      continue;
    }
    if (ts.isVariableStatement(statement)) {
      removeModifiers(edits, statement, exportKinds());
      const list = statement.declarationList;
      const keywordStart = list.getStart();
      const keyword = /^(?:let|const|var)\b/.exec(code.slice(keywordStart))?.[0];
      if (!keyword) continue; // `using`: the engine refuses it at a cell's top level
      if (!isAsync) {
        edits.replace(keywordStart, keywordStart + keyword.length, "var".padEnd(keyword.length));
        // `let x;` declares x afresh: as a `var` it would keep the value of an earlier cell's x.
        if (keyword !== "var") {
          for (const declaration of list.declarations) {
            if (!declaration.initializer && ts.isIdentifier(declaration.name)) edits.insert(declaration.type?.end ?? declaration.name.end, " = undefined");
          }
        }
        continue;
      }
      edits.replace(keywordStart, keywordStart + keyword.length, ";(".padEnd(keyword.length));
      for (const declaration of list.declarations) {
        if (declaration.type) edits.blank(declaration.name.end, declaration.type.end);
        if (!declaration.initializer) edits.insert(declaration.type?.end ?? declaration.name.end, " = undefined");
      }
      edits.insert(list.end, ")");
      for (const declared of analysis.names) if (declared.statement === statement) globals.push(declared.name);
      continue;
    }
    if (ts.isClassDeclaration(statement) && statement.name) {
      removeModifiers(edits, statement, [...exportKinds(), ts.SyntaxKind.AbstractKeyword]);
      const name = statement.name.text;
      edits.insert(statement.getStart(), isAsync ? `${name} = ` : `var ${name} = `);
      edits.insert(statement.end, ";");
      if (isAsync) globals.push(name);
      continue;
    }
    if (ts.isFunctionDeclaration(statement)) {
      removeModifiers(edits, statement, exportKinds());
      if (isAsync && statement.name && statement.body) functions.push(statement.name.text);
      continue;
    }
    if (ts.isEnumDeclaration(statement) || (ts.isModuleDeclaration(statement) && ts.isIdentifier(statement.name))) {
      removeModifiers(edits, statement, exportKinds());
      if (isAsync) {
        globals.push(statement.name.text);
        enumLike.push(statement.name.text);
      }
      continue;
    }
    if (ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement)) {
      removeModifiers(edits, statement, exportKinds());
    }
  }
  if (isAsync && analysis.lastExpression) edits.insert(analysis.lastExpression.getStart(), "return ");

  const edited = edits.apply();
  const output = ts.transpileModule(edited.text, { fileName: "cell.ts", compilerOptions: transpileOptions() });
  let js = output.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
  const map = SourceMapLookup.fromJson(output.sourceMapText ?? '{"mappings":""}');
  if (!isAsync) return { js, isAsync, stepped: false, lineOffset: 0, map, edited };

  for (const name of enumLike) js = js.replace(new RegExp(`^var ${name.replace(/\$/g, "\\$")};$`, "m"), "");
  const declared = [...new Set(globals)];
  const publish = functions.map((name) => `globalThis.${name} = ${name};`).join(" ");
  // Published first thing (after the strict-mode directive, which must open the body), as a
  // script's function declarations are: hoisted and visible before the cell's code runs.
  if (publish) js = /^"use strict";/.test(js) ? js.replace(/^"use strict";/, `"use strict"; ${publish}`) : `${publish} ${js}`;
  const prefix = `${declared.length > 0 ? `var ${declared.join(", ")}; ` : ""}(async () => {\n`;
  const wrapped = `${prefix}${js}\n})()`;
  const generator = asGenerator(wrapped);
  return { js: generator ?? wrapped, isAsync, stepped: generator !== undefined, lineOffset: 1, map, edited };
}

// Where `yield x` means what `await x` did without parentheses: positions that take any
// assignment expression.
function yieldFitsWithoutParentheses(node: ts.AwaitExpression): boolean {
  const parent = node.parent;
  if (ts.isExpressionStatement(parent) || ts.isParenthesizedExpression(parent) || ts.isReturnStatement(parent)
    || ts.isVariableDeclaration(parent) || ts.isArrayLiteralExpression(parent) || ts.isSpreadElement(parent)
    || ts.isTemplateSpan(parent) || ts.isPropertyAssignment(parent) || ts.isThrowStatement(parent)) return true;
  if ((ts.isCallExpression(parent) || ts.isNewExpression(parent)) && (parent.expression as ts.Node) !== node) return true;
  if (ts.isConditionalExpression(parent)) return parent.condition !== node;
  if (ts.isBinaryExpression(parent)) {
    const operator = parent.operatorToken.kind;
    if (operator === ts.SyntaxKind.CommaToken) return true;
    return parent.right === node && operator >= ts.SyntaxKind.FirstAssignment && operator <= ts.SyntaxKind.LastAssignment;
  }
  return false;
}

/**
 * The async wrapper `(async () => {...})()` as a generator, `(function* () {...}).call(this)`,
 * its own awaits turned into yields (same length, so columns stay put); undefined when the
 * cell has a top-level `for await`, which a generator cannot express (it then stays async).
 */
function asGenerator(js: string): string | undefined {
  const file = ts.createSourceFile("cell.js", js, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const last = file.statements[file.statements.length - 1];
  const call = last && ts.isExpressionStatement(last) && ts.isCallExpression(last.expression) ? last.expression : undefined;
  const wrapper = call && ts.isParenthesizedExpression(call.expression) ? call.expression.expression : undefined;
  if (!call || !wrapper || !ts.isArrowFunction(wrapper)) return undefined;
  const edits: { at: number; remove: number; text: string }[] = [];
  let expressible = true;
  const visit = (node: ts.Node): void => {
    if (!expressible || ts.isFunctionLike(node) || ts.isClassStaticBlockDeclaration(node)) return;
    if (ts.isForOfStatement(node) && node.awaitModifier) expressible = false;
    if (ts.isAwaitExpression(node)) {
      const start = node.getStart(file);
      edits.push({ at: start, remove: "await".length, text: "yield" });
      if (!yieldFitsWithoutParentheses(node)) edits.push({ at: start, remove: 0, text: "(" }, { at: node.end, remove: 0, text: ")" });
    }
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(wrapper.body, visit);
  if (!expressible) return undefined;
  // The wrapper's own text, then each await from the end backwards so positions stay valid.
  edits.push({ at: wrapper.getStart(file), remove: wrapper.body.getStart(file) - wrapper.getStart(file), text: "function* () " });
  edits.push({ at: call.arguments.pos - 1, remove: call.end - call.arguments.pos + 1, text: ".call(this)" });
  let text = js;
  for (const edit of edits.sort((a, b) => b.at - a.at || b.remove - a.remove)) {
    text = text.slice(0, edit.at) + edit.text + text.slice(edit.at + edit.remove);
  }
  return text;
}
