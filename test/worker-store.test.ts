// Workers and the store together: real worker processes and a real PostgreSQL database (one per
// test file). Jobs queued in the store are claimed by idle workers, their life is recorded in the
// job row and logs, cancel in the store stops them, and a dead worker's job becomes lost.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deserialize } from "node:v8";
import { after, before, describe, test } from "node:test";
import { Client as PgClient } from "pg";
import { KernelClient } from "../wire/client";
import { readConnectionFile } from "../wire/connection";
import {
  createJob, getJob, listWorkers, notifyJobCancelled, notifyJobQueued, openStore, putBundle, readLogs, signBundle, transitionJob,
} from "../store";
import type { DbJob, Store } from "../store";
import type { WorkerEvent } from "../runtime/shared/protocol";
import type { StoredResult } from "../worker/recorder";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const DATABASE = `nbjob_worker_store_${process.pid}`;
const URL = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;
const dir = mkdtempSync(join(tmpdir(), "nbjob-worker-store-"));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// This process stores the bundles and the workers run them: one cluster key for both.
process.env.NBJOB_CLUSTER_KEY = randomBytes(32).toString("hex");

let store: Store;
const workers = new Map<string, { process: ChildProcess; file: string; log: string }>();

async function startWorker(id: string): Promise<void> {
  const file = join(dir, `${id.replace("/", "-")}.json`);
  const child = spawn(process.execPath, [NBJOB, "worker", "--connection-file", file, "--id", id, "--profile", "ws"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NBJOB_DATABASE_URL: URL, NBJOB_HOME: dir, NBJOB_WORKER_HEARTBEAT_MS: "300", NBJOB_WORKER_STALE_MS: "1500" },
  });
  const entry = { process: child, file, log: "" };
  child.stdout?.on("data", (d: Buffer) => (entry.log += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (entry.log += d.toString()));
  workers.set(id, entry);
  for (let waited = 0; !existsSync(file); waited += 50) {
    if (waited > 20_000) throw new Error(`worker ${id} wrote no connection file:\n${entry.log}`);
    await sleep(50);
  }
}

async function queueJob(source: string, entries: string[], options: { params?: Record<string, number>; target?: string } = {}): Promise<number> {
  const bundleHash = await putBundle(store, { source, snippets: [], params: options.params ?? {}, entries });
  const job = await createJob(store, { bundleHash, targetWorker: options.target ?? null });
  await notifyJobQueued(store, options.target ?? null);
  return job.id;
}

async function waitFor(jobId: number, statuses: DbJob["status"][], timeoutMs = 20_000): Promise<DbJob> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJob(store, jobId);
    if (job && statuses.includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is ${job?.status}, not ${statuses.join("/")}, after ${timeoutMs} ms`);
    await sleep(25);
  }
}

function resultOf(job: DbJob): unknown {
  const stored = job.result as unknown as StoredResult;
  assert.equal(stored.encoding, "v8");
  return deserialize(Buffer.from(stored.data, "base64"));
}

before(async () => {
  const admin = new PgClient({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DATABASE}`);
  await admin.query(`CREATE DATABASE ${DATABASE}`);
  await admin.end();
  store = openStore({ url: URL });
  await store.ready();
  await Promise.all([startWorker("ws/0"), startWorker("ws/1")]);
  // Both have heartbeated: they are in the workers table.
  for (let waited = 0; (await listWorkers(store, { profile: "ws", aliveWithinMs: 5_000 })).length < 2; waited += 50) {
    if (waited > 20_000) throw new Error(`workers did not heartbeat:\n${[...workers.values()].map((w) => w.log).join("\n")}`);
    await sleep(50);
  }
});

after(async () => {
  for (const worker of workers.values()) if (worker.process.exitCode === null) worker.process.kill("SIGKILL");
  await store?.close();
  const admin = new PgClient({ connectionString: ADMIN_URL });
  await admin.connect();
  if (!process.env.KEEP_DB) await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
});

describe("workers with the store", () => {
  test("queued jobs are taken by whichever worker is idle; each row ends done with its result", async () => {
    const source = "function slow(n: number): number {\n  const end = Date.now() + 150;\n  while (Date.now() < end) {}\n  return n * params.scale;\n}";
    const ids: number[] = [];
    for (let i = 0; i < 8; i++) ids.push(await queueJob(`${source}\nconst n${i} = ${i};`, [`slow(n${i})`], { params: { scale: 10 } }));
    const jobs = await Promise.all(ids.map((id) => waitFor(id, ["done", "failed"])));
    assert.deepEqual(jobs.map((j) => j.status), Array(8).fill("done"), JSON.stringify(jobs.map((j) => j.error_message)));
    assert.deepEqual(jobs.map(resultOf), [0, 10, 20, 30, 40, 50, 60, 70]);
    assert.deepEqual(new Set(jobs.map((j) => j.worker_id)), new Set(["ws/0", "ws/1"]), "both workers took jobs");
    for (const job of jobs) {
      assert.ok(job.started_at && job.finished_at && job.started_at <= job.finished_at);
      assert.equal(job.pid, workers.get(job.worker_id!)!.process.pid);
    }
  });

  test("the dashboard hears of a claim: the claim itself commits without notifying, the worker announces it while the job runs", async () => {
    const listener = new PgClient({ connectionString: URL });
    await listener.connect();
    // The status read on each of a job's notifications, in the order they came. Every job in a
    // payload is read, not only this test's: the worker can claim and announce the job before
    // queueJob has returned its id.
    const seenFor = new Map<number, string[]>();
    listener.on("notification", (message) => {
      if (message.channel !== "nbjob_jobs_changed") return;
      for (const jobId of (message.payload ?? "").split(",").map(Number).filter((n) => n > 0)) {
        const seen = seenFor.get(jobId) ?? [];
        seenFor.set(jobId, seen);
        const slot = seen.push("(not read yet)") - 1;
        // The row as the dashboard would read it on this notification.
        void getJob(store, jobId).then((row) => (seen[slot] = row?.status ?? "?"));
      }
    });
    try {
      await listener.query("LISTEN nbjob_jobs_changed");
      const id = await queueJob("function busy(): number {\n  const end = Date.now() + 1500;\n  while (Date.now() < end) {}\n  return 1;\n}", ["busy()"]);
      const job = await waitFor(id, ["done", "failed"]);
      assert.equal(job.status, "done");
      await sleep(300);
      // Queued (created), running (the worker's announcement: 1.5 s before the end), done (and its
      // environment link). The first notification is the insert's, which may be read after the
      // claim: "running" must be read on a later one, which only the announcement can be.
      const seen = seenFor.get(id) ?? [];
      assert.ok(seen.slice(1).includes("running"), `statuses read on this job's notifications: ${seen.join(", ")}`);
    } finally {
      await listener.end();
    }
  });

  test("a job for one worker runs there; its output is stored line by line", async () => {
    const id = await queueJob("console.log('first line');\nconsole.error('a warning');\nprocess.stdout.write('no newline at the end');", ["'ok'"], { target: "ws/1" });
    const job = await waitFor(id, ["done", "failed"]);
    assert.equal(job.status, "done");
    assert.equal(job.worker_id, "ws/1");
    assert.equal(job.result_text, "'ok'");
    const logs = await readLogs(store, id);
    assert.deepEqual(logs.map((l) => [l.stream, l.line]), [["stdout", "first line"], ["stderr", "a warning"], ["stdout", "no newline at the end"]]);
  });

  test("an error is recorded with its name, message and a traceback at bundle.ts lines", async () => {
    const id = await queueJob("function check(v: number) {\n  if (v > 1) throw new TypeError(`v is ${v}`);\n}", ["check(params.v)"], { params: { v: 3 } });
    const job = await waitFor(id, ["failed", "done"]);
    assert.equal(job.status, "failed");
    assert.equal(job.error_name, "TypeError");
    assert.equal(job.error_message, "v is 3");
    assert.match(job.error_traceback!.join("\n"), /at check \(bundle\.ts:2:\d+\)/);
  });

  test("a job sent over the comm with record: true streams to the client and is recorded", async () => {
    const bundle = { source: "console.log('hello from the comm');", entries: ["6 * 7"], params: {} };
    const bundleHash = await putBundle(store, { ...bundle, snippets: [] });
    const row = await createJob(store, { bundleHash, targetWorker: "ws/0" });
    const signed = { ...bundle, hash: bundleHash, signature: signBundle({ ...bundle, hash: bundleHash }) };
    const client = await KernelClient.connect(readConnectionFile(workers.get("ws/0")!.file), { readyTimeoutMs: 20_000 });
    try {
      const comm = await client.openComm("nbjob.worker");
      const events: WorkerEvent[] = [];
      comm.onMsg((data) => events.push(data as WorkerEvent));
      await comm.send({ action: "run", job_id: row.id, bundle: signed, record: true });
      const job = await waitFor(row.id, ["done", "failed"]);
      assert.equal(job.status, "done");
      assert.equal(resultOf(job), 42);
      assert.deepEqual((await readLogs(store, row.id)).map((l) => l.line), ["hello from the comm"]);
      for (let waited = 0; !events.some((e) => e.action === "done"); waited += 20) {
        assert.ok(waited < 5_000, JSON.stringify(events));
        await sleep(20);
      }
      assert.ok(events.some((e) => e.action === "stream" && e.text === "hello from the comm\n"));
    } finally {
      client.close();
    }
  });

  test("a recorded run of a job already cancelled in the store is stopped and the row left alone", async () => {
    const unsigned = { source: "while (true) {}", params: {}, entries: [] };
    const hash = await putBundle(store, { ...unsigned, snippets: [] });
    const bundle = { ...unsigned, hash, signature: signBundle({ ...unsigned, hash }) };
    const row = await createJob(store, { bundleHash: hash, targetWorker: "ws/0" });
    await transitionJob(store, row.id, "cancelled", { error: { name: "Cancelled", message: "changed my mind" } });
    const client = await KernelClient.connect(readConnectionFile(workers.get("ws/0")!.file), { readyTimeoutMs: 20_000 });
    try {
      const comm = await client.openComm("nbjob.worker");
      const events: WorkerEvent[] = [];
      comm.onMsg((data) => events.push(data as WorkerEvent));
      await comm.send({ action: "run", job_id: row.id, bundle, record: true });
      for (let waited = 0; !events.some((e) => e.action === "cancelled"); waited += 20) {
        assert.ok(waited < 10_000, JSON.stringify(events));
        await sleep(20);
      }
      const cancelled = events.find((e) => e.action === "cancelled") as Extract<WorkerEvent, { action: "cancelled" }>;
      assert.match(cancelled.reason, new RegExp(`job ${row.id} is cancelled in the store`));
      const after = (await getJob(store, row.id))!;
      assert.equal(after.status, "cancelled");
      assert.equal(after.error_message, "changed my mind");
    } finally {
      client.close();
    }
  });

  test("cancelling a running job in the store stops it; the worker goes on to the next job", async () => {
    const spinning = await queueJob("while (true) {}", [], { target: "ws/0" });
    await waitFor(spinning, ["running"]);
    const next = await queueJob("", ["'after the cancel'"], { target: "ws/0" });
    await transitionJob(store, spinning, "cancelled", { error: { name: "Cancelled", message: "by the test" } });
    await notifyJobCancelled(store, spinning);
    const done = await waitFor(next, ["done", "failed"], 10_000);
    assert.equal(resultOf(done), "after the cancel");
    assert.equal((await getJob(store, spinning))!.status, "cancelled");
  });

  test("a job whose worker dies is marked lost by another worker", async () => {
    const id = await queueJob("while (true) {}", [], { target: "ws/1" });
    await waitFor(id, ["running"]);
    workers.get("ws/1")!.process.kill("SIGKILL");
    const job = await waitFor(id, ["lost"], 15_000);
    assert.equal(job.error_name, "WorkerLost");
    assert.match(job.error_message!, /worker ws\/1 stopped answering/);
  });
});
