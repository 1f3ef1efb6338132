// The store against the real PostgreSQL at 127.0.0.1:5432, in fresh databases: migrations (twice,
// racing, refusing), content dedup of snippets and checkpoint values, guarded job transitions,
// logs, analyses, workers, and clear errors for bad URLs and unreachable servers.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import {
  openStore, putBundle, putSnippets, createJob, transitionJob, getJob, listJobs, IllegalTransitionError, UnknownJobError,
  putCheckpoint, listCheckpoints, readCheckpoint, putBlob, readBlob, CHUNK_SIZE, appendLogs, readLogs,
  createAnalysis, putAnalysisRow, getAnalysisRows, analysisBacklog, heartbeatWorker, listWorkers, StoreError,
  putEnvironment, createJobGroup, lastCheckpointIndex, listGroupJobs, knownMigrations,
} from "../store";
import type { Store, BundleInput } from "../store";
import { admin, TestDatabases } from "./pg-admin";
import { JobLogWriter } from "../worker/log-writer";

const databases = new TestDatabases("store");
const freshDatabase = (label: string) => databases.fresh(label);

async function count(store: Store, table: string): Promise<number> {
  const { rows } = await store.query<{ n: number }>(`SELECT count(*)::int AS n FROM nbjob.${table}`);
  return rows[0].n;
}

function bundle(params: { [k: string]: number }, normSource = "function norm(p: Point) { return Math.hypot(p.x, p.y); }"): BundleInput {
  const snippets = [
    { kind: "class", names: ["Point"], source: "class Point { constructor(public x: number, public y: number) {} }" },
    { kind: "function", names: ["norm"], source: normSource },
  ];
  const source = `${snippets.map((s) => s.source).join("\n")}\nconst params = ${JSON.stringify(params)};\nnorm(new Point(params.x, 0));\n`;
  return { source, snippets, params, entries: ["norm(new Point(params.x, 0))"] };
}

after(async () => {
  await databases.dropAll();
});

describe("migrations", () => {
  // The migrations this nbjob ships, as the runner reads them (not a list kept here).
  const known = knownMigrations().map((m) => m.id);
  const latest = known[known.length - 1];
  test("the first use applies the schema, the second finds it current", async () => {
    const url = await freshDatabase("twice");
    const first = openStore({ url });
    try {
      assert.deepEqual(await first.migrationsApplied(), known);
    } finally {
      await first.close();
    }
    const second = openStore({ url });
    try {
      assert.deepEqual(await second.migrationsApplied(), []);
      assert.equal(await count(second, "jobs"), 0);
    } finally {
      await second.close();
    }
  });

  test("racing migrators apply each migration exactly once", async () => {
    const url = await freshDatabase("race");
    const stores = Array.from({ length: 5 }, () => openStore({ url, maxConnections: 1 }));
    try {
      const applied = await Promise.all(stores.map((s) => s.migrationsApplied()));
      assert.deepEqual(applied.flat().sort((a, b) => a - b), known, `each migration applied once in total, got ${JSON.stringify(applied)}`);
      const { rows } = await stores[0].query<{ id: number }>("SELECT id FROM nbjob.migrations ORDER BY id");
      assert.deepEqual(rows.map((r) => r.id), known);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test("a schema newer than this code is refused with a clear message", async () => {
    const url = await freshDatabase("newer");
    const store = openStore({ url });
    await store.ready();
    await store.query("INSERT INTO nbjob.migrations (id, name) VALUES (999999, '999999.sql')");
    await store.close();
    const later = openStore({ url });
    try {
      await assert.rejects(later.ready(), (err: Error) => err instanceof StoreError && new RegExp(`schema version 999999, newer than this nbjob knows \\(${latest}\\); upgrade nbjob`).test(err.message));
    } finally {
      await later.close();
    }
  });

  test("another application's database is refused and left untouched", async () => {
    const url = await freshDatabase("foreign");
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      await client.query("CREATE TABLE users (id int PRIMARY KEY); INSERT INTO users VALUES (1)");
      const store = openStore({ url });
      try {
        await assert.rejects(store.ready(), /holds tables of another application \(public\.users\) and no nbjob schema; nbjob leaves it untouched/);
      } finally {
        await store.close();
      }
      const { rows } = await client.query("SELECT nspname FROM pg_namespace WHERE nspname = 'nbjob'");
      assert.equal(rows.length, 0, "no nbjob schema was created");
      assert.equal((await client.query("SELECT count(*)::int AS n FROM users")).rows[0].n, 1);
    } finally {
      await client.end();
    }
  });
});

describe("the store", () => {
  let store: Store;
  let apiUrl: string;
  before(async () => {
    apiUrl = await freshDatabase("api");
    store = openStore({ url: apiUrl });
    await store.ready();
  });
  after(async () => {
    await store.close();
  });

  test("snippets and bundles are stored once by content", async () => {
    const before = await count(store, "snippets");
    const a = await putBundle(store, bundle({ x: 1 }));
    const b = await putBundle(store, bundle({ x: 2 }));
    const again = await putBundle(store, bundle({ x: 1 }));
    assert.equal(a, again, "the same bundle has the same hash");
    assert.notEqual(a, b);
    assert.equal(await count(store, "snippets"), before + 2, "Point and norm stored once for both bundles");
    const hashes = await putSnippets(store, [{ kind: "class", names: ["Point"], source: bundle({}).snippets[0].source }]);
    assert.equal(hashes[0].length, 64);
    assert.equal(await count(store, "snippets"), before + 2);
  });

  test("writers racing to store the same code and values all succeed and store it once", async () => {
    const racing = openStore({ url: apiUrl, maxConnections: 6 });
    try {
      const source = `function raced() { return ${Date.now()}; }`;
      const b: BundleInput = { source: `${source}\nraced();\n`, snippets: [{ kind: "function", names: ["raced"], source }], params: {}, entries: ["raced()"] };
      const hashes = await Promise.all(Array.from({ length: 6 }, () => putBundle(racing, b)));
      assert.equal(new Set(hashes).size, 1);
      const { rows } = await racing.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.bundle_snippets WHERE bundle_hash = $1", [hashes[0]]);
      assert.equal(rows[0].n, 1, "the bundle's snippet list is written once");
      const value = randomBytes(CHUNK_SIZE + 10);
      const puts = await Promise.all(Array.from({ length: 3 }, () => putBlob(racing, value)));
      assert.equal(new Set(puts.map((p) => p.hash)).size, 1);
      assert.ok((await readBlob(racing, puts[0].hash)).equals(value));
    } finally {
      await racing.close();
    }
  });

  test("a job moves queued -> running -> done with a timestamp for each step, and cannot go back", async () => {
    const hash = await putBundle(store, bundle({ x: 3 }));
    const env = await putEnvironment(store, { node_version: process.version, nbjob_version: "0.1.0", lockfile_hash: "ab".repeat(32), packages: { pg: "8.23.1" } });
    const job = await createJob(store, { bundleHash: hash, name: "walk", tags: ["geometry"] });
    assert.equal(job.status, "queued");
    assert.equal(typeof job.id, "number");
    assert.ok(job.queued_at instanceof Date);
    assert.equal(job.started_at, null);
    const running = await transitionJob(store, job.id, "running", { workerId: "default-0", host: "h1", pid: 42, environmentHash: env });
    assert.ok(running.started_at! >= job.queued_at);
    assert.equal(running.worker_id, "default-0");
    const done = await transitionJob(store, job.id, "done", { result: { distance: 3 }, resultText: "{ distance: 3 }" });
    assert.deepEqual(done.result, { distance: 3 });
    assert.ok(done.finished_at! >= running.started_at!);
    await assert.rejects(transitionJob(store, job.id, "running"), (err: Error) => err instanceof IllegalTransitionError && /job \d+ is done and cannot become running/.test(err.message));
    const after = await getJob(store, job.id);
    assert.equal(after!.status, "done", "the refused transition changed nothing");
    assert.deepEqual(after!.finished_at, done.finished_at);
    await assert.rejects(transitionJob(store, 987654, "running"), UnknownJobError);
  });

  test("a failed job keeps its error name, message and traceback", async () => {
    const job = await createJob(store, { bundleHash: await putBundle(store, bundle({ x: 4 })) });
    await transitionJob(store, job.id, "running", { workerId: "w" });
    const failed = await transitionJob(store, job.id, "failed", { error: { name: "RangeError", message: "too far", traceback: ["at norm (bundle.ts:2:10)"] } });
    assert.equal(failed.status, "failed");
    assert.equal(failed.error_name, "RangeError");
    assert.deepEqual(failed.error_traceback, ["at norm (bundle.ts:2:10)"]);
    const cancelled = await createJob(store, { bundleHash: failed.bundle_hash });
    assert.equal((await transitionJob(store, cancelled.id, "cancelled")).status, "cancelled");
  });

  test("listing filters by status, tag and name, newest first", async () => {
    const hash = await putBundle(store, bundle({ x: 5 }));
    const group = await createJobGroup(store, { grid: { x: [5, 6] } });
    const a = await createJob(store, { bundleHash: hash, tags: ["sweep", "lr"], name: "s", groupId: group.id });
    const b = await createJob(store, { bundleHash: hash, tags: ["sweep"], name: "s", groupId: group.id });
    await transitionJob(store, a.id, "running");
    const sweep = await listJobs(store, { tag: "sweep" });
    assert.deepEqual(sweep.map((j) => j.id), [b.id, a.id]);
    assert.deepEqual((await listJobs(store, { tag: "lr" })).map((j) => j.id), [a.id]);
    assert.deepEqual((await listJobs(store, { status: "running" })).map((j) => j.id), [a.id]);
    assert.deepEqual((await listJobs(store, { groupId: group.id, limit: 1 })).map((j) => j.id), [b.id]);
    assert.ok(!("result" in sweep[0]), "listings leave out the result value");
    const members = await listGroupJobs(store, group.id);
    assert.deepEqual(members.map((j) => [j.id, j.params.x, j.status]), [[a.id, 5, "running"], [b.id, 5, "queued"]]);
  });

  test("checkpoint values are stored by content: an unchanged value uploads nothing", async () => {
    const job = await createJob(store, { bundleHash: await putBundle(store, bundle({ x: 6 })) });
    const weights = randomBytes(4096);
    const first = await putCheckpoint(store, job.id, 0, { iteration: Buffer.from("1"), weights });
    assert.equal(first.uploaded, 4096 + 1);
    const chunksBefore = await count(store, "chunks");
    const second = await putCheckpoint(store, job.id, 1, { iteration: Buffer.from("2"), weights });
    assert.equal(second.uploaded, 1, "only the changed variable was sent");
    assert.equal(second.hashes.weights, first.hashes.weights);
    assert.equal(await count(store, "chunks"), chunksBefore + 1);
    const listed = await listCheckpoints(store, job.id);
    assert.deepEqual(listed.map((c) => c.idx), [0, 1]);
    assert.deepEqual(Object.keys(listed[1].values), ["iteration", "weights"]);
    const restored = await readCheckpoint(store, job.id, 1);
    assert.equal(restored.iteration.toString(), "2");
    assert.ok(restored.weights.equals(weights));
    assert.equal(await lastCheckpointIndex(store, job.id), 1);
    await assert.rejects(putCheckpoint(store, job.id, 1, { iteration: Buffer.from("3") }), /already has checkpoint 1/);
    await assert.rejects(readCheckpoint(store, job.id, 7), /has no checkpoint 7/);
  });

  test("values larger than one chunk round-trip, and a partly changed value re-uses its unchanged chunks", async () => {
    const value = randomBytes(CHUNK_SIZE * 2 + 1000);
    const put = await putBlob(store, value);
    assert.equal(put.size, value.length);
    assert.equal(put.uploaded, value.length);
    assert.ok((await readBlob(store, put.hash)).equals(value));
    assert.equal((await putBlob(store, value)).uploaded, 0, "storing it again sends nothing");
    const changed = Buffer.from(value);
    changed[changed.length - 1] ^= 0xff;
    const second = await putBlob(store, changed);
    assert.equal(second.uploaded, 1000, "only the last chunk differs");
    assert.ok((await readBlob(store, second.hash)).equals(changed));
    // A stream of odd-sized pieces is re-cut into the same chunks: nothing new to send.
    async function* pieces() {
      for (let offset = 0; offset < value.length; offset += 3_000_001) yield value.subarray(offset, offset + 3_000_001);
    }
    const streamed = await putBlob(store, pieces());
    assert.equal(streamed.hash, put.hash);
    assert.equal(streamed.uploaded, 0);
  });

  test("logs keep their order across batches and streams", async () => {
    const job = await createJob(store, { bundleHash: await putBundle(store, bundle({ x: 7 })) });
    await appendLogs(store, job.id, [{ stream: "stdout", line: "one" }, { stream: "stderr", line: "two" }]);
    const writer = new JobLogWriter(store, job.id, { intervalMs: 10, log: () => {} });
    writer.write("stdout", "three\nfou");
    writer.write("stdout", "r\nfive (no newline)");
    await writer.close();
    const lines = await readLogs(store, job.id);
    assert.deepEqual(lines.map((l) => `${l.stream}:${l.line}`), ["stdout:one", "stderr:two", "stdout:three", "stdout:four", "stdout:five (no newline)"]);
    assert.deepEqual((await readLogs(store, job.id, { afterId: lines[2].id })).map((l) => l.line), ["four", "five (no newline)"]);
  });

  test("an analysis row is computed once per function and checkpoint", async () => {
    const job = await createJob(store, { bundleHash: await putBundle(store, bundle({ x: 8 })) });
    for (const idx of [0, 1]) await putCheckpoint(store, job.id, idx, { iteration: Buffer.from(String(idx)) });
    const fn = { name: "testPerformance", source: "function testPerformance() { return { iteration }; }" };
    const analysis = await createAnalysis(store, job.id, [fn]);
    const [hash] = analysis.function_hashes;
    assert.deepEqual(await analysisBacklog(store, job.id, [hash]), { status: "queued", checkpoints: 2, missing: [0, 1] });
    assert.equal(await putAnalysisRow(store, { functionHash: hash, jobId: job.id, checkpointIdx: 0, value: { iteration: 0 }, workerId: "a" }), true);
    assert.equal(await putAnalysisRow(store, { functionHash: hash, jobId: job.id, checkpointIdx: 0, value: { iteration: 99 }, workerId: "b" }), false);
    assert.deepEqual(await analysisBacklog(store, job.id, [hash]), { status: "queued", checkpoints: 2, missing: [1] });
    // A job without checkpoints still gives its status; a job that does not exist is named.
    const empty = await createJob(store, { bundleHash: await putBundle(store, bundle({ x: 9 })) });
    assert.deepEqual(await analysisBacklog(store, empty.id, [hash]), { status: "queued", checkpoints: 0, missing: [] });
    await assert.rejects(analysisBacklog(store, 987654321, [hash]), (err: Error) => err.name === "UnknownJobError" && /there is no job 987654321/.test(err.message));
    const again = await createAnalysis(store, job.id, [fn]);
    assert.deepEqual(again.function_hashes, [hash], "the same source is the same function");
    const rows = await getAnalysisRows(store, job.id, [hash]);
    assert.deepEqual(rows.map((r) => [r.checkpoint_idx, r.value, r.worker_id]), [[0, { iteration: 0 }, "a"]]);
  });

  test("workers upsert their heartbeat", async () => {
    const first = await heartbeatWorker(store, { id: "default-0", host: "h1", pid: 1 });
    await new Promise((r) => setTimeout(r, 20));
    const second = await heartbeatWorker(store, { id: "default-0", host: "h1", pid: 1 });
    assert.ok(second.last_heartbeat_at > first.last_heartbeat_at);
    assert.deepEqual(second.started_at, first.started_at);
    assert.deepEqual((await listWorkers(store, { aliveWithinMs: 60_000 })).map((w) => w.id), ["default-0"]);
    assert.deepEqual(await listWorkers(store, { profile: "other" }), []);
  });

  test("a transaction that fails leaves nothing behind", async () => {
    const jobsBefore = await count(store, "jobs");
    await assert.rejects(store.transaction(async (tx) => {
      const hash = await putBundle(tx, bundle({ x: 9 }, "function norm() { return 9; }"));
      await createJob(tx, { bundleHash: hash });
      throw new Error("user cancelled the review");
    }), /user cancelled the review/);
    assert.equal(await count(store, "jobs"), jobsBefore);
    const { rows } = await store.query("SELECT 1 FROM nbjob.snippets WHERE source = $1", ["function norm() { return 9; }"]);
    assert.equal(rows.length, 0);
  });

  test("a dropped connection is replaced: the next query works", async () => {
    const { rows } = await store.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    await admin((c) => c.query("SELECT pg_terminate_backend($1)", [rows[0].pid]));
    await new Promise((r) => setTimeout(r, 200));
    const again = await store.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    assert.notEqual(again.rows[0].pid, rows[0].pid);
  });

  test("a connection ended while checked out between two queries does not crash the process", async () => {
    const uncaught: unknown[] = [];
    const record = (err: unknown) => uncaught.push(err);
    process.on("uncaughtException", record);
    try {
      await assert.rejects(store.transaction(async (tx) => {
        const { rows } = await tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
        // No query is running on the connection when the server ends it.
        await admin((c) => c.query("SELECT pg_terminate_backend($1)", [rows[0].pid]));
        await new Promise((r) => setTimeout(r, 300));
        await tx.query("SELECT 1");
      }));
      const { rows } = await store.query<{ one: number }>("SELECT 1 AS one");
      assert.equal(rows[0].one, 1);
      assert.deepEqual(uncaught, []);
    } finally {
      process.off("uncaughtException", record);
    }
  });

  test("a job needs a stored bundle", async () => {
    await assert.rejects(createJob(store, { bundleHash: "0".repeat(64) }), /store the bundle first/);
  });
});

describe("bad connections", () => {
  test("a malformed URL is one clear line", async () => {
    const store = openStore({ url: "mysql://root@localhost/db" });
    await assert.rejects(store.ready(), /must start with postgres:\/\/ or postgresql:\/\//);
    await store.close();
  });

  test("a refused connection names the server without its password", async () => {
    const store = openStore({ url: "postgres://me:hunter2@127.0.0.1:1/nbjob" });
    await assert.rejects(store.ready(), (err: Error) => err instanceof StoreError && /cannot reach PostgreSQL at postgres:\/\/me:\*\*\*@127\.0\.0\.1:1\/nbjob \(connection refused\)/.test(err.message) && !err.message.includes("hunter2"));
    await store.close();
  });

  test("a missing database says how to create it", async () => {
    const store = openStore({ url: "postgres://postgres@127.0.0.1:5432/nbjob_no_such_db" });
    await assert.rejects(store.ready(), /database "nbjob_no_such_db" does not exist; create it/);
    await store.close();
  });
});
