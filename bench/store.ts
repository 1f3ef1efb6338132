// Benchmark of the store's write path: 10,000 job records (bundle, queued -> running -> done,
// result) through the store API, next to plain single-row INSERTs of the same data in the same
// run; then the time to list the newest 50 of 100,000 jobs. Prints ratios, asserts nothing.
//   npm run bench:store   (NBJOB_BENCH_URL: an admin URL, default postgres://postgres@127.0.0.1:5432/postgres;
//                          NBJOB_BENCH_JOBS: how many jobs to write, default 10000)
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { openStore, putBundle, createJob, transitionJob, listJobs } from "../store";
import type { BundleInput, Store } from "../store";

const ADMIN_URL = process.env.NBJOB_BENCH_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const JOBS = Number(process.env.NBJOB_BENCH_JOBS ?? 10_000);
const LISTED_TOTAL = 100_000;
const CONCURRENCY = 4;
const BLOCK = 500;

const shared = [
  { kind: "class", names: ["Model"], source: "class Model {\n  constructor(public weights: number[]) {}\n  predict(x: number) { return this.weights.reduce((a, w) => a * x + w, 0); }\n}" },
  { kind: "function", names: ["loss"], source: "function loss(m: Model, xs: number[], ys: number[]) {\n  return xs.reduce((s, x, i) => s + (m.predict(x) - ys[i]) ** 2, 0) / xs.length;\n}" },
];

/** Job i's data: a training function that changes every 100 jobs, and its own parameters. */
function jobData(i: number): { bundle: BundleInput; result: { loss: number; steps: number } } {
  const train = { kind: "function", names: ["train"], source: `function train(lr: number, seed: number) {\n  // variant ${Math.floor(i / 100)}\n  return { loss: lr * seed, steps: 100 };\n}` };
  const params = { lr: 0.001 * ((i % 10) + 1), seed: i };
  const snippets = [...shared, train];
  const source = `${snippets.map((s) => s.source).join("\n\n")}\n\nconst params = ${JSON.stringify(params)};\ntrain(params.lr, params.seed);\n`;
  return { bundle: { source, snippets, params, entries: ["train(params.lr, params.seed)"] }, result: { loss: params.lr * i, steps: 100 } };
}

async function inParallel(from: number, to: number, work: (i: number) => Promise<void>): Promise<number> {
  let next = from;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < to) await work(next++);
  }));
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function viaStore(store: Store, from: number, to: number): Promise<number> {
  return inParallel(from, to, async (i) => {
    const { bundle, result } = jobData(i);
    // Submitting stores the bundle and the queued job atomically (one commit), as createJob does;
    // the two transitions happen later, on the worker, each its own commit.
    const job = await store.transaction(async (tx) => createJob(tx, { bundleHash: await putBundle(tx, bundle), name: `bench ${i}`, tags: ["bench"] }));
    await transitionJob(store, job.id, "running", { workerId: `w${i % CONCURRENCY}`, host: "bench", pid: process.pid });
    await transitionJob(store, job.id, "done", { result, resultText: JSON.stringify(result) });
  });
}

async function createBaselineTable(store: Store): Promise<void> {
  await store.query(`CREATE TABLE bench_plain_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, source text, snippets jsonb, params jsonb, entries text[], name text,
    tags text[], status text, worker text, host text, pid int, queued_at timestamptz, started_at timestamptz, finished_at timestamptz, result jsonb)`);
}

async function baseline(store: Store, from: number, to: number): Promise<number> {
  return inParallel(from, to, async (i) => {
    const { bundle, result } = jobData(i);
    const now = new Date();
    await store.query(
      `INSERT INTO bench_plain_jobs (source, snippets, params, entries, name, tags, status, worker, host, pid, queued_at, started_at, finished_at, result)
       VALUES ($1, $2, $3, $4, $5, $6, 'done', $7, 'bench', $8, $9, $9, $9, $10)`,
      [bundle.source, JSON.stringify(bundle.snippets), JSON.stringify(bundle.params), bundle.entries, `bench ${i}`, ["bench"], `w${i % CONCURRENCY}`, process.pid, now, JSON.stringify(result)],
    );
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function timeListing(store: Store, label: string, list: () => Promise<unknown[]>): Promise<void> {
  await list(); // warm the plan and the cache, as a dashboard that refreshes would be
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const started = process.hrtime.bigint();
    const rows = await list();
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
    if (rows.length !== 50) throw new Error(`${label}: expected 50 rows, got ${rows.length}`);
  }
  console.log(`  ${label.padEnd(34)} median ${median(times).toFixed(2)} ms, max ${Math.max(...times).toFixed(2)} ms (target < 50 ms)`);
}

async function main(): Promise<void> {
  const name = `nbjob_bench_${process.pid}_${randomBytes(3).toString("hex")}`;
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const store = openStore({ url: url.toString(), maxConnections: CONCURRENCY });
  try {
    await store.ready();
    console.log(`nbjob store benchmark: ${JOBS} jobs, ${CONCURRENCY} concurrent writers, PostgreSQL at ${url.host}`);
    await createBaselineTable(store);
    // Alternating blocks, so that a machine whose load changes during the run treats both alike.
    let baselineSeconds = 0;
    let storeSeconds = 0;
    for (let from = 0; from < JOBS; from += BLOCK) {
      const to = Math.min(JOBS, from + BLOCK);
      baselineSeconds += await baseline(store, from, to);
      storeSeconds += await viaStore(store, from, to);
    }
    const storeRate = JOBS / storeSeconds;
    const baselineRate = JOBS / baselineSeconds;
    console.log(`  store API (bundle + job, then 2 transitions: 3 commits/job): ${storeRate.toFixed(0)} jobs/s (${storeSeconds.toFixed(2)} s)`);
    console.log(`  baseline (one single-row INSERT per job: 1 commit/job):       ${baselineRate.toFixed(0)} jobs/s (${baselineSeconds.toFixed(2)} s)`);
    console.log(`  ratio store/baseline: ${(storeRate / baselineRate).toFixed(2)} (per commit: ${((3 * storeRate) / baselineRate).toFixed(2)}; each commit waits for the WAL flush)`);

    // Fill up to 100,000 jobs with generated rows over the stored bundles, then list.
    const { rows } = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.jobs");
    const missing = LISTED_TOTAL - rows[0].n;
    if (missing > 0) {
      await store.query(
        `INSERT INTO nbjob.jobs (bundle_hash, name, tags, status, queued_at, started_at, finished_at, worker_id, result, result_text)
         SELECT b.hash, 'filler ' || g, ARRAY['filler', CASE WHEN g % 7 = 0 THEN 'rare' ELSE 'common' END],
                CASE WHEN g % 5 = 0 THEN 'failed' ELSE 'done' END, now(), now(), now(), 'w0', '{"loss": 1}', '{ loss: 1 }'
           FROM generate_series(1, $1) AS g
           JOIN LATERAL (SELECT hash FROM nbjob.bundles ORDER BY hash OFFSET (g % 100) LIMIT 1) b ON true`,
        [missing],
      );
      await store.query("ANALYZE nbjob.jobs");
    }
    console.log(`listing the newest 50 of ${LISTED_TOTAL} jobs:`);
    await timeListing(store, "nbjob jobs", () => listJobs(store, { limit: 50 }));
    await timeListing(store, "nbjob jobs --status failed", () => listJobs(store, { status: "failed", limit: 50 }));
    await timeListing(store, "nbjob jobs --tag rare", () => listJobs(store, { tag: "rare", limit: 50 }));
  } finally {
    await store.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
