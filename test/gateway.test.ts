// Client.connect({ gateway }) against Debian's real jupyter-server: worker kernels from the
// kernelspec `nbjob install --worker` writes, started through the server's REST API and driven
// over its WebSocket; a notebook runs jobs on them; bad tokens, URLs and kernelspecs are clear errors.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client } from "../runtime/client";
import { listJobs, openStore } from "../store";
import type { Store } from "../store";
import { quietPorts } from "./kernel-helpers";
import { cellText, NBJOB, notebookFrom, ROOT } from "./jobs-env";
import type { RanCell } from "./jobs-env";
import { admin, databaseUrl } from "./pg-admin";

const PYTHON = "/usr/bin/python3";
const haveServer = spawnSync(PYTHON, ["-c", "import jupyter_server"]).status === 0;
const skip = haveServer ? false : "jupyter-server is not installed (apt-get install -y jupyter-server; .ci/run installs it)";

const TOKEN = `t-${process.pid}-${Date.now()}`;
const work = mkdtempSync(join(tmpdir(), "nbjob-gateway-"));
const database = `nbjob_gateway_${process.pid}`;
const dbUrl = databaseUrl(database);
const dataDir = join(work, "jupyter");
const env: NodeJS.ProcessEnv = {
  ...process.env, NBJOB_DATABASE_URL: dbUrl, NBJOB_HOME: join(work, "home"), JUPYTER_DATA_DIR: dataDir, JUPYTER_PATH: dataDir,
  JUPYTER_CONFIG_DIR: join(work, "config"), JUPYTER_RUNTIME_DIR: join(work, "runtime"), PYDEVD_DISABLE_FILE_VALIDATION: "1",
};
delete env.NBJOB_DEBUG;
let url = "";
let server: ChildProcess | undefined;
let serverLog = "";
let store: Store | undefined;

/** The server's REST API, as any client sees it. */
async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(`${url}${path}`, { ...init, headers: { Authorization: `token ${TOKEN}`, ...init.headers } });
  if (!response.ok) throw new Error(`${init.method ?? "GET"} ${path}: HTTP ${response.status} ${await response.text()}`);
  return (response.status === 204 ? undefined : await response.json()) as T;
}

const runningKernels = () => api<{ id: string; name: string; execution_state: string }[]>("/api/kernels");

async function startServer(): Promise<void> {
  const port = (await quietPorts(1))[0];
  url = `http://127.0.0.1:${port}`;
  const args = ["-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1", `--ServerApp.port=${port}`, "--ServerApp.port_retries=0", `--ServerApp.token=${TOKEN}`, `--ServerApp.root_dir=${work}`];
  if (process.getuid?.() === 0) args.push("--allow-root");
  server = spawn(PYTHON, args, { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
  server.stdout!.on("data", (chunk) => (serverLog += chunk));
  server.stderr!.on("data", (chunk) => (serverLog += chunk));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`jupyter-server exited (${server.exitCode}):\n${serverLog}`);
    const up = await fetch(`${url}/api/status`, { headers: { Authorization: `token ${TOKEN}` } }).then((r) => r.ok, () => false);
    if (up) return;
    if (Date.now() > deadline) throw new Error(`jupyter-server did not answer on ${url} within 30 s:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs notebook cells (`### code ID` blocks) with `nbjob run`, as a user does. */
function runNotebook(cells: string): Promise<{ code: number | null; stderr: string; cells: Map<string, RanCell> }> {
  const path = join(work, "gateway.ipynb");
  const out = join(work, "gateway.out.ipynb");
  writeFileSync(path, JSON.stringify(notebookFrom(cells)));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NBJOB, "run", path, "-o", out, "--allow-errors"], { cwd: ROOT, env: { ...env, GATEWAY_URL: url, GATEWAY_TOKEN: TOKEN }, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    child.stdout!.resume();
    child.on("error", reject);
    child.on("close", (code) => {
      const ran = new Map<string, RanCell>();
      try {
        const executed = JSON.parse(readFileSync(out, "utf8")) as { cells: { cell_type: string; id: string; source: string | string[]; outputs?: RanCell["outputs"] }[] };
        for (const cell of executed.cells) {
          if (cell.cell_type === "code") ran.set(cell.id, { id: cell.id, source: ([] as string[]).concat(cell.source).join(""), outputs: cell.outputs ?? [] });
        }
      } catch {
        // No executed notebook: the exit code and stderr tell why.
      }
      resolve({ code, stderr, cells: ran });
    });
  });
}

describe("Client.connect({ gateway }) through Debian's jupyter-server", { skip }, () => {
  before(async () => {
    // The worker kernelspec, installed as a user would, where this server looks.
    const install = spawnSync(process.execPath, [NBJOB, "install", "--worker", "--user"], { env, encoding: "utf8" });
    assert.equal(install.status, 0, install.stderr);
    // A kernel that dies at once, for the "a kernel that dies" case.
    mkdirSync(join(dataDir, "kernels", "nbjob-broken"), { recursive: true });
    writeFileSync(join(dataDir, "kernels", "nbjob-broken", "kernel.json"), JSON.stringify({ argv: [process.execPath, "-e", "process.exit(3)", "{connection_file}"], display_name: "broken", language: "typescript" }));
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
    await admin((c) => c.query(`CREATE DATABASE ${database}`));
    store = openStore({ url: dbUrl, maxConnections: 2 });
    await store.ready();
    await startServer();
  });

  after(async () => {
    if (url && server?.exitCode === null) {
      // Kernels first (the server would leave them running if it were killed first), then the server.
      const kernels = await runningKernels().catch(() => []);
      await Promise.all(kernels.map((k) => api(`/api/kernels/${k.id}`, { method: "DELETE" }).catch(() => undefined)));
    }
    server?.kill("SIGTERM");
    await store?.close().catch(() => undefined);
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });

  test("nbjob install --worker writes kernelspec nbjob-worker: node, this checkout's bin/nbjob.js, worker, no env", () => {
    const spec = JSON.parse(readFileSync(join(dataDir, "kernels", "nbjob-worker", "kernel.json"), "utf8")) as Record<string, unknown>;
    assert.deepEqual(spec.argv, [process.execPath, NBJOB, "worker", "--connection-file", "{connection_file}"]);
    assert.equal(spec.display_name, "nbjob worker");
    assert.equal(spec.env, undefined);
  });

  test("a notebook starts 2 workers through the server, runs a job on rc.view(0) and a load-balanced one, and rc.close() shuts them down", async () => {
    const run = await runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect({ gateway: { url: process.env.GATEWAY_URL!, token: process.env.GATEWAY_TOKEN, kernels: 2 } });
rc
### code decl
@sc
function square(x: number): number {
  console.log("squaring", x);
  return x * x;
}
### code direct
const job = await db.createJob(rc.view(0), ["square(7)"], sc, { tags: ["gw"] });
await job.result
### code balanced
const lb = await db.createJob(rc.loadBalanced(), ["square(8)"], sc, { tags: ["gw"] });
await lb.result
### code who
[job.worker === rc.ids[0], rc.ids.includes(lb.worker!), rc.ids.length]
### code close
await rc.close();
"closed"
`);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("setup")), /^Client\(Jupyter Server http:\/\/127\.0\.0\.1:\d+: 0=\S+, 1=\S+\)$/);
    assert.doesNotMatch(cellText(run.cells.get("setup")), /WebSocket|token/i);
    assert.match(cellText(run.cells.get("direct")), /squaring 7\n[\s\S]*^49$/m);
    assert.match(cellText(run.cells.get("balanced")), /^64$/m);
    assert.match(cellText(run.cells.get("who")), /\[ true, true, 2 \]/);
    assert.match(cellText(run.cells.get("close")), /closed/);

    const stored = await listJobs(store!, { tag: "gw" });
    assert.deepEqual(stored.map((j) => [j.status, j.result_text]).sort(), [["done", "49"], ["done", "64"]]);
    // Both workers were started by that notebook, so both are gone.
    assert.deepEqual(await runningKernels(), []);
  });

  test("running worker kernels are reused and left running by rc.close(); missing ones are started and shut down", async () => {
    const found = await api<{ id: string }>("/api/kernels", { method: "POST", body: JSON.stringify({ name: "nbjob-worker" }) });
    const rc = await Client.connect({ gateway: { url, token: TOKEN, kernels: 2 } });
    try {
      const ids = (await runningKernels()).map((k) => k.id);
      assert.equal(ids.length, 2);
      assert.ok(rc.workers[0].where.includes(found.id), rc.workers[0].where);
      assert.equal(await rc.workers[1].alive(), true);
    } finally {
      await rc.close();
    }
    assert.deepEqual((await runningKernels()).map((k) => k.id), [found.id]);
    await api(`/api/kernels/${found.id}`, { method: "DELETE" });
  });

  test("a worker kernel that dies is no longer alive, and a view on it is refused", async () => {
    const rc = await Client.connect({ gateway: { url, token: TOKEN } });
    try {
      const worker = rc.workers[0];
      process.kill(worker.identity.pid, "SIGKILL");
      assert.equal(await worker.alive(1_000), false);
      await assert.rejects(worker.run(1_000_000, { source: "1", hash: "h", params: {}, entries: [], signature: undefined }, () => {}), /is gone|closed|did not acknowledge|could not send/);
    } finally {
      await rc.close();
    }
  });

  test("a token the server refuses is one clear error naming the server (and not the token)", async () => {
    await assert.rejects(Client.connect({ gateway: { url, token: "not-the-token" } }), (err: Error) => {
      assert.match(err.message, new RegExp(`^the Jupyter Server at ${url.replace(/[.]/g, "\\.")} refused the token \\(HTTP 403\\).*pass gateway\\.token`));
      assert.doesNotMatch(err.message, /not-the-token/);
      return true;
    });
  });

  test("an unreachable server, a missing kernelspec, a kernel that is not a worker and one that dies are clear errors; nothing is left running", async () => {
    const closed = `http://127.0.0.1:${(await quietPorts(1))[0]}`;
    await assert.rejects(Client.connect({ gateway: { url: closed, token: TOKEN } }), new RegExp(`cannot reach the Jupyter Server at ${closed.replace(/[.]/g, "\\.")} \\(fetch failed: ECONNREFUSED\\)`));
    await assert.rejects(Client.connect({ gateway: { url, token: TOKEN, kernelName: "nbjob-nope" } }), /has no kernelspec "nbjob-nope" \(it has: .*nbjob-worker.*\); .*npx nbjob install --worker/);
    await assert.rejects(Client.connect({ gateway: { url: "ftp://x", token: TOKEN } }), /url must be the Jupyter Server's http\(s\) URL/);
    await assert.rejects(Client.connect({ gateway: { url, token: TOKEN, kernels: 0 } }), /kernels must be a whole number of workers, at least 1/);
    await assert.rejects(Client.connect({ gateway: { url, token: TOKEN, kernelName: "nbjob-broken" }, timeoutMs: 8_000 }),
      /worker kernels \("nbjob-broken"\) on the Jupyter Server at .* did not start: kernel \S+ on the Jupyter Server at .*: (it died while starting|it did not answer within 8 s).*server's log/);
    const specs = await api<{ kernelspecs: Record<string, unknown> }>("/api/kernelspecs");
    if (specs.kernelspecs.python3) {
      await assert.rejects(Client.connect({ gateway: { url, token: TOKEN, kernelName: "python3" }, timeoutMs: 20_000 }), /the kernel of kernel \S+ on the Jupyter Server at .* is not an nbjob worker \(it is "ipython"\)/);
    }
    assert.deepEqual(await runningKernels(), []);
  });
});
