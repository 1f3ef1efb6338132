// `@sc` before a top-level declaration: found with the TypeScript parser, checked, removed
// from the code the engine runs, and recorded in the collector once the cell has run.
import type { ts } from "ts-morph";
import { typescript } from "../runtime/bundle-ts";
import type { MagicContext } from "./types";
import type { SnippetCollector } from "../runtime/snippets";
import { SnippetCollector as Collector, recordSnippet } from "../runtime/snippets";
import { parseSource, statementKind, statementNames, syntaxErrors } from "../runtime/bundle-analysis";
import { COLLECTOR_EXPRESSION, describeValue, lookUp, requireCollector } from "./collectors";
import { syntaxError, usageError } from "./errors";
import { blankRange } from "./text";

export interface DecoratorExtraction {
  /** The cell with the collector decorators blanked out. */
  code: string;
  /** Ranges to delete (decorator and the whitespace after it) to get the user's code without them. */
  removals: [number, number][];
  /** Records each decorated declaration in its collectors. */
  record(): void;
}

const DECLARATION_WORDS = "function, class, const/let/var, interface, type, enum";

function isCollectable(node: ts.Node, sf: ts.SourceFile): node is ts.Statement {
  const ts = typescript();
  return node.parent === sf && statementKind(node as ts.Statement) !== undefined && !ts.isImportDeclaration(node) && !ts.isModuleDeclaration(node);
}

/** Where a misplaced decorator sits, in words. */
function placement(decorated: ts.Node): string {
  const ts = typescript();
  if (ts.isMissingDeclaration(decorated)) return "it is followed by an expression or statement, not a declaration";
  if (ts.isClassElement(decorated)) return "it decorates a member inside a class; put it on the class itself";
  if (ts.isParameter(decorated)) return "it decorates a parameter; put it on the function itself";
  // An import is not a declaration @sc can take alone; a %%snip cell records it with the rest of the cell.
  if (ts.isImportDeclaration(decorated) || ts.isImportEqualsDeclaration(decorated)) return "it decorates an import; record imports with a %%snip cell instead (first line %%snip sc, then the import)";
  return "it is inside a block or function; move the declaration to the top level of the cell";
}

export function extractCollectorDecorators(code: string, ctx: MagicContext): DecoratorExtraction {
  const ts = typescript();
  const none: DecoratorExtraction = { code, removals: [], record() {} };
  if (!code.includes("@")) return none;
  const sf = parseSource(code, "cell.ts");

  // Collectors made in this very cell do not exist yet; they are looked up after it ran.
  const madeHere = new Set<string>();
  const declaredHere = new Set(sf.statements.flatMap((statement) => statementNames(statement)));
  for (const statement of sf.statements) {
    if (!ts.isVariableStatement(statement)) continue;
    for (const d of statement.declarationList.declarations) {
      if (ts.isIdentifier(d.name) && d.initializer && ts.isNewExpression(d.initializer) && /(^|\.)SnippetCollector$/.test(d.initializer.expression.getText(sf))) {
        madeHere.add(d.name.text);
      }
    }
  }

  // Functions this cell declares (`function logged(...)`, `const logged = (...) => ...`): on a
  // class, a decorator naming one is an ordinary decorator for TypeScript, as it is when an
  // earlier cell declared it; it cannot be a collector.
  const functionsHere = new Set<string>();
  for (const statement of sf.statements) {
    if (ts.isFunctionDeclaration(statement) && statement.name && statement.body) functionsHere.add(statement.name.text);
    if (!ts.isVariableStatement(statement)) continue;
    for (const d of statement.declarationList.declarations) {
      let value = d.initializer;
      while (value && (ts.isParenthesizedExpression(value) || ts.isAsExpression(value) || ts.isSatisfiesExpression(value))) value = value.expression;
      if (ts.isIdentifier(d.name) && value && (ts.isArrowFunction(value) || ts.isFunctionExpression(value))) functionsHere.add(d.name.text);
    }
  }

  const claimed: { decorator: ts.Decorator; declaration: ts.Statement; expression: string; collector?: SnippetCollector }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isDecorator(node)) claim(node);
    ts.forEachChild(node, visit);
  };
  const claim = (decorator: ts.Decorator): void => {
    const expression = decorator.expression.getText(sf);
    const pos = sf.getLineAndCharacterOfPosition(decorator.getStart(sf));
    const where = `@${expression} at line ${pos.line + 1}, column ${pos.character + 1}`;
    const decorated = decorator.parent;
    const isPath = COLLECTOR_EXPRESSION.test(expression);
    const lookup = isPath ? lookUp(expression, ctx) : undefined;
    const isCollector = lookup?.found === true && Collector.isCollector(lookup.value);
    const pending = isPath && lookup?.found === false && madeHere.has(expression);
    // Decorators TypeScript itself supports (on classes and their members) stay, unless they name a collector.
    const realDecoratorSite = ts.isClassDeclaration(decorated) || ts.isClassExpression(decorated) || ts.isClassElement(decorated) || ts.isParameter(decorated);

    if (!isCollectable(decorated, sf)) {
      if (realDecoratorSite && !isCollector && !pending) return;
      throw usageError(`${where}: a collector decorator must precede a top-level declaration (${DECLARATION_WORDS}), but ${placement(decorated)}`, pos.line);
    }
    if (isCollector) {
      claimed.push({ decorator, declaration: decorated, expression, collector: lookup.value as SnippetCollector });
      return;
    }
    if (pending) {
      claimed.push({ decorator, declaration: decorated, expression });
      return;
    }
    if (ts.isClassDeclaration(decorated) && (!isPath || (lookup?.found === true && typeof lookup.value === "function") || functionsHere.has(expression))) return;
    if (!isPath) {
      throw usageError(`${where}: expected the name of a SnippetCollector (like @sc), not an expression; TypeScript does not allow decorators on a ${statementKind(decorated)}`, pos.line);
    }
    // Not defined, or not a collector: say which.
    if (lookup?.found === false && declaredHere.has(expression)) {
      throw usageError(`${where}: "${expression}" is declared in this same cell, so it does not exist yet when the decorators are checked; create the collector in an earlier cell with const ${expression} = new SnippetCollector()`, pos.line);
    }
    requireCollector(expression, ctx, where, pos.line);
    throw usageError(`${where}: "${expression}" is ${describeValue(lookup?.found ? lookup.value : undefined)}, not a SnippetCollector`, pos.line);
  };
  visit(sf);
  if (claimed.length === 0) return none;
  const syntax = syntaxErrors(sf);
  if (syntax.length > 0) throw syntaxError(syntax[0]);

  let blanked = code;
  const removals: [number, number][] = [];
  for (const { decorator } of claimed) {
    const start = decorator.getStart(sf);
    blanked = blankRange(blanked, start, decorator.getEnd());
    let end = decorator.getEnd();
    while (end < code.length && /\s/.test(code[end])) end++;
    removals.push([start, end]);
  }

  // Group by declaration: one entry per declaration, recorded in each of its collectors.
  const byDeclaration = new Map<ts.Statement, typeof claimed>();
  for (const c of claimed) byDeclaration.set(c.declaration, [...(byDeclaration.get(c.declaration) ?? []), c]);
  const records = [...byDeclaration].map(([declaration, uses]) => {
    const start = declaration.getStart(sf, true);
    const end = declarationEnd(declaration, sf);
    const own = removals.filter(([s]) => s >= start && s < end);
    return { source: deleteRanges(code, own, start, end), kind: statementKind(declaration)!, uses };
  });

  return {
    code: blanked,
    removals,
    record() {
      for (const r of records) {
        for (const use of r.uses) {
          const collector = use.collector ?? requireCollector(use.expression, ctx, `@${use.expression}`, sf.getLineAndCharacterOfPosition(use.decorator.getStart(sf)).line);
          recordSnippet(collector, { source: r.source, kind: r.kind });
        }
      }
    },
  };
}

/**
 * Blanks every decorator TypeScript would reject (anywhere but on classes and their members),
 * without looking anything up: for completion and inspection, which must not run code.
 */
export function blankCollectorDecorators(code: string): string {
  const ts = typescript();
  if (!code.includes("@")) return code;
  const sf = parseSource(code, "cell.ts");
  let out = code;
  const visit = (node: ts.Node): void => {
    if (ts.isDecorator(node)) {
      const site = node.parent;
      const real = ts.isClassDeclaration(site) || ts.isClassExpression(site) || ts.isClassElement(site) || ts.isParameter(site);
      if (!real) out = blankRange(out, node.getStart(sf), node.getEnd());
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** A function's overload signatures belong with its implementation: take them all. */
function declarationEnd(declaration: ts.Statement, sf: ts.SourceFile): number {
  const ts = typescript();
  if (!ts.isFunctionDeclaration(declaration) || declaration.body || !declaration.name) return declaration.getEnd();
  const name = declaration.name.text;
  const statements = sf.statements;
  let i = statements.indexOf(declaration);
  let end = declaration.getEnd();
  while (i + 1 < statements.length) {
    const next = statements[i + 1];
    if (!ts.isFunctionDeclaration(next) || next.name?.text !== name) break;
    end = next.getEnd();
    i++;
    if (next.body) break;
  }
  return end;
}

/** `text[start, end)` with the given ranges deleted. */
export function deleteRanges(text: string, ranges: readonly [number, number][], start = 0, end = text.length): string {
  let out = "";
  let at = start;
  for (const [s, e] of [...ranges].sort((a, b) => a[0] - b[0])) {
    if (e <= at || s >= end) continue;
    out += text.slice(at, Math.max(at, s));
    at = Math.min(end, Math.max(at, e));
  }
  return out + text.slice(at, end);
}

