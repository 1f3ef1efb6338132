// Marking algorithmic code in cells: `@sc`, `%%snip`, the magic registry, SnippetCollector and
// ParamLogger, through prepareCell with a small engine whose globals are a plain Map.
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { describe, test } from "node:test";
import type { CellOutcome, DeclarationRecord, ExecutionEngine } from "../kernel/engine/types";
import { CellError, codeForAnalysis, prepareCell, registerCellMagic } from "../magics";
import type { MagicContext } from "../magics";
import { ParamLogger, SnippetCollector } from "../runtime";

/** The part of ExecutionEngine the magics use, over a Map of globals (`a.b` paths only). */
class MapEngine implements ExecutionEngine {
  readonly globals = new Map<string, unknown>();
  execute(): Promise<CellOutcome> { return Promise.resolve({ status: "ok" }); }
  complete() { return { matches: [], cursor_start: 0, cursor_end: 0, metadata: {} }; }
  inspect() { return { found: false, data: {} }; }
  isComplete() { return { status: "complete" as const }; }
  interrupt(): void {}
  declarations(): ReadonlyMap<string, DeclarationRecord> {
    return new Map([...this.globals.keys()].map((name) => [name, { name, kind: "variable", source: `const ${name} = ...;` }]));
  }
  evaluate(expression: string): unknown {
    const [head, ...rest] = expression.split(".");
    if (!this.globals.has(head)) throw new ReferenceError(`${head} is not defined`);
    return rest.reduce<unknown>((v, key) => (v as Record<string, unknown>)[key], this.globals.get(head));
  }
}

const displayed: string[] = [];
const noSink = {
  stream() {},
  display(data: Record<string, unknown>) { displayed.push(String(data["text/plain"])); },
  clearOutput() {},
  input: () => Promise.resolve(""),
  payload() {},
};

function setUp() {
  const engine = new MapEngine();
  const sc = new SnippetCollector();
  engine.globals.set("sc", sc);
  const ctx = (cellId?: string): MagicContext => ({ engine, sink: noSink, ...(cellId !== undefined ? { cellId } : {}) });
  /** Prepares a cell and, as the kernel does after the engine succeeded, runs onSuccess. */
  const run = async (code: string, cellId?: string) => {
    const prepared = await prepareCell(code, ctx(cellId));
    await prepared.onSuccess();
    return prepared.code;
  };
  return { engine, sc, ctx, run };
}

/** Rejects with a CellError whose message matches every pattern; returns it. */
async function cellError(promise: Promise<unknown>, ...patterns: RegExp[]): Promise<CellError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof CellError, `expected a CellError, got ${String(error)}`);
    for (const p of patterns) assert.match(error.evalue, p);
    assert.equal(error.traceback[0], `${error.ename}: ${error.evalue}`);
    return error;
  }
  assert.fail("expected the cell to be refused");
}

const NORM_AND_POINT = `@sc
function norm(val: Point): number {
  return Math.sqrt(val.x ** 2 + val.y ** 2);
}

/** A point in the plane. */
@sc
class Point {
  constructor(public x: number, public y: number) {}
}`;

describe("magic routing", () => {
  test("a %%name cell magic gets its arguments and the cell with the magic line blanked", async () => {
    let seen: { args: string; code: string; source: string } | undefined;
    registerCellMagic("testecho", ({ args, code, source }) => { seen = { args, code, source }; });
    const { run } = setUp();
    const code = await run("%%testecho  a b \nconst x = 1;\n");
    assert.deepEqual(seen, { args: "a b", code: `${" ".repeat("%%testecho  a b ".length)}\nconst x = 1;\n`, source: "const x = 1;" });
    assert.equal(code, seen?.code);
  });

  test("unknown magics are refused by name before anything runs", async () => {
    const { ctx } = setUp();
    await cellError(prepareCell("%%nosuch x\n1", ctx()), /unknown cell magic %%nosuch/, /%%snip/);
    const e = await cellError(prepareCell("const a = 1;\n%nosuch x", ctx()), /unknown line magic %nosuch \(line 2\)/);
    assert.equal(e.ename, "UsageError");
  });

  test("codeForAnalysis blanks magics and collector decorators at the same offsets, running nothing", () => {
    const code = "%%snip sc\n@sc\nfunction f() {}\n%nbjob snippets\n@sealed class C {}\nf";
    const analysed = codeForAnalysis(code);
    assert.equal(analysed, "         \n   \nfunction f() {}\n               \n@sealed class C {}\nf");
  });

  test("a cell magic below the first line is refused; % inside a template literal is not a magic", async () => {
    const { ctx, run } = setUp();
    await cellError(prepareCell("const a = 1;\n%%snip sc\n", ctx()), /must be the first line/);
    const code = "const s = `\n%d items\n`;";
    assert.equal(await run(code), code);
  });
});

describe("@sc", () => {
  test("records each declaration's exact source without the decorator, only after the cell ran", async () => {
    const { sc, ctx } = setUp();
    const prepared = await prepareCell(NORM_AND_POINT, ctx());
    assert.equal(sc.snippets.length, 0, "nothing is recorded before the cell ran");
    // The engine sees the cell without decorators, with every line:col unchanged.
    assert.doesNotMatch(prepared.code, /@/);
    assert.equal(prepared.code.length, NORM_AND_POINT.length);
    assert.deepEqual(prepared.code.split("\n").map((l) => l.trim()), NORM_AND_POINT.split("\n").map((l) => (l.trim() === "@sc" ? "" : l.trim())));
    await prepared.onSuccess();
    assert.deepEqual(sc.snippets.map((s) => [s.names, s.kind]), [[["norm"], "function"], [["Point"], "class"]]);
    assert.equal(sc.snippets[0].source, "function norm(val: Point): number {\n  return Math.sqrt(val.x ** 2 + val.y ** 2);\n}");
    assert.equal(sc.snippets[1].source, "/** A point in the plane. */\nclass Point {\n  constructor(public x: number, public y: number) {}\n}");
    assert.match(sc.snippets[0].hash, /^[0-9a-f]{64}$/);
  });

  test("works on const/let/var, interface, type alias and enum, and several collectors may share a declaration", async () => {
    const { engine, sc, run } = setUp();
    const geometry = new SnippetCollector("geometry");
    engine.globals.set("geo", { shapes: geometry });
    await run("@sc @geo.shapes\nconst unit = 1, half = 0.5;\n@sc let count = 0;\n@sc var legacy = 1;\n@sc\ninterface Shape { area(): number }\n@sc type Id = string;\n@sc enum Color { Red, Green }");
    assert.deepEqual(sc.snippets.map((s) => s.names), [["unit", "half"], ["count"], ["legacy"], ["Shape"], ["Id"], ["Color"]]);
    assert.deepEqual(sc.snippets.map((s) => s.kind), ["variable", "variable", "variable", "interface", "type", "enum"]);
    assert.deepEqual(geometry.snippets.map((s) => s.source), ["const unit = 1, half = 0.5;"]);
  });

  test("defining a name again replaces its entry instead of adding one", async () => {
    const { sc, run } = setUp();
    await run(NORM_AND_POINT);
    await run("@sc\nfunction norm(val: Point): number {\n  return Math.abs(val.x) + Math.abs(val.y);\n}");
    assert.deepEqual(sc.snippets.map((s) => s.names[0]), ["norm", "Point"]);
    assert.match(sc.snippets[0].source, /Math\.abs/);
  });

  test("a collector created in the same cell is looked up once the cell ran", async () => {
    const { engine, ctx } = setUp();
    const prepared = await prepareCell("const fresh = new SnippetCollector();\n@fresh const k = 1;", ctx());
    const fresh = new SnippetCollector();
    engine.globals.set("fresh", fresh); // what running the cell did
    await prepared.onSuccess();
    assert.deepEqual(fresh.snippets.map((s) => s.source), ["const k = 1;"]);
  });

  test("class decorators that are not collectors are left for TypeScript", async () => {
    const { engine, run } = setUp();
    engine.globals.set("sealed", () => undefined);
    const code = "@sealed\nclass Box {}";
    assert.equal(await run(code), code);
  });

  test("a class decorator declared as a function in the same cell is left for TypeScript, next to @sc", async () => {
    const { sc, run } = setUp();
    for (const declaration of ["function logged(c: any) { return c }", "const logged = ((c: any) => c) as any;"]) {
      const code = `${declaration}\n@sc @logged class Dec {}`;
      const prepared = await run(code);
      assert.equal(prepared, code.replace("@sc", "   "));
      assert.deepEqual(sc.snippets.map((s) => s.source), ["@logged class Dec {}"]);
    }
  });

  test("misuse is refused at the cell with line and column, and the collector is unchanged", async () => {
    const { engine, sc, ctx, run } = setUp();
    await run("@sc const kept = 1;");
    engine.globals.set("five", 5);
    const cases: [string, RegExp[]][] = [
      ["function f() {\n  @sc function g() {}\n}", [/@sc at line 2, column 3/, /inside a block/]],
      ["@sc\nconsole.log(1);", [/@sc at line 1, column 1/, /not a declaration/]],
      ["class A {\n  @sc m() {}\n}", [/line 2, column 3/, /member inside a class; put it on the class itself/]],
      ['@sc import { helper as h2 } from "./lib/helper";', [/@sc at line 1, column 1/, /decorates an import; record imports with a %%snip cell/]],
      ["@nope function f() {}", [/"nope" is not defined/, /new SnippetCollector\(\)/]],
      ["@five function f() {}", [/"five" is a number, not a SnippetCollector/]],
      ["@five class C {}", [/"five" is a number, not a SnippetCollector/]],
      ["const ok = 1;\n@sc\nfunction oops( {", [/^3:17 /]],
    ];
    for (const [code, patterns] of cases) await cellError(prepareCell(code, ctx()), ...patterns);
    assert.deepEqual(sc.snippets.map((s) => s.names), [["kept"]]);
  });
});

describe("%%snip", () => {
  test("records the cell body once it succeeded, with the names it declares", async () => {
    const { sc, ctx, run } = setUp();
    const prepared = await prepareCell("%%snip sc\nconst a = new Point(1, 2);\nconst b = new Point(3, 0);\n", ctx());
    assert.equal(prepared.code, "         \nconst a = new Point(1, 2);\nconst b = new Point(3, 0);\n");
    assert.equal(sc.snippets.length, 0, "a failed cell (onSuccess never called) records nothing");
    await prepared.onSuccess();
    assert.deepEqual(sc.snippets.map((s) => ({ names: s.names, kind: s.kind, source: s.source })),
      [{ names: ["a", "b"], kind: "cell", source: "const a = new Point(1, 2);\nconst b = new Point(3, 0);" }]);
    await run("%%snip sc\n@sc\nfunction helper() { return 1; }\nhelper();");
    assert.ok(sc.snippets.every((s) => !s.source.includes("@sc")), "decorators inside %%snip are not recorded");
  });

  test("re-running a cell replaces its entry: by cell id when there is one, else by its names", async () => {
    const { sc, run } = setUp();
    await run("%%snip sc\nlet iteration = 0;", "cell-1");
    await run("%%snip sc\nlet iteration = 0;\nconst values = [0];", "cell-1");
    await run("%%snip sc\nconsole.log('side effect only');", "cell-2");
    await run("%%snip sc\nconsole.log('side effect, edited');", "cell-2");
    assert.deepEqual(sc.snippets.map((s) => s.source), ["let iteration = 0;\nconst values = [0];", "console.log('side effect, edited');"]);
    await run("%%snip sc\nconst c = 1;");
    await run("%%snip sc\nconst c = 2;");
    assert.deepEqual(sc.snippets.map((s) => s.source).slice(2), ["const c = 2;"]);
  });

  test("a later definition of one name removes just that declaration from an earlier cell", async () => {
    const { sc, run } = setUp();
    await run("%%snip sc\nlet iteration = 0;\nfunction train() { iteration += 1; }", "c1");
    await run("@sc\nfunction train() { iteration += 2; }");
    assert.deepEqual(sc.snippets.map((s) => s.source), ["let iteration = 0;", "function train() { iteration += 2; }"]);
    await run("%%snip sc\nlet steps = 0;\njobtracker.registerCheckpointer('steps');", "c2");
    await run("@sc let steps = 10;");
    assert.deepEqual(sc.snippets.map((s) => s.source).slice(2), ["jobtracker.registerCheckpointer('steps');", "let steps = 10;"], "statements of the cell stay");
  });

  test("no name, an unknown name, or something that is not a collector is refused before running", async () => {
    const { engine, sc, ctx } = setUp();
    engine.globals.set("notCollector", { snippets: [] });
    await cellError(prepareCell("%%snip\nconst a = 1;", ctx()), /%%snip needs the name of a SnippetCollector/);
    await cellError(prepareCell("%%snip missing\nconst a = 1;", ctx()), /"missing" is not defined/);
    await cellError(prepareCell("%%snip notCollector\nconst a = 1;", ctx()), /"notCollector" is an object, not a SnippetCollector/);
    await cellError(prepareCell("%%snip sc other\nconst a = 1;", ctx()), /takes one collector name/);
    const syntax = await cellError(prepareCell("%%snip sc\nconst a = ;", ctx()), /^2:11 Expression expected/);
    assert.equal(syntax.ename, "SyntaxError");
    assert.equal(sc.snippets.length, 0);
  });
});

describe("%nbjob", () => {
  test("%nbjob snippets lists the notebook's collectors; an unknown subcommand is refused", async () => {
    const { engine, run, ctx } = setUp();
    engine.globals.set("geo", new SnippetCollector("geometry"));
    engine.globals.set("other", 42);
    await run("@sc const k = 1;");
    displayed.length = 0;
    assert.equal(await run("%nbjob snippets\nconst after = 1;"), "               \nconst after = 1;");
    assert.equal(displayed.length, 1);
    assert.match(displayed[0], /^geo: SnippetCollector "geometry" \(empty\)\nsc: SnippetCollector \(1 snippet\)\n  variable\s+k$/);
    await cellError(prepareCell("%nbjob frobnicate", ctx()), /%nbjob has no subcommand "frobnicate" \(line 1\); known: history, restore, snippets/);
  });
});

describe("SnippetCollector", () => {
  test("source is the combined program with each snippet after what it uses", async () => {
    const { sc, run } = setUp();
    await run(NORM_AND_POINT);
    await run("%%snip sc\nconst origin = new Point(0, 0);");
    const source = sc.source;
    assert.ok(source.indexOf("class Point") < source.indexOf("const origin"));
    assert.ok(source.indexOf("class Point") < source.indexOf("function norm"));
    assert.match(inspect(sc), /SnippetCollector \(3 snippets\)/);
  });

  test("remove(name) and clear()", async () => {
    const { sc, run } = setUp();
    await run(NORM_AND_POINT);
    await run("%%snip sc\nconst a = 1, b = 2;");
    sc.remove("a");
    assert.deepEqual(sc.snippets.map((s) => s.source), [sc.snippets[0].source, sc.snippets[1].source, "const b = 2;"]);
    sc.remove("norm");
    assert.deepEqual(sc.snippets.map((s) => s.names), [["Point"], ["b"]]);
    assert.throws(() => sc.remove("nothere"), /no snippet declaring "nothere"; it declares Point, b/);
    sc.clear();
    assert.deepEqual(sc.snippets, []);
    assert.equal(sc.source, "");
  });

  test("remove(name) never leaves a %%snip cell's code behind that needs the name", async () => {
    const { sc, run } = setUp();
    await run('%%snip sc\nlet handler = () => 1;\njobtracker.registerCheckpointer("handler");\nfunction useHandler() { return handler(); }');
    // Its function uses it: refused, and nothing changes.
    assert.throws(() => sc.remove("handler"), /cannot remove "handler" alone: the %%snip cell that declares it also uses it.*other names too \(useHandler\), or edit the cell and run it again/);
    sc.remove("useHandler");
    assert.deepEqual(sc.snippets.map((s) => s.names), [["handler"]]);
    // Then the last name goes with the statements that were there for it: nothing is left that no name could remove.
    sc.remove("handler");
    assert.equal(sc.snippets.length, 0);

    await run('%%snip sc\nlet counter = 0;\nlet other = 1;\njobtracker.registerCheckpointer("counter");');
    assert.throws(() => sc.remove("counter"), /also registers it with jobtracker\.registerCheckpointer\("counter"\)/);
    await run("%%snip sc\nfunction h() { return 1; }\nlet counter2 = 0;\ncounter2 += 5;");
    assert.throws(() => sc.remove("counter2"), /cannot remove "counter2" alone.*also uses it/);
    // Statements that do not use the name stay with the cell's other declarations.
    await run('%%snip sc\nlet kept = 1;\nlet dropped = 2;\nconsole.log("set up", kept);');
    sc.remove("dropped");
    assert.equal(sc.snippets.find((s) => s.names.includes("kept"))?.source, 'let kept = 1;\nconsole.log("set up", kept);');
  });
});

describe("ParamLogger", () => {
  test("reads return the values set; values are JSON data copied at the time they are set", () => {
    const params = new ParamLogger();
    params.x = 5;
    params.name = "walk";
    const layers = [1, 2];
    params.layers = layers;
    layers.push(3);
    params.cfg = { deep: { ok: true, none: null } };
    assert.equal(params.x, 5);
    assert.deepEqual(params.layers, [1, 2]);
    assert.deepEqual(ParamLogger.values(params), { x: 5, name: "walk", layers: [1, 2], cfg: { deep: { ok: true, none: null } } });
    assert.ok(params instanceof ParamLogger);
    assert.match(inspect(params), /^ParamLogger \{\s+x: 5,\s+name: 'walk',\s+layers: \[ 1, 2 \],\s+cfg: \{ deep: \{ ok: true, none: null \} \}\s+\}$/);
  });

  test("anything that is not JSON data is a TypeError naming the parameter", () => {
    const params = new ParamLogger({ keep: 1 });
    class Point { constructor(public x: number) {} }
    const bad: [string, unknown, RegExp][] = [
      ["lr", () => 1, /^params\.lr was set to a function; parameters must be JSON data \(number, string, boolean, null, arrays, plain objects\)$/],
      ["p", new Point(1), /^params\.p was set to an instance of Point;/],
      ["u", undefined, /^params\.u was set to undefined;/],
      ["s", Symbol("s"), /^params\.s was set to a symbol;/],
      ["n", NaN, /^params\.n was set to NaN, which JSON cannot hold;/],
      ["nested", { layers: [1, new Date(0)] }, /^params\.nested\.layers\[1\] was set to an instance of Date;/],
    ];
    for (const [name, value, message] of bad) {
      assert.throws(() => { (params as Record<string, unknown>)[name] = value; }, (e: unknown) => e instanceof TypeError && message.test(e.message));
    }
    assert.deepEqual(ParamLogger.values(params), { keep: 1 });
  });

  test("precise types from initial values; an untyped logger accepts any name", () => {
    const typed = new ParamLogger({ x: 5, y: 5 });
    typed.x = 7;
    // @ts-expect-error x is a number
    assert.throws(() => { typed.x = () => 1; }, TypeError);
    // @ts-expect-error z is not a parameter of this logger
    typed.z = 1;
    const open = new ParamLogger();
    open.anything = [1, "two"];
    const n: number = open.x === undefined ? 0 : open.x;
    assert.equal(n, 0);
  });

  test("inside a job: the job's values, read-only, and a missing parameter is an error naming it", () => {
    const params = ParamLogger.forJob({ x: 7, y: 5 });
    assert.equal(params.x, 7);
    assert.throws(() => (params as Record<string, unknown>).lr, /params\.lr was not given to this job; its parameters are x, y/);
    assert.throws(() => { (params as Record<string, unknown>).x = 1; }, /cannot be set inside a job/);
  });
});
