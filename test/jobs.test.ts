// Jobs from the notebook side, as a user runs them: notebooks executed by `nbjob run` against a
// local cluster of 2 real worker kernels and a fresh PostgreSQL database.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { listJobs } from "../store";
import { cellText, JobsEnv, POINT_NOTEBOOK_SETUP as SETUP } from "./jobs-env";

const env = new JobsEnv("jobs");
before(() => env.start());
after(() => env.cleanup());


describe("jobs from a notebook", () => {
  test("params, overrides and two collectors: the result comes back from the store, the worker's output streams into the cell", async () => {
    const run = await env.runNotebook(`${SETUP}
### code job
const job = await db.createJob(view, ["walk(2)", "norm(walk(1))"], sc, sc2, { params, overrides: { x: 0 }, name: "walker", tags: ["walks", "t1"] });
console.log("id", job.id, "params", JSON.stringify(job.params));
await job.result
### code status
[job.status, job.worker, job.name, job.tags.join("+"), job.source.includes("function walk"), (await job.logs()).split("\\n").length]
### code plain
const plain = await db.createJob(view, ["norm(new Point(3, 4))"], sc);
await plain.result
### code diff
await plain.diff(job)
### code balanced
const lb = await db.createJob(rc.loadBalanced(), ["walk(3).x"], sc, sc2, { params });
await lb.result
`);
    assert.equal(run.code, 0, run.stderr);
    const job = cellText(run.cells.get("job"));
    assert.match(job, /params \{"x":0,"y":4\}/);
    // walk(2) printed two steps and norm(walk(1)) one more, all live in this cell, then the result 4 (x overridden to 0).
    assert.match(job, /step 1\nstep 2\nstep 1\n[\s\S]*\n4$/);
    assert.match(cellText(run.cells.get("status")), /'done', 'default\/0@[^']+', 'walker', 'walks\+t1', true, 3/);
    assert.match(cellText(run.cells.get("plain")), /^5$/m);
    const diff = cellText(run.cells.get("diff"));
    assert.match(diff, /\+x = 0/);
    assert.match(diff, /\+y = 4/);
    assert.match(diff, /-norm\(new Point\(3, 4\)\)/);
    assert.match(diff, /\+function walk/);

    // A load-balanced job's output comes from the store's logs into the awaiting cell.
    assert.match(cellText(run.cells.get("balanced")), /step 1\nstep 2\nstep 3\n[\s\S]*^9$/m);

    const stored = await listJobs(env.store, { tag: "t1" });
    assert.equal(stored.length, 1);
    assert.equal(stored[0].status, "done");
    assert.equal(stored[0].result_text, "4");
    // The job records the notebook that made it (`nbjob run` tells the kernel, as Jupyter Server does): its lineage in `nbjob log`.
    assert.ok(stored[0].notebook?.startsWith(env.work) && /\/nb-\d+\.ipynb$/.test(stored[0].notebook), `notebook recorded: ${stored[0].notebook}`);
  });

  test("a second notebook reattaches with db.job(id) and lists jobs by tag", async () => {
    const [first] = await listJobs(env.store, { tag: "t1" });
    assert.ok(first, "the first test stores a job tagged t1");
    const run = await env.runNotebook(`
### code parameters parameters
let jobId = 0;
### code reattach
const db = new DBWrapper();
const job = await db.job(jobId);
console.log(job.id, job.status, job.name, JSON.stringify(job.params));
await job.result
### code rerun
const again = await job.rerun();
console.log("rerun", again.id !== job.id, again.record.rerun_of === job.id, await again.result, again.source === job.source);
### code listed
(await db.jobs({ tag: "walks" })).map((j) => \`\${j.id}:\${j.name}:\${j.status}\`)
### code note
await job.setNote("the reference run");
[job.note, (await db.job(jobId)).note]
### code missing
await db.job(987654)
`, ["-p", `jobId=${first.id}`]);
    const reattach = cellText(run.cells.get("reattach"));
    assert.match(reattach, new RegExp(`^${first.id} done walker \\{"x":0,"y":4\\}`, "m"));
    assert.match(reattach, /^4$/m);
    assert.doesNotMatch(reattach, /step 1/, "a finished job's output is not replayed (job.logs() has it)");
    assert.match(cellText(run.cells.get("rerun")), /^rerun true true 4 true$/m);
    assert.match(cellText(run.cells.get("listed")), new RegExp(`'${first.id}:walker:done'`));
    assert.match(cellText(run.cells.get("missing")), /UnknownJobError: there is no job 987654/);
    assert.match(cellText(run.cells.get("note")), /^\[ 'the reference run', 'the reference run' \]$/m, "a note set in one notebook is read back from the store");
  });

  test("a sweep on a load-balanced view runs one job per combination, spread over idle workers", async () => {
    const run = await env.runNotebook(`${SETUP}
### code pause
@sc2
function pausedWalk(steps: number): Promise<number> {
  return new Promise((resolve) => setTimeout(() => resolve(walk(steps).x), 400));
}
### code sweep
const group = await db.createJobs(rc.loadBalanced(), ["pausedWalk(2)"], sc, sc2, { params, grid: { x: [1, 2], y: [0, 5] }, tags: ["sweep"] });
const rows = await group.results;
console.log(JSON.stringify(rows.map((r) => [r.params.x, r.params.y, r.status, r.result])));
console.log("workers", new Set((await db.jobs({ tag: "sweep" })).map((j) => j.worker)).size);
### code table
group.table();
### code badvalue
await db.createJobs(rc.loadBalanced(), ["walk(1)"], sc, sc2, { params, grid: { x: [1, "two"] } })
### code badgrid
await db.createJobs(rc.loadBalanced(), ["walk(1)"], sc, sc2, { params, grid: { lr: [0.1] } })
### code badjson
await db.createJobs(rc.loadBalanced(), ["walk(1)"], sc, sc2, { params, grid: { x: [1, () => 2] } })
`);
    const sweep = cellText(run.cells.get("sweep"));
    assert.match(sweep, /\[\[1,0,"done",2\],\[1,5,"done",2\],\[2,0,"done",4\],\[2,5,"done",4\]\]/);
    assert.match(sweep, /workers 2/);
    const table = run.cells.get("table")!.outputs.find((o) => o.output_type === "display_data");
    assert.ok(table, cellText(run.cells.get("table")));
    assert.match(String(table.data?.["text/html"]), /<th>x<\/th><th>y<\/th><th>status<\/th>/);
    assert.match(String(table.data?.["text/plain"]), /^\d+\s+2\s+5\s+done\s+4$/m, "each row shows its job's result");
    // A value of another kind than the notebook's rejects the whole sweep before anything is
    // stored, named where the user wrote it (not as a type error inside walk).
    const badvalue = cellText(run.cells.get("badvalue"));
    assert.match(badvalue, /TypeError: grid\.x\[1\] is a string \("two"\) but params\.x is a number \(3\)/);
    assert.doesNotMatch(badvalue, /BundleError/);
    assert.match(cellText(run.cells.get("badgrid")), /grid\.lr is not a parameter; the parameters are x, y/);
    // A grid value that is not JSON data is named where the user wrote it, not as an override.
    const badjson = cellText(run.cells.get("badjson"));
    assert.match(badjson, /TypeError: grid\.x\[1\] was set to a function; parameters must be JSON data/);
    assert.doesNotMatch(badjson, /overrides/);
    const jobs = await listJobs(env.store, { tag: "sweep" });
    assert.equal(jobs.length, 4);
    assert.ok(jobs.every((j) => j.group_id !== null && j.group_id === jobs[0].group_id && j.target_worker === null));
  });

  test("the dashboard shows recent jobs and updates in place while they run", async () => {
    const run = await env.runNotebook(`${SETUP}
### code pause
@sc
function pause(ms: number): Promise<string> {
  return new Promise((resolve) => setTimeout(() => resolve("rested"), ms));
}
### code start
const job = await db.createJob(view, ["pause(2500)"], sc, { name: "resting", tags: ["dash"] });
### code dashboard
const dashboard = nbjob.makeDefaultDashboard();
await dashboard.ready;
### code end
await job.result;
await dashboard.refresh();
`);
    const shown = run.cells.get("dashboard")!.outputs.find((o) => o.output_type === "display_data");
    assert.ok(shown, cellText(run.cells.get("dashboard")));
    const html = String(shown.data?.["text/html"]);
    for (const column of ["id", "name", "tags", "status", "worker", "started", "duration", "parameters", "result or error"]) {
      assert.match(html, new RegExp(`<th[^>]*>${column}</th>`));
    }
    // The cell's output was updated in place to the job's final state.
    assert.match(html, /<td[^>]*>resting<\/td><td[^>]*>dash<\/td><td[^>]*>done<\/td><td[^>]*>default\/0@[^<]+<\/td>/);
    assert.match(html, /rested/);
    assert.match(String(shown.data?.["text/plain"]), /resting\s+dash\s+done\s+default\/0@\S+/);
  });

});
