// Analyzers from a notebook, as a user runs them: `nbjob run` against a local cluster of 2 real
// worker kernels and a fresh PostgreSQL database. The job's code really calls
// jobtracker.checkpoint(); workers restore each checkpoint and run the notebook's functions.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { cellText, jobsEnvWithKernels, ROOT } from "./jobs-env";
import type { Output } from "./jobs-env";
import { withJupyterClient } from "./kernel-helpers";

const { env, kernels } = jobsEnvWithKernels("analyzer");

// The seed's example: a parameter that halves its distance to 5 at each iteration, 19 checkpoints.
const TRAIN = `
### code setup
const sc3 = new SnippetCollector();
const sc4 = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code snip
%%snip sc3
let iteration = 0;
const param_values = [0];
jobtracker.registerCheckpointer("iteration");
jobtracker.registerCheckpointer("param_values");

function train() {
  while (Math.abs(param_values[0] - 5.0) > 1e-5) {
    iteration += 1;
    param_values[0] += 0.5 * (5.0 - param_values[0]);
    jobtracker.checkpoint();
  }
  return iteration;
}
### code job
const job = await db.createJob(rc.view(0), ["train()"], sc3);
await job.result
`;

function display(outputs: Output[] | undefined, mime: string): string | undefined {
  const found = (outputs ?? []).find((o) => (o.output_type === "display_data" || o.output_type === "execute_result") && o.data?.[mime] !== undefined);
  const data = found?.data?.[mime];
  if (data === undefined) return undefined;
  return typeof data === "string" ? data : Array.isArray(data) ? data.join("") : JSON.stringify(data);
}

describe("analyzers over every checkpoint", () => {
  test("the seed's train/analyze example: rows per checkpoint, 2 workers agree with 1, asked again from the store, errors recorded, plot, follow", async () => {
    const run = await env.runNotebook(`${TRAIN}
### code analyze
function testPerformance() {
  return { iteration, error: Math.abs(param_values[0] - 5.0) };
}
const analyzer = await db.createAnalyzer(rc.view(0), job, [testPerformance]);
const rows = await analyzer.result;
console.log(rows.length, JSON.stringify(rows.slice(0, 2)), JSON.stringify(analyzer.stats.byWorker));
### code two
const job2 = await db.createJob(rc.view(1), ["train()"], sc3);
await job2.result;
const shared = await db.createAnalyzer(rc.loadBalanced(), job2, [testPerformance]);
const rows2 = await shared.result;
console.log("same", JSON.stringify(rows2) === JSON.stringify(rows), "workers", Object.keys(shared.stats.byWorker).length, "computed", shared.stats.computed);
### code again
const again = await db.createAnalyzer(rc.loadBalanced(), job.id, [testPerformance]);
const rows3 = await again.result;
console.log("again same", JSON.stringify(rows3) === JSON.stringify(rows), "computed", again.stats.computed);
### code twice
function halfError() {
  return { half: Math.abs(param_values[0] - 5.0) / 2 };
}
const first = await db.createAnalyzer(rc.view(0), job, [halfError]);
const second = await db.createAnalyzer(rc.view(1), job, [halfError]);
const [r1, r2] = await Promise.all([first.result, second.result]);
console.log("twice same", JSON.stringify(r1) === JSON.stringify(r2), r1.length, "computed in all", first.stats.computed + second.stats.computed);
### code risky
function risky() {
  if (iteration === 3) throw new RangeError("iteration 3 is cursed");
  return { doubled: iteration * 2 };
}
const mixed = await db.createAnalyzer(rc.loadBalanced(), job, [testPerformance, risky]);
const mrows = await mixed.result;
console.log(JSON.stringify(mrows[1]));
console.log(JSON.stringify(mrows[2]));
console.log("rows", mrows.length, "errors", mixed.stats.errors, "computed", mixed.stats.computed);
### code plot
analyzer.plot("iteration", "error", { logY: true });
### code plotbad
analyzer.plot("iteration", "loss")
### code plotuntyped
analyzer.plot("iteration", "loss" as any)
### code follow
%%snip sc4
let tick = 0;
jobtracker.registerCheckpointer("tick");
async function slow() {
  for (let i = 0; i < 6; i++) {
    tick = i * 10;
    jobtracker.checkpoint();
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  return tick;
}
### code followrun
function seeTick() {
  return { tick };
}
const slowJob = await db.createJob(rc.view(1), ["slow()"], sc4);
const follower = await db.createAnalyzer(rc.view(0), slowJob, [seeTick], { follow: true });
const frows = await follower.result;
console.log(JSON.stringify(frows.map((r) => r.tick)), await slowJob.refresh());
### code nonfn
await db.createAnalyzer(rc.view(0), job, [testPerformance, 42 as any])
### code unknown
await db.createAnalyzer(rc.view(0), job, [Math.max as any])
### code nocheckpoints
const plain = await db.createJob(rc.view(0), ["1 + 1"], sc3);
await plain.result;
await db.createAnalyzer(rc.view(0), plain, [testPerformance])
### code badjob
await db.createAnalyzer(rc.view(0), "3" as any, [testPerformance])
### code nojob
await db.createAnalyzer(rc.view(0), 987654321, [testPerformance])
`);
    assert.equal(run.code, 0, run.stderr);

    const analyze = cellText(run.cells.get("analyze"));
    assert.match(analyze, /^19 \[\{"checkpoint":0,"iteration":1,"error":2\.5\},\{"checkpoint":1,"iteration":2,"error":1\.25\}\] \{"default\/0@[^"]+":19\}$/m);
    // The progress bar was updated in place to its final state (text and HTML).
    assert.match(display(run.cells.get("analyze")?.outputs, "text/plain") ?? "", /^analysed 19\/19 checkpoints of job \d+ \(testPerformance\); done: 19 rows computed$/);
    assert.match(display(run.cells.get("analyze")?.outputs, "text/html") ?? "", /<progress value="19" max="19"/);

    assert.match(cellText(run.cells.get("two")), /^same true workers 2 computed 19$/m, "the checkpoints were shared by both workers and gave the same rows");
    assert.match(cellText(run.cells.get("again")), /^again same true computed 0$/m, "asked again, nothing went to a worker");
    assert.match(display(run.cells.get("again")?.outputs, "text/plain") ?? "", /done: all rows from the store/);

    // Two analyzers of the same function at once, on different workers: each checkpoint computed once.
    assert.match(cellText(run.cells.get("twice")), /^twice same true 19 computed in all 19$/m);
    const risky = cellText(run.cells.get("risky"));
    assert.match(risky, /^\{"checkpoint":1,"iteration":2,"error":1\.25,"doubled":4\}$/m);
    assert.match(risky, /^\{"checkpoint":2,"iteration":3,"error":0\.625,"errors":\{"risky":"RangeError: iteration 3 is cursed"\}\}$/m);
    // testPerformance's rows came from the store; only risky ran (19 rows), one of them threw.
    assert.match(risky, /^rows 19 errors 1 computed 19$/m);

    const plot = run.cells.get("plot")?.outputs;
    const spec = JSON.parse(display(plot, "application/vnd.vegalite.v5+json") ?? "{}") as { $schema?: string; mark?: { type: string }; encoding?: { x: { field: string }; y: { field: string; scale?: { type: string } } }; data?: { values: Record<string, number>[] } };
    assert.match(spec.$schema ?? "", /vega-lite\/v5/);
    assert.equal(spec.mark?.type, "line");
    assert.equal(spec.encoding?.x.field, "iteration");
    assert.equal(spec.encoding?.y.field, "error");
    assert.equal(spec.encoding?.y.scale?.type, "log");
    assert.equal(spec.data?.values.length, 19);
    assert.deepEqual(spec.data?.values[0], { iteration: 1, error: 2.5 });
    const svg = display(plot, "image/svg+xml") ?? "";
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(svg, /<polyline [^>]*points="(\d+\.\d,\d+\.\d ?){19}"/);
    assert.match(svg, />iteration<\/text>/);
    assert.match(display(plot, "text/plain") ?? "", /line chart: error by iteration .*19 points/);
    // The field names are typed from the functions' return types: a typo stops the cell...
    assert.match(cellText(run.cells.get("plotbad")), /CompileError: 1:28 Argument of type '"loss"' is not assignable to parameter of type '[^']*"iteration"[^']*'/);
    // ...and code that gets past the types is told which fields there are.
    assert.match(cellText(run.cells.get("plotuntyped")), /no row has a field "loss"; the rows' fields are checkpoint, iteration, error/);

    const follow = cellText(run.cells.get("followrun"));
    assert.match(follow, /^\[0,10,20,30,40,50\] done$/m, "every checkpoint of the running job was analysed, in order");

    assert.match(cellText(run.cells.get("nonfn")), /TypeError: createAnalyzer: fns\[1\] is number \(42\), not a function/);
    assert.match(cellText(run.cells.get("unknown")), /the TypeScript source of the function max \(fns\[0\]\) is unknown/);
    const noCheckpoints = /job (\d+) has no checkpoints \(it is done\): there is nothing to analyse/.exec(cellText(run.cells.get("nocheckpoints")));
    assert.ok(noCheckpoints, cellText(run.cells.get("nocheckpoints")));
    // The refused analyzer leaves no analysis record behind (it is made while the checkpoints are read).
    const refused = await env.store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.analyses WHERE job_id = $1", [Number(noCheckpoints[1])]);
    assert.equal(refused.rows[0].n, 0);
    assert.match(cellText(run.cells.get("badjob")), /job must be a Job \(from db\.createJob or db\.job\(id\)\) or a job number/);
    // A job that does not exist is named as such (not as the analysis record's foreign key).
    assert.match(cellText(run.cells.get("nojob")), /UnknownJobError: there is no job 987654321; "nbjob jobs" lists the jobs/);

    // In the store: each function's row once per checkpoint, the thrown error with its traceback at the function's own line.
    const { rows } = await env.store.query<{ error: { name: string; message: string; traceback: string[] } }>(
      "SELECT r.error FROM nbjob.analysis_rows r JOIN nbjob.snippets s ON s.hash = r.function_hash WHERE 'risky' = ANY(s.names) AND r.error IS NOT NULL",
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0].error.name, "RangeError");
    assert.ok(rows[0].error.traceback.some((line) => /at risky \(risky:2:\d+\)/.test(line)), rows[0].error.traceback.join("\n"));
    const counts = await env.store.query<{ n: string }>("SELECT count(*) AS n FROM nbjob.analysis_rows r JOIN nbjob.snippets s ON s.hash = r.function_hash WHERE 'testPerformance' = ANY(s.names)");
    assert.equal(Number(counts.rows[0].n), 38, "testPerformance: 19 rows for each of the two jobs, none twice");
  });

  test("a worker without a store refuses with a clear error; in a view with another worker its checkpoints go there", async () => {
    const { rows } = await env.store.query<{ job_id: string }>("SELECT min(job_id) AS job_id FROM nbjob.checkpoints");
    const jobId = Number(rows[0].job_id);
    assert.ok(jobId > 0, "the first test stored checkpoints");
    const file = join(env.work, "nostore.json");
    env.spawnBackground(["worker", "--connection-file", file, "--id", "lonely", "--no-store"]);
    for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    const clusterFile = join(env.work, "home", "cluster", "default", "worker-0.json");
    const run = await env.runNotebook(`
### code parameters parameters
let jobId = 0;
let file = "";
let clusterFile = "";
let pgModule = "";
### code setup
const db = new DBWrapper();
const alone = await Client.connect({ connectionFiles: [file] });
const mixed = await Client.connect({ connectionFiles: [file, clusterFile] });
function probe() {
  return { probed: 1 };
}
### code alone
await (await db.createAnalyzer(alone.view(0), jobId, [probe])).result
### code mixed
const shared = await db.createAnalyzer(mixed.loadBalanced(), jobId, [probe]);
const rows = await shared.result;
console.log(rows.length, JSON.stringify(rows[0]), JSON.stringify(shared.stats.byWorker));
### code stop
function other() {
  return { other: 2 };
}
// The analyses table held for 300 ms: createAnalyzer takes longer than the kernel's 50 ms between
// event-loop turns, so the cell goes on through an immediate of the kernel's (the race stop() must win).
const { Client: PgClient } = require(pgModule);
const locker = new PgClient({ connectionString: process.env.NBJOB_DATABASE_URL });
await locker.connect();
await locker.query("BEGIN");
await locker.query("LOCK TABLE nbjob.analyses IN EXCLUSIVE MODE");
setTimeout(() => void locker.query("COMMIT").then(() => locker.end()), 300);
const stopped = await db.createAnalyzer(mixed.view(1), jobId, [other]);
stopped.stop();
console.log("stopped with", (await stopped.result).length, "rows");
`, ["-p", `jobId=${jobId}`, "-p", `file=${file}`, "-p", `clusterFile=${clusterFile}`, "-p", `pgModule=${require.resolve("pg")}`]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("alone")), new RegExp(`no worker could analyse job ${jobId} \\(19 checkpoints left; the rows stored so far are kept\\):\\nworker lonely: worker lonely has no store \\(it was started with --no-store\\)`));
    assert.match(cellText(run.cells.get("mixed")), /^19 \{"checkpoint":0,"probed":1\} \{"default\/0@[^"]+":19\}$/m);
    assert.match(cellText(run.cells.get("stop")), /^stopped with 0 rows$/m, "stopped before any checkpoint was handed out");
  });

  test("stop() cancels what the workers were given: a function that never returns lets go of the worker, whose next analysis runs", async () => {
    const { rows } = await env.store.query<{ job_id: string }>("SELECT min(job_id) AS job_id FROM nbjob.checkpoints");
    const jobId = Number(rows[0].job_id);
    assert.ok(jobId > 0, "the first test stored checkpoints");
    // Written by the function on the worker once its thread is inside it (the notebook waits for it).
    const marker = join(env.work, "forever-started");
    const run = await env.runNotebook(`
### code parameters parameters
let jobId = 0;
### code setup
const db = new DBWrapper();
const rc = await Client.connect();
// The job's variable, as its snippet declared it in the notebook that made it.
let iteration = 0;
### code forever
function forever() {
  require("node:fs").writeFileSync(${JSON.stringify(marker)}, "computing");
  let n = 0;
  while (n >= 0) n++;
  return { n };
}
const stuck = await db.createAnalyzer(rc.view(0), jobId, [forever]);
while (!require("node:fs").existsSync(${JSON.stringify(marker)})) await new Promise((resolve) => setTimeout(resolve, 20));
stuck.stop();
console.log("stopped with", (await stuck.result).length, "rows");
### code next
function afterwards() {
  return { afterwards: 1 };
}
const next = await db.createAnalyzer(rc.view(0), jobId, [afterwards]);
const nextRows = await next.result;
console.log("next", nextRows.length, "rows", next.stats.computed, "computed", JSON.stringify(next.stats.byWorker));
### code behind
// Stuck on the job's last checkpoint only: another analyzer's first checkpoints go to the same
// thread behind it, and must be computed by the thread that replaces it.
function hangsLast() {
  if (iteration === 19) {
    require("node:fs").writeFileSync(${JSON.stringify(`${marker}-last`)}, "computing");
    while (iteration > 0) iteration += 1;
  }
  return { seen: iteration };
}
function queuedBehind() {
  return { behind: iteration };
}
const hanging = await db.createAnalyzer(rc.view(0), jobId, [hangsLast]);
while (!require("node:fs").existsSync(${JSON.stringify(`${marker}-last`)})) await new Promise((resolve) => setTimeout(resolve, 20));
const behind = await db.createAnalyzer(rc.view(0), jobId, [queuedBehind]);
// Time for its first checkpoints to reach the worker's thread; had they not, the test checks less, not wrongly.
await new Promise((resolve) => setTimeout(resolve, 1000));
hanging.stop();
console.log("hanging stopped with", (await hanging.result).length, "rows");
const behindRows = await behind.result;
console.log("behind", behindRows.length, "rows", behind.stats.computed, "computed", behindRows[18]?.behind);
### code mirror
// The other way round: the stopped analyzer's first checkpoint waits on the thread behind another
// analyzer's last one, which finishes there once instead of being computed again on a new thread.
function slowLast() {
  if (iteration === 19) {
    require("node:fs").appendFileSync(${JSON.stringify(`${marker}-slow`)}, "computed\\n");
    const until = Date.now() + 1500;
    while (Date.now() < until);
  }
  return { slowSeen: iteration };
}
function stoppedBehind() {
  return { stoppedBehind: iteration };
}
const slow = await db.createAnalyzer(rc.view(0), jobId, [slowLast]);
while (!require("node:fs").existsSync(${JSON.stringify(`${marker}-slow`)})) await new Promise((resolve) => setTimeout(resolve, 20));
const stoppedWhileBehind = await db.createAnalyzer(rc.view(0), jobId, [stoppedBehind]);
// Time for its first checkpoint to reach the thread behind slowLast's; had it not, the test checks less, not wrongly.
await new Promise((resolve) => setTimeout(resolve, 700));
stoppedWhileBehind.stop();
const slowRows = await slow.result;
const lastRuns = require("node:fs").readFileSync(${JSON.stringify(`${marker}-slow`)}, "utf8").split("\\n").filter(Boolean).length;
console.log("slow", slowRows.length, "rows", slowRows[18]?.slowSeen, "last", lastRuns, "time(s)", (await stoppedWhileBehind.result).length, "behind");
`, ["-p", `jobId=${jobId}`, "--timeout", "120"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("forever")), /^stopped with 0 rows$/m);
    assert.match(display(run.cells.get("forever")?.outputs, "text/plain") ?? "", /^analysed 0\/19 checkpoints of job \d+ \(forever\); stopped by analyzer\.stop\(\): no rows computed$/);
    // Without the cancel, worker 0's thread would compute forever() still and hold its checkpoints' locks.
    assert.match(cellText(run.cells.get("next")), /^next 19 rows 19 computed \{"default\/0@[^"]+":19\}$/m, cellText(run.cells.get("next")));
    assert.match(cellText(run.cells.get("behind")), /^hanging stopped with 18 rows$/m, cellText(run.cells.get("behind")));
    assert.match(display(run.cells.get("behind")?.outputs, "text/plain") ?? "", /^analysed 18\/19 checkpoints of job \d+ \(hangsLast\); stopped by analyzer\.stop\(\): 18 rows computed$/);
    assert.match(cellText(run.cells.get("behind")), /^behind 19 rows 19 computed 19$/m, cellText(run.cells.get("behind")));
    // Without the wait for the thread's current command, slowLast's last checkpoint ran twice.
    assert.match(cellText(run.cells.get("mirror")), /^slow 19 rows 19 last 1 time\(s\) 0 behind$/m, cellText(run.cells.get("mirror")));
  });

  test("interrupting the cell that created an analyzer stops it on the workers; one an earlier cell created goes on, until a kernel restart", async () => {
    const { rows } = await env.store.query<{ job_id: string }>("SELECT min(job_id) AS job_id FROM nbjob.checkpoints");
    const jobId = Number(rows[0].job_id);
    assert.ok(jobId > 0, "the first test stored checkpoints");
    const marker = join(env.work, "interrupted-started");
    const setup = `const db = new DBWrapper();\nconst rc = await Client.connect();\nlet iteration = 0;\nconst jobId = ${jobId};`;
    // ~50 ms a checkpoint on worker 1: still running when the other cell is interrupted.
    const earlier = `function slowly() {\n  const until = Date.now() + 50;\n  while (Date.now() < until);\n  return { slow: iteration };\n}\nconst earlier = await db.createAnalyzer(rc.view(1), jobId, [slowly]);`;
    const interrupted = `function untilInterrupted() {\n  require("node:fs").writeFileSync(${JSON.stringify(marker)}, "computing");\n  let n = 0;\n  while (n >= 0) n++;\n  return { n };\n}\nconst stuck = await db.createAnalyzer(rc.view(0), jobId, [untilInterrupted]);\nawait stuck.result;`;
    const after = `function afterwards2() {\n  return { afterwards: iteration };\n}\nconst next = await db.createAnalyzer(rc.view(0), jobId, [afterwards2]);\nconst nextRows = await next.result;\nconst earlierRows = await earlier.result;\n[require("node:util").inspect(stuck), (await stuck.result).length, nextRows.length, next.stats.computed, earlierRows.length, earlier.stats.computed].join(" | ")`;
    const held = `function heldForever() {\n  require("node:fs").writeFileSync(${JSON.stringify(`${marker}-held`)}, "computing");\n  let n = 0;\n  while (n >= 0) n++;\n  return { n };\n}\nconst held = await db.createAnalyzer(rc.view(0), jobId, [heldForever]);`;
    const afterRestart = `function afterRestart() {\n  return { afterRestart: iteration };\n}\nconst again = await db.createAnalyzer(rc.view(0), jobId, [afterRestart]);\n\`\${(await again.result).length} rows, \${again.stats.computed} computed\``;
    const result = await withJupyterClient(kernels, `
run(${JSON.stringify(setup)}, timeout=60)
run(${JSON.stringify(earlier)}, timeout=60)
msg_id = kc.execute(${JSON.stringify(interrupted)})
deadline = time.time() + 60
while not os.path.exists(${JSON.stringify(marker)}) and time.time() < deadline:
    time.sleep(0.05)
km.interrupt_kernel()
reply = kc.get_shell_msg(timeout=20)
result["interrupted"] = reply["content"]["status"]
# The progress line of the stopped analyzer is updated in place (update_display_data) as it stops.
texts = []
deadline = time.time() + 10
while time.time() < deadline and not any("stopped by" in t for t in texts):
    try:
        m = kc.get_iopub_msg(timeout=0.5)
    except Empty:
        continue
    if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] in ("display_data", "update_display_data"):
        texts.append(m["content"]["data"].get("text/plain", ""))
result["progress"] = texts
result["after"] = text_of(run(${JSON.stringify(after)}, timeout=60))
# An analyzer from a cell that has ended, still computing, then a restart of the kernel.
run(${JSON.stringify(held)}, timeout=60)
deadline = time.time() + 60
while not os.path.exists(${JSON.stringify(`${marker}-held`)}) and time.time() < deadline:
    time.sleep(0.05)
km.restart_kernel(now=False)
kc.wait_for_ready(timeout=60)
run(${JSON.stringify(setup)}, timeout=60)
result["restarted"] = text_of(run(${JSON.stringify(afterRestart)}, timeout=60))
`);
    assert.equal(result.interrupted, "error");
    const progress = (result.progress as string[]).join("\n");
    assert.match(progress, /^analysed 0\/19 checkpoints of job \d+ \(untilInterrupted\); stopped by the interrupt of the cell that created it: no rows computed$/m, progress);
    // Without the stop, worker 0's thread would still compute untilInterrupted() and the next analysis would never end.
    assert.match(String(result.after), new RegExp(`^'Analyzer \\d+ \\(job ${jobId}: untilInterrupted; 0/19 checkpoints, stopped\\) \\| 0 \\| 19 \\| 19 \\| 19 \\| 19'$`), String(result.after));
    // A restart cancels what the notebook left computing: without it, worker 0 would stay in heldForever() and this would never end.
    assert.equal(result.restarted, "'19 rows, 19 computed'");
  });

  test("a job reattached in a fresh notebook is analysed once its variables are declared (as the README says)", async () => {
    const first = await env.runNotebook(`${TRAIN}
### code id
console.log("job id", job.id);
`);
    assert.equal(first.code, 0, first.stderr);
    const jobId = Number(/^job id (\d+)$/m.exec(cellText(first.cells.get("id")))?.[1]);
    assert.ok(jobId > 0, cellText(first.cells.get("id")));
    const fresh = await env.runNotebook(`
### code setup
const db = new DBWrapper();
const rc = await Client.connect();
const j = await db.job(${jobId});
### code undeclared
function stepOf() { return { iteration }; }
### code analyze
declare let iteration: number;
declare const param_values: number[];
function stepOf() { return { iteration, first: param_values[0] }; }
const rows = await (await db.createAnalyzer(rc.loadBalanced(), j, [stepOf])).result;
console.log(rows.length, JSON.stringify(rows[18]));
`);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.match(cellText(fresh.cells.get("undeclared")), /No value exists in scope for the shorthand property 'iteration'/);
    assert.match(cellText(fresh.cells.get("analyze")), /^19 \{"checkpoint":18,"iteration":19,"first":4\.99999\d+\}$/m);
  });

  test("examples/checkpoints.ipynb runs end to end", async () => {
    const run = await env.runNotebook(join(ROOT, "examples", "checkpoints.ipynb"), [], { allowErrors: false });
    assert.equal(run.code, 0, run.stderr);
    const text = [...run.cells.values()].map(cellText).join("\n");
    assert.match(text, /\{ checkpoint: 0, iteration: 1, error: 2\.5 \}/);
    assert.ok([...run.cells.values()].some((c) => display(c.outputs, "image/svg+xml")), "the notebook shows the chart");
  });
});
