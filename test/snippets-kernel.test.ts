// The seed tutorial's first three sections (snippets, several collectors, parameters) typed into
// the installed nbjob kernel from Debian's jupyter_client, up to where a job would be created.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { kernelTestEnv, withJupyterClient, type KernelTestEnv } from "./kernel-helpers";

type Output = { type: string; content: Record<string, unknown> };
type Ran = { reply: { status: string; ename?: string; evalue?: string }; outputs: Output[] };

function resultText(ran: Ran): string | undefined {
  const result = ran.outputs.find((o) => o.type === "execute_result");
  return (result?.content.data as Record<string, string> | undefined)?.["text/plain"];
}

function errorOf(ran: Ran): { ename: string; evalue: string } {
  const errors = ran.outputs.filter((o) => o.type === "error");
  assert.equal(errors.length, 1, `expected one error output, got ${JSON.stringify(ran.outputs)}`);
  assert.equal(ran.reply.status, "error");
  return errors[0].content as { ename: string; evalue: string };
}

const CELLS: Record<string, string> = {
  collector: "const sc = new SnippetCollector();",
  decorators: `@sc
function norm(val: Point): number {
  return Math.sqrt(val.x ** 2 + val.y ** 2);
}

@sc
class Point {
  constructor(public x: number, public y: number) {}
}`,
  origin: "%%snip sc\nconst origin = new Point(0., 0.);",
  normOrigin: "norm(new Point(3, 4))",
  sc2: "const sc2 = new SnippetCollector();",
  distance: "@sc2\nfunction distance(p1: Point, p2: Point): number {\n  const diff = new Point(p1.x - p2.x, p1.y - p2.y);\n  return norm(diff);\n}",
  ab: "%%snip sc2\nconst a = new Point(1., 2.);\nconst b = new Point(3., 0.);",
  params: "const params = new ParamLogger();\nparams.x = 5;\nparams.y = 5;\nparams",
  c: "%%snip sc2\nconst c = new Point(params.x, params.y);",
  listing: "[sc.snippets.map((s) => s.names.join()), sc2.snippets.map((s) => s.names.join())]",
};

describe("snippets in the nbjob kernel", () => {
  let env: KernelTestEnv;
  before(() => {
    env = kernelTestEnv();
  });
  after(() => env.cleanup());

  test("the tutorial's snippets, collectors and parameters, then misuse at the cell", async () => {
    const r = await withJupyterClient(env, `
cells = json.loads(${JSON.stringify(JSON.stringify(CELLS))})
for name, code in cells.items():
    result[name] = run(code)

def run_with_cell_id(code, cell_id):
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
        "user_expressions": {}, "allow_stdin": False, "stop_on_error": False})
    msg["metadata"]["cellId"] = cell_id
    kc.shell_channel.send(msg)
    return kc.get_shell_msg(timeout=30)["content"]["status"]

# The same %%snip cell run twice (the frontend sends its cell id), then edited and run again.
result["rerun"] = [run_with_cell_id("%%snip sc2\\nconst d = new Point(0, 1);", "cell-d"),
                   run_with_cell_id("%%snip sc2\\nconst d = new Point(0, 1);", "cell-d"),
                   run_with_cell_id("%%snip sc2\\nconst d = new Point(0, 2);", "cell-d")]
result["afterRerun"] = run("sc2.snippets.map((s) => s.source)")

result["inBlock"] = run("if (true) {\\n  @sc function inner() {}\\n}")
result["onExpression"] = run("@sc\\nconsole.log(1);")
result["sameCell"] = run("const five = 5;\\n@five function f() {}")
run("const five = 5;")
result["notCollector"] = run("@five function f() {}")
result["snipUnknown"] = run("%%snip nosuch\\nconst z = 1;")
result["snipNoName"] = run("%%snip\\nconst z = 1;")
result["typeError"] = run("%%snip sc\\nconst broken: number = origin;")
result["decoratedTypeError"] = run("@sc function readsMissing() { return origin.missing; }")
result["syntaxError"] = run("@sc\\nfunction oops( {")
result["badParam"] = run("params.lr = () => 0.1;")
# A decorator function declared in the same cell as the class it decorates next to @sc.
result["sameCellDecorator"] = run("function logged(c: any, _context: ClassDecoratorContext) {\\n  c.logged = true;\\n  return c;\\n}\\n@sc @logged class Dec {}\\n(Dec as any).logged")
result["sameCellArrow"] = run("const stamped = (c: any, _context: ClassDecoratorContext) => { c.stamped = 1; return c; };\\n@sc @stamped\\nclass Stamped {}\\n(Stamped as any).stamped")
result["decoratedEntries"] = run("sc.snippets.filter((s) => s.names.includes('Dec') || s.names.includes('Stamped')).map((s) => s.source)")
run("sc.remove('Dec'); sc.remove('Stamped')")
result["unchanged"] = run("[sc.snippets.length, sc2.snippets.length, Object.keys(params).join()]")
result["source"] = run("sc.source")
`, 240_000) as Record<string, Ran>;

    for (const name of Object.keys(CELLS)) assert.equal(r[name].reply.status, "ok", `${name}: ${JSON.stringify(r[name].outputs)}`);
    assert.equal(resultText(r.normOrigin), "5");
    assert.equal(resultText(r.params), "ParamLogger { x: 5, y: 5 }");
    assert.equal(resultText(r.listing), "[ [ 'norm', 'Point', 'origin' ], [ 'distance', 'a,b', 'c' ] ]");

    assert.deepEqual(r.rerun, ["ok", "ok", "ok"]);
    assert.match(resultText(r.afterRerun) ?? "", /'const d = new Point\(0, 2\);'\s*\]$/);
    assert.doesNotMatch(resultText(r.afterRerun) ?? "", /Point\(0, 1\)/, "the re-run replaced the cell's entry");

    assert.match(errorOf(r.inBlock).evalue, /@sc at line 2, column 3: .*inside a block/);
    assert.match(errorOf(r.onExpression).evalue, /@sc at line 1, column 1: .*not a declaration/);
    assert.match(errorOf(r.sameCell).evalue, /@five at line 2, column 1: "five" is declared in this same cell/);
    assert.match(errorOf(r.notCollector).evalue, /"five" is a number, not a SnippetCollector/);
    assert.equal(resultText(r.sameCellDecorator), "true", JSON.stringify(r.sameCellDecorator));
    assert.equal(resultText(r.sameCellArrow), "1", JSON.stringify(r.sameCellArrow));
    assert.equal(resultText(r.decoratedEntries), "[ '@logged class Dec {}', '@stamped\\nclass Stamped {}' ]");
    assert.match(errorOf(r.snipUnknown).evalue, /%%snip on line 1: "nosuch" is not defined/);
    assert.match(errorOf(r.snipNoName).evalue, /%%snip needs the name of a SnippetCollector/);
    // Type errors come from the engine, syntax errors in marked code from the magics; both at the cell's own line:col.
    assert.match(errorOf(r.typeError).evalue, /^2:7 .*'Point' is not assignable to type 'number'/);
    // The error quotes the cell as written, decorator included (the engine saw it blanked).
    const decorated = errorOf(r.decoratedTypeError) as { evalue: string; traceback?: string[] };
    assert.match(decorated.evalue, /^1:\d+ Property 'missing' does not exist on type 'Point'/);
    assert.ok(decorated.traceback?.includes("  1 | @sc function readsMissing() { return origin.missing; }"), JSON.stringify(decorated.traceback));
    const syntax = errorOf(r.syntaxError);
    assert.equal(syntax.ename, "SyntaxError");
    assert.match(syntax.evalue, /^2:\d+ /);
    const badParam = errorOf(r.badParam);
    assert.equal(badParam.ename, "TypeError");
    assert.match(badParam.evalue, /^params\.lr was set to a function; parameters must be JSON data/);
    assert.equal(resultText(r.unchanged), "[ 3, 4, 'x,y' ]");
    const source = resultText(r.source) ?? "";
    assert.ok(source.indexOf("class Point") < source.indexOf("const origin"), source);
  });
});
