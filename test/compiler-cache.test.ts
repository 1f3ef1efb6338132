// The worker compiles a sweep once: bundles that differ only in their parameters (their second
// line, a comment) share one compiled program, while any change to the code compiles anew. An
// analysis's functions compile without their source map until a traceback needs it.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { buildBundle, withParams } from "../runtime/bundle";
import { SnippetCollector, recordSnippet } from "../runtime/snippets";
import { functionsProgram } from "../worker/analysis-runner";
import { BundleCompiler } from "../worker/compiler";

const compiler = new BundleCompiler();
after(() => compiler.close());

function collector(source: string): SnippetCollector {
  const sc = new SnippetCollector();
  recordSnippet(sc, { source, kind: "cell" });
  return sc;
}

test("a sweep's bundles share one compiled program; a code change does not", async () => {
  const sc = collector("function inc(x: number): number {\n  return x + 1;\n}");
  const first = buildBundle(["inc(params.x)"], [sc], { params: { x: 1 } });
  const second = withParams(first, { x: 2 });
  assert.notEqual(second.hash, first.hash);
  assert.equal(compiler.cached(second.source, second.entries), undefined);
  const compiled = await compiler.compile(first.source, first.entries);
  // The params line does not reach the compiled JavaScript: the job gets `params` at run time.
  assert.doesNotMatch(compiled.js, /"x":1/);
  assert.equal(compiler.cached(second.source, second.entries), compiled);
  assert.equal(await compiler.compile(second.source, second.entries), compiled);

  const changed = buildBundle(["inc(params.x)"], [collector("function inc(x: number): number {\n  return x + 2;\n}")], { params: { x: 1 } });
  const other = await compiler.compile(changed.source, changed.entries);
  assert.notEqual(other.key, compiled.key);
  assert.match(other.js, /x \+ 2/);
});

test("an analysis's functions compile without their source map until one is asked for, then with the same JavaScript", async () => {
  const layout = functionsProgram([{ name: "score", source: "function score(): { loss: number } {\n  return { loss: step as number };\n}", hash: "h" }]);
  const lean = await compiler.compileFunctions(layout.source);
  assert.equal(lean.mappings, undefined);
  assert.doesNotMatch(lean.js, /as number|: \{ loss/);
  assert.equal(await compiler.compileFunctions(layout.source), lean, "cached");
  const mapped = await compiler.compileFunctions(layout.source, true);
  assert.ok(mapped.mappings && mapped.mappings.length > 0);
  assert.deepEqual([mapped.key, mapped.js, mapped.declaredNames], [lean.key, lean.js, lean.declaredNames]);
  // Once mapped, both kinds of request get the mapped one.
  assert.equal(await compiler.compileFunctions(layout.source), mapped);
});

test("functions that do not parse fail with the line and the parser's message", async () => {
  const layout = functionsProgram([{ name: "broken", source: "function broken() {\n  return { a: 1 ;\n}", hash: "h2" }]);
  await assert.rejects(compiler.compileFunctions(layout.source), (err: Error) => {
    assert.equal(err.name, "SyntaxError");
    // Line 2 of the function is line 5 of its program.
    assert.equal(err.message, "analysis.ts:5:17: ',' expected.");
    return true;
  });
});
