// Shared by the kernel tests: installs the nbjob kernelspec into a private Jupyter data dir and
// drives the kernel from Debian's jupyter_client (/usr/bin/python3), the client users run.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { join } from "node:path";
import { installKernelSpec } from "../kernel/kernelspec";

export interface KernelTestEnv {
  dir: string;
  env: NodeJS.ProcessEnv;
  /** Kernel processes the Python scripts reported, killed by `cleanup` if still alive. */
  kernelPids: Set<number>;
  cleanup(): void;
}

/** A temp JUPYTER_DATA_DIR holding this checkout's kernelspec, and a temp NBJOB_HOME. */
export function kernelTestEnv(): KernelTestEnv {
  const dir = mkdtempSync(join(tmpdir(), "nbjob-kernel-test-"));
  const env = {
    ...process.env,
    JUPYTER_DATA_DIR: join(dir, "jupyter"),
    JUPYTER_RUNTIME_DIR: join(dir, "runtime"),
    NBJOB_HOME: join(dir, "home"),
    // Debian's Python prints debugger warnings on stderr otherwise; they would bury real errors.
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
  };
  installKernelSpec({ kind: "user" }, env);
  const kernelPids = new Set<number>();
  return {
    dir, env, kernelPids,
    cleanup() {
      for (const pid of kernelPids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone: the script shut it down
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let resultFiles = 0;

const PRELUDE = `
import json, sys, time, os, signal, hmac, hashlib
from queue import Empty
from jupyter_client.manager import KernelManager
# jupyter_client picks free ports, then the kernel binds them: on a busy machine another process
# can be handed one in between, and the kernel dies at once ("Address already in use"). Start it
# again on new ports then, as jupyter_client's restarter does. A kernel that hangs is not retried.
for attempt in range(3):
    km = KernelManager(kernel_name="nbjob")
    if os.environ.get("NBJOB_TEST_PORTS"):
        km.shell_port, km.iopub_port, km.stdin_port, km.control_port, km.hb_port = map(int, os.environ["NBJOB_TEST_PORTS"].split(","))
    km.start_kernel()
    print("KERNEL_PID %d" % km.provisioner.pid, flush=True)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        break
    except RuntimeError:
        kc.stop_channels()
        died = not km.is_alive()
        km.shutdown_kernel(now=True)
        if not died or attempt == 2:
            raise
result = {}

def run(code, client=None, timeout=30, **kw):
    """Executes code; returns the reply content and the iopub outputs (status and execute_input left out)."""
    client = client or kc
    outputs = []
    def hook(m):
        if m["msg_type"] not in ("status", "execute_input"):
            outputs.append({"type": m["msg_type"], "content": m["content"]})
    reply = client.execute_interactive(code, output_hook=hook, timeout=timeout, **kw)
    return {"reply": reply["content"], "outputs": outputs}

def text_of(ran):
    """text/plain of the execute_result, or None."""
    for o in ran["outputs"]:
        if o["type"] == "execute_result":
            return o["content"]["data"].get("text/plain")
    return None

def iopub_until_idle(parent_id, timeout=10):
    msgs = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=0.5)
        except Empty:
            continue
        if m["parent_header"].get("msg_id") != parent_id:
            continue
        msgs.append({"type": m["msg_type"], "content": m["content"]})
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    return msgs
`;

/** True when nothing listens on `port` of 127.0.0.1 right now. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * `count` consecutive free ports of 127.0.0.1 below the system's ephemeral range (32768 and up on
 * Linux), for a server a test starts on a port it chose (a Jupyter Server, a kernel restarted on
 * the same ports, as frontends do). A port the system hands out for port 0 can be handed again,
 * to any process binding port 0 or connecting out, between the test choosing it and the server
 * binding it (a kernel restart once met a stranger there, "Invalid Signature"). Below the range
 * only a process asking for that very port can take it.
 */
export async function quietPorts(count: number): Promise<number[]> {
  for (;;) {
    const base = 20_000 + count * Math.floor(Math.random() * (12_000 / count));
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if ((await Promise.all(ports.map(portIsFree))).every(Boolean)) return ports;
  }
}

/** Five ports for a kernel that is restarted on the same ports; see quietPorts. */
export function portsForRestart(): Promise<number[]> {
  return quietPorts(5);
}

/**
 * Runs \`body\` (Python, with \`km\`, \`kc\`, \`run\`, \`result\` in scope) against a fresh nbjob
 * kernel and returns what it put in \`result\`. The kernel is shut down at the end.
 */
export function withJupyterClient(test: KernelTestEnv, body: string, timeoutMs = 120_000, ports?: number[]): Promise<Record<string, unknown>> {
  const indented = body.trim().split("\n").map((l) => "    " + l).join("\n");
  // The result goes to a file of its own, not stdout: once in CI a large result line printed on
  // stdout came back cut short (an unterminated JSON string; the writer that split it was not
  // found, and the kernel inherits that stdout). Nothing else writes to the file.
  const resultFile = join(test.dir, `result-${process.pid}-${++resultFiles}.json`);
  const script = `${PRELUDE}\ntry:\n${indented}\nfinally:\n    kc.stop_channels()\n    km.shutdown_kernel(now=False)\nwith open(${JSON.stringify(resultFile)}, "w") as out:\n    json.dump(result, out, default=str)\n`;
  return new Promise((resolve, reject) => {
    const env = ports ? { ...test.env, NBJOB_TEST_PORTS: ports.join(",") } : test.env;
    const child = execFile("/usr/bin/python3", ["-c", script], { env, cwd: test.dir, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      for (const match of stdout.matchAll(/^KERNEL_PID (\d+)$/gm)) test.kernelPids.add(Number(match[1]));
      const written = existsSync(resultFile) ? readFileSync(resultFile, "utf8") : undefined;
      rmSync(resultFile, { force: true });
      if (err || written === undefined) {
        // Python's traceback first: a test report that cuts long messages still shows why.
        // (Python's shutdown noise, "Exception ignored in: …__del__", comes after the error that matters.)
        const traceback = stderr.split(/^Exception ignored in/m)[0].trim();
        const why = traceback.split("\n").slice(-8).join("\n") || (err ? `exit ${err.code ?? ""} ${err.signal ?? ""}`.trim() : "no result written");
        reject(new Error(`jupyter_client script failed: ${why}\nstdout:\n${stdout}\n(${err?.message ?? "no result written"})`));
        return;
      }
      resolve(JSON.parse(written) as Record<string, unknown>);
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      for (const match of chunk.toString().matchAll(/^KERNEL_PID (\d+)$/gm)) test.kernelPids.add(Number(match[1]));
    });
  });
}
