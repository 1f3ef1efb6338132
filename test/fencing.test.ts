// Fencing (issue 16, point 3): a worker's writes for a job carry the claim it got when the job
// started running, and are refused once the job is lost, cancelled or resumed. Store level: each
// fenced function under the current claim, a stale one and a lost job. With a real worker process
// and a real PostgreSQL: the worker is paused (SIGSTOP) while its job checkpoints and prints, the
// job is marked lost and resumed as a new job, then the worker continues (SIGCONT): it must stop
// the old job at its first refused write, store nothing more for it, say so in its log, and take
// the resumed job, which continues from the old job's last checkpoint with no gap.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deserialize } from "node:v8";
import { after, before, describe, test } from "node:test";
import { Client as PgClient } from "pg";
import {
  appendLogs, claimNextJob, ClaimLostError, createJob, getJob, IllegalTransitionError, listWorkers, markLostJobs, notifyJobQueued, openStore, putBundle, readLogs, transitionJob,
} from "../store";
import type { DbJob, Store } from "../store";
import { listCheckpoints, putCheckpoints } from "../store/checkpoints";
import { resumeJob } from "../runtime/resume";
import type { StoredResult } from "../worker/recorder";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const DATABASE = `nbjob_fencing_${process.pid}`;
const URL = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;
const dir = mkdtempSync(join(tmpdir(), "nbjob-fencing-"));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const WORKER = "fx/0";
// A worker silent this long is presumed dead (short, so the test marks the paused worker's job lost quickly).
const STALE_MS = 1_500;

// This process stores the bundles and the worker runs them: one cluster key for both.
process.env.NBJOB_CLUSTER_KEY = randomBytes(32).toString("hex");

let store: Store;
let worker: { process: ChildProcess; log: string };

async function queueJob(source: string, entries: string[], target: string | null = null): Promise<number> {
  const bundleHash = await putBundle(store, { source, snippets: [], params: {}, entries });
  const job = await createJob(store, { bundleHash, targetWorker: target });
  await notifyJobQueued(store, target);
  return job.id;
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !(await check());) {
    if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms; worker log:\n${worker.log}`);
    await sleep(50);
  }
}

async function job(id: number): Promise<DbJob> {
  return (await getJob(store, id))!;
}

/** How many log lines and checkpoints the job has stored. */
async function stored(id: number): Promise<{ logs: number; checkpoints: number }> {
  return { logs: (await readLogs(store, id)).length, checkpoints: (await listCheckpoints(store, id)).length };
}

before(async () => {
  const admin = new PgClient({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DATABASE}`);
  await admin.query(`CREATE DATABASE ${DATABASE}`);
  await admin.end();
  store = openStore({ url: URL });
  await store.ready();
  const file = join(dir, "fx-0.json");
  const child = spawn(process.execPath, [NBJOB, "worker", "--connection-file", file, "--id", WORKER, "--profile", "fx"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NBJOB_DATABASE_URL: URL, NBJOB_HOME: dir, NBJOB_WORKER_HEARTBEAT_MS: "300", NBJOB_WORKER_STALE_MS: String(STALE_MS) },
  });
  worker = { process: child, log: "" };
  child.stdout?.on("data", (d: Buffer) => (worker.log += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (worker.log += d.toString()));
  await waitFor("the worker's connection file", () => existsSync(file), 20_000);
  await waitFor("the worker's heartbeat", async () => (await listWorkers(store, { profile: "fx", aliveWithinMs: 5_000 })).length === 1, 20_000);
});

after(async () => {
  if (worker?.process.exitCode === null) {
    worker.process.kill("SIGCONT");
    worker.process.kill("SIGKILL");
  }
  await store?.close();
  const admin = new PgClient({ connectionString: ADMIN_URL });
  await admin.connect();
  if (!process.env.KEEP_DB) await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
});

describe("fenced writes in the store", () => {
  // Jobs for a worker that does not exist, claimed by the test itself: the real worker never takes them.
  const NOBODY = { workerId: "fence-test/0", host: "test", pid: 1 };
  const line = (text: string) => [{ stream: "stdout" as const, line: text }];
  const values = { x: new Uint8Array([1, 2, 3]) };

  test("a write under the job's current claim is stored; under another claim, or once the job is lost, it is refused and stores nothing", async () => {
    const id = await queueJob("const fenced = 1;", ["fenced"], NOBODY.workerId);
    const claimed = await claimNextJob(store, NOBODY, 0);
    assert.equal(claimed?.id, id);
    const claim = String(claimed!.claim);
    assert.match(claim, /^\d+$/);

    await appendLogs(store, id, line("under the claim"), claim);
    await putCheckpoints(store, id, [{ idx: 0, values }], claim);
    assert.deepEqual(await stored(id), { logs: 1, checkpoints: 1 });

    const stale = String(Number(claim) + 1000);
    await assert.rejects(appendLogs(store, id, line("stale"), stale), ClaimLostError);
    await assert.rejects(putCheckpoints(store, id, [{ idx: 1, values }], stale), ClaimLostError);
    await assert.rejects(transitionJob(store, id, "done", { result: 1, claim: stale }), ClaimLostError);
    assert.deepEqual(await stored(id), { logs: 1, checkpoints: 1 });
    assert.equal((await job(id)).status, "running");

    await transitionJob(store, id, "lost", { error: { name: "WorkerLost", message: "test" } });
    await assert.rejects(appendLogs(store, id, line("after lost"), claim), ClaimLostError);
    await assert.rejects(putCheckpoints(store, id, [{ idx: 1, values }], claim), ClaimLostError);
    await assert.rejects(transitionJob(store, id, "done", { result: 1, claim }), IllegalTransitionError);
    assert.deepEqual(await stored(id), { logs: 1, checkpoints: 1 });
    const row = await job(id);
    assert.equal(row.status, "lost");
    assert.equal(row.result, null);
  });

  test("once the job is cancelled in the store, its run's last lines and checkpoint are still stored under its claim (and nothing under another claim); lost refuses them", async () => {
    const id = await queueJob("const cancelledLater = 1;", ["cancelledLater"], NOBODY.workerId);
    const claimed = await claimNextJob(store, NOBODY, 0);
    assert.equal(claimed?.id, id);
    const claim = String(claimed!.claim);
    // job.cancel() marks the row first; the worker stops the job afterwards and then stores what
    // the job printed and checkpointed just before it was stopped.
    await transitionJob(store, id, "cancelled", { error: { name: "Cancelled", message: "enough" } });
    await appendLogs(store, id, line("printed just before the stop"), claim);
    await putCheckpoints(store, id, [{ idx: 0, values }], claim);
    assert.deepEqual(await stored(id), { logs: 1, checkpoints: 1 });
    assert.deepEqual((await readLogs(store, id)).map((l) => l.line), ["printed just before the stop"]);

    const stale = String(Number(claim) + 1000);
    await assert.rejects(appendLogs(store, id, line("stale"), stale), ClaimLostError);
    await assert.rejects(putCheckpoints(store, id, [{ idx: 1, values }], stale), ClaimLostError);
    // The outcome stays the cancel: the run's own final write cannot turn it into done.
    await assert.rejects(transitionJob(store, id, "done", { result: 1, claim }), IllegalTransitionError);
    assert.equal((await job(id)).status, "cancelled");
    assert.deepEqual(await stored(id), { logs: 1, checkpoints: 1 });

    // Lost stays strict: the run was given up and may go on elsewhere.
    const other = await queueJob("const lostLater = 1;", ["lostLater"], NOBODY.workerId);
    const otherClaim = String((await claimNextJob(store, NOBODY, 0))!.claim);
    await transitionJob(store, other, "lost", { error: { name: "WorkerLost", message: "test" } });
    await assert.rejects(appendLogs(store, other, line("after lost"), otherClaim), ClaimLostError);
    await assert.rejects(putCheckpoints(store, other, [{ idx: 0, values }], otherClaim), ClaimLostError);
    assert.deepEqual(await stored(other), { logs: 0, checkpoints: 0 });
  });

  test("each move to running gets a new claim (queue and direct start alike); the final write under it is accepted", async () => {
    const a = await queueJob("const a = 1;", ["a"], NOBODY.workerId);
    const b = await queueJob("const b = 2;", ["b"], NOBODY.workerId);
    const first = await claimNextJob(store, NOBODY, 0);
    const second = await transitionJob(store, b, "running", NOBODY);
    assert.equal(first?.id, a);
    assert.ok(first!.claim !== null && second.claim !== null && String(first!.claim) !== String(second.claim));
    const done = await transitionJob(store, a, "done", { result: 1, resultText: "1", claim: String(first!.claim) });
    assert.equal(done.status, "done");
    const failed = await transitionJob(store, b, "failed", { error: { name: "E", message: "m" }, claim: String(second.claim) });
    assert.equal(failed.status, "failed");
  });
});

describe("a worker that comes back after its job was lost and resumed", () => {
  // 60 steps, one checkpoint every 100 ms and a line every 5th; a resumed run goes on from the
  // restored step.
  const TICKING = `
const state = { i: -1 };
jobtracker.registerCheckpointer("state");
async function tick(n: number) {
  for (let k = state.i + 1; k < n; k++) {
    state.i = k;
    jobtracker.checkpoint();
    if (k % 5 === 0) console.log("step " + k);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await jobtracker.flush();
  return state.i;
}
`;

  test("SIGSTOP, lost, resumed, SIGCONT: the old run is stopped at its first refused write, stores nothing more, and the worker runs the resumed job", { timeout: 120_000 }, async () => {
    const pid = worker.process.pid!;
    const id = await queueJob(TICKING, ["tick(60)"]);
    await waitFor(`job ${id} running with 8 checkpoints`, async () => (await job(id)).status === "running" && (await stored(id)).checkpoints >= 8);
    const claim = (await job(id)).claim;

    process.kill(pid, "SIGSTOP");
    const pausedAt = Date.now();
    // Marked lost by the check every worker and waiting notebook runs (the test runs it here). A
    // write the worker was making when it stopped holds the row until PostgreSQL ends its
    // session; the check skips such a row rather than wait.
    await waitFor(`job ${id} marked lost`, async () => (await markLostJobs(store, { staleAfterMs: STALE_MS })).includes(id), 30_000);
    const lostAfterMs = Date.now() - pausedAt;
    const resumed = await resumeJob(store, id, undefined);
    const before = await stored(id);
    const lostRow = await job(id);
    assert.equal(lostRow.status, "lost");
    assert.equal(lostRow.claim, claim);

    process.kill(pid, "SIGCONT");
    const continuedAt = Date.now();
    await waitFor("the worker says it stopped the job", () => worker.log.includes(`job ${id}: stopping it`), 30_000);
    const stoppedAfterMs = Date.now() - continuedAt;
    const done = await (async () => {
      await waitFor(`resumed job ${resumed.id} ends`, async () => ["done", "failed", "lost", "cancelled"].includes((await job(resumed.id)).status), 60_000);
      return job(resumed.id);
    })();
    // Whatever the old run still had in memory or printed after it continued was refused.
    await sleep(1_000);
    assert.deepEqual(await stored(id), before, `the lost job's stored rows changed after the worker continued:\n${worker.log}`);
    const old = await job(id);
    assert.equal(old.status, "lost");
    assert.equal(old.result, null);
    assert.equal(old.error_name, "WorkerLost");
    assert.match(worker.log, new RegExp(`job ${id}: .*(no longer running under claim ${claim})`));

    // The worker took the next job (the resumed one) and ran it to the end, from the old job's last checkpoint.
    assert.ok(worker.process.exitCode === null, "the worker is still running");
    assert.equal(done.status, "done", `${done.error_name}: ${done.error_message}\n${worker.log}`);
    assert.equal(done.worker_id, WORKER);
    const stored_ = done.result as unknown as StoredResult;
    assert.equal(deserialize(Buffer.from(stored_.data, "base64")), 59);
    const indexes = (await listCheckpoints(store, resumed.id)).map((c) => c.idx);
    assert.ok(resumed.fromCheckpoint !== undefined && resumed.fromCheckpoint >= 7);
    assert.deepEqual(indexes, indexes.map((_, i) => i), "the resumed job's checkpoints have no gap and no duplicate");
    assert.ok(indexes.length > resumed.fromCheckpoint! + 1, "the resumed job stored checkpoints of its own");
    console.log(`# marked lost ${lostAfterMs} ms after SIGSTOP; the old run stopped ${stoppedAfterMs} ms after SIGCONT; resumed from checkpoint ${resumed.fromCheckpoint}`);
  });

  test("a job that writes nothing is stopped at the worker's first heartbeat after SIGCONT, and the next job runs", { timeout: 60_000 }, async () => {
    const pid = worker.process.pid!;
    const id = await queueJob("async function quiet(): Promise<number> {\n  await new Promise((resolve) => setTimeout(resolve, 60_000));\n  return 1;\n}", ["quiet()"]);
    await waitFor(`job ${id} running`, async () => (await job(id)).status === "running");
    process.kill(pid, "SIGSTOP");
    await waitFor(`job ${id} marked lost`, async () => (await markLostJobs(store, { staleAfterMs: STALE_MS })).includes(id), 30_000);
    const next = await queueJob("const next = 2;", ["next"]);
    process.kill(pid, "SIGCONT");
    const continuedAt = Date.now();
    // Without the check the worker would be busy with the lost job for a minute.
    await waitFor(`next job ${next} done`, async () => (await job(next)).status === "done", 15_000);
    assert.match(worker.log, new RegExp(`job ${id}: stopped \\(it was running here\\): job ${id} is lost in the store`));
    assert.deepEqual(await stored(id), { logs: 0, checkpoints: 0 });
    assert.equal((await job(id)).status, "lost");
    console.log(`# a silent lost job stopped and the next job done ${Date.now() - continuedAt} ms after SIGCONT`);
  });
});
