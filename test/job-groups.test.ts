// Sweeps you can steer (issue 19 point 4), through a notebook on a local cluster of 2 real
// workers: group.wait with a timeout on a running sweep, group.progress shown live (one output
// replaced in place), db.group reattaching, group.cancel stopping it (none left queued or
// running, the workers free again), and `nbjob group ID` as a subprocess.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { listGroupJobs } from "../store";
import { cellText, JobsEnv, NBJOB } from "./jobs-env";

const env = new JobsEnv("job_groups");
before(() => env.start());
after(() => env.cleanup());

describe("job groups", () => {
  test("wait with a timeout, live progress, db.group reattach, group.cancel on a running sweep, nbjob group", async () => {
    const run = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
### code decl
%%snip sc
function spin(ms: number) { const end = Date.now() + ms; while (Date.now() < end) {} return ms; }
### code params
const params = new ParamLogger();
params.ms = 1;
### code sweep
const group = await db.createJobs(rc.loadBalanced(), ["spin(params.ms)"], sc, { params, grid: { ms: [60000, 60001, 60002, 60003, 60004] }, review: false });
while ((await group.progress).running < 2) await pause(100);
console.log("sweep", group.id, group.jobs.length);
### code progress
await group.progress
### code waittimeout
try { await group.wait({ timeout: 1500 }); console.log("wait resolved"); }
catch (err) { console.log("wait:", (err as Error).message); }
### code reattach
const again = await db.group(group.id);
console.log("reattached", again.id, again.jobs.map((j) => j.id).join(",") === group.jobs.map((j) => j.id).join(","), JSON.stringify(again.grid), String(await again.progress));
### code cancel
const t0 = Date.now();
const afterCancel = await group.cancel();
console.log("after cancel", afterCancel.pending, afterCancel.cancelled, String(afterCancel));
const final = await again.wait({ timeout: 20_000 });
console.log("final", final.pending, final.cancelled, "in", Date.now() - t0, "ms");
### code free
// Both workers are free again: a short job runs at once rather than after the 60 s spinners.
const t1 = Date.now();
const quick = await db.createJob(rc.loadBalanced(), ["spin(10)"], sc, { params, review: false });
console.log("quick", await quick.result, Date.now() - t1 < 15_000);
### code badgroup
try { await db.group(999999); } catch (err) { console.log("bad:", (err as Error).message); }
### code settle
await pause(1500);
`);
    assert.equal(run.code, 0, run.stderr);
    const sweep = /sweep (\d+) 5/.exec(cellText(run.cells.get("sweep")));
    assert.ok(sweep, cellText(run.cells.get("sweep")));
    const groupId = Number(sweep[1]);

    assert.match(cellText(run.cells.get("waittimeout")), new RegExp(`wait: group ${groupId}: 5 of 5 jobs are still pending after 1500 ms \\(2 running, 3 queued\\); they go on`));
    assert.match(cellText(run.cells.get("reattach")), new RegExp(`reattached ${groupId} true \\{"ms":\\[60000,60001,60002,60003,60004\\]\\} group ${groupId} \\[-+\\] 0/5 ended: 2 running, 3 queued`));

    const cancel = cellText(run.cells.get("cancel"));
    assert.match(cancel, /after cancel 0 5 /);
    const final = /final 0 5 in (\d+) ms/.exec(cancel);
    assert.ok(final, cancel);
    console.log(`group.cancel + wait for every job final: ${final[1]} ms`);
    assert.match(cellText(run.cells.get("free")), /quick 10 true/);
    assert.match(cellText(run.cells.get("badgroup")), /bad: db\.group\(999999\): there is no group 999999 in the store/);

    // The progress line was shown once and updated in place to its last state.
    const progress = run.cells.get("progress")!;
    assert.equal(progress.outputs.length, 1, JSON.stringify(progress.outputs));
    assert.match(cellText(progress), new RegExp(`^group ${groupId} \\[#{20}\\] 5/5 ended: 5 cancelled$`));
    assert.match(JSON.stringify(progress.outputs[0].data?.["text/html"]), /<progress max=\\"5\\" value=\\"5\\">/);

    const rows = await listGroupJobs(env.store, groupId);
    assert.deepEqual(rows.map((r) => r.status), ["cancelled", "cancelled", "cancelled", "cancelled", "cancelled"]);

    const cli = await env.exec(process.execPath, [NBJOB, "group", String(groupId)]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`^group ${groupId}\\n`));
    assert.match(cli.stdout, /grid {8}ms: \[60000,60001,60002,60003,60004\]/);
    assert.match(cli.stdout, /progress {4}\[#{20}\] 5\/5 ended: 5 cancelled/);
    assert.equal(cli.stdout.match(/^\d+ +cancelled +6000\d +Cancelled: cancelled with its group/gm)?.length, 5, cli.stdout);
    for (const bad of ["abc", "999999"]) {
      const refused = await env.exec(process.execPath, [NBJOB, "group", bad]);
      assert.notEqual(refused.code, 0);
      assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
      assert.match(refused.stderr, bad === "abc" ? /^nbjob: GROUP must be a group id/ : /^nbjob: there is no group 999999 in the store/);
    }
  });
});
