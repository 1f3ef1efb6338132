// The worker compiles a sweep once: bundles that differ only in their parameters (their second
// line, a comment) share one compiled program, while any change to the code compiles anew.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { buildBundle, withParams } from "../runtime/bundle";
import { SnippetCollector, recordSnippet } from "../runtime/snippets";
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

test("a compiler warming up in the background still answers each request with its own program; a warm-up that does not compile breaks nothing", async () => {
  const warm = (i: number) => `function warm${i}(v: number[]): number {\n  return v.length * ${i};\n}\nwarm${i}([1, 2])`;
  const warming = new BundleCompiler({ warmUp: warm(0) });
  const broken = new BundleCompiler({ warmUp: "function (" });
  try {
    for (const compiler of [warming, broken]) {
      for (let i = 1; i <= 6; i++) {
        const compiled = await compiler.compile(warm(i), []);
        assert.match(compiled.js, new RegExp(`return v\\.length \\* ${i};`));
        assert.doesNotMatch(compiled.js, /: number/);
        // Past the warm-up's first wait (200 ms after a request), so requests meet its steps.
        await new Promise((resolve) => setTimeout(resolve, 60));
      }
    }
  } finally {
    await Promise.all([warming.close(), broken.close()]);
  }
});
