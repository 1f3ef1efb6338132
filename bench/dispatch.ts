// Benchmark of dispatch: N trivial jobs (default 1,000) on a local cluster of 2 workers through
// `rc.loadBalanced()` and the notebook's own API (db.createJobs: a sweep over one parameter, so
// the bundle is type-checked once and each job gets its own stored bundle), every job fully
// stored (status done, result stored: checked here); next to ipyparallel (Debian's
// python3-ipyparallel, 2 engines, load_balanced_view().apply of a trivial function, N tasks,
// waiting for all) in the same run. Prints jobs/s for both, the ratio, and the p50 time from
// submit to start; for each of the script's rounds, where the machine's CPU went (the workers' job
// threads, their other threads, PostgreSQL, this process). Asserts nothing beyond the results
// being complete and right.
//   npm run bench:dispatch   (NBJOB_BENCH_URL: an admin URL, default postgres://postgres@127.0.0.1:5432/postgres;
//                             NBJOB_BENCH_JOBS: jobs per round, default 1000; NBJOB_BENCH_ROUNDS: default 3)
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Client as PgClient } from "pg";
import type { Client, DBWrapper, SnippetCollector } from "../runtime";
import { installKernelSpec } from "../kernel/kernelspec";
import { cpuSnapshot, cpuSplit } from "./cpu";

const ADMIN_URL = process.env.NBJOB_BENCH_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const JOBS = Number(process.env.NBJOB_BENCH_JOBS ?? 1_000);
const ROUNDS = Number(process.env.NBJOB_BENCH_ROUNDS ?? 3);
const ROOT = resolve(__dirname, "..", "..");
const NBJOB = join(ROOT, "bin", "nbjob.js");
const PYTHON = "/usr/bin/python3";

interface Round {
  seconds: number;
  /** Seconds until the last job was stored (submitting included). */
  submitSeconds?: number;
  p50Ms: number;
  p90Ms?: number;
  /** nbjob: median time on a worker from a job's claim to its stored end. */
  workerRunMs?: number;
  /** nbjob from the script: where the machine's CPU went during the round (bench/cpu.ts). */
  cpu?: string;
}

const IPP_SCRIPT = `
import json, sys, time, statistics
import ipyparallel as ipp
n = int(sys.argv[1])
def inc(x):
    return x + 1
cluster = ipp.Cluster(n=2, log_level=40)
rc = cluster.start_and_connect_sync()
try:
    rc.wait_for_engines(2, timeout=120)
    view = rc.load_balanced_view()
    view.map_sync(inc, range(50))  # warm-up, as the nbjob side's warm-up jobs
    print("READY", flush=True)
    base = 0
    for line in sys.stdin:  # one round per line "round"; EOF ends it
        t0 = time.perf_counter()
        ars = [view.apply_async(inc, base + i) for i in range(n)]
        results = [ar.get() for ar in ars]
        elapsed = time.perf_counter() - t0
        assert results == [base + i + 1 for i in range(n)], "wrong results"
        base += n
        lat = sorted((ar.started - ar.submitted).total_seconds() * 1000 for ar in ars)
        print(json.dumps({"seconds": elapsed, "p50Ms": statistics.median(lat), "p90Ms": lat[int(len(lat) * 0.9)]}), flush=True)
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

/** ipyparallel's cluster and client in a Python process that runs one round per request. */
class IppAnchor {
  private readonly lines: string[] = [];
  private waiting?: (line: string) => void;
  private stderr = "";

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (this.waiting) {
        const deliver = this.waiting;
        this.waiting = undefined;
        deliver(line);
      } else this.lines.push(line);
    });
    child.stderr!.on("data", (c) => (this.stderr += c));
    child.on("close", (code) => this.waiting?.(`EXIT ${code}`));
  }

  static async start(dir: string): Promise<IppAnchor> {
    const script = join(dir, "ipp_bench.py");
    writeFileSync(script, IPP_SCRIPT);
    // A private IPython dir, so that the anchor's cluster files stay out of the user's profile.
    const child = spawn(PYTHON, [script, String(JOBS)], { env: { ...process.env, IPYTHONDIR: join(dir, "ipython") }, stdio: ["pipe", "pipe", "pipe"] });
    const anchor = new IppAnchor(child);
    const first = await anchor.next();
    if (first !== "READY") throw new Error(`the ipyparallel anchor did not start (${first}):\n${anchor.stderr.slice(-2000)}`);
    return anchor;
  }

  async round(): Promise<Round> {
    this.child.stdin!.write("round\n");
    const line = await this.next();
    if (!line.startsWith("{")) throw new Error(`the ipyparallel anchor failed (${line}):\n${this.stderr.slice(-2000)}`);
    return JSON.parse(line) as Round;
  }

  async close(): Promise<void> {
    const closed = new Promise((resolve) => this.child.once("close", resolve));
    this.child.stdin!.end();
    await closed;
  }

  private next(): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.child.exitCode !== null) return Promise.resolve(`EXIT ${this.child.exitCode}`);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

function nbjobCli(env: NodeJS.ProcessEnv, ...args: string[]): void {
  const r = spawnSync(process.execPath, [NBJOB, ...args], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`nbjob ${args.join(" ")} failed (exit ${r.status}): ${r.stderr}`);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

const LATENCY_JOBS = 50;

/** The notebook side: the runtime API on a local cluster of 2 workers. */
class NbjobSide {
  private constructor(
    private readonly db: DBWrapper,
    private readonly rc: Client,
    private readonly sc: SnippetCollector,
    private readonly workerPids: number[],
  ) {}

  static async open(url: string, home: string): Promise<NbjobSide> {
    // The runtime reads NBJOB_HOME (the cluster's files) when it connects.
    process.env.NBJOB_HOME = home;
    process.env.NBJOB_DATABASE_URL = url;
    const runtime = await import("../runtime");
    const { recordSnippet } = await import("../runtime/snippets");
    const db = new runtime.DBWrapper(url);
    const rc = await runtime.Client.connect();
    const sc = new runtime.SnippetCollector();
    recordSnippet(sc, { source: "function inc(x: number): number {\n  return x + 1;\n}", kind: "function" });
    // Warm-up: both workers have compiled a job and cached the code before the clock starts.
    const warm = await db.createJobs(rc.loadBalanced(), ["inc(params.x)"], sc, { params: { x: 0 }, grid: { x: [-1, -2, -3, -4] }, review: false, name: "warm-up" });
    await warm.results;
    const workerPids = [0, 1].map((n) => Number(readFileSync(join(home, "cluster", "default", `worker-${n}.pid`), "utf8")));
    return new NbjobSide(db, rc, sc, workerPids);
  }

  async round(r: number): Promise<Round> {
    const { db, rc, sc } = this;
    const xs = Array.from({ length: JOBS }, (_, i) => r * JOBS + i);
    const cpu0 = cpuSnapshot(this.workerPids);
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
    const cpu = cpuSplit(cpu0, cpuSnapshot(this.workerPids), "job threads", "this process (the notebook's side)");
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
    return { seconds, submitSeconds: submitted, p50Ms: percentile(waits, 0.5), p90Ms: percentile(waits, 0.9), workerRunMs: Number(split[0].run_ms), cpu };
  }

  /** Every job of a group (made elsewhere, e.g. in a notebook) stored done with the right result; x starts at `base`. */
  async checkStored(groupId: number, base: number): Promise<void> {
    const { rows } = await this.db.store.query<{ status: string; result_text: string | null; x: number }>(
      `SELECT j.status, j.result_text, (b.params->>'x')::int AS x FROM nbjob.jobs j JOIN nbjob.bundles b ON b.hash = j.bundle_hash WHERE j.group_id = $1`, [groupId]);
    if (rows.length !== JOBS) throw new Error(`group ${groupId}: ${rows.length} jobs stored, expected ${JOBS}`);
    const wrong = rows.filter((row) => row.status !== "done" || row.result_text !== String(row.x + 1) || row.x < base || row.x >= base + JOBS);
    if (wrong.length > 0) throw new Error(`group ${groupId}: ${wrong.length} jobs not done with the right result, e.g. ${JSON.stringify(wrong[0])}`);
  }

  /**
   * Submit-to-start on an idle cluster: one job at a time (job.rerun() of a stored job: the same
   * bundle as a new load-balanced job, no type check), each awaited before the next.
   */
  async latency(): Promise<{ p50Ms: number; p90Ms: number }> {
    const { db, rc, sc } = this;
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
    return { p50Ms: percentile(waits, 0.5), p90Ms: percentile(waits, 0.9) };
  }

  async close(): Promise<void> {
    this.rc.close();
    await this.db.close();
  }
}

const NOTEBOOK_SCRIPT = `
import json, sys, time
from jupyter_client.manager import start_new_kernel
n = int(sys.argv[1])
# jupyter_client picks free ports, then the kernel binds them: on a busy machine another process
# can take one in between ("Address already in use"); start again then.
for attempt in range(3):
    try:
        km, kc = start_new_kernel(kernel_name="nbjob", startup_timeout=120)
        break
    except RuntimeError:
        if attempt == 2:
            raise
def run(code):
    out = []
    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("ERROR " + msg["content"]["ename"] + ": " + msg["content"]["evalue"])
    reply = kc.execute_interactive(code, timeout=600, output_hook=hook)
    if reply["content"]["status"] != "ok":
        raise SystemExit("the cell failed: %s: %s\\n%s" % (reply["content"].get("ename"), reply["content"].get("evalue"), "".join(out)))
    return "".join(out)
try:
    run("const sc = new SnippetCollector();\\nconst db = new DBWrapper();\\nconst rc = await Client.connect();")
    run("@sc\\nfunction inc(x: number): number {\\n  return x + 1;\\n}")
    # Warm-up, as the other sides: both workers have compiled a job before the clock starts.
    run('const warm = await db.createJobs(rc.loadBalanced(), ["inc(params.x)"], sc, { params: { x: 0 }, grid: { x: [-1, -2, -3, -4] }, review: false, name: "warm-up" });\\nconsole.log((await warm.results).length);')
    print("READY", flush=True)
    for line in sys.stdin:  # one round per line: its first job's x; EOF ends it
        base = int(line)
        t0 = time.perf_counter()
        text = run("""const base = %d;
const t0 = performance.now();
const group = await db.createJobs(rc.loadBalanced(), ["inc(params.x)"], sc, { params: { x: 0 }, grid: { x: Array.from({ length: %d }, (_, i) => base + i) }, review: false, name: "notebook round" });
const rows = await group.results;
const wrong = rows.filter((row, i) => row.status !== "done" || row.result !== base + i + 1).length;
console.log(JSON.stringify({ cellSeconds: (performance.now() - t0) / 1000, rows: rows.length, wrong, group: group.id }));""" % (base, n))
        elapsed = time.perf_counter() - t0
        result = json.loads(text.strip().splitlines()[-1])
        result["seconds"] = elapsed
        print(json.dumps(result), flush=True)
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=False)
`;

/**
 * The sweep as a user runs it: in a cell of a real nbjob kernel, driven through Debian's
 * jupyter_client (createJobs on loadBalanced(), then await group.results). Timed by the client
 * around the cell's execution.
 */
class NotebookSide {
  private readonly lines: string[] = [];
  private waiting?: (line: string) => void;
  private stderr = "";

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (this.waiting) {
        const deliver = this.waiting;
        this.waiting = undefined;
        deliver(line);
      } else this.lines.push(line);
    });
    child.stderr!.on("data", (c) => (this.stderr += c));
    child.on("close", (code) => this.waiting?.(`EXIT ${code}`));
  }

  static async start(dir: string, env: NodeJS.ProcessEnv): Promise<NotebookSide> {
    const kernelEnv = { ...env, JUPYTER_DATA_DIR: join(dir, "jupyter"), PYDEVD_DISABLE_FILE_VALIDATION: "1" };
    installKernelSpec({ kind: "user" }, kernelEnv);
    const script = join(dir, "notebook_bench.py");
    writeFileSync(script, NOTEBOOK_SCRIPT);
    const child = spawn(PYTHON, [script, String(JOBS)], { env: kernelEnv, cwd: dir, stdio: ["pipe", "pipe", "pipe"] });
    const side = new NotebookSide(child);
    const first = await side.next();
    if (first !== "READY") throw new Error(`the notebook side did not start (${first}):\n${side.stderr.slice(-2000)}`);
    return side;
  }

  async round(base: number): Promise<Round & { group: number }> {
    this.child.stdin!.write(`${base}\n`);
    const line = await this.next();
    if (!line.startsWith("{")) throw new Error(`the notebook side failed (${line}):\n${this.stderr.slice(-2000)}`);
    const r = JSON.parse(line) as { seconds: number; cellSeconds: number; rows: number; wrong: number; group: number };
    if (r.rows !== JOBS || r.wrong !== 0) throw new Error(`the notebook round gave ${r.rows} rows, ${r.wrong} wrong`);
    return { seconds: r.seconds, submitSeconds: undefined, p50Ms: NaN, group: r.group };
  }

  async close(): Promise<void> {
    const closed = new Promise((resolve) => this.child.once("close", resolve));
    this.child.stdin!.end();
    await closed;
  }

  private next(): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.child.exitCode !== null) return Promise.resolve(`EXIT ${this.child.exitCode}`);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

function describe(label: string, r: number, round: Round): string {
  return `  round ${r + 1} ${label}: ${(JOBS / round.seconds).toFixed(0)} jobs/s (${round.seconds.toFixed(2)} s${round.submitSeconds !== undefined ? `, submitting ${round.submitSeconds.toFixed(2)} s` : ""}${round.workerRunMs !== undefined ? `, median claim -> stored end on a worker ${round.workerRunMs.toFixed(1)} ms` : ""}), submit-to-start p50 ${round.p50Ms.toFixed(0)} ms${round.cpu ? `\n    CPU: ${round.cpu}` : ""}`;
}

async function main(): Promise<void> {
  ensureIpyparallel();
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
  let ipp: IppAnchor | undefined;
  let ours: NbjobSide | undefined;
  let notebook: NotebookSide | undefined;
  try {
    console.log(`nbjob dispatch benchmark: ${JOBS} trivial jobs per round, ${ROUNDS} rounds each, 2 workers / 2 engines, PostgreSQL at ${url.host}`);
    // Both sides start and warm up first; then their rounds alternate (ipyparallel, nbjob, ...),
    // so a machine whose load changes during the run treats both alike. The idle side's
    // processes only wait meanwhile.
    ipp = await IppAnchor.start(work);
    nbjobCli(env, "cluster", "start", "-n", "2");
    clusterStarted = true;
    ours = await NbjobSide.open(url.toString(), home);
    notebook = await NotebookSide.start(work, env);
    const ippRounds: Round[] = [];
    const ourRounds: Round[] = [];
    const notebookRounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ippRounds.push(await ipp.round());
      console.log(describe("ipyparallel", r, ippRounds[r]));
      ourRounds.push(await ours.round(r));
      console.log(describe("nbjob      ", r, ourRounds[r]));
      // The notebook's jobs take x values after every script round's.
      const cell = await notebook.round((ROUNDS + r) * JOBS);
      await ours.checkStored(cell.group, (ROUNDS + r) * JOBS);
      notebookRounds.push(cell);
      console.log(`  round ${r + 1} nbjob from a notebook cell: ${(JOBS / cell.seconds).toFixed(0)} jobs/s (${cell.seconds.toFixed(2)} s, createJobs to every result, timed by jupyter_client around the cell; load ${loadavg()[0].toFixed(1)})`);
    }
    const idle = await ours.latency();
    const rate = (round: Round) => JOBS / round.seconds;
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    const ratios = ourRounds.map((round, r) => rate(round) / rate(ippRounds[r]));
    console.log(`jobs/s, best round: nbjob ${Math.max(...ourRounds.map(rate)).toFixed(0)}, ipyparallel ${Math.max(...ippRounds.map(rate)).toFixed(0)}; ratio nbjob/ipyparallel ${(Math.max(...ourRounds.map(rate)) / Math.max(...ippRounds.map(rate))).toFixed(2)}x (target >= 1.0x)`);
    console.log(`ratio per pair of rounds: ${ratios.map((x) => `${x.toFixed(2)}x`).join(", ")} (median ${median(ratios).toFixed(2)}x)`);
    const cellRatios = notebookRounds.map((round, r) => rate(round) / rate(ippRounds[r]));
    console.log(`from a notebook cell (createJobs on loadBalanced(), await group.results, through jupyter_client): best ${Math.max(...notebookRounds.map(rate)).toFixed(0)} jobs/s; ratio to ipyparallel per round ${cellRatios.map((x) => `${x.toFixed(2)}x`).join(", ")} (median ${median(cellRatios).toFixed(2)}x, target >= 1.0x)`);
    console.log(`submit-to-start p50 in the ${JOBS}-job bursts (mostly time in the queue): nbjob ${median(ourRounds.map((r) => r.p50Ms)).toFixed(0)} ms, ipyparallel ${median(ippRounds.map((r) => r.p50Ms)).toFixed(0)} ms (its submitted -> started)`);
    console.log(`submit-to-start of single jobs on an idle cluster (${LATENCY_JOBS} jobs, jobs.started_at - jobs.queued_at): p50 ${idle.p50Ms.toFixed(1)} ms, p90 ${idle.p90Ms.toFixed(1)} ms (target p50 < 10 ms)`);
    console.log(`every nbjob job checked in the store: status done, result stored and equal to x + 1`);
    console.log(`load average at the end: ${loadavg().map((l) => l.toFixed(1)).join(", ")}`);
  } finally {
    await notebook?.close().catch(() => undefined);
    await ours?.close().catch(() => undefined);
    await ipp?.close().catch(() => undefined);
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
