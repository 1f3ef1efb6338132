// Job time limits (issue 19 point 3), through a notebook on a local cluster of 2 real workers: a
// job stuck in `while (true) {}` after 3 checkpoints is stopped at its timeoutMs and failed with
// TimeoutError, keeps its checkpoints and resumes from them; a sweep's limit applies per job; bad
// limits are TypeErrors naming timeoutMs.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { getJob } from "../store";
import { listCheckpoints } from "../store/checkpoints";
import { cellText, JobsEnv, NBJOB } from "./jobs-env";

const env = new JobsEnv("job_timeouts");
before(() => env.start());
after(() => env.cleanup());

describe("job timeouts", () => {
  test("while (true) {} after 3 checkpoints with timeoutMs 1500: failed TimeoutError within seconds, checkpoints 0..2 kept, resume goes on from them; per sweep too; bad limits refused", async () => {
    const flag = join(env.work, "hung-once");
    const run = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code decl
%%snip sc
let k = 0;
jobtracker.registerCheckpointer("k");
function hang(until: number, flag: string) {
  const fs = require("node:fs");
  while (k < 3) { k += 1; jobtracker.checkpoint(); }
  // The first run hangs in a synchronous loop; the resumed run finds the flag and goes on.
  if (!fs.existsSync(flag)) { fs.writeFileSync(flag, "x"); while (true) {} }
  while (k < until) { k += 1; jobtracker.checkpoint(); }
  return k;
}
### code direct
const t0 = Date.now();
const stuck = await db.createJob(rc.view(0), [\`hang(5, ${JSON.stringify(flag)})\`], sc, { timeoutMs: 1500 });
console.log("status", await stuck.wait({ timeout: 30_000 }), "after", Date.now() - t0, "ms", stuck.id);
console.log("error", stuck.record.error_name, "|", stuck.record.error_message);
### code resume
const again = await stuck.resume();
console.log("resumed", await again.result, again.id, await again.wait({ timeout: 30_000 }));
### code sweep
const params = new ParamLogger();
params.n = 1;
### code spin
%%snip sc
function spin(n: number) { while (n > 0) {} return n; }
### code sweepjobs
const group = await db.createJobs(rc.loadBalanced(), ["spin(params.n)"], sc, { params, grid: { n: [0, 1] }, timeoutMs: 1000 });
for (const j of group.jobs) console.log("sweep", j.id, await j.wait({ timeout: 30_000 }), j.record.error_name);
### code bad
for (const bad of [-5, 0, NaN, Infinity, "100"]) {
  try { await db.createJob(rc.view(0), ["hang(1, '')"], sc, { timeoutMs: bad as any }); console.log("accepted", bad); }
  catch (err) { console.log("refused", (err as Error).name, (err as Error).message); }
}
`);
    assert.equal(run.code, 0, run.stderr);
    const direct = cellText(run.cells.get("direct"));
    const stopped = /status failed after (\d+) ms (\d+)/.exec(direct);
    assert.ok(stopped, direct);
    console.log(`timed out job reported failed ${stopped[1]} ms after createJob (limit 1500 ms)`);
    assert.ok(Number(stopped[1]) < 10_000, direct);
    assert.match(direct, /error TimeoutError \| job \d+ ran past its time limit of 1\.5 s \(timeoutMs: 1500\)/);
    const stuckId = Number(stopped[2]);
    const row = await getJob(env.store, stuckId);
    assert.equal(row?.status, "failed");
    assert.equal(row?.error_name, "TimeoutError");
    assert.equal(row?.timeout_ms, 1500);
    const ranMs = row!.finished_at!.getTime() - row!.started_at!.getTime();
    console.log(`running → failed in the store: ${ranMs} ms (limit 1500 ms, counted from the program's start on the job thread)`);
    assert.ok(ranMs >= 1500 && ranMs < 8_000, String(ranMs));
    assert.deepEqual((await listCheckpoints(env.store, stuckId)).map((c) => c.idx), [0, 1, 2]);
    const show = await env.exec(process.execPath, [NBJOB, "show", String(stuckId)]);
    assert.match(show.stdout, /time limit +1500 ms \(timeoutMs\)/, show.stdout);

    const resumed = cellText(run.cells.get("resume"));
    const res = /resumed 5 (\d+) done/.exec(resumed);
    assert.ok(res, resumed);
    const resumedRow = await getJob(env.store, Number(res[1]));
    assert.equal(resumedRow?.resumed_from_checkpoint, 2);
    assert.equal(resumedRow?.timeout_ms, 1500, "a resumed job keeps the limit");
    assert.deepEqual((await listCheckpoints(env.store, Number(res[1]))).map((c) => c.idx), [0, 1, 2, 3, 4]);

    const sweep = cellText(run.cells.get("sweepjobs"));
    assert.match(sweep, /sweep \d+ done null/);
    assert.match(sweep, /sweep \d+ failed TimeoutError/);

    const bad = cellText(run.cells.get("bad"));
    assert.doesNotMatch(bad, /accepted/);
    assert.equal(bad.match(/refused TypeError createJob: timeoutMs must be a positive, finite number/g)?.length, 5, bad);
  });
});
