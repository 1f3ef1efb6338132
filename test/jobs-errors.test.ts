// Jobs that go wrong, from the notebook side: bundles rejected before dispatch, worker errors with
// their tracebacks, cancel, a worker that is gone. Notebooks run by `nbjob run` on a real cluster.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { listJobs } from "../store";
import { cellText, JobsEnv, POINT_NOTEBOOK_SETUP as SETUP } from "./jobs-env";

const env = new JobsEnv("jobs_errors");
before(() => env.start());
after(() => env.cleanup());


describe("jobs that go wrong", () => {
  test("a bundle that does not type-check rejects createJob and nothing is stored; bad arguments name what is wrong", async () => {
    const before = (await listJobs(env.store, { limit: 1000 })).length;
    const run = await env.runNotebook(`${SETUP}
### code typeerror
await db.createJob(view, ["norm(origin)"], sc)
### code wrongtype
await db.createJob(view, ["norm(5)"], sc)
### code empty
await db.createJob(view, [], sc)
### code statement
await db.createJob(view, ["let q = 1"], sc)
### code overrides
await db.createJob(view, ["walk(1)"], sc, sc2, { params, overrides: { z: 1 } })
### code overridekind
await db.createJob(view, ["walk(1)"], sc, sc2, { params, overrides: { x: "oops" } })
### code overridenull
await db.createJob(view, ["walk(1)"], sc, sc2, { params, overrides: { x: null } })
### code noview
await db.createJob("worker 0" as any, ["norm(new Point(1, 1))"], sc)
### code badfile
await Client.connect({ connectionFiles: [${JSON.stringify(join(env.work, "nowhere.json"))}] })
### code nowhere
require("node:fs").writeFileSync(${JSON.stringify(join(env.work, "dead.json"))}, JSON.stringify({ ip: "127.0.0.1", transport: "tcp", shell_port: 1, iopub_port: 2, stdin_port: 3, control_port: 4, hb_port: 5, key: "k", signature_scheme: "hmac-sha256" }));
await Client.connect({ connectionFiles: [${JSON.stringify(join(env.work, "dead.json"))}], timeoutMs: 1500 })
### code noprofile
await Client.connect({ profile: "nosuch" })
### code nulname
await db.createJob(view, ["norm(new Point(1, 1))"], sc, { name: "run\\u0000one" })
### code nultag
await db.createJob(view, ["norm(new Point(1, 1))"], sc, { tags: ["ok", "b\\u0000d"] })
### code commatag
await db.createJob(view, ["norm(new Point(1, 1))"], sc, { tags: ["ok", "a,b"] })
### code spacetag
await db.createJob(view, ["norm(new Point(1, 1))"], sc, { tags: ["with space"] })
### code blanktag
await db.createJob(view, ["norm(new Point(1, 1))"], sc, { tags: ["  "] })
### code sweeptag
await db.createJobs(view, ["walk(1)"], sc, sc2, { params, grid: { x: [1, 2] }, tags: ["long run"] })
### code nulparam
params.label = "a\\u0000b";
await db.createJob(view, ["walk(1)"], sc, sc2, { params })
`);
    assert.match(cellText(run.cells.get("typeerror")), /BundleError: entry 1 "norm\(origin\)".*Cannot find name 'origin'.*No snippet in this job declares origin/);
    assert.match(cellText(run.cells.get("wrongtype")), /BundleError: entry 1 "norm\(5\)".*Argument of type 'number' is not assignable/);
    assert.match(cellText(run.cells.get("empty")), /a job needs at least one entry expression/);
    assert.match(cellText(run.cells.get("statement")), /entry 1 "let q = 1": expected one expression/);
    assert.match(cellText(run.cells.get("overrides")), /overrides\.z is not a parameter; the parameters are x, y/);
    // A value of another kind than the notebook's is named as the user wrote it, not as a type error in walk.
    const overrideKind = cellText(run.cells.get("overridekind"));
    assert.match(overrideKind, /TypeError: overrides\.x is a string \("oops"\) but params\.x is a number \(3\); pass a value of the kind the notebook set/);
    assert.doesNotMatch(overrideKind, /BundleError|snippet walk/);
    // null may stand for "none": the bundle's type-check decides, and here refuses it where it is used.
    assert.match(cellText(run.cells.get("overridenull")), /BundleError: snippet walk .*'null'/);
    assert.match(cellText(run.cells.get("noview")), /createJob: the first argument must be a view: rc\.view\(0\) or rc\.loadBalanced\(\)/);
    assert.match(cellText(run.cells.get("badfile")), /cannot read connection file .*nowhere\.json: ENOENT/);
    assert.match(cellText(run.cells.get("nowhere")), /the worker kernel of connection file .*dead\.json did not answer .*; is it running\?/);
    assert.match(cellText(run.cells.get("noprofile")), /no workers of cluster profile "nosuch" are running; start them with "npx nbjob cluster start -n 2 --profile nosuch"/);
    // Text PostgreSQL cannot store: refused before any SQL, naming the option.
    assert.match(cellText(run.cells.get("nulname")), /TypeError: createJob: name contains a NUL character \(\\u0000\) at position 3, which PostgreSQL cannot store as text; remove it/);
    assert.match(cellText(run.cells.get("nultag")), /TypeError: createJob: tags\[1\] contains a NUL character/);
    // Tags follow nbjob tag's rule (one function), with its message, naming the tag.
    assert.match(cellText(run.cells.get("commatag")), /TypeError: createJob: tags\[1\]: a tag is a non-empty word without spaces or commas, got "a,b"/);
    assert.match(cellText(run.cells.get("spacetag")), /TypeError: createJob: tags\[0\]: a tag is a non-empty word without spaces or commas, got "with space"/);
    assert.match(cellText(run.cells.get("blanktag")), /TypeError: createJob: tags\[0\]: a tag is a non-empty word without spaces or commas, got " {2}"/);
    assert.match(cellText(run.cells.get("sweeptag")), /TypeError: createJobs: tags\[0\]: a tag is a non-empty word without spaces or commas, got "long run"/);
    assert.match(cellText(run.cells.get("nulparam")), /TypeError: createJob: params\.label contains a NUL character/);
    assert.equal((await listJobs(env.store, { limit: 1000 })).length, before, "no job row was written");
  });

  test("a worker error reaches the notebook as JobError with the traceback in the user's code; a function result is a clear error", async () => {
    const run = await env.runNotebook(`${SETUP}
### code explode
@sc
function explode(n: number): number {
  if (n > 0) throw new RangeError(\`boom \${n}\`);
  return n;
}
@sc
function makeFn() {
  return () => 1;
}
### code failing
const bad = await db.createJob(view, ["explode(3)"], sc);
await bad.result
### code caught
try {
  await bad.result;
} catch (err) {
  const e = err as Error & { ename: string; evalue: string };
  console.log(e.name, e.ename, e.evalue, bad.status);
}
### code fn
const f = await db.createJob(rc.view(1), ["makeFn()"], sc);
await f.result
`);
    const failing = run.cells.get("failing")!.outputs.find((o) => o.output_type === "error");
    assert.ok(failing, cellText(run.cells.get("failing")));
    assert.equal(failing.ename, "JobError");
    assert.match(failing.evalue!, /^job \d+ failed on worker default\/0@[^:\s]+: RangeError: boom 3/);
    assert.match(failing.evalue!, /at explode \(bundle\.ts:\d+:\d+ \[snippet explode, line 2\]\)/);
    assert.match(failing.evalue!, /\[entry 1 "explode\(3\)", line 1\]/);
    assert.match(cellText(run.cells.get("caught")), /JobError RangeError boom 3 failed/);
    assert.match(cellText(run.cells.get("fn")), /JobError: job \d+ failed on worker default\/1@[^:\s]+: TypeError: the job's result cannot be sent back: result is a function/);
  });

  test("cancel: a queued job never starts, a running one is stopped and its worker is free again", async () => {
    const run = await env.runNotebook(`${SETUP}
### code slow
@sc
function slow(ms: number): Promise<string> {
  console.log("slow started");
  return new Promise((resolve) => setTimeout(() => resolve("slept"), ms));
}
### code cancel
const running = await db.createJob(view, ["slow(20000)"], sc);
const queued = await db.createJob(view, ["slow(1)"], sc);
await new Promise((r) => setTimeout(r, 1000));
console.log("before", running.status, await running.refresh(), await queued.refresh());
console.log("cancel", await queued.cancel(), await running.cancel());
const t0 = Date.now();
console.log("after", await running.wait({ timeout: 10000 }), await queued.wait({ timeout: 10000 }));
const next = await db.createJob(view, ["slow(1)"], sc);
console.log("next", await next.result, Date.now() - t0 < 8000);
### code timeout
const long = await db.createJob(rc.view(1), ["slow(3000)"], sc);
await long.wait({ timeout: 200 })
### code cancelled-result
await queued.result
`);
    const text = cellText(run.cells.get("cancel"));
    assert.match(text, /before queued running queued/);
    assert.match(text, /cancel cancelled cancelled/);
    assert.match(text, /after cancelled cancelled/);
    assert.match(text, /next slept true/);
    assert.equal(text.match(/slow started/g)?.length, 2, `the queued job must never start:\n${text}`);
    assert.match(cellText(run.cells.get("timeout")), /job \d+ is still (queued|running) after 200 ms; it goes on/);
    assert.match(cellText(run.cells.get("cancelled-result")), /JobError: job \d+ was cancelled: Cancelled: cancelled from the notebook/);
  });

  test("a load-balanced job in a store no worker uses waits in the queue, and the cell says so", async () => {
    const otherUrl = await env.createExtraDatabase("noworkers");
    const run = await env.runNotebook(`${SETUP}
### code queue
const lonely = new DBWrapper(${JSON.stringify(otherUrl)});
const waiting = await lonely.createJob(rc.loadBalanced(), ["norm(new Point(1, 0))"], sc);
console.log(await waiting.refresh(), await waiting.cancel());
await lonely.close();
`);
    const text = cellText(run.cells.get("queue"));
    assert.match(text, /job 1 is queued, but no worker has checked in with the store in the last 15 s; it runs when one does/);
    assert.match(text, /^queued cancelled$/m);
  });

  test("a view on a worker that is gone is refused before anything is stored", async () => {
    const file = join(env.work, "lone-worker.json");
    const worker = env.spawnBackground(["worker", "--connection-file", file, "--id", "lone"]);
    const before = (await listJobs(env.store, { limit: 1000 })).length;
    const run = await env.runNotebook(`
### code decl
const sc = new SnippetCollector();
@sc
function one(): number {
  return 1;
}
### code connect
const db = new DBWrapper();
for (let i = 0; i < 100; i++) {
  try {
    require("node:fs").statSync(${JSON.stringify(file)});
    break;
  } catch {
    await new Promise((r) => setTimeout(r, 100));
  }
}
const rc = await Client.connect({ connectionFiles: [${JSON.stringify(file)}] });
const view = rc.view(0);
console.log(rc.ids.join(","), await (await db.createJob(view, ["one()"], sc)).result);
### code kill
process.kill(${worker.pid}, "SIGKILL");
await new Promise((r) => setTimeout(r, 500));
### code gone
await db.createJob(view, ["one()"], sc)
`);
    assert.match(cellText(run.cells.get("connect")), /^lone 1$/m);
    assert.match(cellText(run.cells.get("gone")), /worker lone \(rc\.view\(0\), connection file .*lone-worker\.json\) does not answer its heartbeat: it is gone/);
    assert.equal((await listJobs(env.store, { limit: 1000 })).length, before + 1, "only the first job was stored");
  });
});
