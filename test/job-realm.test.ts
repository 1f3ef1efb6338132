// The job's global scope: built-ins (Math, JSON, Float64Array…) and the sandbox's globals (console,
// params, timers…) are bound as script-scope bindings before the program runs, so reading them
// skips the context's interceptor (bench/job-realm.ts has the speed): consts where the program
// never assigns them, so V8 inlines Math.sqrt and friends, lets where it may. A program may still
// declare those names itself, and values restored from a checkpoint are the job realm's own.
import assert from "node:assert/strict";
import { deserialize } from "node:v8";
import * as vm from "node:vm";
import { after, before, describe, test } from "node:test";
import { JobContext } from "../worker/job-context";
import { JobRunner } from "../worker/job-runner";
import type { JobListener, SubmitOptions } from "../worker/job-runner";
import { assignedGlobalNames, globalDeclarations } from "../worker/transpile";
import type { JobBundle } from "../runtime/shared/protocol";

type Outcome = { kind: "done"; value: unknown } | { kind: "failed"; ename: string; evalue: string } | { kind: "cancelled"; reason: string };

let runner: JobRunner;
let nextId = 1;

function run(bundle: JobBundle, options: SubmitOptions = {}, checkpoint?: JobListener["checkpoint"]): Promise<Outcome> {
  return new Promise((resolve) => {
    runner.submit(`realm-${nextId++}`, bundle, {
      started: () => {},
      stream: () => {},
      checkpoint,
      done: ({ result }) => resolve({ kind: "done", value: deserialize(result) }),
      failed: ({ ename, evalue }) => resolve({ kind: "failed", ename, evalue }),
      cancelled: (reason) => resolve({ kind: "cancelled", reason }),
    }, options);
  });
}

before(() => {
  runner = new JobRunner({ log: () => {} });
});

after(async () => {
  await runner.close();
});

describe("job realm", () => {
  test("the names a program declares in the global scope are found in the JavaScript that runs", () => {
    const js = [
      "\"use strict\";",
      "const { a: JSON, b: [Set, , ...rest] } = x;",
      "class Map {}",
      "function Reflect() { var Proxy = 1; let inner = 2; }",
      "for (var k = 0; k < 1; k++) { var WeakMap = 1; let blockOnly = 1; }",
      "const f = () => { var Symbol = 1; };",
      "const C = class Promise {};",
    ].join("\n");
    const names = globalDeclarations(js);
    for (const name of ["JSON", "Set", "rest", "Map", "Reflect", "k", "WeakMap", "f", "C"]) assert.ok(names.includes(name), `${name} in ${names.join(",")}`);
    // Names inside functions and class expressions do not reach the global scope.
    for (const name of ["Proxy", "inner", "Symbol", "Promise"]) assert.ok(!names.includes(name), `${name} not in ${names.join(",")}`);
  });

  test("the names a program assigns are found anywhere in it; eval, Function or with make them unknowable", () => {
    const js = [
      "let a = 1;",
      "Math = { ...Math };",
      "counter += 1; ++JSON; Reflect--;",
      "[Set, { x: Map, y: [WeakMap = 1] }, ...Symbol] = stuff;",
      "({ Proxy, ...rest } = other);",
      "for (Promise of list) {}",
      "for (Atomics in obj) {}",
      "function f() { let Date = 0; Date = 1; }",
      "console.log(Number, Float64Array.from([1]));",
    ].join("\n");
    const names = assignedGlobalNames(js) ?? [];
    for (const name of ["Math", "counter", "JSON", "Reflect", "Set", "Map", "WeakMap", "Symbol", "Proxy", "rest", "Promise", "Atomics", "Date"]) {
      assert.ok(names.includes(name), `${name} in ${names.join(",")}`);
    }
    // Read, declared or called only: not assigned.
    for (const name of ["a", "console", "Number", "Float64Array", "stuff", "f"]) assert.ok(!names.includes(name), `${name} not in ${names.join(",")}`);
    for (const code of ["eval('Math = 1');", "const g = new Function('return 1');", "(0, globalThis.eval)('1');", "with (obj) { x = 1; }"]) {
      assert.equal(assignedGlobalNames(code), undefined, code);
    }
  });

  test("bindGlobals binds the built-ins a program never assigns as consts, the ones it may assign (and params) as lets", () => {
    const job = new JobContext();
    try {
      job.begin({ rate: 0.5 }, { write: () => {}, checkpoint: () => {} });
      job.bindGlobals([], ["console"]);
      assert.throws(() => vm.runInContext("Math = 1;", job.context), /Assignment to constant variable/);
      assert.equal(vm.runInContext("console = 'mine'; params = 3; [console, params, Math.sqrt(4)].join()", job.context), "mine,3,2");
    } finally {
      job.dispose();
    }
  });

  test("a program that assigns built-ins (plainly, or through eval) still runs", async () => {
    const plainly = await run({
      source: "Math = Object.assign(Object.create(Math), { answer: 42 });\nfunction check() {\n  return [(Math as any).answer, Math.max(1, 2)];\n}",
      entries: ["check()"],
    });
    assert.deepEqual(plainly, { kind: "done", value: [42, 2] });
    const throughEval = await run({
      source: "function check() {\n  eval('JSON = { stringify: () => \"evaluated\" }');\n  return [JSON.stringify({}), Math.max(1, 2)];\n}",
      entries: ["check()"],
    });
    assert.deepEqual(throughEval, { kind: "done", value: ["evaluated", 2] });
  });

  test("bindGlobals binds built-ins and sandbox globals lexically, except the names given", () => {
    const job = new JobContext();
    try {
      job.begin({ rate: 0.5 }, { write: () => {}, checkpoint: () => {} });
      job.bindGlobals(["Map", "params"]);
      // A bound name is a script-scope binding now: declaring it again is an error…
      assert.throws(() => vm.runInContext("let Math = 1;", job.context), /Identifier 'Math' has already been declared/);
      assert.throws(() => vm.runInContext("var console;", job.context), /Identifier 'console' has already been declared/);
      // …and the names left out can still be declared by the program.
      assert.equal(vm.runInContext("class Map { static mine = true } let params = 2; [Map.mine, params]", job.context).join(), "true,2");
      // The bound values are the ones an unbound read gives: this realm's built-ins, the sandbox's globals.
      const same = vm.runInContext("[Math === globalThis.Math, Float64Array === globalThis.Float64Array, console === globalThis.console, setTimeout === globalThis.setTimeout, jobtracker === globalThis.jobtracker]", job.context) as boolean[];
      assert.deepEqual([...same], [true, true, true, true, true]);
      assert.notEqual(vm.runInContext("Array", job.context), Array, "the job realm's Array, not the host's");
    } finally {
      job.dispose();
    }
  });

  test("a program that declares its own Map, JSON, Set, console and params runs, and the other built-ins behave", async () => {
    const outcome = await run({
      source: [
        "class Map { size = 7; }",
        "const JSON = { stringify: (_: unknown) => 'mine' };",
        "function Set() { return 'my Set'; }",
        "var console = { log: (..._: unknown[]) => 'quiet' };",
        "let params = { rate: 9 };",
        "let total = 0;",
        "for (let i = 0; i < 1000; i++) total += Math.sqrt(i);",
        "function check() {",
        "  const floats = new Float64Array([1, 2]);",
        "  return {",
        "    ownMap: new Map().size, ownJson: JSON.stringify({}), ownSet: Set(), ownConsole: console.log(), ownParams: params.rate,",
        "    arrays: [] instanceof Array && Array.isArray([]) && Object.getPrototypeOf([]) === Array.prototype,",
        "    typed: floats instanceof Float64Array && ArrayBuffer.isView(floats) && floats.buffer instanceof ArrayBuffer,",
        "    errors: (() => { try { null!.x; } catch (e) { return e instanceof TypeError && e instanceof Error; } })(),",
        "    promise: Promise.resolve(1) instanceof Promise,",
        "    total: Math.round(total),",
        "    host: [typeof setTimeout, typeof Buffer, typeof jobtracker.checkpoint, typeof require].join(),",
        "  };",
        "}",
      ].join("\n"),
      params: { rate: 0.5 },
      entries: ["check()"],
    });
    assert.equal(outcome.kind, "done", JSON.stringify(outcome));
    assert.deepEqual((outcome as { value: unknown }).value, {
      ownMap: 7, ownJson: "mine", ownSet: "my Set", ownConsole: "quiet", ownParams: 9,
      arrays: true, typed: true, errors: true, promise: true, total: 21066, host: "function,function,function,function",
    });
  });

  test("a job thread started after another exposed gc (a non-configurable global) still runs jobs", async () => {
    // The first job thread set --expose-gc for the whole process, so this one's contexts have `gc`.
    await run({ source: "1" });
    const second = new JobRunner({ log: () => {} });
    try {
      const outcome = await new Promise<Outcome>((resolve) => {
        second.submit("realm-second-thread", { source: "const r = Math.max(1, 2);", entries: ["[r, typeof gc]"] }, {
          started: () => {},
          stream: () => {},
          done: ({ result }) => resolve({ kind: "done", value: deserialize(result) }),
          failed: ({ ename, evalue }) => resolve({ kind: "failed", ename, evalue }),
          cancelled: (reason) => resolve({ kind: "cancelled", reason }),
        });
      });
      assert.deepEqual(outcome, { kind: "done", value: [2, "function"] });
    } finally {
      await second.close();
    }
  });

  test("a program that declares a built-in's name twice (let, then var) still fails as it would in Node", async () => {
    const outcome = await run({ source: "let JSON = 1;\nvar JSON = 2;" });
    assert.equal(outcome.kind, "failed");
    assert.match((outcome as { evalue: string }).evalue, /JSON/);
  });

  test("values restored from a checkpoint are the job realm's own (Map, Float64Array, the program's class)", async () => {
    const source = [
      "class Point { constructor(public x: number, public y: number) {} norm() { return Math.hypot(this.x, this.y); } }",
      "let state = { weights: new Float64Array([1, 2, 3]), seen: new Map([['a', 1]]), tags: new Set(['t']), points: [new Point(3, 4)], when: new Date(0) };",
      "jobtracker.registerCheckpointer('state');",
      "function save() { jobtracker.checkpoint(); return 'saved'; }",
      "function inspectState() {",
      "  return [state.weights instanceof Float64Array, state.seen instanceof Map, state.tags instanceof Set, state.points[0] instanceof Point,",
      "    state.points[0].norm(), state.when instanceof Date, Array.isArray(state.points) && state.points instanceof Array, state.weights[2]];",
      "}",
    ].join("\n");
    const saved: Record<string, Uint8Array>[] = [];
    const first = await run({ source, entries: ["save()"] }, {}, (_index, values) => void saved.push(values));
    assert.equal(first.kind, "done", JSON.stringify(first));
    assert.equal(saved.length, 1);
    const resumed = await run({ source, entries: ["inspectState()"] }, { restore: async () => ({ index: 0, values: saved[0] }) });
    assert.equal(resumed.kind, "done", JSON.stringify(resumed));
    assert.deepEqual((resumed as { value: unknown }).value, [true, true, true, true, 5, true, true, 3]);
  });
});
