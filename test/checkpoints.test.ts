// Checkpoints through a notebook on a local cluster of 2 real workers and a fresh database:
// values of every kind stored in order and restored into a resumed job (class instances with
// their class), resume after a failure, bad input. Connections terminated mid-job, a worker
// SIGKILLed mid-job: test/checkpoint-faults.test.ts.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { join } from "node:path";
import { getJob, readCheckpoint } from "../store";
import { listCheckpoints } from "../store/checkpoints";
import { decodeValue } from "../runtime/shared/value-codec";
import { cellText, JobsEnv } from "./jobs-env";

const env = new JobsEnv("checkpoints");
before(() => env.start());
after(() => env.cleanup());

class Model {
  count = 0;
}
const lookup = (name: string) => (name === "Model" ? Model : undefined);

const SETUP = `
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code decl
%%snip sc
class Model {
  count = 0;
  history: number[] = [];
  bump(by: number) { this.count += by; this.history.push(by); }
  describe() { return \`Model(\${this.count})\`; }
}
let step = 0;
let weights = new Float64Array(4);
const seen = new Map<number, string>();
let model = new Model();
jobtracker.registerCheckpointer("step");
jobtracker.registerCheckpointer("weights");
jobtracker.registerCheckpointer("seen");
jobtracker.registerCheckpointer("model");
function train(until: number, failAt: number) {
  while (step < until) {
    step += 1;
    weights[step % 4] += step;
    seen.set(step, "s" + step);
    model.bump(step);
    const index = jobtracker.checkpoint();
    console.log("checkpoint", index, "step", step);
    if (step === failAt) throw new Error("boom at step " + step);
  }
  return { step, weights: Array.from(weights), seen: [...seen.keys()].join(","), isModel: model instanceof Model, text: model.describe(), history: model.history.join(",") };
}
`;

describe("checkpoints from a notebook", () => {
  test("a Float64Array, a Map and a class instance are stored at every checkpoint; resume after a failure continues from the last one", async () => {
    const run = await env.runNotebook(`${SETUP}
### code fail
const first = await db.createJob(rc.view(0), ["train(5, 3)"], sc);
console.log("status", await first.wait(), "id", first.id);
### code list
const listed = await first.checkpoints();
console.log(JSON.stringify(listed.map((c) => [c.idx, Object.keys(c.sizes).sort().join("+"), c.sizes.weights])));
### code resume
const second = await first.resume(rc.view(1));
console.log("resumed", JSON.stringify(await second.result));
console.log("links", second.record.resumed_from === first.id, second.record.resumed_from_checkpoint);
### code straight
const straight = await db.createJob(rc.view(0), ["train(5, -1)"], sc);
console.log("straight", JSON.stringify(await straight.result));
### code running
const slow = await db.createJob(rc.view(0), ["new Promise((r) => setTimeout(r, 3000))"], sc);
await new Promise((r) => setTimeout(r, 500));
try { await slow.resume(); } catch (e) { console.log("running:", (e as Error).message); }
try { await straight.resume(); } catch (e) { console.log("done:", (e as Error).message); }
await slow.wait();
`);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("fail")), /status failed id 1/);
    const listed = JSON.parse(cellText(run.cells.get("list")).trim()) as Array<[number, string, number]>;
    assert.deepEqual(listed.map(([idx, names]) => [idx, names]), [[0, "model+seen+step+weights"], [1, "model+seen+step+weights"], [2, "model+seen+step+weights"]]);
    // The array's 32 bytes of data plus v8's few bytes of framing.
    assert.ok(listed.every(([, , size]) => size > 32 && size < 100), JSON.stringify(listed));
    const resumed = cellText(run.cells.get("resume"));
    const straight = cellText(run.cells.get("straight"));
    const result = /resumed (\{.*\})/.exec(resumed)?.[1];
    assert.ok(result, resumed);
    assert.equal(result, /straight (\{.*\})/.exec(straight)?.[1], "the resumed job ends exactly where an uninterrupted one does");
    assert.match(result, /"isModel":true,"text":"Model\(15\)","history":"1,2,3,4,5"/);
    assert.match(resumed, /links true 2/);
    const running = cellText(run.cells.get("running"));
    assert.match(running, /running: job 4 is still running; cancel it first \(await job\.cancel\(\)\) or wait for it to end, then resume/);
    assert.match(running, /done: job 3 is done; there is nothing to resume\. To run it again use job\.rerun\(\)/);

    // The resumed job's history: the failed job's three checkpoints (same stored values), then its own two.
    const failed = await listCheckpoints(env.store, 1);
    const continued = await listCheckpoints(env.store, 2);
    assert.deepEqual(continued.map((c) => c.idx), [0, 1, 2, 3, 4]);
    assert.deepEqual(continued.slice(0, 3).map((c) => c.values), failed.map((c) => c.values));
    // Every checkpoint holds the values of its moment, in order.
    for (const c of continued) {
      const values = await readCheckpoint(env.store, 2, c.idx);
      const step = decodeValue(values.step, lookup) as number;
      const weights = decodeValue(values.weights, lookup) as Float64Array;
      const seen = decodeValue(values.seen, lookup) as Map<number, string>;
      const model = decodeValue(values.model, lookup) as Model & { history: number[] };
      assert.equal(step, c.idx + 1);
      assert.ok(weights instanceof Float64Array);
      assert.equal(weights.reduce((a, b) => a + b, 0), (step * (step + 1)) / 2);
      assert.deepEqual([...seen.keys()], Array.from({ length: step }, (_, i) => i + 1));
      assert.ok(model instanceof Model);
      assert.deepEqual(model.history, Array.from({ length: step }, (_, i) => i + 1));
    }
    const row = await getJob(env.store, 2);
    assert.equal(row?.status, "done");
  });

  test("bad input: each a clear error, no stored checkpoint changed", async () => {
    const before = JSON.stringify(await listCheckpoints(env.store, 1));
    const run = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code early
jobtracker.checkpoint()
### code missing
jobtracker.registerCheckpointer("nothingHere")
### code nb_index
let counter = 1;
jobtracker.registerCheckpointer("counter");
console.log("notebook indexes", jobtracker.checkpoint(), jobtracker.checkpoint());
### code twice
jobtracker.registerCheckpointer("counter", { get: () => 1 })
### code uncapturable
let handler = { onTick: () => 1 };
jobtracker.registerCheckpointer("handler");
jobtracker.checkpoint()
### code in_job
%%snip sc
let step = 0;
function badCheckpoint() {
  jobtracker.registerCheckpointer("step");
  jobtracker.registerCheckpointer("step", { get: () => 2 });
}
### code run_bad
const bad = await db.createJob(rc.view(0), ["badCheckpoint()"], sc);
console.log("job", await bad.wait(), bad.record.error_message);
const old = await db.job(1);
try { await old.resume(42 as never); } catch (e) { console.log("view:", (e as Error).message); }
`);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("early")), /jobtracker\.checkpoint\(\): no variable is registered; call jobtracker\.registerCheckpointer\("name"\)/);
    assert.match(cellText(run.cells.get("missing")), /the job has no top-level variable nothingHere; declare it with let, const or var/);
    assert.match(cellText(run.cells.get("twice")), /jobtracker\.registerCheckpointer\("counter"\): counter is already registered by name/);
    assert.match(cellText(run.cells.get("uncapturable")), /cannot capture the variable handler: handler\.onTick is a function/);
    assert.match(cellText(run.cells.get("nb_index")), /notebook indexes 0 1/);
    assert.match(cellText(run.cells.get("run_bad")), /job failed jobtracker\.registerCheckpointer\("step"\): step is already registered by name/);
    assert.match(cellText(run.cells.get("run_bad")), /view: job\.resume\(view\): view must be rc\.view\(i\) or rc\.loadBalanced\(\)/);
    assert.equal(JSON.stringify(await listCheckpoints(env.store, 1)), before);
  });

  test("a worker that restarts marks the jobs it was running lost at once", async () => {
    const run = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code decl
%%snip sc
async function spin() {
  for (;;) await new Promise((r) => setTimeout(r, 50));
}
### code start
const spinning = await db.createJob(rc.view(0), ["spin()"], sc, { name: "spinning" });
while ((await spinning.refresh()) !== "running") await new Promise((r) => setTimeout(r, 50));
console.log("running", spinning.id);
`);
    assert.equal(run.code, 0, run.stderr);
    const id = Number(/running (\d+)/.exec(cellText(run.cells.get("start")))?.[1]);
    const row = (await getJob(env.store, id))!;
    assert.equal(row.status, "running");
    process.kill(row.pid!, "SIGKILL");
    const killedAt = Date.now();
    // The same worker id (the cluster's "<profile>/<index>") starting again, as `nbjob cluster start` would.
    env.spawnBackground(["worker", "--connection-file", join(env.work, "restarted.json"), "--id", row.worker_id!]);
    let now = row;
    while (now.status === "running" && Date.now() - killedAt < 20_000) {
      await new Promise((r) => setTimeout(r, 100));
      now = (await getJob(env.store, id))!;
    }
    const elapsed = Date.now() - killedAt;
    console.log(`restarted worker marked job ${id} lost ${elapsed} ms after the kill`);
    assert.equal(now.status, "lost");
    assert.match(now.error_message ?? "", new RegExp(`worker ${row.worker_id} restarted while running this job`));
    // Well before the 20 s of silence other workers wait for.
    assert.ok(elapsed < 12_000, `${elapsed} ms`);
  });
});
