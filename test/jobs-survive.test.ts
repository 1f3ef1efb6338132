// A notebook kernel killed with SIGKILL while its 20-second jobs run: the jobs do not depend on
// it. Our kernel is started by Debian's jupyter_client, submits one job to a worker's direct view
// (whose output streams to that kernel over a comm) and one load-balanced job, and is killed once
// both run. A new kernel finds both with db.job(id), they finish, their results arrive, and the
// workers take the next jobs (no state left over from the dead kernel gets in the way).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { getJob, readLogs } from "../store";
import { withJupyterClient } from "./kernel-helpers";
import { jobsEnvWithKernels } from "./jobs-env";

const { env, kernels } = jobsEnvWithKernels("jobs_survive");

const SETUP = `
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
`;
const DECLS = `
@sc
async function slow(ms: number): Promise<string> {
  console.log("started");
  await new Promise((resolve) => setTimeout(resolve, ms));
  console.log("finished");
  return "survived " + ms;
}
@sc
function quick(n: number): number {
  return n + 1;
}
`;

describe("jobs outlive a notebook kernel killed with SIGKILL", () => {
  test("a new kernel finds the running jobs, they finish, their results arrive, and the next jobs run", { timeout: 150_000 }, async () => {
    const result = await withJupyterClient(kernels, `
from jupyter_client.manager import start_new_kernel

def value(ran):
    t = text_of(ran)
    assert t is not None, ran
    return t

def wait_running(client, name):
    deadline = time.time() + 30
    while time.time() < deadline:
        status = value(run("(await %s.refresh(), %s.status)" % (name, name), client=client))
        if status == "'running'":
            return
        time.sleep(0.2)
    raise AssertionError(name + " never started: " + status)

run(${JSON.stringify(SETUP)}, timeout=60)
run(${JSON.stringify(DECLS)}, timeout=60)
result["direct"] = int(value(run('const direct = await db.createJob(rc.view(0), ["slow(20000)"], sc, { review: false, tags: ["survive"] });\\ndirect.id', timeout=60)))
wait_running(kc, "direct")
result["balanced"] = int(value(run('const balanced = await db.createJob(rc.loadBalanced(), ["slow(20000)"], sc, { review: false, tags: ["survive"] });\\nbalanced.id', timeout=60)))
wait_running(kc, "balanced")

pid = km.provisioner.pid
os.kill(pid, signal.SIGKILL)
result["killed_at"] = time.time()
deadline = time.time() + 10
while km.is_alive() and time.time() < deadline:
    time.sleep(0.1)
result["old_alive"] = km.is_alive()

km2, kc2 = start_new_kernel(kernel_name="nbjob", startup_timeout=60)
print("KERNEL_PID %d" % km2.provisioner.pid, flush=True)
try:
    run(${JSON.stringify(SETUP)}, client=kc2, timeout=60)
    run(${JSON.stringify(DECLS)}, client=kc2, timeout=60)
    found = {}
    for name in ("direct", "balanced"):
        jid = result[name]
        found[name] = value(run("const j%d = await db.job(%d);\\nj%d.status" % (jid, jid, jid), client=kc2, timeout=30))
    result["found"] = found
    results = {}
    for name in ("direct", "balanced"):
        jid = result[name]
        results[name] = value(run("await j%d.result" % jid, client=kc2, timeout=60))
    result["results"] = results
    result["results_at"] = time.time()
    # The workers go on: a direct job on the same worker, and a load-balanced one.
    result["next_direct"] = value(run('await (await db.createJob(rc.view(0), ["quick(41)"], sc, { review: false })).result', client=kc2, timeout=60))
    result["next_balanced"] = value(run('await (await db.createJob(rc.loadBalanced(), ["quick(1)"], sc, { review: false })).result', client=kc2, timeout=60))
finally:
    kc2.stop_channels()
    km2.shutdown_kernel(now=False)
`, 150_000);

    assert.equal(result.old_alive, false, "the first kernel is dead");
    assert.deepEqual(result.found, { direct: "'running'", balanced: "'running'" }, "the new kernel finds both jobs still running");
    assert.deepEqual(result.results, { direct: "'survived 20000'", balanced: "'survived 20000'" });
    assert.equal(result.next_direct, "42");
    assert.equal(result.next_balanced, "2");
    for (const name of ["direct", "balanced"] as const) {
      const row = (await getJob(env.store, result[name] as number))!;
      assert.equal(row.status, "done");
      assert.equal(row.result_text, "'survived 20000'");
      // It ran its full 20 s after the kill, on the worker, and its output was stored.
      assert.ok(row.finished_at!.getTime() - row.started_at!.getTime() >= 19_500, `job ${row.id} ran ${row.finished_at!.getTime() - row.started_at!.getTime()} ms`);
      assert.ok(row.finished_at!.getTime() / 1000 > (result.killed_at as number), `job ${row.id} finished after the kernel was killed`);
      const lines = (await readLogs(env.store, row.id)).map((l) => l.line);
      assert.deepEqual(lines, ["started", "finished"]);
    }
  });
});
