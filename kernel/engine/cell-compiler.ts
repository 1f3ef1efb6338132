// Turns a checked cell into JavaScript that the engine runs in the notebook's global scope:
// top-level declarations become globals (so a later cell sees them and may declare them
// again), imports read modules the engine loaded beforehand, and a cell that awaits at the
// top level runs inside an async function.
//
// The JavaScript is emitted by the program that type-checked the cell (no second parse or
// compiler): the transformer below rewrites the cell's top level before TypeScript's own
// transforms strip the types, and the emitted source map leads from the JavaScript back to
// the cell's own lines and columns.
import type { CellAnalysis } from "./cell-analysis";
import { isAmbient } from "./cell-analysis";
import { SourceMapLookup } from "./source-map";
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
  /** Lines the wrapper added before the emitted code. */
  lineOffset: number;
  /** From the emitted JavaScript to the cell's text. */
  map: SourceMapLookup;
}

/** What the checker's emit needs from a cell, and how its output becomes a script. */
export interface CellRewrite {
  transformers: ts.CustomTransformers;
  finish(emitted: { js: string; map: string }): CompiledCell;
}

const EXPORT_KINDS = [ts.SyntaxKind.ExportKeyword, ts.SyntaxKind.DefaultKeyword];

function modifiersWithout(node: ts.HasModifiers, kinds: readonly ts.SyntaxKind[]): ts.ModifierLike[] | undefined {
  return node.modifiers?.filter((modifier) => !kinds.includes(modifier.kind));
}

/** A destructuring declaration's pattern as the target of an assignment (`{ a, b: [c] } = ...`). */
function assignmentTarget(factory: ts.NodeFactory, name: ts.BindingName): ts.Expression {
  if (ts.isIdentifier(name)) return name;
  const element = (binding: ts.BindingElement): ts.Expression => {
    const target = assignmentTarget(factory, binding.name);
    return binding.initializer ? factory.createAssignment(target, binding.initializer) : target;
  };
  if (ts.isArrayBindingPattern(name)) {
    return factory.createArrayLiteralExpression(name.elements.map((binding) => {
      if (ts.isOmittedExpression(binding)) return binding;
      return binding.dotDotDotToken ? factory.createSpreadElement(assignmentTarget(factory, binding.name)) : element(binding);
    }));
  }
  return factory.createObjectLiteralExpression(name.elements.map((binding) => {
    if (binding.dotDotDotToken) return factory.createSpreadAssignment(assignmentTarget(factory, binding.name));
    if (!binding.propertyName && ts.isIdentifier(binding.name)) return factory.createShorthandPropertyAssignment(binding.name, binding.initializer);
    return factory.createPropertyAssignment(binding.propertyName ?? (binding.name as ts.Identifier), element(binding));
  }));
}

/** TypeScript ends an emptied module with `export {};`, which a script cannot have. */
const dropEmptyExport: ts.TransformerFactory<ts.SourceFile> = (context) => (file) => context.factory.updateSourceFile(file, file.statements.filter(
  (statement) => !(ts.isExportDeclaration(statement) && !statement.moduleSpecifier && statement.exportClause
    && ts.isNamedExports(statement.exportClause) && statement.exportClause.elements.length === 0),
));

export function rewriteCell(analysis: CellAnalysis): CellRewrite {
  const { hasTopLevelAwait: isAsync } = analysis;
  // The checked file is the cell's text with an export list after it, so its statements
  // start where the analysis found them.
  const importAt = new Map(analysis.imports.map((cellImport, index) => [cellImport.statement.pos, { cellImport, index }]));
  const lastExpressionAt = analysis.lastExpression?.pos;
  // Async cells only: names declared as globals before the wrapper, functions published from it,
  // and enums/namespaces whose `var` TypeScript emits inside the wrapper must be dropped.
  const globals: string[] = [];
  const functions: string[] = [];
  const enumLike: string[] = [];
  const namesOf = (statement: ts.Statement) => analysis.names.filter((declared) => declared.statement.pos === statement.pos).map((declared) => declared.name);

  const topLevel: ts.TransformerFactory<ts.SourceFile> = (context) => (file) => {
    const factory = context.factory;
    for (const list of [globals, functions, enumLike]) list.length = 0;
    const importValue = (index: number, local: string) => factory.createPropertyAccessExpression(
      factory.createElementAccessExpression(factory.createIdentifier(IMPORTS_GLOBAL), index), local);
    const asVar = (declarations: ts.VariableDeclaration[]) => factory.createVariableStatement(undefined, factory.createVariableDeclarationList(declarations, ts.NodeFlags.None));
    const assignments = (pairs: Array<[ts.Expression, ts.Expression]>) => factory.createExpressionStatement(
      pairs.map(([target, value]): ts.Expression => factory.createAssignment(target, value)).reduce((left, right) => factory.createComma(left, right)));
    const undefinedValue = () => factory.createIdentifier("undefined");

    const rewrite = (statement: ts.Statement): ts.Statement | undefined => {
      if (ts.isExportDeclaration(statement)) return undefined;
      if (ts.isExportAssignment(statement)) return factory.createExpressionStatement(statement.expression);
      if (isAmbient(statement)) return statement;
      const found = importAt.get(statement.pos);
      if (found) {
        const bindings = found.cellImport.bindings;
        if (bindings.length === 0) return undefined;
        if (!isAsync) return asVar(bindings.map((binding) => factory.createVariableDeclaration(binding.local, undefined, undefined, importValue(found.index, binding.local))));
        globals.push(...bindings.map((binding) => binding.local));
        return assignments(bindings.map((binding) => [factory.createIdentifier(binding.local), importValue(found.index, binding.local)]));
      }
      if (ts.isVariableStatement(statement)) {
        const list = statement.declarationList;
        const blockScoped = list.flags & ts.NodeFlags.BlockScoped;
        if (blockScoped !== 0 && blockScoped !== ts.NodeFlags.Let && blockScoped !== ts.NodeFlags.Const) return statement; // `using`: refused by the engine
        if (!isAsync) {
          // `let x;` declares x afresh: as a `var` it would keep the value of an earlier cell's x.
          const declarations = list.declarations.map((declaration) => (declaration.initializer || blockScoped === 0 || !ts.isIdentifier(declaration.name)
            ? declaration
            : factory.updateVariableDeclaration(declaration, declaration.name, declaration.exclamationToken, declaration.type, undefinedValue())));
          const varList = ts.setTextRange(factory.createVariableDeclarationList(declarations, ts.NodeFlags.None), list);
          return factory.updateVariableStatement(statement, modifiersWithout(statement, EXPORT_KINDS), varList);
        }
        globals.push(...namesOf(statement));
        return ts.setTextRange(assignments(list.declarations.map((declaration) => [
          assignmentTarget(factory, declaration.name), declaration.initializer ?? undefinedValue(),
        ])), statement);
      }
      if (ts.isClassDeclaration(statement) && statement.name) {
        const name = statement.name;
        const expression = ts.setTextRange(factory.createClassExpression(
          modifiersWithout(statement, [...EXPORT_KINDS, ts.SyntaxKind.AbstractKeyword]),
          name, statement.typeParameters, statement.heritageClauses, statement.members,
        ), statement);
        if (!isAsync) return ts.setTextRange(asVar([factory.createVariableDeclaration(name.text, undefined, undefined, expression)]), statement);
        globals.push(name.text);
        return ts.setTextRange(assignments([[factory.createIdentifier(name.text), expression]]), statement);
      }
      if (ts.isFunctionDeclaration(statement)) {
        if (isAsync && statement.name && statement.body) functions.push(statement.name.text);
        return factory.updateFunctionDeclaration(statement, modifiersWithout(statement, EXPORT_KINDS), statement.asteriskToken, statement.name,
          statement.typeParameters, statement.parameters, statement.type, statement.body);
      }
      if (ts.isEnumDeclaration(statement)) {
        if (isAsync) {
          globals.push(statement.name.text);
          enumLike.push(statement.name.text);
        }
        return factory.updateEnumDeclaration(statement, modifiersWithout(statement, EXPORT_KINDS), statement.name, statement.members);
      }
      if (ts.isModuleDeclaration(statement) && ts.isIdentifier(statement.name)) {
        if (isAsync) {
          globals.push(statement.name.text);
          enumLike.push(statement.name.text);
        }
        return factory.updateModuleDeclaration(statement, modifiersWithout(statement, EXPORT_KINDS), statement.name, statement.body);
      }
      if (isAsync && statement.pos === lastExpressionAt && ts.isExpressionStatement(statement)) {
        return ts.setTextRange(factory.createReturnStatement(statement.expression), statement);
      }
      return statement;
    };

    const statements: ts.Statement[] = [];
    for (const statement of file.statements) {
      const rewritten = rewrite(statement);
      if (rewritten) statements.push(rewritten);
    }
    return factory.updateSourceFile(file, statements);
  };

  const finish = (emitted: { js: string; map: string }): CompiledCell => {
    let js = emitted.js.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
    const map = SourceMapLookup.fromJson(emitted.map);
    if (!isAsync) return { js, isAsync, stepped: false, lineOffset: 0, map };

    for (const name of enumLike) js = js.replace(new RegExp(`^var ${name.replace(/\$/g, "\\$")};$`, "m"), "");
    const declared = [...new Set(globals)];
    const publish = functions.map((name) => `globalThis.${name} = ${name};`).join(" ");
    // Published first thing (after the strict-mode directive, which must open the body), as a
    // script's function declarations are: hoisted and visible before the cell's code runs.
    if (publish) js = /^"use strict";/.test(js) ? js.replace(/^"use strict";/, `"use strict"; ${publish}`) : `${publish} ${js}`;
    const prefix = `${declared.length > 0 ? `var ${declared.join(", ")}; ` : ""}(async () => {\n`;
    const wrapped = `${prefix}${js}\n})()`;
    const generator = asGenerator(wrapped);
    return { js: generator ?? wrapped, isAsync, stepped: generator !== undefined, lineOffset: 1, map };
  };

  return { transformers: { before: [topLevel], after: [dropEmptyExport] }, finish };
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
