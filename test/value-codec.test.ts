// The value codec and the job's tracker, in a real job context (a vm context with its own
// built-ins, as on a worker): class instances come back as instances of the program's class,
// built-ins as the job realm's, big typed arrays are not walked, and bad values name their path.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deserialize } from "node:v8";
import * as vm from "node:vm";
import { JobContext } from "../worker/job-context";
import { decodeValue, encodeValue } from "../runtime/shared/value-codec";

function jobWith(program: string): { job: JobContext; snapshots: Array<{ index: number; values: Record<string, Uint8Array> }> } {
  const job = new JobContext();
  const snapshots: Array<{ index: number; values: Record<string, Uint8Array> }> = [];
  job.begin({}, { write: () => {}, checkpoint: (index, values) => snapshots.push({ index, values }) });
  vm.runInContext(program, job.context);
  return { job, snapshots };
}

const MODEL = `
class Layer { constructor(n) { this.w = new Float64Array(n).fill(0.5); } sum() { return this.w.reduce((a, b) => a + b, 0); } }
class Model { constructor() { this.layers = [new Layer(3), new Layer(2)]; this.meta = new Map([["lr", 0.1]]); this.step = 0; } total() { return this.layers.reduce((a, l) => a + l.sum(), 0); } }
`;

test("plain data is plain v8 bytes; built-ins decode as the job realm's", () => {
  const value = { a: new Float64Array([1, 2]), m: new Map([["k", new Set([1n])]]), d: new Date(5), list: [1, "x", null] };
  const bytes = encodeValue(value, "value", "test");
  assert.deepEqual(deserialize(bytes), value);
  const { job } = jobWith("let x = 1;");
  const back = decodeValue(bytes, job.classLookup()) as typeof value;
  assert.equal(vm.runInContext("(v) => v.a instanceof Float64Array && v.m instanceof Map && v.d instanceof Date && Array.isArray(v.list) && v instanceof Object", job.context)(back), true);
  assert.equal(back.a[1], 2);
  assert.equal((back.m.get("k") as Set<bigint>).has(1n), true);
});

test("instances of the program's classes come back with their class (nested, shared, cyclic)", () => {
  const { job } = jobWith(`${MODEL}\nlet model = new Model(); model.self = model; let pair = [model.layers[0], model.layers[0]];`);
  const model = vm.runInContext("model", job.context);
  const bytes = encodeValue({ model, pair: vm.runInContext("pair", job.context) }, "state", "test");
  assert.equal(bytes.subarray(0, 4).toString("latin1"), "NBJC");
  // A fresh context running the same program: the classes are found by name there.
  const { job: other } = jobWith(MODEL);
  const back = decodeValue(bytes, other.classLookup()) as { model: { total(): number; self: unknown; layers: unknown[] }; pair: unknown[] };
  assert.equal(vm.runInContext("(m) => m instanceof Model && m.layers[0] instanceof Layer && m.meta instanceof Map", other.context)(back.model), true);
  assert.equal(back.model.total(), 2.5);
  assert.equal(back.model.self, back.model);
  assert.equal(back.pair[0], back.pair[1]);
  assert.equal(back.pair[0], back.model.layers[0]);
});

test("a class the program does not declare is a clear error naming it", () => {
  const { job } = jobWith(MODEL + "let model = new Model();");
  const bytes = encodeValue(vm.runInContext("model", job.context), "model", "test");
  const { job: other } = jobWith("let y = 1;");
  assert.throws(() => decodeValue(bytes, other.classLookup()), /instances of classes Layer, Model, but the program declares no classes Layer, Model at its top level/);
});

test("what cannot be captured names its path", () => {
  const { job } = jobWith("class Net { constructor() { this.forward = () => 1; } } let net = new Net(); let anon = new (class {})();");
  assert.throws(() => encodeValue(vm.runInContext("net", job.context), "model", "jobtracker.checkpoint() cannot capture the variable model"), /cannot capture the variable model: model\.forward is a function/);
  assert.throws(() => encodeValue({ p: Promise.resolve(1) }, "x", "p"), /x\.p is a Promise/);
  assert.throws(() => encodeValue([vm.runInContext("anon", job.context)], "list", "p"), /list\[0\] is an instance of an anonymous class/);
});

test("a 200 MB typed array is copied as a block, not walked", () => {
  const big = new Float32Array(50_000_000);
  big[49_999_999] = 7;
  const started = process.hrtime.bigint();
  const bytes = encodeValue({ big }, "big", "test");
  const { job } = jobWith("let big;");
  const back = decodeValue(bytes, job.classLookup()) as { big: Float32Array };
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.equal(back.big[49_999_999], 7);
  assert.equal(back.big.length, 50_000_000);
  // Generous: a walk over 50 M elements in the realm fix-up would take far longer than a copy.
  assert.ok(ms < 5_000, `encode + decode of 200 MB took ${ms} ms`);
});

test("jobtracker: registration rules, checkpoint before registration, restore", () => {
  const { job, snapshots } = jobWith(`${MODEL}\nlet step = 0; const weights = new Float64Array(3); let model = new Model(); var unused = 1;`);
  const tracker = job.jobtracker;
  assert.throws(() => tracker.checkpoint(), /no variable is registered/);
  assert.throws(() => tracker.registerCheckpointer("missing"), /the job has no top-level variable missing/);
  tracker.registerCheckpointer("step");
  tracker.registerCheckpointer("step"); // again the same way: fine
  const get = () => 1;
  assert.throws(() => tracker.registerCheckpointer("step", { get }), /already registered by name/);
  tracker.registerCheckpointer("weights");
  tracker.registerCheckpointer("model");
  vm.runInContext("step = 5; weights[1] = 2; model.step = 9;", job.context);
  assert.equal(tracker.checkpoint(), 0);
  vm.runInContext("step = 6; weights[1] = 3;", job.context);
  assert.equal(tracker.checkpoint(), 1);
  assert.deepEqual(snapshots.map((s) => s.index), [0, 1]);
  assert.deepEqual(Object.keys(snapshots[0].values), ["step", "weights", "model"]);

  // A fresh run of the program, restored from checkpoint 0 (plus a value whose name is only a top-level var).
  const { job: resumed } = jobWith(`${MODEL}\nlet step = 0; const weights = new Float64Array(3); let model = new Model(); var unused = 1;`);
  resumed.jobtracker.registerCheckpointer("step");
  const values = { ...snapshots[0].values, unused: encodeValue(42, "unused", "t"), gone: encodeValue(1, "gone", "t") };
  resumed.jobtracker.restore(0, values, resumed.classLookup());
  assert.equal(vm.runInContext("JSON.stringify([step, Array.from(weights), model.step, model instanceof Model, model.total(), unused])", resumed.context), "[5,[0,2,0],9,true,2.5,42]");
  assert.equal(resumed.jobtracker.checkpoint(), 1);
});

test("jobtracker: a value restored before its { get, set } registration (made in the entry) reaches that set", () => {
  const { job, snapshots } = jobWith("const optimizer = { lr: 0.1 };");
  job.jobtracker.registerCheckpointer("lr", { get: () => vm.runInContext("optimizer.lr", job.context), set: () => undefined });
  vm.runInContext("optimizer.lr = 0.025", job.context);
  job.jobtracker.checkpoint();

  const { job: resumed } = jobWith("const optimizer = { lr: 0.1 };");
  resumed.jobtracker.restore(0, snapshots[0].values, resumed.classLookup());
  assert.equal(vm.runInContext("optimizer.lr", resumed.context), 0.1, "nothing takes lr before the entry registers it");
  resumed.jobtracker.registerCheckpointer("lr", {
    get: () => vm.runInContext("optimizer.lr", resumed.context),
    set: (value) => vm.runInContext(`optimizer.lr = ${JSON.stringify(value)}`, resumed.context),
  });
  assert.equal(vm.runInContext("optimizer.lr", resumed.context), 0.025);
  assert.equal(resumed.jobtracker.checkpoint(), 1);
});
