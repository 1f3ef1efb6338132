// KernelClient and the launcher against a real kernel: Debian's ipykernel (python3-ipykernel),
// started from its installed kernelspec, so the client is checked against Jupyter's reference.
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { checkoutKernelSpec, findKernelSpec, launchKernel, type LaunchedKernel } from "../kernel/launcher";
import { KernelClient, KernelLostError, KernelTimeoutError, type ExecuteOptions } from "../wire/client";
import type { JupyterMessage } from "../wire/message";

const PYTHON_KERNEL = "python3";
const launched: LaunchedKernel[] = [];
const clients: KernelClient[] = [];

async function startPython(): Promise<LaunchedKernel> {
  const kernel = await launchKernel({ kernelName: PYTHON_KERNEL, client: { log: () => {} } });
  launched.push(kernel);
  return kernel;
}

/**
 * ipykernel aborts the requests that reach it just after a failed cell (stop_on_error); on a busy
 * machine the next test's request can be one of them (seen once in CI: a cell with no outputs).
 * That is its rule, not lost state: ask again.
 */
async function executeNotAborted(client: KernelClient, code: string, options?: ExecuteOptions) {
  let result = await client.execute(code, options);
  for (let tries = 0; result.reply.content.status === "aborted" && tries < 5; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    result = await client.execute(code, options);
  }
  return result;
}

function text(outputs: Array<{ output_type: string }>): string {
  return JSON.stringify(outputs);
}

after(async () => {
  for (const client of clients) client.close();
  await Promise.all(launched.map((kernel) => kernel.kill()));
});

describe("KernelClient against ipykernel", () => {
  let kernel: LaunchedKernel;
  let client: KernelClient;

  before(async () => {
    kernel = await startPython();
    client = kernel.client;
  });

  test("connect waits for the kernel and reads kernel_info", async () => {
    assert.equal(client.kernelInfo?.language_info.name, "python");
    const info = await client.requestKernelInfo();
    assert.match(info.protocol_version, /^5\./);
    assert.equal(info.status, "ok");
  });

  test("execute merges a stream, returns the execute_result and counts executions", async () => {
    const first = await client.execute("print('a')\nprint('b')\n6*7");
    assert.equal(first.status, "ok");
    assert.deepEqual(first.outputs, [
      { output_type: "stream", name: "stdout", text: "a\nb\n" },
      { output_type: "execute_result", execution_count: first.executionCount, data: { "text/plain": "42" }, metadata: {} },
    ]);
    const second = await client.execute("import sys; print('err', file=sys.stderr)");
    assert.equal(second.executionCount, (first.executionCount ?? 0) + 1);
    assert.deepEqual(second.outputs, [{ output_type: "stream", name: "stderr", text: "err\n" }]);
  });

  test("iopub that arrives after the reply is still in the outputs", async () => {
    // Output flushed from a thread right before the reply races with it on another socket.
    const result = await client.execute("import threading, time\nt = threading.Thread(target=lambda: (time.sleep(0.2), print('late', flush=True)))\nt.start(); t.join()");
    assert.deepEqual(result.outputs, [{ output_type: "stream", name: "stdout", text: "late\n" }]);
  });

  test("an error is one error output and an error reply", async () => {
    const seen: string[] = [];
    const result = await client.execute("1/0", { onIopub: (msg) => seen.push(msg.header.msg_type) });
    assert.equal(result.status, "error");
    assert.equal(result.reply.content.ename, "ZeroDivisionError");
    assert.equal(result.outputs.length, 1);
    const [output] = result.outputs;
    assert.equal(output.output_type, "error");
    assert.equal(output.output_type === "error" && output.ename, "ZeroDivisionError");
    assert.deepEqual([seen[0], seen[seen.length - 1]], ["status", "status"], "onIopub sees busy first and idle last");
  });

  test("update_display_data changes the earlier output, even in an earlier cell", async () => {
    const { DisplayRegistry } = await import("../wire/iopub-outputs");
    const displays = new DisplayRegistry();
    // The test before this one ends in an error: ipykernel may abort this request.
    const first = await executeNotAborted(client, "from IPython.display import display, update_display\ndisplay({'text/plain': 'v1'}, raw=True, display_id='bar');", { displays });
    assert.deepEqual(first.outputs, [{ output_type: "display_data", data: { "text/plain": "v1" }, metadata: {} }]);
    const second = await client.execute("update_display({'text/plain': 'v2'}, raw=True, display_id='bar');", { displays });
    assert.deepEqual(second.outputs, [], "an update adds no output of its own");
    assert.deepEqual(first.outputs, [{ output_type: "display_data", data: { "text/plain": "v2" }, metadata: {} }]);
  });

  test("clear_output(wait=True) keeps the old output until the next one", async () => {
    const result = await client.execute("from IPython.display import clear_output\nprint('old')\nclear_output(wait=True)\nprint('new')");
    assert.deepEqual(result.outputs, [{ output_type: "stream", name: "stdout", text: "new\n" }]);
    const cleared = await client.execute("print('gone')\nclear_output()");
    assert.deepEqual(cleared.outputs, []);
  });

  test("input() is answered through onInput", async () => {
    const prompts: string[] = [];
    const result = await client.execute("name = input('who? ')\nprint('hello', name)", {
      onInput: async (prompt) => {
        prompts.push(prompt);
        return "Ada";
      },
    });
    assert.deepEqual(prompts, ["who? "]);
    assert.equal(text(result.outputs).includes("hello Ada"), true, text(result.outputs));
  });

  test("interrupt() stops a running cell and keeps the kernel's state", async () => {
    await client.execute("kept = 17");
    const running = client.execute("import time\ntime.sleep(30)");
    await new Promise((resolve) => setTimeout(resolve, 500));
    const started = Date.now();
    await client.interrupt();
    const result = await running;
    assert.equal(result.status, "error");
    assert.equal(result.reply.content.ename, "KeyboardInterrupt");
    assert.ok(Date.now() - started < 5_000);
    const after = await executeNotAborted(client, "kept");
    assert.equal(text(after.outputs).includes('"17"'), true, `outputs of "kept" after the interrupt: ${text(after.outputs)}, reply ${JSON.stringify(after.reply.content)}`);
  });

  test("a request that takes too long rejects saying what timed out", async () => {
    await assert.rejects(client.execute("import time\ntime.sleep(3)", { timeoutMs: 300 }), (err: Error) => {
      assert.ok(err instanceof KernelTimeoutError);
      assert.match(err.message, /did not answer execute_request on shell within 0\.3 s/);
      return true;
    });
    await client.interrupt();
    // The kernel is usable again once the interrupted sleep is done; requests that arrive while
    // it handles the KeyboardInterrupt are aborted (stop_on_error), so ask until one runs.
    let status = "aborted";
    for (let attempt = 0; attempt < 10 && status === "aborted"; attempt++) status = (await client.execute("1")).status;
    assert.equal(status, "ok");
  });

  test("comms: a target in the kernel echoes, and the kernel can open a comm to us", async () => {
    await client.execute(
      "def _echo(comm, msg):\n    comm.on_msg(lambda m: comm.send({'echo': m['content']['data']}))\nget_ipython().kernel.comm_manager.register_target('echo', _echo)",
    );
    const comm = await client.openComm("echo", { hello: true });
    const reply = new Promise((resolve) => comm.onMsg((data) => resolve(data)));
    await comm.send({ bundle: [1, 2, 3] });
    assert.deepEqual(await reply, { echo: { bundle: [1, 2, 3] } });
    assert.equal((await client.commInfo("echo"))[comm.commId], "echo");
    await comm.close();

    const opened = new Promise<{ data: unknown; target: string }>((resolve) =>
      client.registerCommTarget("from-kernel", (incoming, msg: JupyterMessage) => resolve({ data: msg.content.data, target: incoming.targetName })),
    );
    await client.execute("from ipykernel.comm import Comm\n_c = Comm(target_name='from-kernel', data={'n': 1})");
    assert.deepEqual(await opened, { data: { n: 1 }, target: "from-kernel" });
  });

  test("isAlive answers through the heartbeat", async () => {
    assert.equal(await client.isAlive(2_000), true);
  });

  test("messages signed with another key are dropped and logged", async () => {
    const lines: string[] = [];
    const stranger = await KernelClient.connect({ ...kernel.info, key: "not-the-kernel-key" }, { waitForReady: false, log: (line) => lines.push(line) });
    clients.push(stranger);
    const received: string[] = [];
    stranger.onIopub((msg) => received.push(msg.header.msg_type));
    // The kernel drops the stranger's request (wrong signature), so it never answers it ...
    await assert.rejects(stranger.requestKernelInfo({ timeoutMs: 1_000 }), KernelTimeoutError);
    // ... and what the kernel publishes (properly signed for its own key) is dropped by the stranger.
    await client.execute("print('for the right key only')");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(received, []);
    assert.ok(stranger.droppedMessages > 0);
    assert.match(lines[0], /dropped a message on iopub .*signature does not match/);
    stranger.close();
  });
});

describe("KernelClient against the nbjob kernel of this checkout", () => {
  let kernel: LaunchedKernel;

  before(async () => {
    kernel = await launchKernel({ client: { log: () => {} } });
    launched.push(kernel);
  });

  test("it is the TypeScript kernel, started without an installed kernelspec", () => {
    assert.equal(kernel.client.kernelInfo?.language_info.name, "typescript");
    assert.equal(kernel.spec.interrupt_mode, "message");
  });

  test("heartbeats answer during a synchronous loop, and interrupt stops it keeping state", async () => {
    await kernel.client.execute("let spins = 0;");
    const running = kernel.client.execute("while (true) { spins++; }");
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(await kernel.client.isAlive(2_000), true);
    await kernel.interrupt();
    const result = await running;
    assert.equal(result.status, "error");
    assert.equal(result.outputs.length, 1);
    const after = await kernel.client.execute("spins > 0");
    assert.deepEqual(after.outputs.map((o) => o.output_type === "execute_result" && o.data["text/plain"]), ["true"]);
  });

  test("await input() is answered through onInput", async () => {
    const result = await kernel.client.execute("const who = await input('who? ');\n`hello ${who}`", { onInput: async (prompt) => `Ada (asked ${prompt.trim()})` });
    assert.deepEqual(result.outputs.map((o) => o.output_type === "execute_result" && o.data["text/plain"]), ["'hello Ada (asked who?)'"]);
  });
});

describe("a kernel that dies", () => {
  test("a pending request rejects naming the exit, through the launcher", async () => {
    const kernel = await startPython();
    const running = kernel.client.execute("import time\ntime.sleep(60)");
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.kill(kernel.pid!, "SIGKILL");
    await assert.rejects(running, (err: Error) => {
      assert.ok(err instanceof KernelLostError);
      assert.match(err.message, /kernel "python3" \(pid \d+\) was killed by SIGKILL/);
      return true;
    });
    assert.equal(kernel.running, false);
    await assert.rejects(kernel.client.requestKernelInfo(), KernelLostError);
  });

  test("a client without the process notices through missing heartbeats", async () => {
    const kernel = await startPython();
    const client = await KernelClient.connect(kernel.info, { heartbeatDeadMs: 1_500, log: () => {} });
    clients.push(client);
    assert.equal(await client.isAlive(2_000), true);
    const running = client.execute("import time\ntime.sleep(60)");
    await new Promise((resolve) => setTimeout(resolve, 300));
    await kernel.kill();
    await assert.rejects(running, /stopped answering heartbeats/);
    assert.equal(await client.isAlive(300), false);
    client.close();
  });

  test("shutdown() ends the process and removes the connection file", async () => {
    const kernel = await startPython();
    const exit = await kernel.shutdown();
    assert.equal(exit.code, 0);
    assert.equal(kernel.running, false);
    const { existsSync } = await import("node:fs");
    assert.equal(existsSync(kernel.connectionFile), false);
  });
});

describe("kernelspec lookup", () => {
  test("JUPYTER_PATH comes first and unknown names say where we looked", () => {
    const dir = mkdtempSync(join(tmpdir(), "nbjob-specs-"));
    try {
      mkdirSync(join(dir, "kernels", "python3"), { recursive: true });
      writeFileSync(join(dir, "kernels", "python3", "kernel.json"), JSON.stringify({ argv: ["echo", "{connection_file}"], display_name: "shadow", language: "python" }));
      const found = findKernelSpec("python3", { ...process.env, JUPYTER_PATH: dir });
      assert.equal(found.spec.display_name, "shadow");
      assert.equal(found.dir, join(dir, "kernels", "python3"));
      assert.throws(() => findKernelSpec("no-such-kernel", { ...process.env, JUPYTER_PATH: dir }), (err: Error) => {
        assert.match(err.message, /no kernelspec named "no-such-kernel" in .*nbjob-specs-.*\/usr\/share\/jupyter\/kernels/);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a kernel that exits at start-up fails the launch with its output, started once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbjob-broken-"));
    const starts = join(dir, "starts");
    try {
      const argv = ["/bin/sh", "-c", `echo start >> ${starts}; echo 'bad config' >&2; exit 3`];
      await assert.rejects(launchKernel({ kernelSpec: { name: "broken", spec: { argv, display_name: "broken", language: "sh" } } }), (err: Error) => {
        assert.match(err.message, /kernel "broken" \(pid \d+\) exited with code 3; its last output:\nbad config/);
        return true;
      });
      assert.equal(readFileSync(starts, "utf8"), "start\n", "a failure other than a taken port is not retried");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// Run as a kernelspec's argv in front of the nbjob kernel's own: the first time, it takes the
// kernel's shell port (as another process can between the launcher choosing the ports and the
// kernel binding them) and then starts the real kernel, which fails to bind it.
const PORT_THIEF = `
const { appendFileSync, existsSync, readFileSync } = require("node:fs");
const { createServer } = require("node:net");
const { spawn } = require("node:child_process");
const [startsFile, ...kernelArgv] = process.argv.slice(2);
const connectionFile = kernelArgv[kernelArgv.indexOf("--connection-file") + 1];
const first = !existsSync(startsFile);
appendFileSync(startsFile, "start\\n");
const startKernel = () => spawn(kernelArgv[0], kernelArgv.slice(1), { stdio: "inherit" }).on("exit", (code) => process.exit(code ?? 1));
if (!first) startKernel();
else {
  const { ip, shell_port } = JSON.parse(readFileSync(connectionFile, "utf8"));
  createServer().listen(shell_port, ip, startKernel);
}
`;

describe("ports taken at start-up", () => {
  test("a kernel whose port another process took is started again on new ports", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nbjob-thief-"));
    const starts = join(dir, "starts");
    const thief = join(dir, "thief.js");
    writeFileSync(thief, PORT_THIEF);
    const nbjob = checkoutKernelSpec();
    const spec = { ...nbjob.spec, argv: [process.execPath, thief, starts, ...nbjob.spec.argv] };
    let kernel: LaunchedKernel | undefined;
    try {
      kernel = await launchKernel({ kernelSpec: { name: "nbjob", spec }, client: { log: () => {} } });
      assert.equal(readFileSync(starts, "utf8"), "start\nstart\n", "the first start failed on its taken port, the second ran");
      const result = await kernel.client.execute("20 + 22");
      assert.equal(result.status, "ok");
      assert.deepEqual(result.outputs.map((o) => o.output_type === "execute_result" && o.data["text/plain"]), ["42"]);
    } finally {
      await kernel?.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
