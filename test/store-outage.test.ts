// The store goes away under a running cluster, and a job prints a NUL: nothing a
// job prints or a short outage does kills a worker or loses output. The embedded PostgreSQL under
// a temporary NBJOB_HOME is really stopped and started (`nbjob db stop|start`) while a local
// cluster of 2 real workers runs two jobs that checkpoint every 100 ms and print every 1.5 s.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createJob, getJob, heartbeatWorker, markLostJobs, notifyJobQueued, openStore, putBundle, readLogs, stopEmbeddedServer, transitionJob } from "../store";
import { JobLogWriter } from "../worker/log-writer";
import type { DbJob, Store } from "../store";
import { listCheckpoints } from "../store/checkpoints";
import { isAlive } from "./processes";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
// The postgres user must reach the data directory under it (mkdtemp makes it private).
const home = mkdtempSync(join(tmpdir(), "nbjob-outage-"));
chmodSync(home, 0o711);
const clusterDir = join(home, "cluster", "default");
// A store away 5 s makes a job wait (NBJOB_STORE_WAIT_MS), so the 15 s outage exercises both the
// buffered writes of the first seconds and the job held until the store is back.
// This process stores the bundles and the cluster runs them: one cluster key for both.
process.env.NBJOB_CLUSTER_KEY = randomBytes(32).toString("hex");
const env: NodeJS.ProcessEnv = { ...process.env, NBJOB_HOME: home, NBJOB_STORE_WAIT_MS: "5000", NBJOB_DEBUG: "" };
delete env.NBJOB_DATABASE_URL;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let store: Store;

function nbjob(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [NBJOB, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const workerPid = (i: number) => Number(readFileSync(join(clusterDir, `worker-${i}.pid`), "utf8"));
const workerLog = (i: number) => readFileSync(join(clusterDir, `worker-${i}.log`), "utf8");

async function queueJob(program: string, entry: string, name: string): Promise<number> {
  // A bundle is known by its source: the job's name in it keeps two jobs' bundles apart.
  const source = `// ${name}\n${program}`;
  const bundleHash = await putBundle(store, { source, snippets: [], params: {}, entries: [entry] });
  const job = await createJob(store, { bundleHash, name });
  await notifyJobQueued(store);
  return job.id;
}

async function waitFor(jobId: number, statuses: DbJob["status"][], timeoutMs: number): Promise<DbJob> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJob(store, jobId);
    if (job && statuses.includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is ${job?.status}, not ${statuses.join("/")}, after ${timeoutMs} ms;\nworker 0:\n${workerLog(0)}\nworker 1:\n${workerLog(1)}`);
    await sleep(100);
  }
}

before(async () => {
  const started = await nbjob("db", "start");
  assert.equal(started.code, 0, started.stderr);
  store = openStore({ home, maxConnections: 2 });
  await store.ready();
  const cluster = await nbjob("cluster", "start", "-n", "2");
  assert.equal(cluster.code, 0, cluster.stderr);
});

after(async () => {
  await nbjob("cluster", "stop");
  for (const i of [0, 1]) {
    try {
      if (isAlive(workerPid(i))) process.kill(workerPid(i), "SIGKILL");
    } catch {
      // no pid file: stopped already
    }
  }
  await store?.close().catch(() => undefined);
  await stopEmbeddedServer({ home }).catch(() => undefined);
  if (process.env.NBJOB_TEST_KEEP === "1") console.log(`# kept ${home}`);
  else rmSync(home, { recursive: true, force: true });
});

// 300 checkpoints, one every 100 ms, and a numbered line every 15th (1.5 s).
const CHECKPOINTS = 300;
const EVERY = 15;
const TICKING = `
const state = { i: -1 };
jobtracker.registerCheckpointer("state");
async function tick(name: string, n: number) {
  for (let k = 0; k < n; k++) {
    state.i = k;
    jobtracker.checkpoint();
    if (k % ${EVERY} === 0) console.log(name + " line " + k / ${EVERY});
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await jobtracker.flush();
  return n;
}
`;

/** The job's own lines, without the notes nbjob adds (`[nbjob: …]`). */
async function printedLines(jobId: number): Promise<string[]> {
  return (await readLogs(store, jobId)).map((l) => l.line).filter((line) => !line.startsWith("[nbjob:"));
}

describe("a store outage under a running cluster", () => {
  test("a 15 s outage while two jobs checkpoint and print: workers survive, every checkpoint and line is stored once, in order", { timeout: 240_000 }, async () => {
    const pids = [workerPid(0), workerPid(1)];
    const jobs = [await queueJob(TICKING, `tick("a", ${CHECKPOINTS})`, "outage-a"), await queueJob(TICKING, `tick("b", ${CHECKPOINTS})`, "outage-b")];
    // Both well under way (20 checkpoints each, of 300) when the store goes.
    for (const id of jobs) {
      await waitFor(id, ["running"], 30_000);
      for (let waited = 0; (await listCheckpoints(store, id)).length < 20; waited += 100) {
        assert.ok(waited < 60_000, `job ${id} stored no 20 checkpoints in 60 s`);
        await sleep(100);
      }
    }
    const before = (await listCheckpoints(store, jobs[0])).length + (await listCheckpoints(store, jobs[1])).length;
    const stop = await nbjob("db", "stop");
    assert.equal(stop.code, 0, stop.stderr);
    await sleep(15_000);
    const start = await nbjob("db", "start");
    assert.equal(start.code, 0, start.stderr);
    const back = Date.now();

    const finished = [await waitFor(jobs[0], ["done", "failed", "lost", "cancelled"], 120_000), await waitFor(jobs[1], ["done", "failed", "lost", "cancelled"], 120_000)];
    for (const i of [0, 1]) assert.ok(isAlive(pids[i]), `worker ${i} (pid ${pids[i]}) died:\n${workerLog(i)}`);
    for (const job of finished) assert.equal(job.status, "done", `job ${job.id}: ${job.error_name}: ${job.error_message}`);

    let firstWriteAfter = Infinity;
    for (const [n, id] of jobs.entries()) {
      const stored = await listCheckpoints(store, id);
      assert.deepEqual(stored.map((c) => c.idx), Array.from({ length: CHECKPOINTS }, (_, i) => i), `job ${id}: every checkpoint once`);
      for (const c of stored) if (c.created_at.getTime() >= back) firstWriteAfter = Math.min(firstWriteAfter, c.created_at.getTime() - back);
      const name = n === 0 ? "a" : "b";
      const expected = Array.from({ length: CHECKPOINTS / EVERY }, (_, i) => `${name} line ${i}`);
      assert.deepEqual(await printedLines(id), expected, `job ${id}: every printed line once, in order`);
      const notes = (await readLogs(store, id)).map((l) => l.line).filter((line) => line.startsWith("[nbjob:"));
      assert.ok(notes.some((note) => /store was unreachable/.test(note) && /waited/.test(note)), `job ${id} says it waited for the store: ${JSON.stringify(notes)}`);
    }
    const logs = workerLog(0) + workerLog(1);
    assert.match(logs, /has been unreachable for \d+ s; .*waits/, "the worker says at once that a job waits");
    console.log(`checkpoints stored ${2 * CHECKPOINTS}/${2 * CHECKPOINTS} (${before} before the stop); lines stored ${2 * CHECKPOINTS / EVERY}/${2 * CHECKPOINTS / EVERY}; first checkpoint written ${firstWriteAfter} ms after the store was back`);
  });

  test("a line holding NUL among 50 others: the worker lives, every line is stored as printed", { timeout: 120_000 }, async () => {
    const pids = [workerPid(0), workerPid(1)];
    const id = await queueJob(`
function chatter() {
  for (let i = 0; i < 25; i++) console.log("line " + i);
  console.log("bad\\u0000line");
  for (let i = 25; i < 50; i++) console.log("line " + i);
  return 50;
}
`, "chatter()", "nul");
    const job = await waitFor(id, ["done", "failed", "lost", "cancelled"], 60_000);
    assert.equal(job.status, "done", `${job.error_name}: ${job.error_message}`);
    // The worker is alive and takes the next job.
    const next = await queueJob("function two() { return 2; }", "two()", "after-nul");
    assert.equal((await waitFor(next, ["done", "failed", "lost", "cancelled"], 60_000)).status, "done");
    for (const i of [0, 1]) assert.ok(isAlive(pids[i]), `worker ${i} died:\n${workerLog(i)}`);
    const lines = (await readLogs(store, id)).map((l) => l.line);
    assert.equal(lines.length, 51, JSON.stringify(lines));
    assert.deepEqual(lines.slice(0, 25), Array.from({ length: 25 }, (_, i) => `line ${i}`));
    assert.deepEqual(lines.slice(26), Array.from({ length: 25 }, (_, i) => `line ${i + 25}`));
    // Stored escaped (logs.escaped) and read back as printed.
    assert.equal(lines[25], "bad\u0000line");
  });

  test("output printed while the store is away is kept up to its bound; the rest is dropped with a note saying how much", { timeout: 120_000 }, async () => {
    const bundleHash = await putBundle(store, { source: "// drops\n1;\n", snippets: [], params: {}, entries: [] });
    const { id } = await createJob(store, { bundleHash, name: "drops" });
    const logged: string[] = [];
    const writer = new JobLogWriter(store, id, { log: (line) => logged.push(line), maxPendingLines: 100, intervalMs: 10 });
    writer.write("stdout", "before\n");
    await writer.flush();
    assert.equal((await nbjob("db", "stop")).code, 0);
    // The first line finds the store gone; the others come once the writer knows.
    writer.write("stdout", `away 0 ${"x".repeat(1_000)}\n`);
    await sleep(1_000);
    for (let i = 1; i < 1_000; i++) writer.write("stdout", `away ${i} ${"x".repeat(1_000)}\n`);
    const flushed = writer.flush();
    assert.equal((await nbjob("db", "start")).code, 0);
    await flushed;
    writer.write("stdout", "after\n");
    await writer.close();
    const lines = (await readLogs(store, id)).map((l) => l.line.replace(/ x+$/, ""));
    assert.deepEqual(lines, [
      "before",
      ...Array.from({ length: 100 }, (_, i) => `away ${i}`),
      "[nbjob: 900 lines (886.8 kB) dropped while the store was unreachable]",
      "after",
    ]);
    assert.match(logged.join("\n"), /dropped 900 lines of output while the store was unreachable/);

    // Right after the restart no worker's silence counts yet: a job whose worker was last heard
    // from 10 minutes ago is lost only once the server has been up longer than the limit.
    await heartbeatWorker(store, { id: "ghost", host: "nowhere", pid: 1 });
    // For the ghost alone: the cluster's workers must not claim it before it is marked running here.
    const ghostJob = await createJob(store, { bundleHash, name: "ghost", targetWorker: "ghost" });
    await transitionJob(store, ghostJob.id, "running", { workerId: "ghost", host: "nowhere", pid: 1 });
    await store.query("UPDATE nbjob.workers SET last_heartbeat_at = now() - interval '10 minutes' WHERE id = 'ghost'");
    await store.query("UPDATE nbjob.jobs SET started_at = now() - interval '10 minutes' WHERE id = $1", [ghostJob.id]);
    assert.deepEqual(await markLostJobs(store, { staleAfterMs: 300_000 }), [], "the server started less than 300 s ago");
    await sleep(1_100);
    assert.deepEqual(await markLostJobs(store, { staleAfterMs: 1_000 }), [ghostJob.id]);
  });

  test("a job marked lost by someone else while it runs: it stays lost, the worker says its outcome is not recorded and goes on", { timeout: 120_000 }, async () => {
    const id = await queueJob(TICKING, `tick("lost", 30)`, "marked-lost");
    const running = await waitFor(id, ["running"], 30_000);
    const worker = Number(/default\/(\d)/.exec(running.worker_id ?? "")?.[1]);
    await transitionJob(store, id, "lost", { error: { name: "WorkerLost", message: "marked lost by the test" } });
    for (let waited = 0; !/job \d+ was marked lost in the store while it ran here/.test(workerLog(worker)); waited += 100) {
      assert.ok(waited < 60_000, `the worker never said so:\n${workerLog(worker)}`);
      await sleep(100);
    }
    assert.equal((await getJob(store, id))!.status, "lost");
    assert.ok(isAlive(workerPid(worker)));
    const next = await queueJob("function three() { return 3; }", "three()", "after-lost");
    assert.equal((await waitFor(next, ["done", "failed", "lost", "cancelled"], 60_000)).status, "done");
  });

  test("a worker asked to shut down while the store is away does not wait for it: both workers shut down", { timeout: 120_000 }, async () => {
    const id = await queueJob(TICKING, `tick("stopped", 300)`, "shutdown-while-away");
    await waitFor(id, ["running"], 30_000);
    await sleep(1_000);
    assert.equal((await nbjob("db", "stop")).code, 0);
    await sleep(2_000);
    const pids = [workerPid(0), workerPid(1)];
    const stop = await nbjob("cluster", "stop");
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /worker 0 shut down, worker 1 shut down/, `${stop.stdout}\nworker 0:\n${workerLog(0)}\nworker 1:\n${workerLog(1)}`);
    for (const pid of pids) assert.ok(!isAlive(pid));
  });
});

