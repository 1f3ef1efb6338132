// The worker kernel seen by Jupyter's own client (Debian's jupyter_client on /usr/bin/python3):
// kernel_info, execute with its iopub output, is_complete, comm_info, interrupt and heartbeat.
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const dir = mkdtempSync(join(tmpdir(), "nbjob-worker-jupyter-"));
const file = join(dir, "worker.json");
let worker: ChildProcess;

const SCRIPT = `
import json, sys, time
from jupyter_client import BlockingKernelClient
kc = BlockingKernelClient(connection_file=sys.argv[1])
kc.load_connection_file()
kc.start_channels()
kc.wait_for_ready(timeout=30)
out = {}
out["kernel_info"] = kc.kernel_info(reply=True, timeout=10)["content"]
outputs = []
def hook(m):
    if m["msg_type"] not in ("status", "execute_input"):
        outputs.append({"type": m["msg_type"], "content": m["content"]})
reply = kc.execute_interactive("const xs: number[] = [1, 2, 3];\\nconsole.log('sum of', xs.length);\\nxs.reduce((a, b) => a + b, 0)", output_hook=hook, timeout=30)
out["execute"] = {"reply": reply["content"], "outputs": outputs}
errors = []
reply = kc.execute_interactive("function fail(): never {\\n  throw new RangeError('no');\\n}\\nfail()", output_hook=lambda m: errors.append(m) if m["msg_type"] == "error" else None, timeout=30)
out["error"] = {"reply": reply["content"], "outputs": [e["content"] for e in errors]}
def is_complete(code):
    kc.is_complete(code)
    return kc.get_shell_msg(timeout=10)["content"]
out["is_complete"] = [is_complete(code) for code in ["function f() {", "f();", "const s = 'open"]]
out["comm_info"] = kc.comm_info(reply=True, timeout=10)["content"]
msg_id = kc.execute("while (true) {}")
time.sleep(0.5)
out["beating_during_loop"] = kc.hb_channel.is_beating()
kc.control_channel.send(kc.session.msg("interrupt_request", {}))
out["interrupt_reply"] = kc.get_control_msg(timeout=10)["content"]
out["interrupted"] = kc.get_shell_msg(timeout=10)["content"]
out["shutdown"] = kc.shutdown(reply=True, timeout=10)["content"]
print(json.dumps(out))
`;

before(async () => {
  worker = spawn(process.execPath, [NBJOB, "worker", "--connection-file", file, "--no-store"], { stdio: "ignore", env: { ...process.env, NBJOB_HOME: join(dir, "home") } });
  for (let waited = 0; !existsSync(file); waited += 50) {
    if (waited > 20_000) throw new Error("the worker wrote no connection file");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

after(() => {
  if (worker.exitCode === null) worker.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

test("jupyter_client talks to the worker kernel like to any kernel", async () => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile("/usr/bin/python3", ["-c", SCRIPT, file], { timeout: 120_000 }, (err, out, errText) => (err ? reject(new Error(`${err.message}\n${errText}`)) : resolve(out)));
  });
  const out = JSON.parse(stdout.trim().split("\n").pop()!);
  assert.equal(out.kernel_info.status, "ok");
  assert.equal(out.kernel_info.implementation, "nbjob-worker");
  assert.equal(out.kernel_info.language_info.name, "typescript");

  assert.equal(out.execute.reply.status, "ok");
  assert.deepEqual(out.execute.outputs, [
    { type: "stream", content: { name: "stdout", text: "sum of 3\n" } },
    { type: "execute_result", content: { execution_count: out.execute.reply.execution_count, data: { "text/plain": "6" }, metadata: {} } },
  ]);

  assert.equal(out.error.reply.status, "error");
  assert.equal(out.error.reply.ename, "RangeError");
  assert.equal(out.error.outputs.length, 1);
  assert.match(out.error.outputs[0].traceback.join("\n"), /at fail \(bundle\.ts:2:\d+\)/);

  assert.deepEqual(out.is_complete.map((r: { status: string }) => r.status), ["incomplete", "complete", "invalid"]);
  assert.deepEqual(out.comm_info, { status: "ok", comms: {} });

  assert.equal(out.beating_during_loop, true);
  assert.equal(out.interrupt_reply.status, "ok");
  assert.equal(out.interrupted.status, "error");
  assert.equal(out.interrupted.ename, "Interrupted");
  assert.equal(out.shutdown.status, "ok");
  for (let waited = 0; worker.exitCode === null && waited < 5_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(worker.exitCode, 0, "the worker exits after shutdown_request");
  assert.ok(!existsSync(file), "it removes the connection file it wrote");
});
