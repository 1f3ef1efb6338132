// Benchmark of analyzers: a CPU-bound analysis function over the 40 checkpoints of a real job,
// run on 1 worker (rc.view(0)) and on 2 (rc.loadBalanced()) of a local cluster, next to the same
// function called once per checkpoint in 1 and 2 plain threads (and, as in earlier stops, its loop
// inlined in one loop), interleaved per round. Prints nbjob's speed-up on 2 workers over the plain
// threads' speed-up in the same round (target: at least 0.95), warm (contexts reused) and cold (a
// function that leaves a global behind: a fresh context per checkpoint, as before).
// Each timed run uses a function of its own source, so nothing is served from the store (the
// checkpoints' values are: workers keep them in memory, as for a user who edits a function and runs
// it over the same job again). For each warm run it prints where the machine's CPU went (analysis
// threads, the workers' other threads, PostgreSQL, this process) and each worker's timeline (its
// first request, its thread's first and last checkpoint, the thread's busy and idle time, each
// checkpoint's time: a new function's first two are slower, V8 warming it up). Asserts nothing.
//   node dist/bench/checkpoint-analysis.js   (NBJOB_BENCH_URL: an admin URL, default postgres://postgres@127.0.0.1:5432/postgres;
//                                             NBJOB_BENCH_ROUNDS: rounds per view, default 7;
//                                             NBJOB_BENCH_KINDS=warm: the warm runs only, for quicker A/B comparisons)
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { Client as PgClient } from "pg";
import { createJob, listCheckpoints, notifyJobQueued, openStore, putBundle, requireJob } from "../store";
import type { DeclarationRecord } from "../kernel/engine/types";
import { ANALYSIS_TIMING_ENV } from "../worker/analysis-timing";
import { cpuSeconds, cpuSnapshot, cpuSplit } from "./cpu";

const ADMIN_URL = process.env.NBJOB_BENCH_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const ROUNDS = Number(process.env.NBJOB_BENCH_ROUNDS ?? 7);
const CHECKPOINTS = 40;
const KINDS = (process.env.NBJOB_BENCH_KINDS ?? "warm,cold").split(",") as Array<"warm" | "cold">;
if (KINDS.some((kind) => kind !== "warm" && kind !== "cold")) throw new Error(`NBJOB_BENCH_KINDS must list warm and/or cold, e.g. warm,cold; got ${KINDS.join(",")}`);
const NBJOB = join(resolve(__dirname, "..", ".."), "bin", "nbjob.js");

// The job: 40 checkpoints of a step counter and a 4096-number weight vector.
const SNIPPETS = [
  { kind: "variable", names: ["step"], source: "let step = 0;" },
  { kind: "variable", names: ["weights"], source: "const weights = new Float64Array(4096);" },
  { kind: "cell", names: [], source: 'jobtracker.registerCheckpointer("step");\njobtracker.registerCheckpointer("weights");' },
  {
    kind: "function",
    names: ["train"],
    source: `function train(n: number): number {\n  for (let i = 1; i <= n; i++) {\n    step = i;\n    for (let j = 0; j < weights.length; j++) weights[j] = Math.sin(i * 0.01 + j);\n    jobtracker.checkpoint();\n  }\n  return step;\n}`,
  },
];
const ENTRY = `train(${CHECKPOINTS})`;

/** A CPU-bound analysis (about 100 ms a checkpoint here); `salt` makes each run's function new to the store. */
function heavySource(name: string, salt: string): string {
  return `function ${name}() {\n  // ${salt}\n  let acc = 0;\n  for (let round = 0; round < 2000; round++) {\n    for (let j = 0; j < weights.length; j++) acc += Math.sqrt(Math.abs(weights[j] * round + step));\n  }\n  return { step, acc };\n}`;
}

/**
 * The analysis function itself, called once per checkpoint in a plain thread: the job's
 * variables at the top level, as the job declared them, set to each checkpoint's values (as the
 * job computed them), then the function called. The same source as the one nbjob runs, so V8
 * compiles and warms it up the same way (a new function starts in the interpreter and in
 * on-stack-replaced code, slower for its first calls); what differs is only what nbjob adds.
 */
function plainFunction(source: string, name: string, first: number, count: number): Promise<void> {
  const code = `let step = 0;
const weights = new Float64Array(4096);
${source}
let total = 0;
for (let c = ${first}; c < ${first + count}; c++) {
  step = c;
  for (let j = 0; j < weights.length; j++) weights[j] = Math.sin(c * 0.01 + j);
  total += ${name}().acc;
}
require("node:worker_threads").parentPort.postMessage(total);`;
  return new Promise((resolve, reject) => new Worker(code, { eval: true }).on("exit", () => resolve()).on("error", reject));
}

/**
 * The analysis's loop inlined into one loop over the checkpoints, in a plain thread (the
 * baseline of earlier stops): V8 optimizes the whole loop once, so it pays no function's warm-up.
 */
function rawLoop(count: number): Promise<void> {
  const code = `const weights = new Float64Array(4096);
let total = 0;
for (let c = 1; c <= ${count}; c++) {
  for (let j = 0; j < weights.length; j++) weights[j] = Math.sin(c * 0.01 + j);
  let acc = 0;
  for (let round = 0; round < 2000; round++) for (let j = 0; j < weights.length; j++) acc += Math.sqrt(Math.abs(weights[j] * round + c));
  total += acc;
}
require("node:worker_threads").parentPort.postMessage(total);`;
  return new Promise((resolve, reject) => new Worker(code, { eval: true }).on("exit", () => resolve()).on("error", reject));
}

async function seconds(work: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/**
 * The workers' time by phase (worker/analysis-timing.ts), per checkpoint computed, largest first;
 * the rest of the overhead is the notebook's side (requests, comm, the analyzer's own queries).
 */
function workerPhases(file: string): string {
  if (!existsSync(file)) return "(no timing written)";
  const total: { [phase: string]: number } = {};
  let computed = 0;
  for (const line of readFileSync(file, "utf8").split("\n").filter(Boolean)) {
    const request = JSON.parse(line) as { computed: number; ms: { [phase: string]: number } };
    computed += request.computed;
    for (const [phase, ms] of Object.entries(request.ms)) total[phase] = (total[phase] ?? 0) + ms;
  }
  if (computed === 0) return "(nothing computed)";
  // The thread's phases ("thread: ...") are its own time; the others are the main thread's waits,
  // which overlap the thread's work and the next request's (so they do not add up to the wall time).
  const parts = Object.entries(total).sort((a, b) => b[1] - a[1]).map(([phase, ms]) => `${phase} ${(ms / computed).toFixed(2)}`);
  return `${parts.join(", ")} ms`;
}

/**
 * When each worker's thread computed, in ms from the analyzer's creation: its first request
 * received, its first and last checkpoint on the thread, the time the thread spent on
 * checkpoints and between them; then when the result was in.
 */
function timeline(file: string, epoch0: number, totalMs: number): string {
  if (!existsSync(file)) return "(no timing written)";
  const byWorker = new Map<string, { received: number; windows: Array<[number, number]>; first?: { [phase: string]: number } }>();
  for (const line of readFileSync(file, "utf8").split("\n").filter(Boolean)) {
    const request = JSON.parse(line) as { workerId: string; received: number; windows: Array<[number, number]>; ms: { [phase: string]: number } };
    const w = byWorker.get(request.workerId) ?? { received: Infinity, windows: [] };
    if (request.received < w.received) w.first = request.ms;
    w.received = Math.min(w.received, request.received);
    w.windows.push(...request.windows);
    byWorker.set(request.workerId, w);
  }
  const parts = [...byWorker].sort().map(([id, w]) => {
    const windows = w.windows.sort((a, b) => a[0] - b[0]);
    if (windows.length === 0) return `worker ${id}: nothing computed`;
    const busy = windows.reduce((t, [a, b]) => t + b - a, 0);
    const span = windows[windows.length - 1][1] - windows[0][0];
    const at = (t: number) => (t - epoch0).toFixed(0);
    const durations = windows.map(([a, b]) => (b - a).toFixed(0)).join(" ");
    return `worker ${id}: request ${at(w.received)}, thread ${at(windows[0][0])}–${at(windows[windows.length - 1][1])} (${windows.length} checkpoints, busy ${busy.toFixed(0)}, between ${(span - busy).toFixed(0)}; each ${durations}; first request ${Object.entries(w.first ?? {}).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")})`;
  });
  return `${parts.join("; ")}; result ${totalMs.toFixed(0)} ms`;
}

async function admin(sql: string): Promise<void> {
  const client = new PgClient({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "nbjob-bench-analysis-"));
  const database = `nbjob_bench_analysis_${process.pid}`;
  const url = `${ADMIN_URL.replace(/\/[^/]*$/, "")}/${database}`;
  process.env.NBJOB_HOME = join(work, "home");
  process.env.NBJOB_DATABASE_URL = url;
  // The workers (started below with this environment) write where their analysis time goes here.
  const timingFile = join(work, "analysis-timing.jsonl");
  process.env[ANALYSIS_TIMING_ENV] = timingFile;
  await admin(`CREATE DATABASE ${database}`);
  // Loaded after NBJOB_HOME is set: the client finds the cluster's connection files there.
  const { Client, DBWrapper } = await import("../runtime");
  const { setFunctionSourceLookup } = await import("../runtime/notebook");
  const store = openStore({ url, maxConnections: 2 });
  const nbjob = (...args: string[]) => spawnSync(process.execPath, [NBJOB, ...args], { env: process.env, encoding: "utf8" });
  let db: InstanceType<typeof DBWrapper> | undefined;
  let rc: Awaited<ReturnType<typeof Client.connect>> | undefined;
  try {
    await store.ready();
    const started = nbjob("cluster", "start", "-n", "2");
    if (started.status !== 0) throw new Error(`nbjob cluster start failed: ${started.stderr}`);

    const source = `${SNIPPETS.map((s) => s.source).join("\n\n")}\n\n${ENTRY};\n`;
    const hash = await putBundle(store, { source, snippets: SNIPPETS, params: {}, entries: [ENTRY] });
    const job = await createJob(store, { bundleHash: hash });
    await notifyJobQueued(store, null);
    for (let row = await requireJob(store, job.id); row.status !== "done"; row = await requireJob(store, job.id)) {
      if (row.status === "failed" || row.status === "cancelled" || row.status === "lost") throw new Error(`the job ${row.status}: ${row.error_name}: ${row.error_message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const stored = (await listCheckpoints(store, job.id)).length;
    if (stored !== CHECKPOINTS) throw new Error(`the job stored ${stored} checkpoints, expected ${CHECKPOINTS}`);

    // Outside a kernel no cell recorded the functions' source: this script says what it is.
    const sources = new Map<Function, DeclarationRecord>();
    const fn = (name: string, text: string) => {
      const f = { [name]: () => ({}) }[name];
      sources.set(f, { name, kind: "function", source: text });
      return f;
    };
    setFunctionSourceLookup((f) => sources.get(f));

    db = new DBWrapper(url);
    rc = await Client.connect();
    const one = rc.view(0);
    const both = rc.loadBalanced();
    // Warm-up: both workers compile the job and start their analysis threads.
    await (await db.createAnalyzer(both, job.id, [fn("warmUp", "function warmUp() {\n  return { step };\n}")])).result;

    // What nbjob adds per checkpoint (fresh context, the job's program, restore, store reads and writes, comm), on 1 worker.
    writeFileSync(timingFile, "");
    const workerPids = [0, 1].map((n) => Number(readFileSync(join(process.env.NBJOB_HOME!, "cluster", "default", `worker-${n}.pid`), "utf8")));
    const workerPid = workerPids[0];
    const cpu0 = cpuSeconds(workerPid);
    const t0 = process.hrtime.bigint();
    await (await db.createAnalyzer(one, job.id, [fn("trivial", `function trivial() {\n  // ${process.pid}\n  return { step };\n}`)])).result;
    const overheadMs = Number(process.hrtime.bigint() - t0) / 1e6 / CHECKPOINTS;
    console.log(`overhead: ${overheadMs.toFixed(1)} ms per checkpoint (a trivial function over ${CHECKPOINTS} checkpoints on 1 worker)`);
    const cpu1 = cpuSeconds(workerPid);
    // CPU time does not depend on what else the machine runs: the overhead a second worker's compute competes with.
    if (cpu0 !== undefined && cpu1 !== undefined) console.log(`  the worker process's CPU time: ${((cpu1 - cpu0) * 1000 / CHECKPOINTS).toFixed(1)} ms per checkpoint (all its threads; PostgreSQL's and the notebook's not counted)`);
    console.log(`  the worker's phases, per checkpoint: ${workerPhases(timingFile)}`);

    // Each round times, back to back so a burst of load hits them alike: the analysis function
    // in 1 plain thread (the baseline), the loop inlined in 1 plain thread (the earlier baseline),
    // nbjob on 1 worker warm (the analysis leaves nothing behind, so each analysis thread reuses
    // its context), nbjob on 1 worker cold (the same function but it leaves a global behind, so
    // every checkpoint gets a fresh context, as before contexts were reused); then the same on 2.
    type Run = { plain: number; loop: number; warm: number; cold: number };
    const runs: { one: Run[]; two: Run[] } = { one: [], two: [] };
    const half = CHECKPOINTS / 2;
    for (let round = 0; round < ROUNDS; round++) {
      for (const [label, view] of [["one", one], ["two", both]] as const) {
        const plainName = `heavy_plain_${label}_${round}`;
        const plainText = heavySource(plainName, `${label} ${round} ${process.pid}`);
        const plain = await seconds(() => label === "one" ? plainFunction(plainText, plainName, 1, CHECKPOINTS)
          : Promise.all([plainFunction(plainText, plainName, 1, half), plainFunction(plainText, plainName, 1 + half, half)]));
        const loop = await seconds(() => label === "one" ? rawLoop(CHECKPOINTS) : Promise.all([rawLoop(half), rawLoop(half)]));
        const timed: Record<"warm" | "cold", number> = { warm: 0, cold: 0 };
        const cpu: Record<"warm" | "cold", string> = { warm: "", cold: "" };
        for (const kind of KINDS) {
          const name = `heavy_${kind}_${label}_${round}`;
          let text = heavySource(name, `${label} ${round} ${process.pid}`);
          if (kind === "cold") text = text.replace("let acc = 0;", "let acc = 0;\n  (globalThis as any).leftBehind = step;");
          const cpu0 = cpuSnapshot(workerPids);
          writeFileSync(timingFile, "");
          const epoch0 = performance.timeOrigin + performance.now();
          const t0 = process.hrtime.bigint();
          const analyzer = await db.createAnalyzer(view, job.id, [fn(name, text)]);
          const rows = await analyzer.result;
          timed[kind] = Number(process.hrtime.bigint() - t0) / 1e9;
          cpu[kind] = `${cpuSplit(cpu0, cpuSnapshot(workerPids), "analysis threads")}\n  ${kind}: ${timeline(timingFile, epoch0, timed[kind] * 1000)}`;
          if (rows.length !== CHECKPOINTS || analyzer.stats.computed !== CHECKPOINTS) throw new Error(`expected ${CHECKPOINTS} computed rows, got ${rows.length} rows, ${analyzer.stats.computed} computed`);
        }
        runs[label].push({ plain, loop, ...timed });
        const threads = label === "one" ? "thread " : "threads";
        console.log(`round ${round + 1}, ${label === "one" ? "1 worker " : "2 workers"}: the function in plain ${threads} ${plain.toFixed(2)} s, the loop in plain ${threads} ${loop.toFixed(2)} s, nbjob warm ${timed.warm.toFixed(2)} s, nbjob cold ${timed.cold.toFixed(2)} s  (load ${loadavg()[0].toFixed(1)})`);
        console.log(`  nbjob warm: ${cpu.warm}`);
      }
    }
    // The middle value, or the mean of the two middle ones for an even count.
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    const speedups = (key: keyof Run) => runs.one.map((o, r) => o[key] / runs.two[r][key]);
    const list = (xs: number[], unit = "") => xs.map((x) => `${x.toFixed(2)}${unit}`).join(", ");
    console.log(`plain threads' speed-up on 2: the function ${list(speedups("plain"), "x")}; the loop ${list(speedups("loop"), "x")}`);
    for (const kind of KINDS) {
      // Per round: nbjob's speed-up on 2 workers over the plain threads' speed-up in that round.
      const ratios = (base: "plain" | "loop") => speedups(kind).map((x, r) => x / speedups(base)[r]);
      console.log(`${kind}: speed-up on 2 workers ${list(speedups(kind), "x")}; over the function's in plain threads ${list(ratios("plain"))} (median ${median(ratios("plain")).toFixed(2)}, target >= 0.95); over the loop's ${list(ratios("loop"))} (median ${median(ratios("loop")).toFixed(2)})`);
    }
    const efficiency = (kind: "warm" | "cold", base: "plain" | "loop") => median(runs.one.map((o) => o[base] / o[kind]));
    console.log(`1 worker against 1 plain thread (median of rounds; 1.00: no cost over plain Node): ${KINDS.map((kind) => `the function ${kind} ${efficiency(kind, "plain").toFixed(2)}, the loop ${kind} ${efficiency(kind, "loop").toFixed(2)}`).join("; ")}`);
    console.log(`load average at the end: ${loadavg().map((l) => l.toFixed(1)).join(", ")} on ${cpus().length} cores (other processes take the second core away from the 2-worker run)`);
  } finally {
    rc?.close();
    await db?.close().catch(() => undefined);
    nbjob("cluster", "stop");
    await store.close().catch(() => undefined);
    await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
