// The worker kernel as a real process: jobs sent over the nbjob.worker comm with KernelClient
// (real ZeroMQ, signed messages), their output, results, errors, and cancel of a running job.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deserialize } from "node:v8";
import { after, before, describe, test } from "node:test";
import { KernelClient, type ClientComm } from "../wire/client";
import { readConnectionFile } from "../wire/connection";
import { assembleBundle } from "../runtime/bundle";
import type { BundleSnippet } from "../runtime/bundle";
import type { JobBundle, JobId, WorkerEvent } from "../runtime/shared/protocol";
import { isAlive } from "./processes";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const dir = mkdtempSync(join(tmpdir(), "nbjob-worker-test-"));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface FinishedJob {
  events: WorkerEvent[];
  last: WorkerEvent;
  /** The deserialized result, for `done`. */
  value?: unknown;
}

/** Collects comm events per job id and resolves when each job reaches done/failed/cancelled. */
class JobWatcher {
  private readonly events = new Map<JobId, WorkerEvent[]>();
  private readonly waiters = new Map<JobId, (job: FinishedJob) => void>();
  private readonly finished = new Map<JobId, FinishedJob>();
  readonly other: WorkerEvent[] = [];

  constructor(readonly comm: ClientComm) {
    comm.onMsg((data, msg) => {
      const event = data as WorkerEvent;
      // Status replies, and errors about jobs nobody here waits for, are not any job's events.
      if (event.action === "status" || (event.action === "error" && (event.job_id === undefined || !this.waiters.has(event.job_id)))) {
        this.other.push(event);
        return;
      }
      const jobId = event.job_id as JobId;
      const list = this.events.get(jobId) ?? [];
      list.push(event);
      this.events.set(jobId, list);
      if (["done", "failed", "cancelled", "error"].includes(event.action)) {
        const job: FinishedJob = { events: list, last: event };
        if (event.action === "done") job.value = deserialize(msg.buffers[0]);
        this.finished.set(jobId, job);
        this.waiters.get(jobId)?.(job);
      }
    });
  }

  eventsOf(jobId: JobId): WorkerEvent[] {
    return this.events.get(jobId) ?? [];
  }

  async run(jobId: JobId, bundle: JobBundle): Promise<FinishedJob> {
    const finished = this.wait(jobId);
    await this.comm.send({ action: "run", job_id: jobId, bundle });
    return finished;
  }

  wait(jobId: JobId, timeoutMs = 20_000): Promise<FinishedJob> {
    const done = this.finished.get(jobId);
    if (done) return Promise.resolve(done);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`job ${jobId} did not finish within ${timeoutMs} ms; events: ${JSON.stringify(this.eventsOf(jobId))}`)), timeoutMs);
      this.waiters.set(jobId, (job) => {
        clearTimeout(timer);
        resolve(job);
      });
    });
  }

  async until(jobId: JobId, action: WorkerEvent["action"], timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.eventsOf(jobId).some((e) => e.action === action)) {
      if (Date.now() > deadline) throw new Error(`job ${jobId} sent no "${action}" within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  async nextOther(action: WorkerEvent["action"], from: number, timeoutMs = 5_000): Promise<WorkerEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.other.slice(from).find((e) => e.action === action);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no "${action}" message within ${timeoutMs} ms`);
      await sleep(10);
    }
  }
}

let worker: ChildProcess;
let workerLog = "";
let client: KernelClient;
let watcher: JobWatcher;

before(async () => {
  const file = join(dir, "worker.json");
  worker = spawn(process.execPath, [NBJOB, "worker", "--connection-file", file, "--id", "test-worker", "--no-store"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NBJOB_HOME: join(dir, "home") },
  });
  worker.stdout?.on("data", (d: Buffer) => (workerLog += d.toString()));
  worker.stderr?.on("data", (d: Buffer) => (workerLog += d.toString()));
  for (let waited = 0; !existsSync(file); waited += 50) {
    if (waited > 15_000) throw new Error(`the worker wrote no connection file; its output:\n${workerLog}`);
    await sleep(50);
  }
  client = await KernelClient.connect(readConnectionFile(file), { readyTimeoutMs: 20_000 });
  watcher = new JobWatcher(await client.openComm("nbjob.worker"));
});

after(async () => {
  try {
    await client?.shutdown({ timeoutMs: 3_000 });
  } catch {
    // killed below
  }
  client?.close();
  for (let waited = 0; worker.exitCode === null && waited < 3_000; waited += 50) await sleep(50);
  if (worker.exitCode === null) worker.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

describe("nbjob worker", () => {
  test("answers kernel_info as a TypeScript kernel named nbjob-worker, with its identity", () => {
    const info = client.kernelInfo!;
    assert.equal(info.implementation, "nbjob-worker");
    assert.equal(info.language_info.name, "typescript");
    assert.equal(info.language_info.file_extension, ".ts");
    // The compiler that transpiles jobs: the typescript package nbjob depends on.
    assert.equal(info.language_info.version, (require("typescript/package.json") as { version: string }).version);
    const nbjob = info.nbjob as { worker_id: string; pid: number; comm_target: string };
    assert.equal(nbjob.worker_id, "test-worker");
    assert.equal(nbjob.pid, worker.pid);
    assert.equal(nbjob.comm_target, "nbjob.worker");
  });

  test("runs a TypeScript bundle with params; the result is the last entry's value", async () => {
    const job = await watcher.run(1, {
      source: "interface Point { x: number; y: number }\nfunction norm(p: Point): number {\n  return Math.sqrt(p.x ** 2 + p.y ** 2);\n}\nconst origin: Point = { x: params.x, y: 4 };",
      params: { x: 3 },
      entries: ["norm({ x: 0, y: 0 })", "norm(origin)"],
    });
    assert.equal(job.last.action, "done", JSON.stringify(job.events));
    assert.equal(job.value, 5);
    assert.deepEqual(job.events.map((e) => e.action), ["queued", "started", "done"]);
    const started = job.events[1] as Extract<WorkerEvent, { action: "started" }>;
    assert.equal(started.worker_id, "test-worker");
    assert.equal((job.last as Extract<WorkerEvent, { action: "done" }>).result_text, "5");
  });

  test("a bundle laid out by runtime/bundle.ts runs each entry once, in place, awaiting each", async () => {
    const snippets: BundleSnippet[] = [
      { hash: "", names: ["calls"], kind: "variable", source: "let calls = 0;" },
      { hash: "", names: ["tick"], kind: "function", source: "async function tick(): Promise<number> {\n  calls += 1;\n  await new Promise((r) => setTimeout(r, 5));\n  if (calls > params.limit) throw new Error(`tick ${calls}`);\n  return calls * 10;\n}" },
    ];
    const bundle = assembleBundle(snippets, ["tick()", "await tick()"], { limit: 2 }, { typeCheck: false });
    const job = await watcher.run("bundle-layout", { source: bundle.source, hash: bundle.hash, params: bundle.params, entries: bundle.entries });
    assert.equal(job.last.action, "done", JSON.stringify(job.events));
    assert.equal(job.value, 20);
    // Sent without its entries, the source alone gives the same result.
    const alone = await watcher.run("bundle-layout-alone", { source: bundle.source, params: bundle.params });
    assert.equal(alone.value, 20, JSON.stringify(alone.events));

    const failing = assembleBundle(snippets, ["tick()", "tick()", "tick()"], { limit: 2 }, { typeCheck: false });
    const failed = (await watcher.run("bundle-layout-error", { source: failing.source, params: failing.params, entries: failing.entries })).last as Extract<WorkerEvent, { action: "failed" }>;
    assert.equal(failed.evalue, "tick 3");
    // The frame points at the throw's line in the bundle's own numbering.
    const throwLine = failing.source.split("\n").findIndex((line) => line.includes("throw new Error")) + 1;
    assert.match(failed.traceback[1], new RegExp(`at tick \\(bundle\\.ts:${throwLine}:\\d+\\)`));

    // A synchronous throw also shows the entry that called it, at the entry's own column.
    const boom = assembleBundle([{ hash: "", names: ["boom"], kind: "function", source: "function boom(): never {\n  throw new Error('boom');\n}" }], ["1", "boom()"], {}, { typeCheck: false });
    const boomed = (await watcher.run("bundle-layout-sync", { source: boom.source, entries: boom.entries })).last as Extract<WorkerEvent, { action: "failed" }>;
    const entryLine = boom.source.split("\n").lastIndexOf("boom();") + 1;
    assert.ok(boomed.traceback.some((line) => line.endsWith(`bundle.ts:${entryLine}:1)`) || line.endsWith(`bundle.ts:${entryLine}:1`)), boomed.traceback.join("\n"));
  });

  test("structured results keep their shape (Map, Date, nested objects); async entries are awaited", async () => {
    const job = await watcher.run(2, {
      source: "async function later(v: number): Promise<number> {\n  await new Promise((r) => setTimeout(r, 20));\n  return v;\n}",
      entries: ["(async () => ({ n: await later(7), m: new Map([['a', [1, 2]]]), d: new Date(0) }))()"],
    });
    assert.equal(job.last.action, "done", JSON.stringify(job.events));
    const value = job.value as { n: number; m: Map<string, number[]>; d: Date };
    assert.equal(value.n, 7);
    assert.deepEqual(value.m.get("a"), [1, 2]);
    assert.equal(value.d.getTime(), 0);
  });

  test("stdout and stderr stream back in order before the job ends", async () => {
    const job = await watcher.run(3, {
      source: "for (let i = 0; i < 3; i++) console.log(`line ${i}`);\nconsole.error('careful');\nprocess.stdout.write('raw\\n');",
      entries: ["'ok'"],
    });
    assert.equal(job.last.action, "done", JSON.stringify(job.events));
    const streams = job.events.filter((e): e is Extract<WorkerEvent, { action: "stream" }> => e.action === "stream");
    const stdout = streams.filter((s) => s.name === "stdout").map((s) => s.text).join("");
    const stderr = streams.filter((s) => s.name === "stderr").map((s) => s.text).join("");
    assert.equal(stdout, "line 0\nline 1\nline 2\nraw\n");
    assert.equal(stderr, "careful\n");
    assert.ok(job.events.indexOf(streams[0]) < job.events.indexOf(job.last));
  });

  test("an error fails the job with its name, message and a traceback at the bundle's TypeScript lines", async () => {
    const job = await watcher.run(4, {
      source: "type Step = number;\n\nfunction walk(steps: Step): never {\n  throw new RangeError(`cannot walk ${steps} steps`);\n}",
      entries: ["walk(params.steps)"],
      params: { steps: 9 },
    });
    assert.equal(job.last.action, "failed");
    const failed = job.last as Extract<WorkerEvent, { action: "failed" }>;
    assert.equal(failed.ename, "RangeError");
    assert.equal(failed.evalue, "cannot walk 9 steps");
    assert.equal(failed.traceback[0], "RangeError: cannot walk 9 steps");
    assert.match(failed.traceback[1], /at walk \(bundle\.ts:4:\d+\)/);
    assert.ok(failed.traceback.every((line) => !line.includes("job-thread")), failed.traceback.join("\n"));
  });

  test("reading a parameter the job was not given fails naming it", async () => {
    const job = await watcher.run(5, { source: "const lr = params.lr;", params: { steps: 1 } });
    assert.equal(job.last.action, "failed");
    const failed = job.last as Extract<WorkerEvent, { action: "failed" }>;
    assert.match(failed.evalue, /params\.lr was not given to this job; its parameters are steps/);
  });

  test("a result that cannot be serialized fails naming the part that cannot be copied", async () => {
    const job = await watcher.run(6, { source: "function model(x: number) { return x; }", entries: ["({ weights: [1, 2], forward: model })"] });
    assert.equal(job.last.action, "failed");
    const failed = job.last as Extract<WorkerEvent, { action: "failed" }>;
    assert.match(failed.evalue, /result\.forward is a function \(model\)/);
  });

  test("a syntax error fails the job with bundle.ts:line:col", async () => {
    const job = await watcher.run(7, { source: "const a = 1;\nconst b = (2;" });
    assert.equal(job.last.action, "failed");
    const failed = job.last as Extract<WorkerEvent, { action: "failed" }>;
    assert.equal(failed.ename, "SyntaxError");
    assert.match(failed.evalue, /^bundle\.ts:2:\d+: /);
  });

  test("jobs require npm packages from the worker's directory", async () => {
    const job = await watcher.run("require", { source: "const { diffLines } = require('diff');", entries: ["diffLines('a\\n', 'b\\n').length"] });
    assert.equal(job.value, 2, JSON.stringify(job.events));
  });

  test("an error thrown later from a job's timer fails that job", async () => {
    const job = await watcher.run("late-throw", {
      source: "async function run(): Promise<string> {\n  setTimeout(() => { throw new Error('thrown from a timer'); }, 10);\n  await new Promise((r) => setTimeout(r, 2000));\n  return 'not reached';\n}",
      entries: ["run()"],
    });
    assert.equal(job.last.action, "failed");
    assert.equal((job.last as Extract<WorkerEvent, { action: "failed" }>).evalue, "thrown from a timer");
  });

  test("each job gets a fresh global scope", async () => {
    await watcher.run(8, { source: "var leftover = 41; (globalThis as any).marker = 1;" });
    const job = await watcher.run(9, { source: "", entries: ["[typeof leftover, typeof (globalThis as any).marker]"] });
    assert.deepEqual(job.value, ["undefined", "undefined"]);
  });

  test("jobtracker checks checkpointer names and values; checkpoint() counts from 0", async () => {
    const ok = await watcher.run("tracker", {
      source: "let iteration = 0;\njobtracker.registerCheckpointer('iteration');\nconst seen: number[] = [];\nfor (; iteration < 3; iteration++) seen.push(jobtracker.checkpoint());",
      entries: ["seen"],
    });
    assert.deepEqual(ok.value, [0, 1, 2]);
    const unknown = (await watcher.run("tracker-unknown", { source: "jobtracker.registerCheckpointer('nope');" })).last as Extract<WorkerEvent, { action: "failed" }>;
    assert.match(unknown.evalue, /registerCheckpointer\("nope"\): the job has no top-level variable nope/);
    const uncapturable = (await watcher.run("tracker-value", { source: "let model = { forward: (x: number) => x };\njobtracker.registerCheckpointer('model');\njobtracker.checkpoint();" })).last as Extract<WorkerEvent, { action: "failed" }>;
    assert.match(uncapturable.evalue, /cannot capture the variable model: model\.forward is a function/);
  });

  test("a job that ends its thread (process.exit) fails saying so; the next job runs", async () => {
    const exited = (await watcher.run("exit", { source: "process.exit(3);" })).last as Extract<WorkerEvent, { action: "failed" }>;
    assert.match(exited.evalue, /the job thread exited with code 3/);
    assert.equal((await watcher.run("after-exit", { source: "", entries: ["'still here'"] })).value, "still here");
  });

  test("heartbeats, kernel_info and status are answered during a 3-second synchronous job", async () => {
    const finished = watcher.run(10, { source: "const end = Date.now() + 3000;\nwhile (Date.now() < end) {}", entries: ["'spun'"] });
    await watcher.until(10, "started");
    await sleep(300); // well inside the loop
    const t0 = Date.now();
    assert.equal(await client.isAlive(1_000), true);
    await client.requestKernelInfo({ timeoutMs: 1_000 });
    const from = watcher.other.length;
    await watcher.comm.send({ action: "status" });
    const status = (await watcher.nextOther("status", from, 1_000)) as Extract<WorkerEvent, { action: "status" }>;
    assert.equal(status.busy, 10);
    assert.ok(Date.now() - t0 < 1_500, `answers took ${Date.now() - t0} ms`);
    const job = await finished;
    assert.equal(job.value, "spun");
  });

  test("cancel stops a running synchronous job; the worker lives on and runs the next job", async () => {
    const cancelled = watcher.run(11, { source: "while (true) {}" });
    const next = watcher.run(12, { source: "const answer: number = 42;", entries: ["answer"] });
    await watcher.until(11, "started");
    await sleep(200);
    await watcher.comm.send({ action: "cancel", job_id: 11 });
    const job = await cancelled;
    assert.equal(job.last.action, "cancelled");
    const after = await next;
    assert.equal(after.value, 42);
    assert.ok(isAlive(worker.pid!));
  });

  test("interrupt_request stops the running job, like a cancel", async () => {
    const running = watcher.run(13, { source: "for (;;) {}" });
    await watcher.until(13, "started");
    await client.interrupt({ timeoutMs: 2_000 });
    assert.equal((await running).last.action, "cancelled");
  });

  test("jobs beyond the first wait in order; a queued job can be cancelled before it starts", async () => {
    const first = watcher.run(14, { source: "const end = Date.now() + 300; while (Date.now() < end) {}", entries: ["1"] });
    const second = watcher.run(15, { source: "", entries: ["2"] });
    const third = watcher.run(16, { source: "", entries: ["3"] });
    await watcher.until(16, "queued");
    await watcher.comm.send({ action: "cancel", job_id: 15 });
    const results = await Promise.all([first, second, third]);
    assert.deepEqual(results.map((r) => r.last.action), ["done", "cancelled", "done"]);
    assert.deepEqual(watcher.eventsOf(16).find((e) => e.action === "queued"), { action: "queued", job_id: 16, position: 2 });
    assert.ok(!watcher.eventsOf(15).some((e) => e.action === "started"));
  });

  test("bad requests get an error message saying what to send", async () => {
    const missing = await watcher.run(17, { source: undefined as unknown as string });
    assert.equal(missing.last.action, "error");
    assert.match((missing.last as Extract<WorkerEvent, { action: "error" }>).message, /bundle\.source is missing/);
    const from = watcher.other.length;
    await watcher.comm.send({ action: "cancel", job_id: 999 });
    const unknown = (await watcher.nextOther("error", from)) as Extract<WorkerEvent, { action: "error" }>;
    assert.match(unknown.message, /job 999 is neither running nor queued/);
    // analyze_prepare has no answer when right; when wrong, the error names what to send.
    const badPrepare = watcher.other.length;
    await watcher.comm.send({ action: "analyze_prepare", job_id: 1, functions: [{ name: "f" }] });
    const prepareError = (await watcher.nextOther("error", badPrepare)) as Extract<WorkerEvent, { action: "error" }>;
    assert.match(prepareError.message, /^analyze_prepare needs \{ job_id: number, functions: \[\{ name, hash, source \}\] \}; each function needs name/);
    // analyze_cancel of a request the worker does not know is ignored; without a request id it is refused.
    const badCancel = watcher.other.length;
    await watcher.comm.send({ action: "analyze_cancel", request_id: "no-such-request" });
    await watcher.comm.send({ action: "analyze_cancel" });
    const cancelError = (await watcher.nextOther("error", badCancel)) as Extract<WorkerEvent, { action: "error" }>;
    assert.match(cancelError.message, /^analyze_cancel needs \{ request_id: string \}/);
    assert.equal(watcher.other.slice(badCancel).filter((e) => e.action === "error").length, 1, "the unknown request id got no error");
  });

  test("execute_request runs plain code and shows its value and output", async () => {
    const result = await client.execute("const xs = [1, 2, 3];\nconsole.log('sum');\nxs.reduce((a, b) => a + b, 0)", { timeoutMs: 20_000 });
    assert.equal(result.status, "ok");
    assert.deepEqual(result.outputs, [
      { output_type: "stream", name: "stdout", text: "sum\n" },
      { output_type: "execute_result", execution_count: result.executionCount, data: { "text/plain": "6" }, metadata: {} },
    ]);
  });
});

describe("nbjob worker: bad connection files", () => {
  test("a connection file that is not JSON is one clear line and a non-zero exit", () => {
    const file = join(dir, "broken.json");
    writeFileSync(file, "{ not json");
    const run = spawnSync(process.execPath, [NBJOB, "worker", "--connection-file", file, "--no-store"], { encoding: "utf8", timeout: 20_000 });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /connection file .*broken\.json is not JSON/);
    assert.ok(!run.stderr.includes("    at "), run.stderr);
  });

  test("a connection file that cannot be written is one clear line, and the worker exits", () => {
    const file = join(dir, "no-such-dir", "worker.json");
    const run = spawnSync(process.execPath, [NBJOB, "worker", "--connection-file", file, "--no-store"], { encoding: "utf8", timeout: 20_000 });
    assert.notEqual(run.status, 0);
    assert.equal(run.signal, null, "it exited by itself");
    assert.match(run.stderr, /cannot write the connection file .*no-such-dir\/worker\.json: ENOENT; check that its directory exists/);
  });

  test("a connection file pointing at an address this host does not have fails naming the address", () => {
    const file = join(dir, "elsewhere.json");
    writeFileSync(file, JSON.stringify({ ip: "192.0.2.1", transport: "tcp", shell_port: 50001, iopub_port: 50002, stdin_port: 50003, control_port: 50004, hb_port: 50005, key: "k", signature_scheme: "hmac-sha256" }));
    const run = spawnSync(process.execPath, [NBJOB, "worker", "--connection-file", file, "--no-store"], { encoding: "utf8", timeout: 20_000 });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /cannot bind the kernel's shell socket to tcp:\/\/192\.0\.2\.1:50001: .*; 192\.0\.2\.1 is not an address of this machine/);
  });

  test("--ip naming an address this host does not have fails naming the address and what to do", () => {
    const file = join(dir, "new-elsewhere.json");
    const run = spawnSync(process.execPath, [NBJOB, "worker", "--connection-file", file, "--ip", "192.0.2.1", "--no-store"], { encoding: "utf8", timeout: 20_000 });
    assert.notEqual(run.status, 0);
    assert.equal(run.signal, null, "it exited by itself");
    assert.match(run.stderr, /cannot bind the kernel's shell socket to tcp:\/\/192\.0\.2\.1:\*: .*; 192\.0\.2\.1 is not an address of this machine; use one it has/);
    assert.ok(!existsSync(file), "no connection file is written for sockets that are not bound");
  });
});
