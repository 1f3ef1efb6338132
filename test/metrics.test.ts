// Metrics by step (issue 19 point 1), on a local cluster of 2 real workers and a fresh database:
// a job logging 10,000 steps of two metrics inside a synchronous loop (all stored, in order, before
// the job is done), NaN/Infinity/arrays and a step going backwards, bad input in the notebook and
// in a job, a sweep's table and chart, `nbjob metrics --csv` and `nbjob jobs` as subprocesses,
// dump/restore and rm; fencing in the store; every value kept when a job is stopped at its
// timeoutMs or cancelled in a synchronous loop, and a resumed job's series going on from its
// checkpoint; and, through Debian's jupyter_client, a live chart updated in place
// (update_display_data) while a job runs.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { getJob, openStore, putMetrics, readMetrics, ClaimLostError } from "../store";
import { dumpStore, restoreStore } from "../store/dump";
import { withJupyterClient } from "./kernel-helpers";
import { cellText, jobsEnvWithKernels } from "./jobs-env";

const { env, kernels } = jobsEnvWithKernels("metrics");

describe("metrics", () => {
  test("10,000 steps of loss and acc from a synchronous loop, NaN/Infinity/arrays/backwards steps, bad input, db.jobs and the sweep's table, nbjob metrics --csv, dump/restore, rm", async () => {
    const run = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code decl
%%snip sc
function train(steps: number, rate: number) {
  let loss = 1;
  for (let i = 0; i < steps; i++) {
    loss *= 1 - rate;
    jobtracker.log({ loss, acc: 1 - loss });
  }
  return steps;
}
function odd() {
  jobtracker.log({ loss: 1 }, 5);
  jobtracker.log({ loss: NaN }, 6);
  jobtracker.log({ loss: Infinity }, 3);
  jobtracker.log({ loss: -Infinity });
  jobtracker.log({ w: [1, 2, NaN] });
  jobtracker.log({ w: new Float64Array([3, 4]) }, 9);
  return "odd";
}
function wrong() {
  jobtracker.log({ loss: 0.5 });
  jobtracker.log({ loss: "0.25" as any });
  return "not reached";
}
### code train
const job = await db.createJob(rc.loadBalanced(), ["train(10000, 0.0005)"], sc);
console.log("result", await job.result, "id", job.id);
// Done means stored: every value is there as soon as the result is.
const m = await job.metrics();
console.log("stored", m.loss.steps.length, m.acc.steps.length, m.loss.steps[9999], m.loss.backwards.length);
console.log("listed", JSON.stringify((await db.jobs({ limit: 1 }))[0].metrics));
### code odd
const oddJob = await db.createJob(rc.loadBalanced(), ["odd()"], sc);
await oddJob.result;
const o = await oddJob.metrics();
console.log("odd", oddJob.id, JSON.stringify(o.loss.steps), o.loss.values.map(String).join(" "), JSON.stringify(o.loss.backwards));
console.log("w", JSON.stringify(o.w.steps), o.w.values.map((v) => "[" + (v as number[]).map(String).join(",") + "]").join(" "));
console.log("oddlisted", JSON.stringify((await db.jobs({ limit: 1 }))[0].metrics, (_k, v) => typeof v === "number" && !Number.isFinite(v) ? "num:" + v : v));
### code missingmetric
await oddJob.metrics("nosuch").then((m) => console.log("no error", JSON.stringify(m)), (err) => console.log("missing", err.name, "|", err.message));
console.log("present", Object.keys(await oddJob.metrics("w")).join(","));
### code plotmissing
oddJob.plotMetrics("nosuch");
### code dash
const dash = nbjob.makeDefaultDashboard({ limit: 2 });
await dash.ready;
dash.stop();
### code wrong
const bad = await db.createJob(rc.loadBalanced(), ["wrong()"], sc);
try { await bad.result; } catch (err) { console.log("failed", (err as any).ename, "|", (err as any).evalue); }
console.log("kept", JSON.stringify((await bad.metrics()).loss.values));
### code checks
for (const call of [
  () => jobtracker.log({ acc: "high" as any }),
  () => jobtracker.log({ "": 1 }),
  () => jobtracker.log({ ["a\\u0000b"]: 1 }),
  () => jobtracker.log({ loss: 1 }, -1),
  () => jobtracker.log({ loss: [1, "x" as any] }),
  () => jobtracker.log({}),
  () => jobtracker.log({ loss: 1n as any }),
]) {
  try { call(); console.log("accepted"); } catch (err) { console.log("refused", (err as Error).name, (err as Error).message); }
}
jobtracker.log({ loss: NaN, acc: Infinity, w: [1, 2] });
console.log("notebook log of NaN/Infinity/array: checked, nothing stored");
### code sweep
const params = new ParamLogger();
params.rate = 0.01;
const group = await db.createJobs(rc.loadBalanced(), ["train(300, params.rate)"], sc, { params, grid: { rate: [0.01, 0.02] } });
await group.wait({ timeout: 60_000 });
group.table();
const chart = group.plotMetrics("loss");
await chart.finished;
console.log("groupchart", chart.updates);
### code sweepmissing
group.plotMetrics("nosuch");
### code plotended
// The notebook's last cell: the run ends with it, nothing after it to wait for a late update.
oddJob.plotMetrics("loss");
`);
    assert.equal(run.code, 0, run.stderr);
    const train = cellText(run.cells.get("train"));
    const id = Number(/result 10000 id (\d+)/.exec(train)?.[1]);
    assert.ok(id > 0, train);
    assert.match(train, /stored 10000 10000 9999 0/);
    const listed = JSON.parse(/listed (.*)/.exec(train)![1]) as { loss: number; acc: number };
    const lastLoss = 0.9995 ** 10000;
    assert.ok(Math.abs(listed.loss - lastLoss) < 1e-9 && Math.abs(listed.acc - (1 - lastLoss)) < 1e-9, train);

    // In the store: 20,000 rows in the order logged (loss, acc, loss, acc…), the values exact.
    const rows = await env.store.query<{ seq: number; name: string; step: number; value: number }>(
      "SELECT seq, name, step, value FROM nbjob.metrics WHERE job_id = $1 ORDER BY seq", [id]);
    assert.equal(rows.rows.length, 20_000);
    let loss = 1;
    for (let i = 0; i < 10_000; i++) {
      loss *= 1 - 0.0005;
      const [l, a] = [rows.rows[2 * i], rows.rows[2 * i + 1]];
      assert.deepEqual([l.seq, l.name, l.step, a.seq, a.name, a.step], [2 * i, "loss", i, 2 * i + 1, "acc", i]);
      assert.equal(l.value, loss);
      assert.equal(a.value, 1 - loss);
    }
    const row = await getJob(env.store, id);
    assert.equal(row?.status, "done");
    assert.deepEqual(Object.keys(row!.last_metrics).sort(), ["acc", "loss"]);

    // NaN, ±Infinity and arrays kept as such; a step smaller than the one before flagged, kept in order.
    const odd = cellText(run.cells.get("odd"));
    const oddId = Number(/odd (\d+)/.exec(odd)?.[1]);
    assert.match(odd, /odd \d+ \[5,6,3,4\] 1 NaN Infinity -Infinity \[2\]/);
    assert.match(odd, /w \[5,9\] \[1,2,NaN\] \[3,4\]/);
    assert.match(odd, /oddlisted \{"loss":"num:-Infinity","w":\[3,4\]\}/, "db.jobs() rows: names in alphabetical order, -Infinity as a number");
    const oddRow = await getJob(env.store, oddId);
    assert.deepEqual(oddRow?.last_metrics, { loss: "-Infinity", w: [3, 4] });

    // plotMetrics of an ended job, not awaited, in the last cell: the headless run saved the chart as
    // read from the store (one output, the job's state known), not a placeholder that only an
    // update after the cell's end would have filled in.
    const ended = run.cells.get("plotended")!;
    assert.equal(ended.outputs.length, 1, JSON.stringify(ended.outputs));
    assert.ok(ended.outputs[0].data?.["image/svg+xml"] !== undefined && ended.outputs[0].data?.["application/vnd.vegalite.v5+json"] !== undefined);
    assert.match(cellText(ended), new RegExp(`^<line chart: loss by step \\(job ${oddId}\\); 1 point>[^]*\\njobs: ended\\njob ${oddId}: 3 values not drawn`));
    assert.doesNotMatch(cellText(ended), /running or queued/);
    // A metric the job never logged: said plainly, with the names it did log (as nbjob metrics says).
    assert.equal(cellText(run.cells.get("missingmetric")), `missing Error | job ${oddId} logged no metric "nosuch"; it logged loss, w\npresent w\n`);
    assert.equal(cellText(run.cells.get("plotmissing")), `nosuch by step (job ${oddId}): no values of nosuch to draw; job ${oddId} ended (done)\njob ${oddId} logged no metric "nosuch"; it logged loss, w`);

    // The in-notebook dashboard has a metrics column with each job's last values.
    const dash = run.cells.get("dash")!.outputs.find((o) => o.output_type === "display_data");
    const dashHtml = String(dash?.data?.["text/html"]);
    assert.match(dashHtml, /<th[^>]*>metrics<\/th>/);
    assert.match(dashHtml, /<td[^>]*>loss=-Infinity w=\[2 values\]<\/td>/);
    assert.match(dashHtml, /<td[^>]*>acc=0\.\d+ loss=0\.\d+<\/td>/);

    // A non-number fails the job with a TypeError naming the metric; what was logged before it stays.
    const wrong = cellText(run.cells.get("wrong"));
    assert.match(wrong, /failed TypeError \| jobtracker\.log\(metrics\): metric loss must be a number or an array of numbers; got the string "0\.25"/);
    assert.match(wrong, /kept \[0\.5\]/);

    // The notebook's jobtracker checks the same things and stores nothing.
    const checks = cellText(run.cells.get("checks"));
    assert.doesNotMatch(checks, /accepted/);
    assert.match(checks, /refused TypeError jobtracker\.log\(metrics\): metric acc must be a number or an array of numbers; got the string "high"/);
    assert.match(checks, /refused TypeError jobtracker\.log\(metrics\): a metric name cannot be empty/);
    assert.match(checks, /refused TypeError jobtracker\.log\(metrics\): a metric name cannot contain control characters such as NUL/);
    assert.match(checks, /refused TypeError jobtracker\.log\(metrics, step\): step must be a non-negative integer/);
    assert.match(checks, /refused TypeError jobtracker\.log\(metrics\): metric loss\[1\] must be a number; got the string "x"/);
    assert.match(checks, /refused TypeError jobtracker\.log\(metrics\): metrics is empty/);
    assert.match(checks, /refused TypeError jobtracker\.log\(metrics\): metric loss must be a number or an array of numbers; got bigint/);
    assert.match(checks, /notebook log of NaN\/Infinity\/array: checked, nothing stored/);

    // The sweep's table has each job's last values; its chart one line per job.
    const sweep = run.cells.get("sweep")!;
    const sweepText = cellText(sweep);
    assert.match(sweepText, /job +rate +status +result +metrics/);
    assert.equal(sweepText.match(/done +300 +acc=0\.\d+ loss=0\.\d+/g)?.length, 2, sweepText);
    assert.match(sweepText, /<line chart: loss by step \(group \d+, 2 jobs\); 600 points>/);
    assert.match(sweepText, /job \d+ rate=0\.01: 300 points/);
    assert.match(sweepText, /job \d+ rate=0\.02: 300 points/);
    const svg = sweep.outputs.map((o) => o.data?.["image/svg+xml"]).find((v) => v !== undefined);
    assert.equal((Array.isArray(svg) ? svg.join("") : String(svg)).match(/<polyline/g)?.length, 2);
    assert.ok(sweep.outputs.some((o) => o.data?.["application/vnd.vegalite.v5+json"] !== undefined));
    assert.match(cellText(run.cells.get("sweepmissing")), /^nosuch by step \(group \d+, 2 jobs\): no values of nosuch to draw; all 2 jobs ended\njob \d+ logged no metric "nosuch"; it logged acc, loss\njob \d+ logged no metric "nosuch"; it logged acc, loss$/);

    // The CLI, as a subprocess: CSV of every value, a table with the flags, the last values in `nbjob jobs`.
    const csv = await env.nbjob("metrics", String(id), "--csv");
    assert.equal(csv.code, 0, csv.stderr);
    const lines = csv.stdout.trim().split("\n");
    assert.equal(lines[0], "name,step,value,backwards");
    assert.equal(lines.length, 20_001);
    assert.equal(lines[1], `loss,0,${1 - 0.0005},0`);
    assert.equal(lines[10_001], `acc,0,${1 - (1 - 0.0005)},0`);
    const oneCsv = await env.nbjob("metrics", String(oddId), "loss", "--csv");
    assert.equal(oneCsv.stdout.trim(), "name,step,value,backwards\nloss,5,1,0\nloss,6,NaN,0\nloss,3,Infinity,1\nloss,4,-Infinity,0");
    const arrays = await env.nbjob("metrics", String(oddId), "w", "--csv");
    assert.equal(arrays.stdout.trim(), 'name,step,value,backwards\nw,5,"[1,2,NaN]",0\nw,9,"[3,4]",0');
    const table = await env.nbjob("metrics", String(oddId));
    assert.match(table.stdout, /loss \(4 values, 1 with a step that went backwards\)/);
    assert.match(table.stdout, /3 {2}Infinity {2}\(step went backwards\)/);
    const missing = await env.nbjob("metrics", String(oddId), "nosuch");
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /^nbjob: job \d+ logged no metric "nosuch"; it logged loss, w\n$/);
    const badName = await env.nbjob("metrics", String(id), "");
    assert.match(badName.stderr, /a metric name cannot be empty/);
    const jobs = await env.nbjob("jobs", "--limit", "10");
    assert.match(jobs.stdout, new RegExp(`^${oddId} +done .* loss=-Infinity w=\\[2 values\\]$`, "m"), jobs.stdout);
    assert.match(jobs.stdout, new RegExp(`^${id} +done .* acc=0\\.\\d+ loss=0\\.\\d+$`, "m"), jobs.stdout);

    // Dump and restore carry the metrics (NaN and Infinity too) and the last values.
    const file = join(env.work, "metrics.dump");
    await dumpStore(env.store, file);
    const other = openStore({ url: await env.createExtraDatabase("restore"), maxConnections: 2 });
    try {
      await other.ready();
      await restoreStore(other, file);
      const restored = await readMetrics(other, oddId);
      assert.deepEqual(restored.series.loss.values.map(String), ["1", "NaN", "Infinity", "-Infinity"]);
      assert.deepEqual(restored.series.loss.backwards, [2]);
      assert.deepEqual(restored.series.w.values, [[1, 2, NaN], [3, 4]]);
      assert.equal((await readMetrics(other, id)).series.acc.steps.length, 10_000);
      assert.deepEqual((await getJob(other, oddId))?.last_metrics, { loss: "-Infinity", w: [3, 4] });
    } finally {
      await other.close();
    }

    // nbjob rm takes the job's metrics with it.
    const rm = await env.nbjob("rm", String(id));
    assert.equal(rm.code, 0, rm.stderr);
    const left = await env.store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.metrics WHERE job_id = $1", [id]);
    assert.equal(left.rows[0].n, 0);

    // Fencing: a worker whose claim is gone stores no metrics (the job ended under another claim).
    await assert.rejects(putMetrics(env.store, oddId, [{ seq: 0, name: "loss", step: 0, value: 1, backwards: false }], String(Number(oddRow!.claim) + 1000)), ClaimLostError);
    await assert.rejects(putMetrics(env.store, oddId, [{ seq: 0, name: "loss", step: 0, value: 1, backwards: false }], String(oddRow!.claim)), ClaimLostError);
    assert.equal((await readMetrics(env.store, oddId)).series.loss.steps.length, 4);
  });

  test("stopped jobs keep every value logged: timeoutMs and cancel in a synchronous loop; a resumed job's series goes on from its checkpoint", async () => {
    const flag = join(env.work, "count-stopped-once");
    const cancelFlag = join(env.work, "cancel-spinning");
    const run = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
import * as fs from "node:fs";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
### code decl
%%snip sc
let i = 0;
jobtracker.registerCheckpointer("i");
// Logs step i (no step given: counted on) in a synchronous loop, a checkpoint every \`every\` steps.
// The first run stops logging at stopAt and spins until its timeoutMs stops it; the resumed run
// finds the flag and goes on to n.
function countTo(n: number, every: number, stopAt: number, flag: string) {
  const fs = require("node:fs");
  while (i < n) {
    jobtracker.log({ i, sq: i * i });
    i++;
    if (i % every === 0) jobtracker.checkpoint();
    if (i === stopAt && !fs.existsSync(flag)) { fs.writeFileSync(flag, String(i)); while (true) {} }
  }
  jobtracker.log({ final: i });
  return i;
}
function logThenSpin(n: number, flag: string) {
  for (let k = 0; k < n; k++) jobtracker.log({ k });
  jobtracker.log({ w: [1, 2, 3] });
  console.log("the last line before the spin");
  require("node:fs").writeFileSync(flag, String(n));
  while (true) {}
}
### code timeout
const stuck = await db.createJob(rc.view(0), ["countTo(30000, 7000, 25000, " + JSON.stringify(${JSON.stringify(flag)}) + ")"], sc, { timeoutMs: 4000 });
console.log("stuck", stuck.id, await stuck.wait({ timeout: 60_000 }), stuck.record.error_name);
const sm = await stuck.metrics();
console.log("stuckmetrics", sm.i.steps.length, sm.sq.steps.length, sm.i.steps[sm.i.steps.length - 1]);
### code resume
const again = await stuck.resume();
console.log("resumed", again.id, await again.result);
const am = await again.metrics();
console.log("resumedmetrics", am.i.steps.length, am.i.steps[0], am.i.steps[am.i.steps.length - 1], am.i.backwards.length, JSON.stringify(am.final.steps));
### code cancel
const spinning = await db.createJob(rc.view(1), ["logThenSpin(5000, " + JSON.stringify(${JSON.stringify(cancelFlag)}) + ")"], sc);
while (!fs.existsSync(${JSON.stringify(cancelFlag)})) await sleep(20);
// Still running: a metric it has not logged may come later, so no error.
const later = await spinning.metrics("later");
console.log("notyet", spinning.status, JSON.stringify(later));
await sleep(300);
const cancelledAt = Date.now();
console.log("cancel", spinning.id, await spinning.cancel(), "in", Date.now() - cancelledAt, "ms");
// The row says cancelled at once; cancel() returns once the worker has stopped the job and
// stored what it logged and printed before the stop: read once, no waiting.
const cm = await spinning.metrics();
console.log("cancelledmetrics", cm.k?.steps.length, JSON.stringify(cm.w?.values));
await spinning.metrics("later").then(() => console.log("no error"), (err) => console.log("endedmissing", err.message));
console.log("cancelledlogs", JSON.stringify(await spinning.logs()));
`);
    assert.equal(run.code, 0, run.stderr);
    const timeout = cellText(run.cells.get("timeout"));
    const stuckId = Number(/stuck (\d+) failed TimeoutError/.exec(timeout)?.[1]);
    assert.ok(stuckId > 0, timeout);
    // Every value logged before the stop: steps 0..24999 of i and sq, seq 0..49999, none missing.
    assert.match(timeout, /stuckmetrics 25000 25000 24999/);
    const stuckRows = await env.store.query<{ seq: string; name: string; step: string; value: number }>(
      "SELECT seq, name, step, value FROM nbjob.metrics WHERE job_id = $1 ORDER BY seq", [stuckId]);
    assert.equal(stuckRows.rows.length, 50_000);
    stuckRows.rows.forEach((row, at) => {
      const step = Math.floor(at / 2);
      const want = at % 2 === 0 ? ["i", step] : ["sq", step * step];
      if (Number(row.seq) !== at || Number(row.step) !== step || row.name !== want[0] || row.value !== want[1]) {
        assert.fail(`row ${at}: ${JSON.stringify(row)}`);
      }
    });
    // Each checkpoint recorded where the series stood: after steps 0..6999, 0..13999, 0..20999.
    const marks = await env.store.query<{ idx: number; metric_seq: string; metric_step: string }>(
      "SELECT idx, metric_seq, metric_step FROM nbjob.checkpoints WHERE job_id = $1 ORDER BY idx", [stuckId]);
    assert.deepEqual(marks.rows.map((r) => [r.idx, Number(r.metric_seq), Number(r.metric_step)]), [[0, 14_000, 7_000], [1, 28_000, 14_000], [2, 42_000, 21_000]]);

    // The resumed job's series: the old job's values up to checkpoint 2 (steps 0..20999), then its
    // own from step 21000 on (log() without a step went on from there), with no step repeated.
    const resumed = cellText(run.cells.get("resume"));
    const resumedId = Number(/resumed (\d+) 30000/.exec(resumed)?.[1]);
    assert.ok(resumedId > 0, resumed);
    assert.match(resumed, /resumedmetrics 30000 0 29999 0 \[30000\]/);
    const resumedRows = await env.store.query<{ seq: number; name: string; step: number; value: number; step_backwards: boolean }>(
      "SELECT seq, name, step, value, step_backwards FROM nbjob.metrics WHERE job_id = $1 ORDER BY seq", [resumedId]);
    assert.equal(resumedRows.rows.length, 60_001);
    resumedRows.rows.slice(0, 60_000).forEach((row, at) => {
      const step = Math.floor(at / 2);
      const want = at % 2 === 0 ? ["i", step] : ["sq", step * step];
      if (Number(row.seq) !== at || Number(row.step) !== step || row.name !== want[0] || row.value !== want[1] || row.step_backwards) {
        assert.fail(`resumed row ${at}: ${JSON.stringify(row)}`);
      }
    });
    assert.deepEqual(resumedRows.rows[60_000], { seq: 60_000, name: "final", step: 30_000, value: 30_000, step_backwards: false });
    assert.deepEqual((await getJob(env.store, resumedId))?.last_metrics, { i: 29_999, sq: 29_999 ** 2, final: 30_000 });
    // The old job keeps its own series, all 50,000 values.
    assert.equal((await readMetrics(env.store, stuckId)).series.i.steps.length, 25_000);

    // Cancelled from the notebook while spinning: its 5,000 values and the array logged last are
    // stored (accepted under the run's claim although the row already says cancelled).
    const cancel = cellText(run.cells.get("cancel"));
    const cancelled = /cancel (\d+) cancelled in (\d+) ms/.exec(cancel);
    assert.ok(cancelled, cancel);
    assert.match(cancel, /cancelledmetrics 5000 \[\[1,2,3\]\]/);
    // job.metrics(name): {} while the job runs (it may log it later), an Error once it has ended.
    assert.match(cancel, /notyet running \{\}/);
    assert.match(cancel, new RegExp(`endedmissing job ${cancelled[1]} logged no metric "later"; it logged k, w`));
    assert.match(cancel, /cancelledlogs ".*the last line before the spin"/);
    console.log(`job.cancel() of a spinning job returned after ${cancelled[2]} ms, its values and last line stored`);
    const cancelledRow = await getJob(env.store, Number(cancelled[1]));
    assert.equal(cancelledRow?.status, "cancelled");
    assert.deepEqual(cancelledRow?.last_metrics, { k: 4999, w: [1, 2, 3] });
  });

  test("job.plotMetrics through jupyter_client: the chart is updated in place (update_display_data, same display id) while the job's synchronous loop runs", async () => {
    const result = await withJupyterClient(kernels, `
run("""
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
""", timeout=60)
run("""
%%snip sc
function slowTrain(ms: number) {
  const end = Date.now() + ms;
  let step = 0;
  // A synchronous loop: values reach the store while it spins, in batches sent by time.
  while (Date.now() < end) {
    jobtracker.log({ loss: 1 / (1 + step) }, step);
    step++;
    const pause = Date.now() + 2;
    while (Date.now() < pause) {}
  }
  return step;
}
""", timeout=60)
ran = run("""
const job = await db.createJob(rc.view(0), ["slowTrain(2500)"], sc, { review: false });
const plot = job.plotMetrics("loss", { refreshMs: 200 });
await plot.finished;
const steps = await job.result;
console.log("final", steps, plot.updates, (await job.metrics("loss")).loss.steps.length);
""", timeout=90)
shown = []
for o in ran["outputs"]:
    c = o["content"]
    if o["type"] in ("display_data", "update_display_data"):
        shown.append({"type": o["type"], "id": c.get("transient", {}).get("display_id"), "text": c["data"].get("text/plain", ""), "svg": "image/svg+xml" in c["data"], "vega": "application/vnd.vegalite.v5+json" in c["data"]})
    elif o["type"] == "stream":
        shown.append({"type": "stream", "text": c["text"]})
    elif o["type"] == "error":
        shown.append({"type": "error", "text": c["ename"] + ": " + c["evalue"]})
result["shown"] = shown
result["status"] = ran["reply"]["status"]
`, 180_000);
    const shown = result.shown as { type: string; id?: string; text: string; svg?: boolean; vega?: boolean }[];
    assert.equal(result.status, "ok", JSON.stringify(shown));
    const first = shown.find((s) => s.type === "display_data");
    assert.ok(first?.id, JSON.stringify(shown));
    const updates = shown.filter((s) => s.type === "update_display_data");
    assert.ok(updates.every((u) => u.id === first.id), "every update replaces the chart (same display id)");
    // Points drawn at each update: growing while the job ran (at least two updates with points
    // before the last one), ending with every step.
    const counts = updates.map((u) => Number(/; (\d+) points?>/.exec(u.text)?.[1] ?? 0));
    const final = /final (\d+) (\d+) (\d+)/.exec(shown.filter((s) => s.type === "stream").map((s) => s.text).join(""));
    assert.ok(final, JSON.stringify(shown));
    const steps = Number(final[1]);
    assert.equal(Number(final[3]), steps);
    const last = counts[counts.length - 1];
    if (steps <= 2_000) assert.equal(last, steps, counts.join(", "));
    else assert.ok(last >= 1_000 && last <= 2_001, `a long series is thinned to at most 2,000 points (+ the last): ${last}`);
    const partial = counts.filter((n) => n > 0 && n < counts[counts.length - 1]);
    console.log(`chart updates while running: ${counts.join(", ")} points (job logged ${steps} steps)`);
    assert.ok(partial.length >= 2, `expected the chart to grow while the job ran: ${counts.join(", ")}`);
    for (let i = 1; i < counts.length; i++) assert.ok(counts[i] >= counts[i - 1], counts.join(", "));
    assert.ok(updates.some((u) => /jobs: 1 running or queued \(updating\)/.test(u.text)));
    assert.match(updates[updates.length - 1].text, /jobs: ended/);
    assert.ok(updates[updates.length - 1].svg && updates[updates.length - 1].vega);
  });
});
