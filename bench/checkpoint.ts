// Benchmark of checkpoint storage: a 64 MB Float32Array checkpointed by a job on a real worker
// (encode in the job thread, hand over, hash, upload to PostgreSQL, flush; best of 3), next to one
// raw `pg` INSERT of the same number of bytes into a bytea column (best of 3), in the same run.
// Then the same value checkpointed again unchanged: the bytes that reached the chunk store.
// Prints throughputs and the ratio; asserts nothing.
//   npm run bench:checkpoint   (NBJOB_BENCH_URL: an admin URL, default postgres://postgres@127.0.0.1:5432/postgres)
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { deserialize } from "node:v8";
import { Client } from "pg";
import { createJob, getJob, notifyJobQueued, openStore, putBundle } from "../store";
import type { Store } from "../store";

// This process stores the bundles and its worker runs them: one cluster key for both.
process.env.NBJOB_CLUSTER_KEY ??= randomBytes(32).toString("hex");

const ADMIN_URL = process.env.NBJOB_BENCH_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const MB = 1024 * 1024;
const BYTES = 64 * MB;
const ROOT = resolve(__dirname, "..", "..");

/** The job: fill 64 MB, checkpoint and flush (timed), wait for the bench to measure, checkpoint the same value again. */
function program(dir: string): string {
  const file = (name: string) => JSON.stringify(join(dir, name));
  return `let weights = new Float32Array(${BYTES / 4});
function fill(seed: number) {
  let x = seed;
  for (let i = 0; i < weights.length; i++) { x = (x * 1103515245 + 12345) % 2147483648; weights[i] = x / 2147483648; }
}
jobtracker.registerCheckpointer("weights");
async function bench() {
  const fs = require("node:fs");
  // Best of 3, each a value with all new content (so every chunk is uploaded), like the raw side.
  let first = Infinity;
  for (let round = 1; round <= 3; round++) {
    fill(round * 7919);
    const t0 = performance.now();
    jobtracker.checkpoint();
    await jobtracker.flush();
    first = Math.min(first, performance.now() - t0);
  }
  fs.writeFileSync(${file("first-stored")}, "");
  while (!fs.existsSync(${file("measured")})) await new Promise((r) => setTimeout(r, 20));
  const t1 = performance.now();
  jobtracker.checkpoint();
  await jobtracker.flush();
  return { first, again: performance.now() - t1 };
}
bench()`;
}

async function chunkBytes(store: Store): Promise<number> {
  const { rows } = await store.query<{ n: string | null }>("SELECT sum(octet_length(data)) AS n FROM nbjob.chunks");
  return Number(rows[0].n ?? 0);
}

async function rawInsert(store: Store): Promise<number> {
  await store.query("CREATE TABLE bench_raw (id int, data bytea)");
  const bytes = randomBytes(BYTES);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const started = process.hrtime.bigint();
    await store.query("INSERT INTO bench_raw (id, data) VALUES ($1, $2)", [i, bytes]);
    best = Math.min(best, Number(process.hrtime.bigint() - started) / 1e6);
  }
  return best;
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  const database = `nbjob_bench_checkpoint_${process.pid}`;
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  const store = openStore({ url: url.toString(), maxConnections: 2 });
  const dir = mkdtempSync(join(tmpdir(), "nbjob-bench-checkpoint-"));
  const worker = spawn(process.execPath, [join(ROOT, "bin", "nbjob.js"), "worker", "--connection-file", join(dir, "worker.json"), "--id", "bench-worker"], {
    cwd: ROOT, env: { ...process.env, NBJOB_DATABASE_URL: url.toString(), NBJOB_HOME: join(dir, "home") }, stdio: ["ignore", "ignore", "inherit"],
  });
  try {
    await store.ready();
    const rawMs = await rawInsert(store);
    const source = program(dir);
    const hash = await putBundle(store, { source, snippets: [{ kind: "cell", names: [], source }], params: {}, entries: ["bench()"] });
    const job = await createJob(store, { bundleHash: hash, name: "bench checkpoint" });
    await notifyJobQueued(store, null);
    await waitFor(() => existsSync(join(dir, "first-stored")), "the first checkpoint");
    const afterFirst = await chunkBytes(store);
    writeFileSync(join(dir, "measured"), "");
    await waitFor(async () => ["done", "failed", "lost", "cancelled"].includes((await getJob(store, job.id))!.status), "the job to end");
    const row = (await getJob(store, job.id))!;
    if (row.status !== "done") throw new Error(`the bench job ${row.status}: ${row.error_message}`);
    const afterAgain = await chunkBytes(store);
    const { first, again } = deserialize(Buffer.from((row.result as { data: string }).data, "base64")) as { first: number; again: number };
    const rawRate = BYTES / MB / (rawMs / 1000);
    const checkpointRate = BYTES / MB / (first / 1000);
    console.log(`raw pg INSERT of 64 MB (bytea, best of 3): ${rawMs.toFixed(0)} ms, ${rawRate.toFixed(0)} MB/s`);
    console.log(`checkpoint of a 64 MB Float32Array on a worker (checkpoint() to flush(), best of 3): ${first.toFixed(0)} ms, ${checkpointRate.toFixed(0)} MB/s`);
    console.log(`ratio checkpoint / raw insert: ${(checkpointRate / rawRate).toFixed(2)}x (target >= 0.7x)`);
    console.log(`the same value checkpointed again unchanged: ${again.toFixed(0)} ms, ${afterAgain - afterFirst} bytes written to the chunk store (target 0); the first three stored ${(afterFirst / MB).toFixed(1)} MB`);
  } finally {
    worker.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    if (worker.exitCode === null) worker.kill("SIGKILL");
    await store.close();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});


