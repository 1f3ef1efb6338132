// Bundles: what a job runs, built from collectors, parameters and entries, type-checked alone.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { runInNewContext } from "node:vm";
import { describe, test } from "node:test";
import { ts } from "ts-morph";
import { BundleError, assembleBundle, buildBundle, jobParams, locateBundleLine, withParams } from "../runtime/bundle";
import type { Bundle } from "../runtime/bundle";
import { ParamLogger, checkSameKind } from "../runtime/params";
import type { JsonValue } from "../runtime/params";
import { SnippetCollector, recordSnippet } from "../runtime/snippets";
import type { SnippetKind } from "../runtime/snippets";

/** A collector holding these sources, as if each had been marked in its own cell. */
function collector(...sources: (string | [string, SnippetKind])[]): SnippetCollector {
  const sc = new SnippetCollector();
  for (const s of sources) {
    const [source, kind] = typeof s === "string" ? [s, "cell" as const] : s;
    recordSnippet(sc, { source, kind });
  }
  return sc;
}

const NORM = "function norm(val: Point): number {\n  return Math.sqrt(val.x ** 2 + val.y ** 2);\n}";
const POINT = "class Point {\n  constructor(public x: number, public y: number) {}\n}";

/** Runs a bundle the way the module comment says a worker may: its last statement's value is the result. */
function runBundle(bundle: Bundle): unknown {
  const js = ts.transpileModule(bundle.source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.None } }).outputText;
  return runInNewContext(js, { params: ParamLogger.forJob(bundle.params), Math });
}

function bundleError(fn: () => unknown, ...patterns: RegExp[]): BundleError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof BundleError, `expected a BundleError, got ${String(error)}`);
    for (const p of patterns) assert.match(error.message, p);
    return error;
  }
  assert.fail("expected the bundle to be rejected");
}

describe("buildBundle", () => {
  test("orders snippets by what they use, not by when they were marked, and its result is the last entry's value", () => {
    const sc = collector([NORM, "function"], "const origin = new Point(3, 4);", [POINT, "class"]);
    const bundle = buildBundle(["norm(origin)"], [sc]);
    assert.deepEqual(bundle.snippets.map((s) => s.names), [["Point"], ["norm"], ["origin"]]);
    assert.deepEqual(bundle.entries, ["norm(origin)"]);
    assert.equal(runBundle(bundle), 5);
    assert.equal(bundle.hash, createHash("sha256").update(bundle.source).digest("hex"));
    for (const s of bundle.snippets) assert.equal(s.hash, createHash("sha256").update(s.source).digest("hex"));
  });

  test("load-time uses across collectors: a subclass, a constant computed by a function", () => {
    const early = collector("const total = area(new Square(2));", "class Square extends Shape {\n  constructor(readonly side: number) { super(); }\n}");
    const late = collector("function area(s: Square): number { return s.side * s.side * scale; }", "class Shape {}", "const scale = 10;");
    const bundle = buildBundle(["total"], [early, late]);
    const order = bundle.snippets.map((s) => s.names[0]);
    const before = (a: string, b: string) => assert.ok(order.indexOf(a) < order.indexOf(b), `${a} before ${b} in ${order.join(", ")}`);
    before("Shape", "Square");
    before("Square", "total");
    before("area", "total");
    before("scale", "total");
    assert.equal(runBundle(bundle), 40);
  });

  test("functions that call each other keep their marked order (uses inside bodies run later)", () => {
    const sc = collector("function isEven(n: number): boolean { return n === 0 ? true : isOdd(n - 1); }",
      "function isOdd(n: number): boolean { return n === 0 ? false : isEven(n - 1); }");
    const bundle = buildBundle(["isEven(10)"], [sc]);
    assert.deepEqual(bundle.snippets.map((s) => s.names[0]), ["isEven", "isOdd"]);
    assert.equal(runBundle(bundle), true);
  });

  test("collectors merge in argument order: a later definition of a name wins", () => {
    const sc = collector([POINT, "class"], "const scale = 1;\nconst offset = 0;");
    const sc2 = collector("const scale = 2;");
    const bundle = buildBundle(["scale + offset"], [sc, sc2]);
    assert.equal(runBundle(bundle), 2);
    assert.match(bundle.source, /const offset = 0;/);
    assert.doesNotMatch(bundle.source, /scale = 1/);
    const reversed = buildBundle(["scale + offset"], [sc2, sc]);
    assert.equal(runBundle(reversed), 1);
  });

  test("the same inputs give byte-identical source and hash; parameter order does not matter", () => {
    const make = (params: object) => buildBundle(["norm(origin)"], [collector([NORM, "function"], [POINT, "class"], "const origin = new Point(params.x, params.y);")], { params });
    const a = new ParamLogger();
    a.x = 3;
    a.y = 4;
    const b = new ParamLogger();
    b.y = 4;
    b.x = 3;
    const first = make(a);
    const second = make(b);
    assert.equal(first.source, second.source);
    assert.equal(first.hash, second.hash);
    assert.notEqual(make({ x: 3, y: 5 }).hash, first.hash, "parameters are part of the program");
    assert.equal(runBundle(first), 5);
  });

  test("a stored bundle rebuilt from its own snippets is byte-identical", () => {
    const sc = collector("const total = area(new Square(2));", "class Square extends Shape {\n  constructor(readonly side: number) { super(); }\n}",
      "function isEven(n: number): boolean { return n === 0 ? true : isOdd(n - 1); }", "class Shape {}",
      "function area(s: Square): number { return isEven(s.side) ? s.side * s.side : 0; }",
      "function isOdd(n: number): boolean { return n === 0 ? false : isEven(n - 1); }");
    const bundle = buildBundle(["total", "isOdd(total)"], [sc], { params: { lr: 0.1 } });
    const rebuilt = assembleBundle(bundle.snippets, bundle.entries, bundle.params);
    assert.equal(rebuilt.source, bundle.source);
    assert.equal(rebuilt.hash, bundle.hash);
    assert.deepEqual(rebuilt.parts, bundle.parts);
  });

  test("params are bound to the job's values with overrides, and typed from them", () => {
    const params = new ParamLogger();
    params.x = 5;
    params.y = 5;
    const sc = collector([POINT, "class"], [NORM, "function"], "const c = new Point(params.x, params.y);");
    const bundle = buildBundle(["norm(c)"], [sc], { params, overrides: { x: 0 } });
    assert.deepEqual(bundle.params, { x: 0, y: 5 });
    assert.deepEqual(ParamLogger.values(params), { x: 5, y: 5 }, "the notebook's logger is not changed");
    assert.equal(runBundle(bundle), 5);
    assert.throws(() => buildBundle(["norm(c)"], [sc], { params, overrides: { z: 1 } }), /overrides\.z is not a parameter; the parameters are x, y/);
    assert.throws(() => buildBundle(["norm(c)"], [sc], { params, overrides: { x: () => 1 } }), /overrides\.x was set to a function/);
    bundleError(() => buildBundle(["norm(c)"], [sc], { params, overrides: { x: "five" } }),
      /snippet c \(line 1, column 21\): Argument of type 'string' is not assignable to parameter of type 'number'/);
    bundleError(() => buildBundle(["norm(c)"], [sc]), /snippet c .*Property 'x' does not exist.*pass \{ params \}/);
  });

  test("a missing name is rejected naming the snippet or entry it sits in and the name", () => {
    const sc2 = collector("function distance(p1: Point, p2: Point): number {\n  return norm(new Point(p1.x - p2.x, p1.y - p2.y));\n}");
    const error = bundleError(() => buildBundle(["distance(a, b)"], [sc2]),
      /snippet distance \(line 1, column 23\): Cannot find name 'Point'/, /No snippet in this job declares Point: mark its declaration with @sc \(or record its cell with %%snip; an import goes in a %%snip cell\)/,
      /snippet distance \(line 2, column 10\): Cannot find name 'norm'/,
      /entry 1 "distance\(a, b\)" \(line 1, column 10\): Cannot find name 'a'/);
    assert.equal(error.problems.filter((p) => /'Point'/.test(p.message)).length, 1, "one report per missing name and snippet");
  });

  test("entries: a non-empty list of expressions", () => {
    const sc = collector("function f(): number { return 1; }");
    bundleError(() => buildBundle([], [sc]), /at least one entry expression/);
    bundleError(() => buildBundle(["const x = f()"], [sc]), /entry 1 "const x = f\(\)": expected one expression/);
    bundleError(() => buildBundle(["f(", "f()"], [sc]), /entry 1 "f\(" \(line 1, column 3\): syntax error/);
    bundleError(() => buildBundle(["f(); f()"], [sc]), /expected one expression/);
    assert.deepEqual(buildBundle(["f();", "f() + 1"], [sc]).entries, ["f()", "f() + 1"]);
    // A trailing comment must not swallow the separator: "[1, 2]" would index f()'s value.
    const commented = buildBundle(["f() // one", "[1, 2]"], [sc]);
    assert.deepEqual(commented.entries, ["f()", "[1, 2]"]);
    assert.match(commented.source, /^f\(\);$/m);
    assert.match(commented.source, /^\[1, 2\];$/m);
    assert.throws(() => buildBundle(["f()"], [sc, {} as SnippetCollector]), /collector 2 is not a SnippetCollector/);
  });

  test("jobtracker is declared as the worker has it; top-level await is allowed in entries", () => {
    const sc3 = collector(`let iteration = 0;
const param_values = [0];
jobtracker.registerCheckpointer("iteration");
jobtracker.registerCheckpointer("param_values", { get: () => [...param_values], set: (v: number[]) => { param_values.splice(0, param_values.length, ...v); } });

async function train() {
  while (Math.abs(param_values[0] - 5.0) > 1e-5) {
    iteration += 1;
    param_values[0] += 0.5 * (5.0 - param_values[0]);
    const index: number = jobtracker.checkpoint();
  }
  await jobtracker.flush();
  return iteration;
}`);
    const bundle = buildBundle(["await train()"], [sc3]);
    assert.match(bundle.source, /\nawait train\(\);\n$/);
    bundleError(() => buildBundle(["setup"], [collector("const setup = 1;\nconst data = await Promise.resolve([1]);")]),
      /snippet setup, data \(line 2, column 14\): top-level await in a snippet does not run on workers/);
    // `await (x)` is an await too (a script parse read it as a call of a function named await).
    bundleError(() => buildBundle(["ready"], [collector("const ready = await (Promise.resolve(1));")]),
      /snippet ready \(line 1, column 15\): top-level await in a snippet does not run on workers/);
    // A checkpointer by a name no snippet declares (a typo, or a declaration removed) fails here, not on the worker.
    bundleError(() => buildBundle(["train()"], [collector('let step = 0;\njobtracker.registerCheckpointer("stpe");\nfunction train() { return step; }')]),
      /snippet step, train \(line 2, column 1\): jobtracker\.registerCheckpointer\("stpe"\) names no top-level variable of the job; declare stpe in a snippet/);
    bundleError(() => buildBundle(["jobtracker.save()"], [sc3]), /entry 1 "jobtracker\.save\(\)".*Property 'save' does not exist/);
  });

  test("parts map every line of the source to its snippet or entry", () => {
    const bundle = buildBundle(["norm(origin)"], [collector([NORM, "function"], [POINT, "class"], "const origin = new Point(0, 0);")]);
    const lines = bundle.source.split("\n");
    const returnLine = lines.findIndex((l) => l.includes("return Math.sqrt")) + 1;
    const located = locateBundleLine(bundle, returnLine);
    assert.equal(located?.part.kind, "snippet");
    assert.deepEqual(bundle.snippets[located!.part.index].names, ["norm"]);
    assert.equal(located?.line, 2);
    const entryLine = lines.findIndex((l) => l === "norm(origin);") + 1;
    assert.deepEqual(locateBundleLine(bundle, entryLine)?.part, { kind: "entry", index: 0, label: 'entry 1 "norm(origin)"', firstLine: entryLine, lastLine: entryLine });
    assert.equal(locateBundleLine(bundle, 1), undefined, "the header belongs to no part");
  });
});

describe("withParams (a sweep's bundles)", () => {
  const sc = () => collector("const total = area(new Square(params.side));", "class Square extends Shape {\n  constructor(readonly side: number) { super(); }\n}",
    "class Shape {}", "function area(s: Square): number { return s.side * s.side * params.scale; }",
    [NORM, "function"], [POINT, "class"], "const label = `${params.name}: ${params.side}`;");
  const base = { side: 2, scale: 10, name: "sq", extra: { deep: [1, "two", null] } };

  test("is byte-identical to assembleBundle for the same values: source, hash, parts, snippets, entries, params", () => {
    const common = buildBundle(["label", "norm(new Point(3, 4))", "total"], [sc()], { params: base });
    const overrides: Record<string, unknown>[] = [
      {}, { side: 3 }, { side: -0.5, scale: 1e21 }, { name: 'quote " backslash \\ newline \n tab \t' },
      { name: "unicode é 漢字 😀 \u2028 line separator" }, { name: "" }, { extra: { deep: [], other: { a: true } } },
      { extra: null, side: 7 }, { name: "// params: {\"fake\":1}\n// nbjob bundle" },
    ];
    for (const combo of overrides) {
      const values = jobParams(common.params, combo);
      const fast = withParams(common, values, { typeCheck: false });
      const slow = assembleBundle(common.snippets, common.entries, values, { typeCheck: false });
      const what = `values ${JSON.stringify(values)}`;
      assert.equal(fast.source, slow.source, what);
      assert.equal(fast.hash, slow.hash, what);
      assert.equal(fast.hash, createHash("sha256").update(fast.source).digest("hex"), what);
      assert.deepEqual(fast, slow, what);
      // And from a bundle that is itself a sweep's (not the first one built).
      const again = withParams(fast, common.params, { typeCheck: false });
      assert.equal(again.source, common.source, what);
      assert.equal(again.hash, common.hash, what);
    }
    const three = withParams(common, jobParams(common.params, { side: 3 }));
    assert.equal(runBundle(three), 90, "the new values are the ones the program runs with");
    assert.notEqual(three.hash, common.hash, "parameters are part of the program");
    assert.deepEqual(common.params, jobParams(base, undefined), "the common bundle is not changed");
  });

  test("type-checks the new values when asked: a value of another type is rejected naming where it is used", () => {
    const common = buildBundle(["total"], [sc()], { params: base });
    bundleError(() => withParams(common, jobParams(common.params, { side: "two" })),
      /snippet total \(line 1, column 31\): Argument of type 'string' is not assignable to parameter of type 'number'/);
    assert.doesNotThrow(() => withParams(common, jobParams(common.params, { side: "two" }), { typeCheck: false }), "typeCheck: false skips it");
    assert.equal(runBundle(withParams(common, jobParams(common.params, { side: 5 }))), 250);
  });

  test("checkSameKind (createJob's overrides, a sweep's values) lets through what the bundle's check accepts, and refuses another kind naming both", () => {
    const common = buildBundle(["label", "total"], [sc()], { params: base });
    const check = (combo: Record<string, JsonValue>) => Object.entries(combo).forEach(([k, v]) => checkSameKind(v, common.params[k], `overrides.${k}`, k));
    // An array item may be any kind the logged array holds, an empty array or null fits, extra keys are left to the check.
    const fitting: Record<string, JsonValue>[] = [{ side: -0.5, scale: 1e21 }, { name: "" }, { extra: { deep: [], other: { a: true } } }, { extra: { deep: ["x", 2, null, 3] } }, { extra: null, side: 7 }];
    for (const combo of fitting) {
      assert.doesNotThrow(() => check(combo), JSON.stringify(combo));
      assert.doesNotThrow(() => withParams(common, jobParams(common.params, combo)), `the bundle type-checks with ${JSON.stringify(combo)}`);
    }
    assert.throws(() => check({ side: "two" }), /^TypeError: overrides\.side is a string \("two"\) but params\.side is a number \(2\); pass a value of the kind the notebook set, or change params\.side in the notebook/);
    assert.throws(() => check({ name: ["sq"] }), /overrides\.name is an array \(\["sq"\]\) but params\.name is a string \("sq"\)/);
    assert.throws(() => check({ extra: { deep: [1, true] } }), /overrides\.extra\.deep\[1\] is a boolean \(true\) but params\.extra\.deep is an array of numbers and strings/);
  });

  test("a string value holding a line or paragraph separator stays inside the params comment", () => {
    const common = buildBundle(["label"], [sc()], { params: base });
    for (const name of ["a\u2028b", "c\u2029d"]) {
      const values = jobParams(common.params, { name });
      const bundle = withParams(common, values);
      assert.deepEqual(assembleBundle(common.snippets, common.entries, values), bundle);
      assert.equal(runBundle(bundle), `${name}: 2`);
      assert.deepEqual(JSON.parse(bundle.source.split("\n")[1].slice("// params: ".length)), values, "the line still reads as the values");
    }
  });

  test("refuses a bundle whose second line is not its params line, rather than making a wrong one", () => {
    const common = buildBundle(["total"], [sc()], { params: base });
    const edited = { ...common, source: common.source.replace("// params: ", "// parameters: ") };
    assert.throws(() => withParams(edited, common.params), /was not laid out by assembleBundle \(its second line is not its params\)/);
    assert.throws(() => withParams({ ...common, params: { side: 1 } }, common.params), /its second line is not its params/);
  });
});

describe("local modules (issue 14)", () => {
  test("relative imports are captured transitively, named with their hashes on the third line; an edit changes the hash", () => {
    const { mkdtempSync, mkdirSync, rmSync, writeFileSync } = require("node:fs") as typeof import("node:fs");
    const { join } = require("node:path") as typeof import("node:path");
    const { tmpdir } = require("node:os") as typeof import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "nbjob-bundle-files-"));
    try {
      mkdirSync(join(dir, "lib", "deep"), { recursive: true });
      mkdirSync(join(dir, "shared"));
      writeFileSync(join(dir, "localmod.ts"), 'import { double } from "./lib/other";\nimport data from "./data.json";\nexport const helper = (x: number): number => double(x) + data.offset;\n');
      writeFileSync(join(dir, "lib", "other.ts"), 'import { three } from "./deep";\nexport const double = (x: number): number => 2 * x + three() * 0;\n');
      writeFileSync(join(dir, "lib", "deep", "index.ts"), 'const plain = require("./plain.js");\nexport const three = (): number => plain.three;\n');
      writeFileSync(join(dir, "lib", "deep", "plain.js"), 'const more = require("./more.cjs");\nexports.three = more.three;\n');
      writeFileSync(join(dir, "lib", "deep", "more.cjs"), "exports.three = 3;\n");
      writeFileSync(join(dir, "data.json"), '{ "offset": 1 }\n');
      writeFileSync(join(dir, "unused.ts"), "export const never = 1;\n");
      const sc = collector(['import { helper } from "./localmod";', "import"], "function compute(n: number): number {\n  return helper(n);\n}");
      const bundle = buildBundle(["compute(2)"], [sc], { baseDir: dir });
      assert.deepEqual(bundle.files.map((f) => f.path), ["data.json", "lib/deep/index.ts", "lib/deep/more.cjs", "lib/deep/plain.js", "lib/other.ts", "localmod.ts"]);
      const third = bundle.source.split("\n")[2];
      const manifest = JSON.parse(third.replace(/^\/\/ files: /, "")) as Record<string, string>;
      for (const file of bundle.files) assert.equal(manifest[file.path], createHash("sha256").update(file.text).digest("hex"));
      assert.equal(bundle.hash, createHash("sha256").update(bundle.source).digest("hex"));
      // parts still map lines to their snippets; a sweep's bundles keep the files.
      const located = locateBundleLine(bundle, bundle.source.split("\n").indexOf("function compute(n: number): number {") + 1);
      assert.equal(located?.part.kind, "snippet");
      assert.equal(withParams(bundle, {}, { baseDir: dir }).source.split("\n")[2], third);
      // Rebuilt from what the store keeps: byte-identical.
      assert.equal(assembleBundle(bundle.snippets, bundle.entries, bundle.params, { typeCheck: false, files: bundle.files }).hash, bundle.hash);

      writeFileSync(join(dir, "lib", "deep", "more.cjs"), "exports.three = 4;\n");
      const edited = buildBundle(["compute(2)"], [sc], { baseDir: dir });
      assert.notEqual(edited.hash, bundle.hash);
      // A bundle without local modules has no files line (its text and hash are as before).
      assert.equal(buildBundle(["1 + 1"], [], { baseDir: dir }).source.split("\n")[2], "");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("an untyped package type-checks as in a cell (any), a local module's type is checked", () => {
    const { cpSync, mkdtempSync, rmSync, writeFileSync } = require("node:fs") as typeof import("node:fs");
    const { join } = require("node:path") as typeof import("node:path");
    const { tmpdir } = require("node:os") as typeof import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "nbjob-bundle-untyped-"));
    try {
      cpSync(join(__dirname, "..", "..", "test", "fixtures", "local-modules", "untyped-chunk"), join(dir, "node_modules", "untyped-chunk"), { recursive: true });
      writeFileSync(join(dir, "typed.ts"), "export const label: string = \"a\";\n");
      const sc = collector(['import { chunk } from "untyped-chunk";', "import"], ['import { label } from "./typed";', "import"], "function pairs(): number {\n  return chunk([1, 2, 3], 2).length;\n}");
      const bundle = buildBundle(["pairs()"], [sc], { baseDir: dir });
      assert.deepEqual(bundle.files.map((f) => f.path), ["typed.ts"]);
      bundleError(() => buildBundle(["label * 2"], [sc], { baseDir: dir }), /The left-hand side of an arithmetic operation/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a type error inside a local module, two levels down, is a BundleError naming the file, line and column; fixing the file lets the same check pass", () => {
    const { mkdirSync, mkdtempSync, rmSync, writeFileSync } = require("node:fs") as typeof import("node:fs");
    const { join } = require("node:path") as typeof import("node:path");
    const { tmpdir } = require("node:os") as typeof import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "nbjob-bundle-broken-"));
    try {
      mkdirSync(join(dir, "lib"));
      writeFileSync(join(dir, "entry.ts"), 'import { half } from "./lib/broken";\nexport const quarter = (x: number): number => half(half(x));\n');
      writeFileSync(join(dir, "lib", "broken.ts"), 'export function half(x: number): number {\n  const y = x / 2;\n  const s: string = y;\n  return y;\n}\n');
      const sc = collector(['import { quarter } from "./entry";', "import"]);
      const err = bundleError(() => buildBundle(["quarter(8)"], [sc], { baseDir: dir }), /^\.\/lib\/broken\.ts \(line 3, column 9\): Type 'number' is not assignable to type 'string'\.$/m);
      assert.deepEqual(err.problems.map((p) => p.part), ["./lib/broken.ts"], err.message);
      // The check reads the module again once it changes: fixed, the same bundle passes.
      writeFileSync(join(dir, "lib", "broken.ts"), 'export function half(x: number): number {\n  const y = x / 2;\n  const s: string = String(y);\n  return y + s.length * 0;\n}\n');
      assert.deepEqual(buildBundle(["quarter(8)"], [sc], { baseDir: dir }).files.map((f) => f.path), ["entry.ts", "lib/broken.ts"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
