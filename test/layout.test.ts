// The layout's rules, checked on the sources: folders depend in one direction (the table below),
// no file-level import cycles, and nothing but bin/nbjob.js loads the CLI's dispatcher.
// Every import counts, type-only ones too, and dynamic import()/require() with a literal path.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import * as ts from "typescript";

/**
 * The layers, lowest first. A file may import files of its own folder and of folders in earlier
 * rows, never of its row's other folders or of later rows. A file belongs to the longest folder
 * listed that contains it (kernel/engine/x.ts is in kernel/engine, not kernel).
 */
const LAYERS: string[][] = [
  ["wire", "store"], // the Jupyter wire protocol; the PostgreSQL store
  ["runtime"], // what notebooks and jobs import (the `nbjob` package), and what notebook and worker share
  ["worker", "kernel/engine"], // the worker kernel; the notebook kernel's TypeScript engine
  ["magics"], // the notebook's %magics
  ["kernel"], // the notebook kernel
  ["cli"], // the `nbjob` command
  ["test"], // tests against the real parts, and the helpers that set those up (test/rig.ts, test/jobs-env.ts)
  ["bench"], // benchmarks: may reuse the tests' helpers (bench/multihost.ts runs on test/rig.ts)
];

/** The CLI's dispatcher: only bin/nbjob.js loads it, so the commands cannot import it back. */
const DISPATCHER = "cli/index.ts";

const ROOT = resolve(__dirname, "..", "..");
const FOLDERS = LAYERS.flat().sort((a, b) => b.length - a.length);

function folderOf(file: string): string | undefined {
  return FOLDERS.find((folder) => file === folder || file.startsWith(folder + "/"));
}

function layerOf(folder: string): number {
  return LAYERS.findIndex((row) => row.includes(folder));
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== "fixtures" && entry.name !== "anchors") out.push(...sourceFiles(path));
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

/** The module specifiers a file names: import/export ... from, import x = require(), import(), require(), require.resolve(), import("x").T types. */
export function specifiers(fileName: string, text: string): string[] {
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push(node.moduleReference.expression.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    } else if (ts.isCallExpression(node) && node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0])) {
      const callee = node.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === "require";
      const isResolve = ts.isPropertyAccessExpression(callee) && ts.isIdentifier(callee.expression) && callee.expression.text === "require" && callee.name.text === "resolve";
      if (isImport || isRequire || isResolve) found.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS));
  return found;
}

/** The project source file a relative specifier names (x.ts or x/index.ts), else undefined (a package, a .json). */
function resolveSource(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const target = relative(ROOT, resolve(ROOT, dirname(from), specifier)).split(sep).join("/");
  for (const candidate of [target + ".ts", target + "/index.ts", target.replace(/\.js$/, ".ts")]) {
    const full = join(ROOT, candidate);
    if (candidate.endsWith(".ts") && existsSync(full) && statSync(full).isFile()) return candidate;
  }
  return undefined;
}

/** file -> the project files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of LAYERS.flat().filter((folder) => !folder.includes("/")).flatMap(sourceFiles)) {
    const targets = specifiers(file, readFileSync(join(ROOT, file), "utf8"))
      .map((specifier) => resolveSource(file, specifier))
      .filter((target): target is string => target !== undefined);
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** Imports that break the table: into a later row, or sideways within a row; and imports of the dispatcher. */
export function layerViolations(graph: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [file, targets] of graph) {
    const from = folderOf(file)!;
    for (const target of targets) {
      const to = folderOf(target);
      if (target === DISPATCHER) bad.push(`${file} imports ${DISPATCHER} (the dispatcher; import cli/args.ts instead)`);
      else if (to === undefined) bad.push(`${file} imports ${target}, which is in no layer of test/layout.test.ts`);
      else if (to !== from && layerOf(to) >= layerOf(from)) bad.push(`${file} (${from}/) imports ${target} (${to}/): ${from}/ may only import ${LAYERS.slice(0, layerOf(from)).flat().join(", ") || "nothing else"}`);
    }
  }
  return bad;
}

/** Every import cycle between files (strongly connected components of more than one file, or a file importing itself). */
export function importCycles(graph: Map<string, string[]>): string[][] {
  // Tarjan's algorithm, iterative enough for a few hundred files (recursion depth = longest import chain).
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let next = 0;
  const connect = (file: string): void => {
    index.set(file, next);
    low.set(file, next);
    next++;
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        connect(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file)!, index.get(target)!));
      }
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      if (component.length > 1 || (graph.get(file) ?? []).includes(file)) cycles.push(component.sort());
    }
  };
  for (const file of graph.keys()) if (!index.has(file)) connect(file);
  return cycles;
}

test("every folder that tsconfig.json compiles has a row in the layer table", () => {
  const config = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8")) as { include: string[] };
  const missing = config.include.filter((folder) => layerOf(folder) < 0);
  assert.deepEqual(missing, [], "add the folder to LAYERS in test/layout.test.ts");
});

test("the import reader sees static, type-only and dynamic imports with literal paths", () => {
  const text = [
    `import a from "./a"; import type { B } from "./b"; export * from "./c"; export { d } from "./d";`,
    `import e = require("./e"); const f = require("./f"); const g = await import("./g"); const h = require.resolve("./h");`,
    `let i: import("./i").I; const j = require(name); const k = import(\`./\${name}\`);`,
  ].join("\n");
  assert.deepEqual(specifiers("x.ts", text), ["./a", "./b", "./c", "./d", "./e", "./f", "./g", "./h", "./i"]);
});

test("the checks catch a cycle, an upward import and an import of the dispatcher", () => {
  const graph = new Map<string, string[]>([
    ["store/a.ts", ["store/b.ts"]],
    ["store/b.ts", ["store/a.ts", "runtime/x.ts"]],
    ["runtime/x.ts", []],
    ["cli/run.ts", [DISPATCHER]],
    [DISPATCHER, []],
  ]);
  assert.deepEqual(importCycles(graph), [["store/a.ts", "store/b.ts"]]);
  const bad = layerViolations(graph);
  assert.equal(bad.length, 2, bad.join("\n"));
  assert.match(bad[0], /^store\/b\.ts \(store\/\) imports runtime\/x\.ts \(runtime\/\)/);
  assert.match(bad[1], /^cli\/run\.ts imports cli\/index\.ts/);
});

test("the project's imports follow the layer table and form no cycle", () => {
  const graph = importGraph();
  assert.ok(graph.size > 100, `read ${graph.size} files: the walk missed the sources`);
  assert.ok(graph.get("runtime/index.ts")!.length > 5, "runtime/index.ts's imports were not read");
  assert.deepEqual(layerViolations(graph), []);
  assert.deepEqual(importCycles(graph).map((cycle) => `import cycle among: ${cycle.join(", ")}`), []);
});
