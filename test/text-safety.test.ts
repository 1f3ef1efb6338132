// Text PostgreSQL cannot hold as it is, and secrets in database URLs, against a real PostgreSQL,
// a real worker process and the CLI as a subprocess:
// - a job printing NUL, lone surrogates and a 10 MB line: the worker survives, every line is
//   stored and read back identical (the API, `nbjob logs`);
// - names, tags and params holding NUL are refused with a TypeError naming the field before any
//   SQL; a job's error holding NUL is recorded, the NUL shown as \u0000;
// - a password in the URL's query string never appears in `nbjob db status`, `nbjob jobs` or a
//   worker's log.
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  appendLogs, createJob, createJobGroup, getJob, listJobs, listWorkers, notifyJobQueued, openStore, putBundle, readLogs, redactUrl, transitionJob,
} from "../store";
import type { DbJob, Store } from "../store";
import { enqueueJobs } from "../store/queue";
import { admin, databaseUrl } from "./pg-admin";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const DATABASE = `nbjob_text_safety_${process.pid}`;
const URL = databaseUrl(DATABASE);
// The same database, with secrets in the query string (trust auth ignores them).
const SECRET = "Pw-in-query-7731";
const SECRET_URL = `${URL}?user=postgres&password=${SECRET}&sslpassword=${SECRET}-ssl&token=${SECRET}-token`;
const dir = mkdtempSync(join(tmpdir(), "nbjob-text-safety-"));
// Bundles this process stores are signed with the cluster key of the worker's NBJOB_HOME.
process.env.NBJOB_HOME = dir;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let store: Store;
let worker: { process: ChildProcess; log: string };


function nbjob(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [NBJOB, ...args], { env: { ...process.env, NBJOB_DEBUG: "", NBJOB_HOME: dir, ...env }, timeout: 60_000, encoding: "buffer", maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr: stderr.toString() });
    });
  });
}

async function queueJob(source: string, entries: string[]): Promise<number> {
  const bundleHash = await putBundle(store, { source, snippets: [], params: {}, entries });
  const job = await createJob(store, { bundleHash });
  await notifyJobQueued(store);
  return job.id;
}

async function waitFor(jobId: number, timeoutMs = 60_000): Promise<DbJob> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJob(store, jobId);
    if (job && ["done", "failed", "cancelled", "lost"].includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is ${job?.status} after ${timeoutMs} ms; worker log:\n${worker.log.slice(-3000)}`);
    await sleep(50);
  }
}

before(async () => {
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE}`));
  await admin((c) => c.query(`CREATE DATABASE ${DATABASE}`));
  store = openStore({ url: URL });
  await store.ready();
  // One real worker, given the URL with its secrets: its log must not show them.
  const file = join(dir, "worker.json");
  const child = spawn(process.execPath, [NBJOB, "worker", "--connection-file", file, "--id", "ts/0", "--profile", "ts"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NBJOB_DATABASE_URL: SECRET_URL, NBJOB_HOME: dir, NBJOB_WORKER_HEARTBEAT_MS: "300" },
  });
  worker = { process: child, log: "" };
  child.stdout?.on("data", (d: Buffer) => (worker.log += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (worker.log += d.toString()));
  for (let waited = 0; !existsSync(file) || (await listWorkers(store, { profile: "ts", aliveWithinMs: 5_000 })).length < 1; waited += 50) {
    if (waited > 30_000) throw new Error(`the worker did not start:\n${worker.log}`);
    await sleep(50);
  }
});

after(async () => {
  if (worker?.process.exitCode === null) worker.process.kill("SIGKILL");
  await store?.close();
  if (!process.env.KEEP_DB) await admin((c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`));
  rmSync(dir, { recursive: true, force: true });
});

// Lines PostgreSQL's text type refuses or changes, and look-alikes that must stay as they are.
const AWKWARD = [
  "bad\u0000line",
  "\u0000",
  "trailing NUL\u0000",
  "lone high \uD83D surrogate",
  "lone low \uDE00 surrogate",
  "a real pair 😀 and \u0000 together",
  "\\u0000 written out (six characters, no NUL)",
  '"a JSON string already"',
];

describe("text PostgreSQL cannot hold as it is", () => {
  test("appendLogs stores NUL and lone surrogates escaped and readLogs gives back every line exactly", async () => {
    const bundleHash = await putBundle(store, { source: "// logs\n", snippets: [], params: {}, entries: [] });
    const job = await createJob(store, { bundleHash });
    await appendLogs(store, job.id, AWKWARD.map((line) => ({ stream: "stdout" as const, line })));
    assert.deepEqual((await readLogs(store, job.id)).map((l) => l.line), AWKWARD);
    const raw = await store.query<{ escaped: boolean }>("SELECT escaped FROM nbjob.logs WHERE job_id = $1 ORDER BY id", [job.id]);
    assert.deepEqual(raw.rows.map((r) => r.escaped), [true, true, true, true, true, true, false, false]);
  });

  test("a job printing NUL lines, lone surrogates and a 10 MB line: the worker survives, every line is stored and read back identical", async () => {
    const program = [
      "for (let i = 0; i < 50; i++) console.log(`before ${i}`);",
      `for (const line of ${JSON.stringify(AWKWARD)}) console.log(line);`,
      "console.log('x'.repeat(10 * 1024 * 1024));",
      "console.log('\\u0000' + 'y'.repeat(10 * 1024 * 1024) + '\\u0000');",
      "console.error('on stderr\\u0000too');",
      "for (let i = 0; i < 50; i++) console.log(`after ${i}`);",
    ].join("\n");
    const id = await queueJob(program, ["'finished'"]);
    const job = await waitFor(id);
    assert.equal(job.status, "done", `${job.error_name}: ${job.error_message}\n${worker.log.slice(-2000)}`);
    const expected = [
      ...Array.from({ length: 50 }, (_, i) => `before ${i}`),
      ...AWKWARD,
      "x".repeat(10 * 1024 * 1024),
      `\u0000${"y".repeat(10 * 1024 * 1024)}\u0000`,
      "on stderr\u0000too",
      ...Array.from({ length: 50 }, (_, i) => `after ${i}`),
    ];
    const lines = (await readLogs(store, id)).map((l) => l.line);
    assert.equal(lines.length, expected.length, `lines: ${lines.length} (notes: ${lines.filter((l) => l.startsWith("[nbjob:")).join(" | ").slice(0, 500)})`);
    lines.forEach((line, i) => assert.ok(line === expected[i], `line ${i} differs: ${JSON.stringify(line.slice(0, 80))} vs ${JSON.stringify(expected[i].slice(0, 80))}`));
    assert.equal(worker.process.exitCode, null, "the worker is alive");

    // `nbjob logs` prints them as they were printed (NUL bytes included; a lone surrogate
    // cannot be written as UTF-8, so it comes out as U+FFFD, as from console.log itself).
    const printed = await nbjob(["logs", String(id), "--stream", "stdout"], { NBJOB_DATABASE_URL: URL });
    assert.equal(printed.code, 0, printed.stderr);
    const stdoutLines = expected.filter((l) => l !== "on stderr\u0000too");
    assert.ok(printed.stdout.equals(Buffer.from(stdoutLines.map((l) => `${l}\n`).join(""))), "nbjob logs prints every line as printed");

    // The same worker takes the next job.
    const next = await waitFor(await queueJob("console.log('next');", ["1 + 1"]));
    assert.equal(next.status, "done");
  });

  test("a job's error holding NUL is recorded, each NUL shown as \\u0000", async () => {
    const id = await queueJob("function fail(): never {\n  throw new RangeError('bad\\u0000value');\n}", ["fail()"]);
    const job = await waitFor(id);
    assert.equal(job.status, "failed");
    assert.equal(job.error_name, "RangeError");
    assert.equal(job.error_message, "bad\\u0000value");
    assert.match(job.error_traceback!.join("\n"), /RangeError: bad\\u0000value/);
    assert.equal(worker.process.exitCode, null, "the worker is alive");
  });

  test("names, tags, params and grids holding NUL are refused before any SQL, with a TypeError naming the field", async () => {
    const before = (await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.jobs")).rows[0].n;
    const bundleHash = await putBundle(store, { source: "// refusals\n", snippets: [], params: { ok: 1 }, entries: [] });
    const refused = (field: RegExp) => (err: unknown) => {
      assert.ok(err instanceof TypeError, `a TypeError, got ${String(err)}`);
      assert.match(err.message, field);
      assert.match(err.message, /contains a NUL character \(\\u0000\) at position \d+, which PostgreSQL cannot store as text; remove it/);
      assert.doesNotMatch(err.message, /invalid byte sequence|unsupported Unicode escape/);
      return true;
    };
    await assert.rejects(createJob(store, { bundleHash, name: "run\u00001" }), refused(/^the job's name contains/));
    await assert.rejects(createJob(store, { bundleHash, tags: ["fine", "bad\u0000tag"] }), refused(/^tags\[1\] contains/));
    await assert.rejects(putBundle(store, { source: "// p\n", snippets: [], params: { label: "a\u0000b" }, entries: [] }), refused(/^params\.label contains/));
    await assert.rejects(putBundle(store, { source: "// p\n", snippets: [], params: { deep: { list: ["x", "\u0000"] } }, entries: [] }), refused(/^params\.deep\.list\[1\] contains/));
    await assert.rejects(putBundle(store, { source: "// p\n", snippets: [], params: { ["k\u0000"]: 1 }, entries: [] }), refused(/^the name of params\.k\\u0000 contains/));
    await assert.rejects(createJobGroup(store, { name: "sweep\u0000", grid: {} }), refused(/^the sweep's name contains/));
    await assert.rejects(createJobGroup(store, { grid: { lr: ["0.1\u0000"] } }), refused(/^grid\.lr\[0\] contains/));
    await assert.rejects(
      enqueueJobs(store, [{ bundle: { source: "// q\n", snippets: [], params: {}, entries: [] }, name: "q\u0000" }]),
      refused(/^the job's name contains/),
    );
    await assert.rejects(listJobs(store, { tag: "t\u0000" }), refused(/^the tag to list contains/));
    // A lone surrogate would be stored changed (as U+FFFD): refused too.
    await assert.rejects(createJob(store, { bundleHash, name: "half \uD83D" }), (err: Error) => err instanceof TypeError && /the job's name contains a lone UTF-16 surrogate \(\\ud83d\)/.test(err.message));
    assert.equal((await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.jobs")).rows[0].n, before, "no job was stored");
  });

  test("transitionJob records a failure whose text holds NUL", async () => {
    const bundleHash = await putBundle(store, { source: "// t\n", snippets: [], params: {}, entries: [] });
    const job = await createJob(store, { bundleHash });
    await transitionJob(store, job.id, "running", { workerId: "test", host: "h", pid: 1 });
    const failed = await transitionJob(store, job.id, "failed", { error: { name: "Error\u0000", message: "m\u0000", traceback: ["at \u0000"] } });
    assert.deepEqual([failed.error_name, failed.error_message, failed.error_traceback], ["Error\\u0000", "m\\u0000", ["at \\u0000"]]);
  });
});

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("passwords in a database URL's query string", () => {
  test("redactUrl masks user:password@ and secret query parameters, and nothing else", () => {
    assert.equal(
      redactUrl("postgresql://bob:pw@db.example:5432/jobs?user=alice&password=s3cret&sslpassword=k&sslmode=require&access_token=t"),
      "postgresql://bob:***@db.example:5432/jobs?user=alice&password=***&sslpassword=***&sslmode=require&access_token=***",
    );
    assert.equal(redactUrl("postgres://h:notaport/db?password=zz&user=u"), "postgres://h:notaport/db?password=***&user=u");
    assert.equal(redactUrl("postgres://127.0.0.1/db"), "postgres://127.0.0.1/db");
  });

  test("nbjob db status, nbjob jobs and the worker's log never show it", async () => {
    const status = await nbjob(["db", "status"], { NBJOB_DATABASE_URL: SECRET_URL });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout.toString(), /password=\*\*\*/);
    const jobs = await nbjob(["jobs"], { NBJOB_DATABASE_URL: SECRET_URL });
    assert.equal(jobs.code, 0, jobs.stderr);
    // Errors name the URL: an unreachable server, a database that does not exist.
    const unreachable = await nbjob(["jobs"], { NBJOB_DATABASE_URL: `postgres://postgres@127.0.0.1:${await closedPort()}/x?password=${SECRET}` });
    assert.notEqual(unreachable.code, 0);
    assert.match(unreachable.stderr, /^nbjob: cannot reach PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:\d+\/x\?password=\*\*\*/);
    const missing = await nbjob(["jobs"], { NBJOB_DATABASE_URL: `postgres://postgres@127.0.0.1:5432/nbjob_no_such_db_${process.pid}?password=${SECRET}` });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /password=\*\*\*/);
    assert.match(worker.log, /connected to the store at postgres:\/\/postgres@127\.0\.0\.1:5432\/\S+\?user=postgres&password=\*\*\*&sslpassword=\*\*\*&token=\*\*\*/);
    for (const [what, text] of [["db status", status.stdout.toString() + status.stderr], ["jobs", jobs.stdout.toString() + jobs.stderr], ["jobs (unreachable)", unreachable.stderr], ["jobs (no database)", missing.stderr], ["the worker's log", worker.log]]) {
      assert.ok(!text.includes(SECRET), `${what} shows the password:\n${text}`);
    }
  });
});
