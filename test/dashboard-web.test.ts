// `nbjob dashboard`: a real server process on 127.0.0.1 over a fresh database with jobs in
// several states, asked over HTTP (the page, /api/jobs with filters, bad requests), a page that
// shows a job created after it was opened, and the one-line errors for a bad or busy port.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client } from "pg";
import { createJob, openStore, putBundle, transitionJob } from "../store";
import type { Store } from "../store";

const NBJOB = join(resolve(__dirname, "..", ".."), "bin", "nbjob.js");
const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const name = `nbjob_dashboard_${process.pid}_${randomBytes(3).toString("hex")}`;
const url = `postgres://postgres@127.0.0.1:5432/${name}`;
let store: Store;
let server: ChildProcess | undefined;
let base = "";

async function admin(sql: string): Promise<void> {
  const client = new Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function addJob(x: number, options: { name?: string; tags?: string[]; end?: "done" | "failed" } = {}): Promise<number> {
  const hash = await putBundle(store, { source: `// x = ${x}\nx + 1;\n`, snippets: [], params: { x }, entries: ["x + 1"] });
  const job = await createJob(store, { bundleHash: hash, name: options.name ?? null, tags: options.tags ?? [] });
  if (options.end) {
    await transitionJob(store, job.id, "running", { workerId: "w0", host: "h", pid: 1 });
    if (options.end === "done") await transitionJob(store, job.id, "done", { result: { x }, resultText: `<b>${x + 1}</b>` });
    else await transitionJob(store, job.id, "failed", { error: { name: "RangeError", message: "too far", traceback: [] } });
  }
  return Number(job.id);
}

function nbjob(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [NBJOB, ...args], { env: { ...process.env, NBJOB_DATABASE_URL: url }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

before(async () => {
  await admin(`CREATE DATABASE ${name}`);
  store = openStore({ url, maxConnections: 2 });
  await store.ready();
  await addJob(1, { name: "first", tags: ["geo"], end: "done" });
  await addJob(2, { tags: ["geo"], end: "failed" });
  await addJob(3, { name: "waiting" });
  server = spawn(process.execPath, [NBJOB, "dashboard", "--port", "0"], { env: { ...process.env, NBJOB_DATABASE_URL: url }, stdio: ["ignore", "pipe", "pipe"] });
  base = await new Promise<string>((resolvePromise, reject) => {
    let out = "";
    let err = "";
    server!.stderr!.on("data", (c) => (err += c));
    server!.stdout!.on("data", (c) => {
      out += c;
      const m = /nbjob dashboard at (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
      if (m) resolvePromise(m[1]);
    });
    server!.on("close", (code) => reject(new Error(`nbjob dashboard exited (${code}): ${err}`)));
  });
});
after(async () => {
  server?.kill("SIGKILL");
  await store.close();
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
});

interface ApiJob { id: number; name: string | null; tags: string[]; status: string; worker: string | null; params: Record<string, unknown>; result: string | null; error: string | null; duration_ms: number | null }

describe("nbjob dashboard", () => {
  test("/api/jobs lists jobs newest first with status, worker, parameters, result or error; filters by tag and status", async () => {
    const response = await fetch(`${base}/api/jobs`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /application\/json/);
    const { jobs } = (await response.json()) as { jobs: ApiJob[] };
    assert.deepEqual(jobs.map((j) => [j.name, j.status, j.worker]), [["waiting", "queued", null], [null, "failed", "w0"], ["first", "done", "w0"]]);
    assert.deepEqual(jobs[2].params, { x: 1 });
    assert.equal(jobs[2].result, "<b>2</b>");
    assert.equal(jobs[1].error, "RangeError: too far");
    assert.equal(typeof jobs[2].duration_ms, "number");
    const geo = (await (await fetch(`${base}/api/jobs?tag=geo`)).json()) as { jobs: ApiJob[] };
    assert.deepEqual(geo.jobs.map((j) => j.status), ["failed", "done"]);
    const failed = (await (await fetch(`${base}/api/jobs?status=failed&limit=5`)).json()) as { jobs: ApiJob[] };
    assert.deepEqual(failed.jobs.map((j) => j.status), ["failed"]);
  });

  test("the page loads its rows from /api/jobs and refreshes, and shows data as text only", async () => {
    const response = await fetch(`${base}/`);
    assert.equal(response.status, 200);
    const html = await response.text();
    assert.match(html, /<title>nbjob dashboard<\/title>/);
    assert.match(html, /fetch\("\/api\/jobs" \+ query\)/);
    assert.match(html, /setInterval\(refresh, 2000\)/);
    assert.match(html, /textContent = String\(value\)/);
    assert.doesNotMatch(html, /innerHTML/);
    // A job created now is in the next refresh.
    const id = await addJob(4, { name: "later" });
    const { jobs } = (await (await fetch(`${base}/api/jobs`)).json()) as { jobs: ApiJob[] };
    assert.equal(jobs[0].id, id);
  });

  test("bad requests get one clear error", async () => {
    const bad = async (path: string, status: number, message: RegExp, method = "GET") => {
      const response = await fetch(`${base}${path}`, { method });
      assert.equal(response.status, status, path);
      assert.match(((await response.json()) as { error: string }).error, message);
    };
    await bad("/api/jobs?limit=0", 400, /limit=0: expected a whole number from 1 to 10000/);
    await bad("/api/jobs?status=sleeping", 400, /status=sleeping: expected one of queued, running, done/);
    await bad("/nowhere", 404, /nothing at \/nowhere; the page is at \/ and the data at \/api\/jobs/);
    await bad("/api/jobs", 405, /POST is not supported/, "POST");
  });

  test("a bad port or a busy one is one clear line and exit code 2", async () => {
    const wrong = await nbjob(["dashboard", "--port", "99999"]);
    assert.equal(wrong.code, 2);
    assert.equal(wrong.stderr.trim(), "nbjob: --port 99999: expected a whole number from 0 to 65535");
    const word = await nbjob(["dashboard", "--port", "http"]);
    assert.equal(word.code, 2);
    assert.match(word.stderr, /--port http: expected a whole number/);
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const port = (busy.address() as { port: number }).port;
    try {
      const taken = await nbjob(["dashboard", "--port", String(port)]);
      assert.equal(taken.code, 2);
      assert.equal(taken.stderr.trim(), `nbjob: port ${port} on 127.0.0.1 is in use (another dashboard?); pass another with --port N, or --port 0 for any free one`);
    } finally {
      busy.close();
    }
  });

  test("Ctrl-C stops it cleanly", async () => {
    const exited = new Promise<number | null>((r) => server!.on("close", (code) => r(code)));
    server!.kill("SIGINT");
    assert.equal(await exited, 0);
    server = undefined;
  });
});
