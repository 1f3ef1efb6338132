// Bundle integrity and authorship (issue 13, item 3) through a real local cluster and a fresh
// PostgreSQL: a bundle whose source was changed in the store, one inserted by hand without a
// signature, one whose params were changed, and a worker holding another cluster key are all
// refused before any of their code runs (each would write a file: the file stays absent); a hand-
// inserted bundle signed with `nbjob rerun JOB --sign` runs; the key file is created 0600, once,
// even by processes racing to create it.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createJob, getJob, notifyJobQueued, putBundle, sha256 } from "../store";
import type { DbJob } from "../store";
import { quietPorts } from "./kernel-helpers";
import { cellText, JobsEnv, NBJOB, ROOT } from "./jobs-env";

const env = new JobsEnv("integrity");
const home = env.env.NBJOB_HOME!;
// This process signs the bundles it stores (putBundle) with the cluster's key file, as a
// notebook on the same machine does.
delete env.env.NBJOB_CLUSTER_KEY;
delete process.env.NBJOB_CLUSTER_KEY;
delete process.env.KERNEL_NBJOB_CLUSTER_KEY;
process.env.NBJOB_HOME = home;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const marker = (name: string) => join(env.work, `${name}.ran`);
/** A job body that leaves a file behind when it runs, then gives 7. */
const writes = (name: string) => `require("node:fs").writeFileSync(${JSON.stringify(marker(name))}, "ran");\n7;\n`;

async function jobEnds(id: number, timeoutMs = 30_000): Promise<DbJob> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await getJob(env.store, id);
    if (row && ["done", "failed", "cancelled", "lost"].includes(row.status)) return row;
    if (Date.now() > deadline) throw new Error(`job ${id} is still ${row?.status} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Stores `source` as a signed bundle (this process's key) and queues a job of it for any worker. */
async function queueSigned(source: string, params: Record<string, number> = {}): Promise<{ id: number; hash: string }> {
  const hash = await putBundle(env.store, { source, snippets: [], params, entries: [] });
  const { id } = await createJob(env.store, { bundleHash: hash });
  await notifyJobQueued(env.store, null);
  return { id, hash };
}

let notebookJob = 0;
let notebookBundle = "";

before(async () => {
  await env.start();
});
after(async () => {
  await env.cleanup();
});

describe("bundle integrity and authorship", () => {
  test("a notebook's job is signed with $NBJOB_HOME/cluster.key, created 0600; the key is in no row and no output", async () => {
    const ran = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code answer
@sc
function answer(): number {
  return 42;
}
### code run
const job = await db.createJob(rc.loadBalanced(), ["answer()"], sc, { review: false });
console.log("job", job.id, JSON.stringify(await job.result));
`);
    const out = cellText(ran.cells.get("run"));
    const match = /job (\d+) 42/.exec(out);
    assert.ok(match, `${out}\n${ran.stderr}`);
    notebookJob = Number(match[1]);
    const row = (await getJob(env.store, notebookJob))!;
    notebookBundle = row.bundle_hash;
    const keyFile = join(home, "cluster.key");
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const key = readFileSync(keyFile, "utf8").trim();
    assert.match(key, /^[0-9a-f]{64}$/);
    const { rows } = await env.store.query<{ signature: string | null }>("SELECT signature FROM nbjob.bundles WHERE hash = $1", [notebookBundle]);
    assert.match(rows[0].signature ?? "", /^[0-9a-f]{64}$/);
    // The key is used, never shown or stored.
    const everything = await env.store.query<{ text: string }>(
      `SELECT (SELECT coalesce(string_agg(j::text, ' '), '') FROM nbjob.jobs j) || (SELECT coalesce(string_agg(b::text, ' '), '') FROM nbjob.bundles b)
           || (SELECT coalesce(string_agg(l::text, ' '), '') FROM nbjob.logs l) AS text`,
    );
    assert.ok(!everything.rows[0].text.includes(key), "the key is stored in the database");
    assert.ok(!JSON.stringify([...ran.cells.values()]).includes(key) && !ran.stderr.includes(key) && !ran.stdout.includes(key), "the key is printed");
  });

  test("a bundle signed with the key runs (the control: its code writes the file)", async () => {
    const { id } = await queueSigned(writes("control"));
    const row = await jobEnds(id);
    assert.equal(row.status, "done", `${row.error_name}: ${row.error_message}`);
    assert.equal(row.result_text, "7");
    assert.ok(existsSync(marker("control")));
  });

  test("an analyzer over a job whose source was changed in the store fails naming the bundle; the changed code does not run", async () => {
    const made = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code snip
%%snip sc
let step = 0;
jobtracker.registerCheckpointer("step");
function count(): number {
  for (step = 1; step <= 3; step++) jobtracker.checkpoint();
  return step;
}
### code job
const job = await db.createJob(rc.view(0), ["count()"], sc, { review: false });
console.log("job", job.id, await job.result);
`);
    const out = cellText(made.cells.get("job"));
    const id = Number(/job (\d+) 4/.exec(out)?.[1] ?? NaN);
    assert.ok(id > 0, `${out}\n${made.stderr}`);
    const { bundle_hash: hash } = (await getJob(env.store, id))!;
    // The analysis runs the job's program (without its entries) before the function: the write would happen.
    const { rows } = await env.store.query<{ source: string }>("SELECT source FROM nbjob.bundles WHERE hash = $1", [hash]);
    await env.store.query("UPDATE nbjob.bundles SET source = $2 WHERE hash = $1", [hash, writes("analysis") + rows[0].source]);
    const analyzed = await env.runNotebook(`
### code analyze
const db = new DBWrapper();
const rc = await Client.connect();
function seen() {
  return { ok: 1 };
}
const analyzer = await db.createAnalyzer(rc.view(1), ${id}, [seen]);
try {
  console.log("rows", JSON.stringify(await analyzer.result));
} catch (err) {
  console.log("refused", (err as Error).message);
}
`);
    const text = cellText(analyzed.cells.get("analyze"));
    assert.match(text, new RegExp(`refused .*bundle ${hash} was altered in the store`), `${text}\n${analyzed.stderr}`);
    assert.ok(!existsSync(marker("analysis")), "the altered code ran in the analysis");
  });

  test("a source changed in the store: `nbjob rerun` fails naming the bundle, and the changed code does not run", async () => {
    // Workers keep the bundles they checked, by hash: fresh workers must load the changed row.
    assert.equal((await env.nbjob("cluster", "stop")).code, 0);
    await env.store.query("UPDATE nbjob.bundles SET source = $2 WHERE hash = $1", [notebookBundle, writes("tampered")]);
    assert.equal((await env.nbjob("cluster", "start", "-n", "2")).code, 0);
    const rerun = await env.nbjob("rerun", String(notebookJob), "--wait", "--timeout", "60");
    assert.equal(rerun.code, 1, rerun.stdout + rerun.stderr);
    assert.match(rerun.stderr, new RegExp(`failed: BundleAltered: bundle ${notebookBundle} was altered in the store: its source now hashes to ${sha256(writes("tampered"))}`));
    assert.match(rerun.stderr, /it was not run\. Create the job again from its notebook/);
    const id = Number(/job (\d+) \(rerun of job/.exec(rerun.stdout)![1]);
    const row = (await getJob(env.store, id))!;
    assert.equal(row.status, "failed");
    assert.equal(row.error_name, "BundleAltered");
    assert.ok(!existsSync(marker("tampered")), "the altered code ran");
    // Nor is it exported as a project for someone to run.
    const exported = await env.nbjob("export", String(notebookJob), join(env.work, "exported"));
    assert.notEqual(exported.code, 0);
    assert.match(exported.stderr, new RegExp(`job ${notebookJob}'s bundle ${notebookBundle} was altered in the store .*nothing was written`));
    assert.ok(!existsSync(join(env.work, "exported", "job.ts")));
  });

  test("the same changed bundle sent to a direct view by a notebook's job.rerun(view) is refused too", async () => {
    const ran = await env.runNotebook(`
### code rerun
const db = new DBWrapper();
const rc = await Client.connect();
const old = await db.job(${notebookJob});
const again = await old.rerun(rc.view(1));
try {
  console.log("result", await again.result);
} catch (err) {
  console.log("refused", again.id, (err as Error).message);
}
`);
    const out = cellText(ran.cells.get("rerun"));
    assert.match(out, new RegExp(`refused (\\d+) .*bundle ${notebookBundle} was altered in the store`), `${out}\n${ran.stderr}`);
    const id = Number(/refused (\d+)/.exec(out)![1]);
    const row = (await getJob(env.store, id))!;
    assert.equal(row.status, "failed");
    assert.equal(row.error_name, "BundleAltered");
    assert.match(row.worker_id ?? "", /^default\/1@/);
    assert.ok(!existsSync(marker("tampered")), "the altered code ran");
  });

  test("creating the same job again from its notebook puts the bundle back, signed, and it runs", async () => {
    const ran = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code answer
@sc
function answer(): number {
  return 42;
}
### code again
const job = await db.createJob(rc.loadBalanced(), ["answer()"], sc, { review: false });
console.log("job", job.id, JSON.stringify(await job.result));
`);
    const out = cellText(ran.cells.get("again"));
    const id = Number(/job (\d+) 42/.exec(out)?.[1] ?? NaN);
    assert.ok(id > 0, `${out}\n${ran.stderr}`);
    assert.equal((await getJob(env.store, id))!.bundle_hash, notebookBundle);
  });

  test("a bundle inserted by hand without a signature is refused, saying how to sign it; `nbjob rerun JOB --sign` runs it", async () => {
    const source = writes("unsigned");
    const hash = sha256(source);
    await env.store.query("INSERT INTO nbjob.bundles (hash, source, params, entries) VALUES ($1, $2, '{}', '{}')", [hash, source]);
    const { id } = await createJob(env.store, { bundleHash: hash });
    await notifyJobQueued(env.store, null);
    const row = await jobEnds(id);
    assert.equal(row.status, "failed");
    assert.equal(row.error_name, "BundleUnsigned");
    assert.match(row.error_message ?? "", new RegExp(`^bundle ${hash} is not signed .*so it was not run\\. If you trust its code, sign it .*: npx nbjob rerun ${id} --sign`));
    assert.ok(!existsSync(marker("unsigned")), "the unsigned code ran");

    const signed = await env.nbjob("rerun", String(id), "--sign", "--wait", "--timeout", "60");
    assert.equal(signed.code, 0, signed.stdout + signed.stderr);
    assert.match(signed.stderr, new RegExp(`bundle ${hash} signed with the cluster key from ${home.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/cluster\\.key`));
    assert.match(signed.stdout, /\n7\n$/);
    assert.ok(existsSync(marker("unsigned")));
  });

  test("`nbjob rerun --sign` refuses to sign a bundle whose source no longer matches its hash", async () => {
    const signed = await env.nbjob("rerun", String(notebookJob), "--sign", "--wait", "--timeout", "60");
    // The notebook put the row back in the test before: change it again.
    await env.store.query("UPDATE nbjob.bundles SET source = $2 WHERE hash = $1", [notebookBundle, writes("tampered")]);
    const refused = await env.nbjob("rerun", String(notebookJob), "--sign");
    assert.equal(signed.code, 0, signed.stderr);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, new RegExp(`bundle ${notebookBundle} was altered in the store \\(its source now hashes to [0-9a-f]{64}\\), so it was not signed; create the job again from its notebook`));
    const { rows } = await env.store.query<{ n: string }>("SELECT count(*) AS n FROM nbjob.jobs WHERE rerun_of = $1", [notebookJob]);
    // The two reruns of the earlier tests and the signed one here; the refused one made none.
    assert.equal(Number(rows[0].n), 3);
  });

  test("params changed in the store break the signature: refused, and the job does not run with them", async () => {
    const { id: first, hash } = await queueSigned(`require("node:fs").writeFileSync(${JSON.stringify(marker("params"))} + params.n, "ran");\n7;\n`, { n: 1 });
    assert.equal((await jobEnds(first)).status, "done");
    assert.ok(existsSync(marker("params") + "1"));
    assert.equal((await env.nbjob("cluster", "stop")).code, 0);
    await env.store.query(`UPDATE nbjob.bundles SET params = '{"n": 2}' WHERE hash = $1`, [hash]);
    assert.equal((await env.nbjob("cluster", "start", "-n", "2")).code, 0);
    const rerun = await env.nbjob("rerun", String(first), "--wait", "--timeout", "60");
    assert.equal(rerun.code, 1);
    assert.match(rerun.stderr, new RegExp(`BundleSignatureMismatch: bundle ${hash} is not signed with this worker's cluster key .*its params or entries were changed in the store`));
    assert.ok(!existsSync(marker("params") + "2"), "the job ran with the changed params");
  });

  test("a worker holding another cluster key refuses the notebook's bundles, saying to share the key", async () => {
    assert.equal((await env.nbjob("cluster", "stop")).code, 0);
    const file = join(env.work, "other-key-worker.json");
    let log = "";
    const worker: ChildProcess = spawn(process.execPath, [NBJOB, "worker", "--connection-file", file, "--id", "other/0"], {
      cwd: ROOT, env: { ...env.env, NBJOB_CLUSTER_KEY: randomBytes(32).toString("hex") }, stdio: ["ignore", "pipe", "pipe"],
    });
    worker.stdout!.on("data", (chunk) => (log += chunk));
    worker.stderr!.on("data", (chunk) => (log += chunk));
    try {
      const { id, hash } = await queueSigned(writes("other-key"));
      const row = await jobEnds(id);
      assert.equal(row.status, "failed", log);
      assert.equal(row.worker_id, "other/0");
      assert.equal(row.error_name, "BundleSignatureMismatch");
      assert.match(row.error_message ?? "", new RegExp(`^bundle ${hash} is not signed with this worker's cluster key \\(from the NBJOB_CLUSTER_KEY of this worker\\).*the same NBJOB_HOME \\(its cluster\\.key\\) or the same NBJOB_CLUSTER_KEY`));
      assert.ok(!existsSync(marker("other-key")), "the worker ran a bundle signed with another key");
    } finally {
      worker.kill("SIGTERM");
      await new Promise((resolve) => worker.once("close", resolve));
    }
    assert.equal((await env.nbjob("cluster", "start", "-n", "2")).code, 0);
  });

  test("the key file is created once, 0600, by processes racing to create it", async () => {
    const raceHome = join(env.work, "race-home");
    mkdirSync(raceHome);
    const script = `const { clusterKey } = require(${JSON.stringify(join(ROOT, "dist", "store", "signing.js"))});
      process.stdout.write(require("node:crypto").createHash("sha256").update(clusterKey().key).digest("hex"));`;
    const racers = Array.from({ length: 8 }, () => new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ["-e", script], { env: { ...env.env, NBJOB_HOME: raceHome }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout!.on("data", (chunk) => (out += chunk));
      child.stderr!.on("data", (chunk) => (err += chunk));
      child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(err))));
    }));
    const seen = new Set(await Promise.all(racers));
    assert.equal(seen.size, 1, "racing processes got different keys");
    const keyFile = join(raceHome, "cluster.key");
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(createHash("sha256").update(readFileSync(keyFile, "utf8").trim()).digest("hex"), [...seen][0]);
    assert.deepEqual(readdirSync(raceHome), ["cluster.key"], "temporary files were left behind");
  });
});

// A Jupyter Server that, like Kernel Gateway and Enterprise Gateway, starts a kernel with the
// KERNEL_* variables of the start request's `env` (Debian's jupyter-server ignores `env`).
const FORWARD_KERNEL_ENV = `
import os
from jupyter_server.services.kernels import handlers

_post = handlers.MainKernelHandler.post

async def post(self):
    model = self.get_json_body() or {}
    forwarded = {k: v for k, v in (model.get("env") or {}).items() if k.startswith("KERNEL_")}
    km = self.kernel_manager
    start = km.start_kernel
    async def start_kernel(*args, **kwargs):
        return await start(*args, env={**os.environ, **forwarded}, **kwargs)
    km.start_kernel = start_kernel
    try:
        await _post(self)
    finally:
        del km.start_kernel

handlers.MainKernelHandler.post = post
`;

const PYTHON = "/usr/bin/python3";
const haveServer = spawnSync(PYTHON, ["-c", "import jupyter_server"]).status === 0;

describe("a worker kernel started through a gateway gets the notebook's key", { skip: haveServer ? false : "jupyter-server is not installed" }, () => {
  test("with the key in the start request's env it runs the notebook's job; a kernel started without it (its own NBJOB_HOME key) refuses it", async () => {
    const root = join(env.work, "gateway");
    const dataDir = join(root, "data");
    const configDir = join(root, "config");
    // The server and its kernels have a home of their own: without the key from the request, a
    // worker there makes and uses another key.
    const serverHome = join(root, "home");
    mkdirSync(configDir, { recursive: true });
    writeFileSync(join(configDir, "jupyter_server_config.py"), FORWARD_KERNEL_ENV);
    const serverEnv = { ...env.env, NBJOB_HOME: serverHome, JUPYTER_DATA_DIR: dataDir, JUPYTER_PATH: dataDir, JUPYTER_CONFIG_DIR: configDir, JUPYTER_RUNTIME_DIR: join(root, "runtime"), PYDEVD_DISABLE_FILE_VALIDATION: "1" };
    const install = spawnSync(process.execPath, [NBJOB, "install", "--worker", "--user"], { env: serverEnv, encoding: "utf8" });
    assert.equal(install.status, 0, install.stderr);
    const token = randomBytes(16).toString("hex");
    const port = (await quietPorts(1))[0];
    const url = `http://127.0.0.1:${port}`;
    const args = ["-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1", `--ServerApp.port=${port}`, "--ServerApp.port_retries=0", `--ServerApp.token=${token}`, `--ServerApp.root_dir=${root}`];
    if (process.getuid?.() === 0) args.push("--allow-root");
    let serverLog = "";
    const server = spawn(PYTHON, args, { cwd: root, env: serverEnv, stdio: ["ignore", "pipe", "pipe"] });
    server.stdout!.on("data", (chunk) => (serverLog += chunk));
    server.stderr!.on("data", (chunk) => (serverLog += chunk));
    const api = async (path: string, init: RequestInit = {}) => {
      const response = await fetch(`${url}${path}`, { ...init, headers: { Authorization: `token ${token}`, ...init.headers } });
      assert.ok(response.ok, `${init.method ?? "GET"} ${path}: HTTP ${response.status}`);
      return response.status === 204 ? undefined : response.json();
    };
    try {
      for (let waited = 0; !(await fetch(`${url}/api/status`, { headers: { Authorization: `token ${token}` } }).then((r) => r.ok, () => false)); waited += 200) {
        assert.ok(waited < 30_000 && server.exitCode === null, `jupyter-server did not start:\n${serverLog}`);
        await sleep(200);
      }
      // A worker started without the key: Client.connect reuses it (running kernels come first).
      const bare = (await api("/api/kernels", { method: "POST", body: JSON.stringify({ name: "nbjob-worker" }) })) as { id: string };
      env.env.GATEWAY_URL = url;
      env.env.GATEWAY_TOKEN = token;
      const notebook = `
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect({ gateway: { url: process.env.GATEWAY_URL!, token: process.env.GATEWAY_TOKEN } });
### code answer
@sc
function gatewayAnswer(): number {
  return 43;
}
### code run
const job = await db.createJob(rc.view(0), ["gatewayAnswer()"], sc, { review: false });
try {
  console.log("result", await job.result);
} catch (err) {
  console.log("refused", (err as Error).message);
}
await rc.close();
`;
      const refused = await env.runNotebook(notebook);
      const refusedText = cellText(refused.cells.get("run"));
      assert.match(refusedText, /refused .*is not signed with this worker's cluster key \(from .*gateway\/home\/cluster\.key \(this worker's NBJOB_HOME\)\)/, `${refusedText}\n${refused.stderr}`);
      await api(`/api/kernels/${bare.id}`, { method: "DELETE" });

      const ran = await env.runNotebook(notebook);
      const ranText = cellText(ran.cells.get("run"));
      assert.match(ranText, /result 43/, `${ranText}\n${ran.stderr}\n${serverLog}`);
      const key = readFileSync(join(home, "cluster.key"), "utf8").trim();
      assert.ok(!serverLog.includes(key), "the server logged the key");
    } finally {
      delete env.env.GATEWAY_URL;
      delete env.env.GATEWAY_TOKEN;
      const kernels = ((await api("/api/kernels").catch(() => [])) ?? []) as { id: string }[];
      await Promise.all(kernels.map((k) => api(`/api/kernels/${k.id}`, { method: "DELETE" }).catch(() => undefined)));
      server.kill("SIGTERM");
      await new Promise((resolve) => (server.exitCode !== null ? resolve(undefined) : server.once("close", resolve)));
    }
  });
});
