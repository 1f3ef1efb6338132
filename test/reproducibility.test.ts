// Issue 7 as a user meets it: a notebook (run by `nbjob run` against 2 real workers and a fresh
// PostgreSQL) makes two jobs with two versions of a declaration; then the environment record,
// `nbjob rerun | cancel | log | history`, and `%nbjob restore | history` typed into a fresh
// kernel (Debian's jupyter_client) where the declaration exists in no cell and no collector.
import assert from "node:assert/strict";
import { readFileSync, symlinkSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client as PgClient } from "pg";
import { createJob, declarationInJob, getEnvironment, listJobs, requireJob } from "../store";
import type { DbJob } from "../store";
import { cellText, JobsEnv, ROOT } from "./jobs-env";
import { kernelTestEnv, withJupyterClient } from "./kernel-helpers";
import type { KernelTestEnv } from "./kernel-helpers";

const env = new JobsEnv("repro");
let kernel: KernelTestEnv | undefined;
before(async () => {
  // The notebook imports "diff" (a dependency of nbjob): resolvable from the notebook's directory.
  symlinkSync(join(ROOT, "node_modules"), join(env.work, "node_modules"));
  await env.start();
});
after(async () => {
  kernel?.cleanup();
  await env.cleanup();
});

const NOTEBOOK = `
### code setup
const sc = new SnippetCollector();
const params = new ParamLogger();
params.n = 3;
const db = new DBWrapper();
const rc = await Client.connect();
### code imp
%%snip sc
import { createTwoFilesPatch } from "diff";
### code step
@sc
function step(x: number): number {
  return x * 2 + 1;
}
### code train
%%snip sc
let iteration = 0;
const values = [0];
function train() {
  while (iteration < params.n) {
    iteration += 1;
    values[0] = step(values[0]);
  }
  return { iteration, values, lines: createTwoFilesPatch("a", "b", "x\\n", "y\\n").split("\\n").length };
}
### code run1
const job = await db.createJob(rc.loadBalanced(), ["train()"], sc, { params, review: false });
console.log("job", job.id, JSON.stringify(await job.result));
### code env
console.log("env", JSON.stringify(await job.environment()));
### code redefine
@sc
function step(x: number): number {
  return x * 3;
}
### code run2
const job2 = await db.createJob(rc.loadBalanced(), ["train()"], sc, { params, review: false });
console.log("job2", job2.id, JSON.stringify(await job2.result));
### code slow
const sc3 = new SnippetCollector();
### code nap
@sc3
function nap(): Promise<string> {
  return new Promise((resolve) => setTimeout(() => resolve("woke"), 120_000));
}
### code slowjob
const slow = await db.createJob(rc.loadBalanced(), ["nap()"], sc3, { review: false });
console.log("slow", slow.id);
### code forget
sc.remove("step");
sc.snippets.map((s) => s.names.join()).join(" ")
`;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("reproducibility", () => {
  let job1: DbJob;
  let job2: DbJob;
  let slowId: number;

  test("a notebook makes two versions of step, each run as a job", async () => {
    const run = await env.runNotebook(NOTEBOOK);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("run1")), /^job 1 \{"iteration":3,"values":\[7\],"lines":\d+\}$/m);
    assert.match(cellText(run.cells.get("run2")), /^job2 2 \{"iteration":3,"values":\[0\],"lines":\d+\}$/m);
    // job.environment() in the notebook: what the worker recorded.
    const envLine = /^env (.*)$/m.exec(cellText(run.cells.get("env")));
    assert.ok(envLine, cellText(run.cells.get("env")));
    const seen = JSON.parse(envLine[1]) as { node: string; nbjob: string; packages: Record<string, string>; host: string; worker: string };
    assert.equal(seen.node, process.version);
    assert.deepEqual(seen.packages, { diff: JSON.parse(readFileSync(join(ROOT, "node_modules", "diff", "package.json"), "utf8")).version });
    assert.equal(seen.host, hostname());
    assert.ok(seen.worker);
    slowId = Number(/^slow (\d+)$/m.exec(cellText(run.cells.get("slowjob")))?.[1]);
    assert.ok(slowId > 2);
    assert.doesNotMatch(cellText(run.cells.get("forget")), /step/);
    job1 = await requireJob(env.store, 1);
    job2 = await requireJob(env.store, 2);
  });

  test("each job records its environment: node, nbjob, lock files, imported packages, host and worker", async () => {
    const linked = await waitFor("job 2's environment", async () => (await requireJob(env.store, 2)).environment_hash ?? undefined);
    const record = await getEnvironment(env.store, linked);
    assert.ok(record);
    assert.equal(record.node_version, process.version);
    assert.equal(record.nbjob_version, JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version);
    assert.match(record.lockfile_hash ?? "", /^[0-9a-f]{64}$/);
    assert.deepEqual(Object.keys(record.packages), ["diff"]);
    // Same imports, same worker directory: one stored environment shared by both jobs.
    assert.equal((await requireJob(env.store, 1)).environment_hash, linked);
    const shown = await env.nbjob("show", "1");
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^environment node ${process.version.replace(/\./g, "\\.")}, nbjob \\S+, lock files [0-9a-f]{12}, on ${hostname()}$`, "m"));
    assert.match(shown.stdout, /^packages {4}diff@\d+\.\d+\.\d+$/m);
    assert.match(shown.stdout, /^worker {6}\S+ on /m);
  });

  test("nbjob cancel stops a running job; a finished job is left as it is", async () => {
    await waitFor("the slow job to run", async () => ((await requireJob(env.store, slowId)).status === "running" ? true : undefined));
    const cancelled = await env.nbjob("cancel", String(slowId));
    assert.equal(cancelled.code, 0, cancelled.stderr);
    // It returns once the worker has stopped the job and stored its last writes (the run's claim cleared).
    assert.match(cancelled.stdout, new RegExp(`^job ${slowId} cancelled \\(it was running\\); its worker stopped it and stored its last output$`, "m"));
    const row = await requireJob(env.store, slowId);
    assert.equal(row.status, "cancelled");
    assert.equal(row.claim, null);
    const again = await env.nbjob("cancel", String(slowId));
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`job ${slowId} is already cancelled`));
    const done = await env.nbjob("cancel", "1");
    assert.equal(done.code, 1);
    assert.match(done.stderr, /job 1 is already done; nothing to cancel/);
    // A queued job (for a worker that never comes) is cancelled before it starts.
    const queued = await createJob(env.store, { bundleHash: job1.bundle_hash, targetWorker: "no-such-worker" });
    const q = await env.nbjob("cancel", String(queued.id));
    assert.equal(q.code, 0, q.stderr);
    assert.match(q.stdout, /cancelled \(it was queued\)/);
    const unknown = await env.nbjob("cancel", "999");
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^nbjob: there is no job 999/);
  });

  test("nbjob rerun: the same bundle as a new job, the same result; --wait prints it", async () => {
    const rerun = await env.nbjob("rerun", "1", "--wait", "--timeout", "60");
    assert.equal(rerun.code, 0, rerun.stderr);
    const [first, ...rest] = rerun.stdout.trimEnd().split("\n");
    const newId = Number(/^job (\d+) \(rerun of job 1\) queued/.exec(first)?.[1]);
    assert.ok(newId > slowId, first);
    const row = await requireJob(env.store, newId);
    assert.equal(row.status, "done");
    assert.equal(row.rerun_of, 1);
    assert.equal(row.bundle_hash, job1.bundle_hash);
    assert.equal(row.result_text, job1.result_text);
    assert.deepEqual(row.result, job1.result);
    assert.equal(rest.join("\n"), job1.result_text);
    // Without --wait: just the new id, for a script.
    const quick = await env.nbjob("rerun", "2");
    assert.equal(quick.code, 0, quick.stderr);
    const quickId = Number(/^job (\d+)$/.exec(quick.stdout.trim())?.[1]);
    const finished = await waitFor("the quick rerun", async () => {
      const r = await requireJob(env.store, quickId);
      return r.status === "done" ? r : undefined;
    }, 60_000);
    assert.equal(finished.result_text, job2.result_text);
    assert.equal(finished.rerun_of, 2);
  });

  test("nbjob rerun: an unknown job, or one whose bundle is gone, creates nothing", async () => {
    const before = (await listJobs(env.store, { limit: 1000 })).length;
    const unknown = await env.nbjob("rerun", "999");
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^nbjob: there is no job 999/);
    const bad = await env.nbjob("rerun", "one");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /JOB must be a job id/);
    // A damaged store: a job whose bundle row was deleted behind the foreign key's back.
    const orphan = await createJob(env.store, { bundleHash: job1.bundle_hash, targetWorker: "no-such-worker" });
    await env.store.query("UPDATE nbjob.jobs SET status = 'cancelled', finished_at = now() WHERE id = $1", [orphan.id]);
    const lonely = "f".repeat(64);
    const admin = new PgClient({ connectionString: env.url });
    await admin.connect();
    try {
      await admin.query("SET session_replication_role = replica");
      await admin.query("INSERT INTO nbjob.bundles (hash, source, params, entries) VALUES ($1, '', '{}', '{}')", [lonely]);
      await admin.query("UPDATE nbjob.jobs SET bundle_hash = $2 WHERE id = $1", [orphan.id, lonely]);
      await admin.query("DELETE FROM nbjob.bundles WHERE hash = $1", [lonely]);
    } finally {
      await admin.end();
    }
    const gone = await env.nbjob("rerun", String(orphan.id));
    assert.equal(gone.code, 2);
    assert.match(gone.stderr, new RegExp(`job ${orphan.id}'s bundle ffffffffffff is not in the store .*no job was created`));
    assert.equal((await listJobs(env.store, { limit: 1000 })).length, before + 1);
  });

  test("nbjob log and history: per job, what changed since the previous job of its notebook", async () => {
    const log = await env.nbjob("log", "--limit", "50");
    assert.equal(log.code, 0, log.stderr);
    const job2Block = log.stdout.split(/^(?=job )/m).find((block) => block.startsWith("job 2 "));
    assert.ok(job2Block, log.stdout);
    assert.match(job2Block, /^ {4}changed {2}step {2}[0-9a-f]{8} -> [0-9a-f]{8}$/m);
    assert.doesNotMatch(job2Block, /train/);
    const history = await env.nbjob("history", "step");
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, /^step: 2 versions$/m);
    assert.match(history.stdout, /^version 1 .* used by jobs 1, \d+/m);
    assert.match(history.stdout, /return x \* 2 \+ 1;/);
    assert.match(history.stdout, /^version 2 .* used by jobs 2, \d+/m);
    // Per job, where step changed since the previous job of its notebook (which `nbjob run` names).
    assert.match(history.stdout, /^ {2}job 2 {2}version 1 -> version 2 since job 1 \(notebook \/.*\/nb-\d+\.ipynb\)$/m);
    assert.match(history.stdout, /^ {2}job 1 {2}version 1 appeared \(first job of notebook \/.*\/nb-\d+\.ipynb\)$/m);
    const byName = await env.nbjob("log", "--name", "step");
    assert.equal(byName.code, 0, byName.stderr);
    assert.match(byName.stdout, /^job 2 .*\n {4}notebook \/.*\/nb-\d+\.ipynb: compared with job 1\n {4}changed {2}step {2}[0-9a-f]{8} -> [0-9a-f]{8}$/m);
  });

  test("%nbjob restore in a fresh kernel: the exact stored declaration as the next cell; errors name the problem", async () => {
    kernel = kernelTestEnv();
    kernel.env.NBJOB_DATABASE_URL = env.url;
    const v1 = await declarationInJob(env.store, 1, "step");
    const v2 = await declarationInJob(env.store, 2, "step");
    assert.ok(v1 && v2 && v1.source !== v2.source);
    const r = await withJupyterClient(kernel, `
for key, code in [
    ("v1", "%nbjob restore 1 step"),
    ("v2", "%nbjob restore 2 step"),
    ("whole", "%nbjob restore 1"),
    ("missing", "%nbjob restore 1 nosuch"),
    ("unknown", "%nbjob restore 999 step"),
    ("bad", "%nbjob restore first"),
    ("extra", "%nbjob restore 1 step more"),
    ("history", "%nbjob history step"),
    ("never", "%nbjob history neverDeclared"),
]:
    result[key] = run(code)
result["use"] = run(result["v1"]["reply"]["payload"][0]["text"] + "\\nstep(5)")
`);
    type Ran = { reply: { status: string; payload?: { source: string; text: string; replace: boolean }[] }; outputs: { type: string; content: Record<string, unknown> }[] };
    const ran = (key: string) => r[key] as Ran;
    const error = (key: string) => {
      const found = ran(key).outputs.find((o) => o.type === "error");
      assert.ok(found, `${key}: ${JSON.stringify(ran(key))}`);
      return `${found.content.ename}: ${found.content.evalue}`;
    };
    assert.deepEqual(ran("v1").reply.payload, [{ source: "set_next_input", text: v1.source, replace: false }]);
    assert.deepEqual(ran("v2").reply.payload, [{ source: "set_next_input", text: v2.source, replace: false }]);
    const whole = ran("whole").reply.payload![0].text;
    assert.match(whole, /^\/\/ job 1's code \(bundle [0-9a-f]{12}\); it ran with params \{"n":3\} and entries \["train\(\)"\]/);
    assert.ok(whole.includes(v1.source.trimEnd()) && whole.includes("function train()") && whole.includes('import { createTwoFilesPatch } from "diff";'), whole);
    assert.match(error("missing"), /^NameError: job 1 had no declaration named "nosuch"; its declarations: createTwoFilesPatch, iteration, step, train, values/);
    assert.match(error("unknown"), /there is no job 999/);
    assert.match(error("bad"), /^UsageError: JOB must be a job id .*got "first"/);
    assert.match(error("extra"), /^UsageError: unexpected argument "more"/);
    const history = ran("history").outputs.find((o) => o.type === "display_data");
    const text = (history?.content.data as Record<string, string>)["text/plain"];
    assert.match(text, /^step: 2 versions/);
    assert.match(text, /%nbjob restore \d+ step/);
    assert.match(error("never"), /^NameError: no stored code declares "neverDeclared"/);
    // The restored cell runs: that old version is back in the notebook.
    const result = ran("use").outputs.find((o) => o.type === "execute_result");
    assert.equal((result?.content.data as Record<string, string>)["text/plain"], "11");
  });

  test("%nbjob restore reads the store of the notebook's DBWrapper, not the default one", async () => {
    kernel = kernelTestEnv();
    kernel.env.NBJOB_DATABASE_URL = env.url.replace(/\/[^/]*$/, "/nbjob_no_such_database");
    const v1 = await declarationInJob(env.store, 1, "step");
    const r = await withJupyterClient(kernel, `
result["default"] = run("%nbjob restore 1 step")
run(${JSON.stringify(`const db = new DBWrapper(${JSON.stringify(env.url)});`)})
result["wrapper"] = run("%nbjob restore 1 step")
`);
    type Ran = { reply: { status: string; payload?: { source: string; text: string }[] }; outputs: { type: string; content: Record<string, unknown> }[] };
    const failed = (r.default as Ran).outputs.find((o) => o.type === "error");
    assert.match(String(failed?.content.evalue), /nbjob_no_such_database/, JSON.stringify(r.default));
    assert.deepEqual((r.wrapper as Ran).reply.payload?.map((p) => p.text), [v1!.source], JSON.stringify(r.wrapper));
  });
});
