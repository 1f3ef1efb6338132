// A store backed up with `nbjob db dump` and restored with `nbjob db restore` into another
// database goes on working (issue 17): on that store's own cluster, a job made before the dump
// resumes from its restored last checkpoint, reruns from its restored bundle, and an analysis runs
// over its restored checkpoints; the results equal what the original store gives.
import assert from "node:assert/strict";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { getJob } from "../store";
import { listCheckpoints } from "../store/checkpoints";
import { cellText, JobsEnv } from "./jobs-env";

const original = new JobsEnv("restore_from");
const restored = new JobsEnv("restore_into");
// Bundles are signed with the cluster key they were made under: a store restored elsewhere runs
// its jobs where workers have that key (here both sides get it from NBJOB_CLUSTER_KEY).
const key = randomBytes(24).toString("hex");
original.env.NBJOB_CLUSTER_KEY = key;
restored.env.NBJOB_CLUSTER_KEY = key;
before(async () => {
  await original.start({ workers: 1 });
  await restored.start({ workers: 1 });
});
after(async () => {
  await original.cleanup();
  await restored.cleanup();
});

describe("a restored store goes on", () => {
  test("dump, restore into a new store with its own worker: resume continues from the restored checkpoint 2, rerun and an analysis give the original's values", async () => {
    const flag = join(original.work, "failed-once");
    const made = await original.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code decl
%%snip sc
let k = 0;
let trail: number[] = [];
jobtracker.registerCheckpointer("k");
jobtracker.registerCheckpointer("trail");
function walk(until: number, flag: string) {
  const fs = require("node:fs");
  while (k < 3) { k += 1; trail.push(k * k); jobtracker.checkpoint(); }
  // The first run fails after checkpoint 2; a resumed run goes on to \`until\`.
  if (!fs.existsSync(flag)) { fs.writeFileSync(flag, "x"); throw new Error("stopped after 3 steps"); }
  while (k < until) { k += 1; trail.push(k * k); jobtracker.checkpoint(); }
  return trail.reduce((a, b) => a + b, 0);
}
### code job
const job = await db.createJob(rc.view(0), [\`walk(5, ${JSON.stringify(flag)})\`], sc);
console.log("job", job.id, await job.wait({ timeout: 60_000 }));
`);
    assert.equal(made.code, 0, made.stderr);
    const jobLine = /job (\d+) failed/.exec(cellText(made.cells.get("job")));
    assert.ok(jobLine, cellText(made.cells.get("job")));
    const id = Number(jobLine[1]);
    assert.deepEqual((await listCheckpoints(original.store, id)).map((c) => c.idx), [0, 1, 2]);

    const file = join(original.work, "backup.jsonl");
    const dump = await original.nbjob("db", "dump", file);
    assert.equal(dump.code, 0, dump.stderr);
    const restore = await restored.nbjob("db", "restore", file);
    assert.equal(restore.code, 0, restore.stderr);
    assert.match(restore.stdout, /^restored \d+ rows \(1 job\)/);
    assert.match(restore.stdout, /signed with the cluster key they were made with.*NBJOB_CLUSTER_KEY.*rerun JOB --sign/s);

    // The flag file exists now, so the resumed run goes on past step 3 on the restored store's worker.
    const ran = await restored.runNotebook(`
### code setup
const db = new DBWrapper();
const rc = await Client.connect();
const job = await db.job(${id});
console.log("restored", job.id, job.record.status);
### code resume
const resumed = await job.resume(rc.view(0));
console.log("resumed", resumed.id, await resumed.result);
### code rerun
const again = await job.rerun(rc.view(0));
console.log("rerun", again.id, await again.result);
### code analysis
// The job's variables, declared as the job's snippet declares them (the analysis runs in the job's program).
let k = 0;
let trail: number[] = [];
function seen() { return { k, last: trail[trail.length - 1] }; }
const analyzer = await db.createAnalyzer(rc.view(0), job, [seen]);
console.log("rows", JSON.stringify(await analyzer.result));
`);
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(cellText(ran.cells.get("setup")), new RegExp(`restored ${id} failed`));
    // 1 + 4 + 9 restored, then 16 + 25 computed on the new worker.
    const resumedLine = /resumed (\d+) 55/.exec(cellText(ran.cells.get("resume")));
    assert.ok(resumedLine, cellText(ran.cells.get("resume")));
    const resumedRow = await getJob(restored.store, Number(resumedLine[1]));
    assert.equal(resumedRow?.resumed_from, id);
    assert.equal(resumedRow?.resumed_from_checkpoint, 2);
    assert.equal(resumedRow?.status, "done");
    assert.deepEqual((await listCheckpoints(restored.store, resumedRow!.id)).map((c) => c.idx), [0, 1, 2, 3, 4]);
    // The new store numbers its jobs after the restored ones.
    assert.ok(resumedRow!.id > id, `new job ${resumedRow!.id} after restored ${id}`);

    // A rerun starts from scratch with the same bundle: the flag is there, so it runs to the end.
    assert.match(cellText(ran.cells.get("rerun")), /rerun \d+ 55/);
    assert.match(cellText(ran.cells.get("analysis")), /analysed 3\/3 checkpoints of job \d+ \(seen\)/);
    assert.equal(/^rows .*$/m.exec(cellText(ran.cells.get("analysis")))?.[0], `rows [{"checkpoint":0,"k":1,"last":1},{"checkpoint":1,"k":2,"last":4},{"checkpoint":2,"k":3,"last":9}]`);
    // The original store is untouched by all this.
    assert.equal((await original.store.query("SELECT count(*)::int AS n FROM nbjob.jobs")).rows[0].n, 1);
  });
});
