// Jobs with a frontend that answers: the review before submit (driven through input() by Debian's
// jupyter_client with allow_stdin), interrupting a cell that awaits a job, and jobs that outlive
// the notebook that submitted them. Real cluster of 2 workers, fresh database.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { getJob, listJobs } from "../store";
import { withJupyterClient } from "./kernel-helpers";
import { cellText, jobsEnvWithKernels } from "./jobs-env";

const { env, kernels } = jobsEnvWithKernels("jobs_interactive");

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const SETUP = `
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
const view = rc.view(0);
const params = new ParamLogger({ x: 1 });
`;
const DECLS = `
@sc
function double(n: number): number {
  return 2 * n;
}
@sc
function unused(): string {
  return "not needed";
}
@sc
function pause(ms: number): Promise<string> {
  return new Promise((resolve) => setTimeout(() => resolve("rested"), ms));
}
`;

describe("jobs with a frontend", () => {
  test("review: the user sees snippets, entries and parameters, changes a value, drops a snippet, shows the code, submits or cancels", async () => {
    const result = await withJupyterClient(kernels, `
run(${JSON.stringify(SETUP)}, timeout=60)
run(${JSON.stringify(DECLS)}, timeout=60)

def answering(answers, code, **kw):
    prompts = []
    def stdin_hook(msg):
        prompts.append(msg["content"]["prompt"])
        kc.input(answers.pop(0) if answers else "cancel")
    ran = run(code, allow_stdin=True, stdin_hook=stdin_hook, timeout=60, **kw)
    texts = []
    for o in ran["outputs"]:
        c = o["content"]
        if o["type"] in ("display_data", "execute_result"):
            texts.append(c["data"].get("text/plain", ""))
        elif o["type"] == "stream":
            texts.append(c["text"])
        elif o["type"] == "error":
            texts.append(c["ename"] + ": " + c["evalue"])
    return {"prompts": prompts, "text": "\\n".join(texts), "status": ran["reply"]["status"]}

result["edited"] = answering(["set x=9", "drop unused", "show", ""], 'const job = await db.createJob(view, ["double(params.x)"], sc, { params });\\nawait job.result')
result["edited_id"] = run("job.id")["outputs"][0]["content"]["data"]["text/plain"]
result["cancelled"] = answering(["list", "cancel"], 'await db.createJob(view, ["double(params.x)"], sc, { params })')
result["broken"] = answering(["drop double", "submit", "cancel"], 'await db.createJob(view, ["double(params.x)"], sc, { params })')
result["skipped"] = answering([], 'const quiet = await db.createJob(view, ["double(params.x)"], sc, { params, review: false });\\nawait quiet.result')
result["sweep"] = answering(["drop unused", ""], 'const g = await db.createJobs(rc.loadBalanced(), ["double(params.x)"], sc, { params, grid: { x: [2, 3] } });\\nJSON.stringify((await g.results).map((r) => r.result))')
# jupyter_client's own answer when its stdin is at its end; then a program that answers nonsense.
result["eof"] = answering(["\\x04"], 'await db.createJob(view, ["double(params.x)"], sc, { params })')
result["nonsense"] = answering(["zzz"] * 25, 'await db.createJob(view, ["double(params.x)"], sc, { params })')
result["jobs"] = run('(await db.jobs()).map((j) => j.result).join(",")')["outputs"][0]["content"]["data"]["text/plain"]
`);
    const edited = result.edited as { prompts: string[]; text: string; status: string };
    assert.equal(edited.status, "ok", edited.text);
    assert.equal(edited.prompts.length, 4);
    assert.match(edited.text, /Job review/);
    assert.match(edited.text, /Snippets \(3\):[\s\S]*double[\s\S]*unused[\s\S]*pause/);
    assert.match(edited.text, /\(3 lines, \d+ chars\)/);
    assert.match(edited.text, /Entries[\s\S]*1\. double\(params\.x\)/);
    assert.match(edited.text, /x = 1/);
    assert.match(edited.text, /Set x = 9\./);
    assert.match(edited.text, /Dropped snippet #\d \(unused\)/);
    assert.match(edited.text, /\/\/ nbjob bundle: 2 snippets/, "show displays the full code");
    assert.match(edited.text, /^18$/m, "the job ran with x = 9");
    // The block is shown once; each answer shows only what it changed.
    const count = (text: string, what: RegExp) => (text.match(new RegExp(what.source, "g")) ?? []).length;
    assert.equal(count(edited.text, /Job review/), 1, edited.text);
    assert.equal(count(edited.text, /Snippets \(\d\):/), 1, edited.text);
    assert.equal(count(edited.text, /set NAME=VALUE {5}change a parameter/), 1, "the help is in the block only");
    assert.match(edited.text, /Dropped snippet #2 \(unused\)\. Snippets now: #1 double, #2 pause\./);
    // After submit the cell says which job it made and where it went.
    assert.match(edited.text, new RegExp(`^job ${result.edited_id} submitted to rc\\.view\\(0\\) \\(worker \\S+\\)$`, "m"), edited.text);

    const cancelled = result.cancelled as { text: string; status: string };
    assert.equal(cancelled.status, "error");
    assert.match(cancelled.text, /the job was cancelled in review; nothing was stored or sent/);
    assert.equal((cancelled.text.match(/Job review/g) ?? []).length, 2, "list shows the review again");
    assert.doesNotMatch(cancelled.text, /submitted to/);

    const broken = result.broken as { text: string; prompts: string[] };
    assert.match(broken.text, /does not type-check[\s\S]*Cannot find name 'double'/);
    assert.match(broken.text, /Not submitted: the job does not type-check/);
    assert.equal(broken.prompts.length, 3);
    assert.equal((broken.text.match(/Cannot find name 'double'/g) ?? []).length, 1, "the problem is shown when it appears, not after every answer");
    assert.equal((broken.text.match(/Job review/g) ?? []).length, 1);

    const skipped = result.skipped as { text: string; prompts: string[] };
    assert.deepEqual(skipped.prompts, [], "review: false asks nothing");
    assert.match(skipped.text, /^2$/m);
    const sweep = result.sweep as { text: string; prompts: string[] };
    assert.equal(sweep.prompts.length, 2);
    assert.match(sweep.text, /Sweep: 2 jobs, x in \[2,3\]/);
    assert.match(sweep.text, /^jobs \d+, \d+ \(sweep group \d+\) submitted to rc\.loadBalanced\(\) \(any idle worker\)$/m, sweep.text);
    assert.doesNotMatch(skipped.text, /submitted to/, "without a review the cell stays as it was");
    assert.match(sweep.text, /'\[4,6\]'/);
    // Nobody left to answer: the review ends as a cancel instead of asking forever.
    const eof = result.eof as { text: string; prompts: string[]; status: string };
    assert.equal(eof.prompts.length, 1);
    assert.match(eof.text, /Not submitted: the frontend's input ended \(end of file\)[\s\S]*the job was cancelled in review; nothing was stored or sent/);
    const nonsense = result.nonsense as { text: string; prompts: string[] };
    assert.equal(nonsense.prompts.length, 20);
    assert.match(nonsense.text, /Unknown answer "zzz"\./);
    assert.match(nonsense.text, /Not submitted: 20 answers were not commands \(the last: "zzz"\)/);
    // Only the submitted jobs were stored, newest first: the sweep (6, 4), the unreviewed one (2), the edited one (18).
    assert.equal(result.jobs, "'6,4,2,18'");
  });

  test("interrupting a cell that awaits a job stops the waiting, not the job", async () => {
    const result = await withJupyterClient(kernels, `
run(${JSON.stringify(SETUP)}, timeout=60)
run(${JSON.stringify(DECLS)}, timeout=60)
run('const long = await db.createJob(view, ["pause(3000)"], sc, { review: false });', timeout=60)
msg_id = kc.execute("await long.result")
time.sleep(1.0)
km.interrupt_kernel()
reply = kc.get_shell_msg(timeout=20)
result["interrupted"] = reply["content"]["status"]
result["after"] = run("[long.status, await long.result, long.status]", timeout=30)["outputs"]
`);
    assert.equal(result.interrupted, "error");
    const after = JSON.stringify(result.after);
    assert.match(after, /'running', 'rested', 'done'|'queued', 'rested', 'done'/, after);
  });

  test("a job submitted from a notebook that then exits still runs to the end (direct and load-balanced)", async () => {
    const run = await env.runNotebook(`
### code setup
${SETUP}
### code decls
${DECLS}
### code submit
const direct = await db.createJob(view, ["pause(1500)"], sc, { tags: ["orphan"] });
const balanced = await db.createJob(rc.loadBalanced(), ["pause(1500)"], sc, { tags: ["orphan"] });
console.log("submitted", direct.status, balanced.status);
`);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("submit")), /submitted queued queued/);
    const ids = (await listJobs(env.store, { tag: "orphan" })).map((j) => j.id);
    assert.equal(ids.length, 2);
    const deadline = Date.now() + 20_000;
    let statuses: string[] = [];
    while (Date.now() < deadline) {
      statuses = await Promise.all(ids.map(async (id) => (await getJob(env.store, id))!.status));
      if (statuses.every((s) => s === "done")) break;
      await sleep(250);
    }
    assert.deepEqual(statuses, ["done", "done"]);
    const results = await Promise.all(ids.map(async (id) => (await getJob(env.store, id))!.result_text));
    assert.deepEqual(results, ["'rested'", "'rested'"]);
  });
});
