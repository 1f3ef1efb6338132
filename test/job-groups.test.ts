// Sweeps you can steer (issue 19 point 4), through a notebook on a local cluster of 2 real
// workers: group.wait with a timeout on a running sweep, group.progress shown live (one output
// replaced in place), db.group reattaching, group.cancel stopping it (none left queued or
// running, the workers free again), and `nbjob group ID` as a subprocess.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { getJobGroup, listGroupJobs } from "../store";
import { sampleParams } from "../runtime/random-search";
import type { SampleSettings } from "../runtime/random-search";
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
console.log("claims at return", JSON.stringify(group.jobs.map((j) => j.record.claim)));
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
    // group.cancel() returned once the workers had stopped the two running jobs and stored their
    // last writes: each run's claim is cleared (a queued job never had one).
    assert.match(cancel, /claims at return \[null,null,null,null,null\]/);
    const final = /final 0 5 in (\d+) ms/.exec(cancel);
    assert.ok(final, cancel);
    console.log(`group.cancel + wait for every job final: ${final[1]} ms`);
    assert.match(cellText(run.cells.get("free")), /quick 10 true/);
    // The hint names something that exists (nbjob jobs has no group column).
    assert.match(cellText(run.cells.get("badgroup")), /bad: db\.group\(999999\): there is no group 999999 in the store \(a job's group is its job\.record\.group_id, or the group line of "nbjob show JOB"\)/);

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

  test("random search: a 12-job sweep (2 grid values x 6 draws) runs with the seed's values, stored with the group and shown", async () => {
    const run = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code decl
%%snip sc
function train(lr: number, layers: number, steps: number, opt: string) {
  jobtracker.log({ loss: lr * layers });
  return { lr, layers, steps, opt };
}
### code params
const params = new ParamLogger();
params.lr = 0.01;
params.layers = 1;
params.steps = 5;
params.opt = "sgd";
### code refused
const ENTRY = "train(params.lr, params.layers, params.steps, params.opt)";
for (const bad of [
  { sample: { lr: { logUniform: [0, 0.1] } }, count: 3 },
  { sample: { lr: { uniform: [0.1, 0.1] } }, count: 3 },
  { sample: { layers: [] }, count: 3 },
  { sample: { layers: [1, 2] }, count: 0 },
  { sample: { layers: [1, 2] }, count: 3, seed: 1.5 },
  { sample: { nope: [1, 2] }, count: 3 },
  { grid: { layers: [1, 2] }, sample: { layers: [1, 2] }, count: 3 },
  { grid: { layers: [1, 2] }, count: 3 },
  { sample: { layers: [1, "two"] }, count: 3 },
  { sample: { opt: { int: [1, 3] } }, count: 3 },
]) {
  try { await db.createJobs(rc.loadBalanced(), [ENTRY], sc, { params, review: false, ...bad } as any); console.log("accepted?!"); }
  catch (err) { console.log(\`\${(err as Error).name}: \${(err as Error).message}\`); }
}
### code sweep
const group = await db.createJobs(rc.loadBalanced(), [ENTRY], sc, { params, grid: { opt: ["sgd", "adam"] }, sample: { lr: { logUniform: [1e-4, 1e-1] }, layers: [1, 2, 3], steps: { int: [10, 20] } }, count: 6, seed: 7, review: false });
const final = await group.wait({ timeout: 120_000 });
console.log("sweep", group.id, group.jobs.length, final.done, JSON.stringify(group.sample));
console.log("results", JSON.stringify((await group.results).map((r) => r.result)));
### code reattach
const again = await db.group(group.id);
console.log("reattached", JSON.stringify(again.sample), JSON.stringify(again.grid));
### code table
group.table()
### code query
const found = await db.jobs({ group: group.id, params: { layers: { gte: 2 } }, metrics: { loss: { lt: 0.05 } }, orderBy: "metrics.loss", limit: 50 });
console.log("found", JSON.stringify(found.map((j) => j.id)));
`);
    assert.equal(run.code, 0, run.stderr);
    const refused = cellText(run.cells.get("refused")).trim().split("\n");
    assert.equal(refused.length, 10, refused.join("\n"));
    assert.match(refused[0], /^TypeError: sample\.lr\.logUniform must be \[a, b\] with 0 < a/);
    assert.match(refused[1], /^TypeError: sample\.lr\.uniform is an empty range \[0\.1, 0\.1\]/);
    assert.match(refused[2], /^TypeError: sample\.layers is an empty array/);
    assert.match(refused[3], /^TypeError: count must be a positive integer/);
    assert.match(refused[4], /^TypeError: seed must be an integer/);
    assert.match(refused[5], /^Error: sample\.nope is not a parameter; the parameters are layers, lr, opt, steps/);
    assert.match(refused[6], /^TypeError: sample\.layers is also in grid/);
    assert.match(refused[7], /^TypeError: createJobs: count and seed go with sample/);
    // A drawn value of another kind than the notebook's parameter: refused before anything is built.
    assert.match(refused[8], /^TypeError: sample\.layers\[1\] is a string \("two"\) but params\.layers is a number \(1\)/);
    assert.match(refused[9], /^TypeError: sample\.opt\.int draws numbers but params\.opt is a string \("sgd"\); draw from a list of values instead/);

    const sweepText = cellText(run.cells.get("sweep"));
    const sweep = /sweep (\d+) 12 12 (.*)/.exec(sweepText);
    assert.ok(sweep, sweepText);
    const groupId = Number(sweep[1]);
    const settings: SampleSettings = { spec: { lr: { logUniform: [1e-4, 1e-1] }, layers: [1, 2, 3], steps: { int: [10, 20] } }, count: 6, seed: 7 };
    assert.deepEqual(JSON.parse(sweep[2]), settings);

    // Stored with the group, and each job ran with the seed's draws: the grid's first value with
    // the 6 draws in order, then the second with the same 6.
    const stored = await getJobGroup(env.store, groupId);
    assert.deepEqual(stored?.sample, settings);
    assert.deepEqual(stored?.grid, { opt: ["sgd", "adam"] });
    const draws = sampleParams(settings);
    const expected = ["sgd", "adam"].flatMap((opt) => draws.map((d) => ({ ...d, opt })));
    const rows = await listGroupJobs(env.store, groupId);
    assert.deepEqual(rows.map((r) => r.status), Array(12).fill("done"));
    assert.deepEqual(rows.map((r) => r.params), expected);
    const results = JSON.parse(/results (.*)/.exec(sweepText)![1]) as { lr: number; layers: number; steps: number; opt: string }[];
    assert.deepEqual(results, expected);
    for (const r of results) {
      assert.ok(r.lr >= 1e-4 && r.lr <= 1e-1 && [1, 2, 3].includes(r.layers) && Number.isInteger(r.steps) && r.steps >= 10 && r.steps <= 20, JSON.stringify(r));
    }
    // Read back from the group (jsonb: key order not kept), the settings draw the same values.
    const reattached = /reattached (\{.*\}) (\{.*\})/.exec(cellText(run.cells.get("reattach")));
    assert.ok(reattached, cellText(run.cells.get("reattach")));
    assert.deepEqual(JSON.parse(reattached[1]), settings);
    assert.deepEqual(sampleParams(JSON.parse(reattached[1]) as SampleSettings), draws);
    assert.deepEqual(JSON.parse(reattached[2]), { opt: ["sgd", "adam"] });
    // The table has a column per swept parameter, the grid's and the drawn ones.
    assert.match(cellText(run.cells.get("table")), /^job +opt +layers +lr +steps +status +result/);

    // Queried by parameter and metric, from the notebook and the CLI: the jobs with 2 or 3 layers
    // whose loss (lr x layers, logged by the job) is under 0.05, lowest first.
    // (The grid's two values share the draws, so losses come in ties: the order is checked by loss.)
    const lossOf = new Map(rows.map((r) => [Number(r.id), (r.params.lr as number) * (r.params.layers as number)]));
    const matching = rows.filter((r) => (r.params.layers as number) >= 2 && lossOf.get(Number(r.id))! < 0.05).map((r) => Number(r.id)).sort((a, b) => a - b);
    assert.ok(matching.length > 0 && matching.length < 12, `the condition splits the sweep: ${matching.length} of 12`);
    const assertFound = (ids: number[], what: string) => {
      assert.deepEqual([...ids].sort((a, b) => a - b), matching, what);
      ids.forEach((id, i) => assert.ok(i === 0 || lossOf.get(ids[i - 1])! <= lossOf.get(id)!, `${what}: ordered by loss`));
    };
    assertFound(JSON.parse(/found (.*)/.exec(cellText(run.cells.get("query")))![1]) as number[], "db.jobs in the notebook");
    const where = await env.exec(process.execPath, [NBJOB, "jobs", "--where", `group = ${groupId} and params.layers >= 2 and metrics.loss < 0.05`, "--order", "metrics.loss", "--limit", "50"]);
    assert.equal(where.code, 0, where.stderr);
    assertFound(where.stdout.trim().split("\n").slice(1).map((line) => Number(line.trim().split(/\s+/)[0])), `nbjob jobs --where: ${where.stdout}`);

    const cli = await env.exec(process.execPath, [NBJOB, "group", String(groupId)]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /grid {8}opt: \["sgd","adam"\]/);
    assert.match(cli.stdout, /sample {6}layers in \[1,2,3\], lr ~ logUniform\(0\.0001, 0\.1\), steps ~ int\(10, 20\); 6 draws, seed 7 \(for each grid combination\)/);
    assert.match(cli.stdout, /^job +status +opt +layers +lr +steps +result/m);
    assert.equal(cli.stdout.match(/^\d+ +done +"(sgd|adam)" +[123] +[\d.e-]+ +\d+ +\{/gm)?.length, 12, cli.stdout);
  });
});
