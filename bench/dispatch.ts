// Benchmark of dispatch: N trivial jobs (default 1,000) on a local cluster of 2 workers through
// `rc.loadBalanced()` and the notebook's own API (db.createJobs: a sweep over one parameter, so
// the bundle is type-checked once and each job gets its own stored bundle), every job fully
// stored (status done, result stored: checked here); next to ipyparallel (Debian's
// python3-ipyparallel, 2 engines, load_balanced_view().apply of a trivial function, N tasks,
// waiting for all) in the same run. Prints jobs/s for both, the ratio, and the p50 time from
// submit to start. Asserts nothing beyond the results being complete and right.
//   npm run bench:dispatch   (NBJOB_BENCH_URL: an admin URL, default postgres://postgres@127.0.0.1:5432/postgres;
//                             NBJOB_BENCH_JOBS: jobs per round, default 1000; NBJOB_BENCH_ROUNDS: default 2)
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Client as PgClient } from "pg";

const ADMIN_URL = process.env.NBJOB_BENCH_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const JOBS = Number(process.env.NBJOB_BENCH_JOBS ?? 1_000);
const ROUNDS = Number(process.env.NBJOB_BENCH_ROUNDS ?? 2);
const ROOT = resolve(__dirname, "..", "..");
const NBJOB = join(ROOT, "bin", "nbjob.js");
const PYTHON = "/usr/bin/python3";

interface Round {
  seconds: number;
  /** Seconds until the last job was stored (submitting included). */
  submitSeconds?: number;
  p50Ms: number;
  p90Ms?: number;
}

const IPP_SCRIPT = `
import json, sys, time, statistics
import ipyparallel as ipp
n, rounds = int(sys.argv[1]), int(sys.argv[2])
def inc(x):
    return x + 1
cluster = ipp.Cluster(n=2, log_level=40)
rc = cluster.start_and_connect_sync()
try:
    rc.wait_for_engines(2, timeout=120)
    view = rc.load_balanced_view()
    view.map_sync(inc, range(50))  # warm-up, as the nbjob side's warm-up job
    out = []
    for r in range(rounds):
        t0 = time.perf_counter()
        ars = [view.apply_async(inc, i) for i in range(n)]
        results = [ar.get() for ar in ars]
        elapsed = time.perf_counter() - t0
        assert results == [i + 1 for i in range(n)], "wrong results"
        lat = sorted((ar.started - ar.submitted).total_seconds() * 1000 for ar in ars)
        out.append({"seconds": elapsed, "p50Ms": statistics.median(lat), "p90Ms": lat[int(len(lat) * 0.9)]})
    print(json.dumps(out))
finally:
    rc.close()
    cluster.stop_cluster_sync()
`;

/** Debian's python3-ipyparallel; installs it with apt-get when missing and we are root. */
function ensureIpyparallel(): void {
  const probe = spawnSync(PYTHON, ["-c", "import ipyparallel"], { stdio: "ignore" });
  if (probe.status === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`ipyparallel is not installed for ${PYTHON}; install it with "sudo apt-get install -y python3-ipyparallel" and run again`);
  }
  console.log("installing python3-ipyparallel (apt-get) for the anchor ...");
  const apt = spawnSync("apt-get", ["install", "-y", "python3-ipyparallel"], { stdio: ["ignore", "ignore", "inherit"] });
  if (apt.status !== 0) throw new Error(`apt-get install -y python3-ipyparallel failed (exit ${apt.status}); run "apt-get update" first and try again`);
}

function runIpyparallel(dir: string): Promise<Round[]> {
  const script = join(dir, "ipp_bench.py");
  writeFileSync(script, IPP_SCRIPT);
  return new Promise((resolvePromise, reject) => {
    // A private IPython dir, so that the anchor's cluster files stay out of the user's profile.
    const child = spawn(PYTHON, [script, String(JOBS), String(ROUNDS)], { env: { ...process.env, IPYTHONDIR: join(dir, "ipython") }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => {
      const line = stdout.trim().split("\n").pop() ?? "";
      if (code !== 0 || !line.startsWith("[")) return reject(new Error(`the ipyparallel anchor failed (exit ${code}):\n${stderr.slice(-2000)}`));
      resolvePromise(JSON.parse(line) as Round[]);
    });
  });
}

function nbjobCli(env: NodeJS.ProcessEnv, ...args: string[]): void {
  const r = spawnSync(process.execPath, [NBJOB, ...args], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`nbjob ${args.join(" ")} failed (exit ${r.status}): ${r.stderr}`);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

const LATENCY_JOBS = 50;
/** Submit-to-start of single jobs on an idle cluster (filled in by runNbjob). */
const idle = { p50Ms: NaN, p90Ms: NaN };

async function runNbjob(url: string, home: string): Promise<Round[]> {
  // The runtime reads NBJOB_HOME (the cluster's files) when it connects.
  process.env.NBJOB_HOME = home;
  process.env.NBJOB_DATABASE_URL = url;
  const { Client, DBWrapper, SnippetCollector } = await import("../runtime");
  const { recordSnippet } = await import("../runtime/snippets");
  const db = new DBWrapper(url);
  const rc = await Client.connect();
  try {
    const sc = new SnippetCollector();
    recordSnippet(sc, { source: "function inc(x: number): number {\n  return x + 1;\n}", kind: "function" });
    // Warm-up: both workers have compiled a job and cached the code before the clock starts.
    const warm = await db.createJobs(rc.loadBalanced(), ["inc(params.x)"], sc, { params: { x: 0 }, grid: { x: [-1, -2, -3, -4] }, review: false, name: "warm-up" });
    await warm.results;

    const rounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const xs = Array.from({ length: JOBS }, (_, i) => r * JOBS + i);
      const started = process.hrtime.bigint();
      const group = await db.createJobs(rc.loadBalanced(), ["inc(params.x)"], sc, { params: { x: 0 }, grid: { x: xs }, review: false, name: `bench round ${r}` });
      const submitted = Number(process.hrtime.bigint() - started) / 1e9;
      // Wait on the store (what a notebook awaiting group.results waits for), polling every 20 ms
      // (more often costs the database CPU the workers need on a small machine).
      for (;;) {
        const { rows } = await db.store.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM nbjob.jobs WHERE group_id = $1 AND status IN ('queued', 'running')", [group.id]);
        if (rows[0].n === 0) break;
        await new Promise((r2) => setTimeout(r2, 20));
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      // Every job fully stored: done, with its result (and how it prints) right.
      const { rows } = await db.store.query<{ status: string; result_text: string | null; result: unknown; params: { x: number }; wait_ms: number }>(
        `SELECT j.status, j.result_text, j.result, b.params, extract(epoch FROM j.started_at - j.queued_at) * 1000 AS wait_ms
           FROM nbjob.jobs j JOIN nbjob.bundles b ON b.hash = j.bundle_hash WHERE j.group_id = $1`, [group.id]);
      if (rows.length !== JOBS) throw new Error(`round ${r}: ${rows.length} jobs stored, expected ${JOBS}`);
      const wrong = rows.filter((row) => row.status !== "done" || row.result === null || row.result_text !== String(row.params.x + 1));
      if (wrong.length > 0) throw new Error(`round ${r}: ${wrong.length} jobs not done with the right result, e.g. ${JSON.stringify(wrong[0])}`);
      const waits = rows.map((row) => Number(row.wait_ms)).sort((a, b) => a - b);
      // Where a worker's time goes: start -> stored end of each job, and stored end -> start of its next job.
      const { rows: split } = await db.store.query<{ run_ms: number; gap_ms: number }>(
        `WITH j AS (SELECT started_at, finished_at, lag(finished_at) OVER (PARTITION BY worker_id ORDER BY started_at) AS prev FROM nbjob.jobs WHERE group_id = $1)
         SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000) AS run_ms,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - prev) * 1000) AS gap_ms FROM j`, [group.id]);
      console.log(`  (nbjob round ${r + 1} on the workers: median start -> stored end ${Number(split[0].run_ms).toFixed(1)} ms, end -> next start ${Number(split[0].gap_ms).toFixed(1)} ms)`);
      rounds.push({ seconds, submitSeconds: submitted, p50Ms: percentile(waits, 0.5), p90Ms: percentile(waits, 0.9) });
    }
    // Submit-to-start on an idle cluster: one job at a time (job.rerun() of a stored job: the
    // same bundle as a new load-balanced job, no type check), each awaited before the next.
    const first = await db.createJob(rc.loadBalanced(), ["inc(params.x)"], sc, { params: { x: 0 }, review: false, name: "latency" });
    await first.result;
    const ids: number[] = [];
    for (let i = 0; i < LATENCY_JOBS; i++) {
      const job = await first.rerun();
      await job.result;
      ids.push(job.id);
    }
    const { rows } = await db.store.query<{ wait_ms: number }>(
      "SELECT extract(epoch FROM started_at - queued_at) * 1000 AS wait_ms FROM nbjob.jobs WHERE id = ANY($1::bigint[])", [ids]);
    const waits = rows.map((row) => Number(row.wait_ms)).sort((a, b) => a - b);
    idle.p50Ms = percentile(waits, 0.5);
    idle.p90Ms = percentile(waits, 0.9);
    return rounds;
  } finally {
    rc.close();
    await db.close();
  }
}

function describe(label: string, rounds: Round[]): string {
  return rounds.map((r, i) => `  ${label} round ${i + 1}: ${(JOBS / r.seconds).toFixed(0)} jobs/s (${r.seconds.toFixed(2)} s${r.submitSeconds !== undefined ? `, submitting ${r.submitSeconds.toFixed(2)} s` : ""}), submit-to-start p50 ${r.p50Ms.toFixed(1)} ms, p90 ${r.p90Ms?.toFixed(1) ?? "?"} ms`).join("\n");
}

async function main(): Promise<void> {
  if (process.env.NBJOB_BENCH_ANCHOR !== "0") ensureIpyparallel();
  const name = `nbjob_bench_dispatch_${process.pid}_${randomBytes(3).toString("hex")}`;
  const admin = new PgClient({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const work = mkdtempSync(join(tmpdir(), "nbjob-bench-dispatch-"));
  const home = join(work, "home");
  const env = { ...process.env, NBJOB_HOME: home, NBJOB_DATABASE_URL: url.toString() };
  let clusterStarted = false;
  try {
    console.log(`nbjob dispatch benchmark: ${JOBS} trivial jobs x ${ROUNDS} rounds on 2 workers, PostgreSQL at ${url.host}`);
    // ipyparallel first, on its own, then nbjob: each has the machine to itself while it runs.
    // NBJOB_BENCH_ANCHOR=0 skips the anchor (for profiling nbjob's side alone).
    const ipp = process.env.NBJOB_BENCH_ANCHOR === "0" ? [{ seconds: NaN, p50Ms: NaN }] : await runIpyparallel(work);
    console.log(describe("ipyparallel", ipp));
    nbjobCli(env, "cluster", "start", "-n", "2");
    clusterStarted = true;
    const ours = await runNbjob(url.toString(), home);
    console.log(describe("nbjob      ", ours));
    const best = (rounds: Round[]) => Math.max(...rounds.map((r) => JOBS / r.seconds));
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    const ourRate = best(ours);
    const ippRate = best(ipp);
    console.log(`best round: nbjob ${ourRate.toFixed(0)} jobs/s, ipyparallel ${ippRate.toFixed(0)} jobs/s; ratio nbjob/ipyparallel ${(ourRate / ippRate).toFixed(2)}x (target >= 1.0x)`);
    console.log(`submit-to-start p50 in the 1,000-job bursts (mostly time in the queue): nbjob ${median(ours.map((r) => r.p50Ms)).toFixed(1)} ms, ipyparallel ${median(ipp.map((r) => r.p50Ms)).toFixed(1)} ms (its submitted -> started)`);
    console.log(`submit-to-start of single jobs on an idle cluster (${LATENCY_JOBS} jobs, jobs.started_at - jobs.queued_at): p50 ${idle.p50Ms.toFixed(1)} ms, p90 ${idle.p90Ms.toFixed(1)} ms (target p50 < 10 ms)`);
    console.log(`every nbjob job checked in the store: status done, result stored and equal to x + 1`);
  } finally {
    if (clusterStarted) {
      try {
        nbjobCli(env, "cluster", "stop");
      } catch (err) {
        console.error((err as Error).message);
      }
    }
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(process.exitCode ?? 0), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
