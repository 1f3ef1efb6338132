// Benchmark of jobtracker.log: a job on a real worker runs a training-like loop of 100,000
// iterations (each a gradient step over 64 weights) with `jobtracker.log({ loss, acc })` in every
// iteration, and the same loop without it, alternately, 10 rounds each; best of each. Prints the
// ratio (target under 1.5x), the cost per call, and how long the store took after the loop
// (flush) for 200,000 values. Asserts nothing.
//   npm run bench:metrics   (NBJOB_BENCH_URL: an admin URL, default postgres://postgres@127.0.0.1:5432/postgres)
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { deserialize } from "node:v8";
import { Client } from "pg";
import { createJob, getJob, notifyJobQueued, openStore, putBundle } from "../store";

process.env.NBJOB_CLUSTER_KEY ??= randomBytes(32).toString("hex");

const ADMIN_URL = process.env.NBJOB_BENCH_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const ROOT = resolve(__dirname, "..", "..");
const CALLS = 100_000;
const ROUNDS = 10;

const PROGRAM = `const weights = new Float64Array(64).map((_, j) => j / 64);
function gradientStep(): number {
  let loss = 0;
  for (let j = 0; j < weights.length; j++) {
    const g = weights[j] - 0.5;
    weights[j] -= 0.01 * g;
    loss += g * g;
  }
  return loss;
}
function withoutLogging(n: number): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const loss = gradientStep();
    total += loss;
  }
  return total;
}
function withLogging(n: number): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const loss = gradientStep();
    total += loss;
    jobtracker.log({ loss, acc: total / (i + 1) });
  }
  return total;
}
async function bench() {
  let plain = Infinity, logged = Infinity, flushed = Infinity;
  withoutLogging(${CALLS}); withLogging(${CALLS}); await jobtracker.flush();
  for (let round = 0; round < ${ROUNDS}; round++) {
    weights.fill(0.25);
    let t0 = performance.now();
    withoutLogging(${CALLS});
    plain = Math.min(plain, performance.now() - t0);
    weights.fill(0.25);
    t0 = performance.now();
    withLogging(${CALLS});
    const t1 = performance.now();
    logged = Math.min(logged, t1 - t0);
    await jobtracker.flush();
    flushed = Math.min(flushed, performance.now() - t1);
  }
  return { plain, logged, flushed };
}
bench()`;

async function main(): Promise<void> {
  const database = `nbjob_bench_metrics_${process.pid}`;
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  const store = openStore({ url: url.toString(), maxConnections: 2 });
  const dir = mkdtempSync(join(tmpdir(), "nbjob-bench-metrics-"));
  const worker = spawn(process.execPath, [join(ROOT, "bin", "nbjob.js"), "worker", "--connection-file", join(dir, "worker.json"), "--id", "bench-worker"], {
    cwd: ROOT, env: { ...process.env, NBJOB_DATABASE_URL: url.toString(), NBJOB_HOME: join(dir, "home") }, stdio: ["ignore", "ignore", "inherit"],
  });
  try {
    await store.ready();
    const hash = await putBundle(store, { source: PROGRAM, snippets: [{ kind: "cell", names: [], source: PROGRAM }], params: {}, entries: ["bench()"] });
    const job = await createJob(store, { bundleHash: hash, name: "bench metrics" });
    await notifyJobQueued(store, null);
    const deadline = Date.now() + 600_000;
    let row = await getJob(store, job.id);
    while (row && !["done", "failed", "lost", "cancelled"].includes(row.status)) {
      if (Date.now() > deadline) throw new Error("timed out waiting for the bench job");
      await new Promise((r) => setTimeout(r, 100));
      row = await getJob(store, job.id);
    }
    if (row?.status !== "done") throw new Error(`the bench job ${row?.status}: ${row?.error_message}`);
    const { plain, logged, flushed } = deserialize(Buffer.from((row.result as { data: string }).data, "base64")) as { plain: number; logged: number; flushed: number };
    const { rows: [{ n }] } = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.metrics WHERE job_id = $1", [job.id]);
    console.log(`loop of ${CALLS} gradient steps (64 weights) without logging: ${plain.toFixed(1)} ms (best of ${ROUNDS})`);
    console.log(`the same loop with jobtracker.log({ loss, acc }) in every iteration: ${logged.toFixed(1)} ms (best of ${ROUNDS}); ${(((logged - plain) * 1e6) / CALLS).toFixed(0)} ns per call`);
    console.log(`ratio with / without logging: ${(logged / plain).toFixed(2)}x (target under 1.5x)`);
    console.log(`then until all ${2 * CALLS} values were stored (jobtracker.flush()): ${flushed.toFixed(0)} ms more (best of ${ROUNDS}); rows stored by the job: ${n}`);
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
