// The analysis thread's warm context: a job's context is set up once and reused from checkpoint to
// checkpoint (only the checkpoint's values restored), yet nothing one checkpoint's analysis leaves
// behind (a module-level variable, a global, an object changed in place, a parameter) is seen by
// the next. Drives the real analysis thread (worker_threads) with programs from the real compiler
// thread, as worker/analysis-runner.ts does; the store and comm around it are covered by
// test/analyzer.test.ts.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { functionsProgram } from "../worker/analysis-runner";
import type { AnalysisThreadEvent, AnalyzeCheckpointCommand, ContextUse } from "../worker/analysis-thread";
import { BundleCompiler } from "../worker/compiler";
import { encodeValue } from "../runtime/shared/value-codec";

const compiler = new BundleCompiler();
const thread = new Worker(join(__dirname, "..", "worker", "analysis-thread.js"));
after(async () => {
  await thread.terminate();
  await compiler.close();
});

let nextId = 1;
function analyze(command: Omit<AnalyzeCheckpointCommand, "id" | "type">): Promise<Extract<AnalysisThreadEvent, { type: "result" | "setup_failed" }>> {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const onMessage = (event: AnalysisThreadEvent) => {
      if (event.id !== id || event.type === "stream") return;
      thread.off("message", onMessage);
      thread.off("error", reject);
      resolve(event);
    };
    thread.on("message", onMessage);
    thread.once("error", reject);
    thread.postMessage({ type: "analyze", id, ...command });
  });
}

const JOB = `let step = 0;
let seen = 0;
const logged: number[] = [];
const weights = new Float64Array(4);
const settings = { scale: 2 };
jobtracker.registerCheckpointer("step");
jobtracker.registerCheckpointer("weights");
function train(): number {
  for (let i = 1; i <= 3; i++) {
    step = i;
    weights.fill(i);
    jobtracker.checkpoint();
  }
  return step;
}
`;

/** Runs `fn` (a function declaration) over checkpoints 1..count of the program `job`; the rows and how each context came about. */
/**
 * `preparedOn`: a checkpoint the context is set up on first, calling nothing (as a worker does on
 * analyze_prepare), with the functions or, `withoutFunctions`, ahead of them (while they compile).
 */
async function rows(job: string, fn: string, count = 3, params: Record<string, unknown> = {}, preparedOn?: number, withoutFunctions = false): Promise<{ rows: Record<string, unknown>[]; contexts: ContextUse[] }> {
  const program = await compiler.compile(job, ["train()"]);
  const name = /function (\w+)/.exec(fn)![1];
  const layout = functionsProgram([{ name, source: fn, hash: createHash("sha256").update(fn).digest("hex") }]);
  const functions = await compiler.compileFunctions(layout.source);
  const out: Record<string, unknown>[] = [];
  const contexts: ContextUse[] = [];
  const command = (checkpoint: number, call: number[]) => ({
    program: { key: program.key, js: program.js, declaredNames: program.declaredNames, hiddenState: program.hiddenState },
    functions: { key: functions.key, js: functions.js, declaredNames: functions.declaredNames },
    call, params: params as never, checkpoint,
    values: { step: encodeValue(checkpoint, "step", "test"), weights: encodeValue(new Float64Array(4).fill(checkpoint), "weights", "test") },
  });
  if (preparedOn !== undefined) {
    const ahead = command(preparedOn, []);
    const answer = await analyze(withoutFunctions ? { ...ahead, functions: undefined } : ahead);
    assert.equal(answer.type, "result", JSON.stringify(answer));
    if (answer.type === "result") assert.deepEqual([answer.outcomes, answer.context.fresh], [[], true]);
  }
  for (let checkpoint = 1; checkpoint <= count; checkpoint++) {
    const answer = await analyze(command(checkpoint, [0]));
    assert.equal(answer.type, "result", JSON.stringify(answer));
    if (answer.type !== "result") continue;
    const outcome = answer.outcomes[0];
    assert.ok(outcome.ok, JSON.stringify(outcome));
    out.push(outcome.value);
    contexts.push(answer.context);
  }
  return { rows: out, contexts };
}

describe("the analysis thread's reused context", () => {
  test("a pure analysis reuses one context (warm) and gets each checkpoint's values", async () => {
    const { rows: got, contexts } = await rows(JOB, "function pure() {\n  return { step, first: weights[0], last: weights[3], scaled: step * settings.scale };\n}", 4);
    assert.deepEqual(got, [1, 2, 3, 4].map((i) => ({ step: i, first: i, last: i, scaled: 2 * i })));
    assert.deepEqual(contexts.map((c) => c.fresh), [true, false, false, false], JSON.stringify(contexts));
  });

  test("the functions read the built-ins through the context's own bindings (no copies of them), warm from checkpoint to checkpoint", async () => {
    const fn = "function builtins() {\n  const squares = new Float64Array(weights).map((w) => Math.pow(w, 2));\n  const counts = new Map([[\"step\", step]]);\n  return { norm: Math.sqrt(squares.reduce((a, b) => a + b, 0)), json: JSON.stringify([...counts]), max: Math.max(...weights) };\n}";
    const { rows: got, contexts } = await rows(JOB, fn, 3);
    assert.deepEqual(got, [1, 2, 3].map((i) => ({ norm: 2 * i, json: `[["step",${i}]]`, max: i })));
    assert.deepEqual(contexts.map((c) => c.fresh), [true, false, false], JSON.stringify(contexts));
    const program = functionsProgram([{ name: "builtins", source: fn, hash: "h" }]).source;
    assert.doesNotMatch(program, /globalThis/, "the functions' program copies no built-in out of globalThis");
  });

  test("a context set up ahead on another checkpoint, calling nothing, serves every checkpoint warm", async () => {
    const { rows: got, contexts } = await rows(JOB, "function ahead() {\n  return { step, first: weights[0], scaled: step * settings.scale };\n}", 3, {}, 9);
    assert.deepEqual(got, [1, 2, 3].map((i) => ({ step: i, first: i, scaled: 2 * i })));
    assert.deepEqual(contexts.map((c) => c.fresh), [false, false, false], JSON.stringify(contexts));
  });

  test("a context set up ahead of its functions gets them at the first checkpoint and serves every checkpoint warm", async () => {
    const { rows: got, contexts } = await rows(JOB, "function later() {\n  return { step, first: weights[0], scaled: step * settings.scale };\n}", 3, {}, 9, true);
    assert.deepEqual(got, [1, 2, 3].map((i) => ({ step: i, first: i, scaled: 2 * i })));
    assert.deepEqual(contexts.map((c) => c.fresh), [false, false, false], JSON.stringify(contexts));
    assert.equal(contexts[2].contexts - contexts[0].contexts, 0, "no context was set up after the one made ahead");
  });

  test("a context set up ahead of its functions is compared with its state once they are in: what the first checkpoint leaves is not seen by the next", async () => {
    const { rows: got, contexts } = await rows(JOB, "function counts() {\n  seen += 1;\n  logged.push(step);\n  return { step, seen, logged: logged.length };\n}", 3, {}, 9, true);
    assert.deepEqual(got, [1, 2, 3].map((i) => ({ step: i, seen: 1, logged: 1 })));
    assert.deepEqual(contexts.map((c) => c.fresh), [false, true, true], JSON.stringify(contexts));
  });

  test("a context set up ahead for other parameters is not given the functions: the checkpoint gets a fresh one", async () => {
    const program = await compiler.compile(JOB, ["train()"]);
    const fn = "function other() {\n  return { step };\n}";
    const layout = functionsProgram([{ name: "other", source: fn, hash: createHash("sha256").update(fn).digest("hex") }]);
    const functions = await compiler.compileFunctions(layout.source);
    const base = {
      program: { key: program.key, js: program.js, declaredNames: program.declaredNames, hiddenState: program.hiddenState },
      call: [] as number[], checkpoint: 9,
      values: { step: encodeValue(9, "step", "test"), weights: encodeValue(new Float64Array(4).fill(9), "weights", "test") },
    };
    const ahead = await analyze({ ...base, params: { lr: 1 } as never });
    assert.equal(ahead.type, "result", JSON.stringify(ahead));
    const answer = await analyze({ ...base, params: { lr: 2 } as never, call: [0], checkpoint: 1, functions: { key: functions.key, js: functions.js, declaredNames: functions.declaredNames } });
    assert.equal(answer.type, "result", JSON.stringify(answer));
    if (answer.type === "result") {
      assert.deepEqual(answer.outcomes, [{ ok: true, value: { step: 9 } }], "the checkpoint's values (9 here) in a context of its own");
      assert.equal(answer.context.fresh, true);
    }
  });

  test("whatever one checkpoint's analysis leaves behind is not seen by the next; every row is right", async () => {
    const leaks: Array<[string, string]> = [
      ["a module-level let", "function a() {\n  seen += 1;\n  return { step, seen };\n}"],
      ["a global", "function b() {\n  const g = globalThis as any;\n  g.leftover = (g.leftover ?? 0) + 1;\n  return { step, seen: g.leftover };\n}"],
      ["a const object changed in place", "function c() {\n  logged.push(step);\n  return { step, seen: logged.length };\n}"],
      ["a nested setting", "function d() {\n  settings.scale += 1;\n  return { step, seen: settings.scale - 2 };\n}"],
      ["an extra property on a restored const", "function e() {\n  const w = weights as any;\n  w.extra = (w.extra ?? 0) + 1;\n  return { step, seen: w.extra };\n}"],
      ["a built-in changed", "function f() {\n  const m = Math as any;\n  m.calls = (m.calls ?? 0) + 1;\n  return { step, seen: m.calls };\n}"],
      ["a function's property", "function g() {\n  const t = train as any;\n  t.calls = (t.calls ?? 0) + 1;\n  return { step, seen: t.calls };\n}"],
    ];
    for (const [what, fn] of leaks) {
      const { rows: got, contexts } = await rows(JOB, fn);
      assert.deepEqual(got, [1, 2, 3].map((i) => ({ step: i, seen: 1 })), `${what}: ${JSON.stringify(got)}`);
      assert.ok(contexts.every((c) => c.fresh), `${what}: each checkpoint got a fresh context`);
    }
  });

  test("a parameter changed in place is fresh at the next checkpoint", async () => {
    const { rows: got, contexts } = await rows(JOB, "function p() {\n  (params as any).cfg.n += 1;\n  return { step, n: (params as any).cfg.n };\n}", 3, { cfg: { n: 0 } });
    assert.deepEqual(got, [1, 2, 3].map((i) => ({ step: i, n: 1 })));
    assert.deepEqual(contexts.map((c) => c.fresh), [true, false, false], "the parameters are renewed, the context kept");
  });

  test("state a closure made at the top level keeps is never shared: such a job gets a fresh context per checkpoint", async () => {
    const job = `${JOB}\nconst counter = (() => {\n  let n = 0;\n  return () => ++n;\n})();\n`;
    const { rows: got, contexts } = await rows(job, "function h() {\n  return { step, n: counter() };\n}");
    assert.deepEqual(got, [1, 2, 3].map((i) => ({ step: i, n: 1 })));
    assert.ok(contexts.every((c) => c.fresh), JSON.stringify(contexts));
    assert.match(contexts[0].notReused ?? "", /runs a function of its own while the top level runs/);
    // Set up ahead of its functions: not used either, the first checkpoint gets a context of its own.
    const ahead = await rows(job, "function h2() {\n  return { step, n: counter() };\n}", 2, {}, 9, true);
    assert.deepEqual(ahead.rows, [1, 2].map((i) => ({ step: i, n: 1 })));
    assert.ok(ahead.contexts.every((c) => c.fresh), JSON.stringify(ahead.contexts));
  });
});
