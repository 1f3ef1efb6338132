// PostgreSQL restarted under a notebook that awaits its jobs (issue 16 point 4, one host): the
// embedded server under a temporary NBJOB_HOME is really stopped and started (`nbjob db
// stop|start`) while a notebook run by `nbjob run` (a real kernel) awaits 4 load-balanced jobs
// on a local cluster of 2 real workers that checkpoint every 100 ms and print. The awaiting cell
// must get every result and every line once, without being run again, and the next cells must
// reach the store without a kernel restart. A notebook handle that gives up on a store that stays
// away says that the store is unreachable (the second test, the runtime API in this process).
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { openStore, readLogs, stopEmbeddedServer, transitionJob } from "../store";
import type { Store } from "../store";
import { listCheckpoints } from "../store/checkpoints";
import { DBWrapper } from "../runtime";
import { cellText, notebookFrom } from "./jobs-env";
import type { RanCell } from "./jobs-env";
import { isAlive } from "./processes";

const ROOT = join(__dirname, "..", "..");
const NBJOB = join(ROOT, "bin", "nbjob.js");
// The postgres user must reach the data directory under it (mkdtemp makes it private).
const home = mkdtempSync(join(tmpdir(), "nbjob-pg-restart-"));
chmodSync(home, 0o711);
const clusterDir = join(home, "cluster", "default");
// A store away 5 s makes a running job wait (NBJOB_STORE_WAIT_MS), so the 10 s outage also
// holds the jobs, and their logs must say so.
const env: NodeJS.ProcessEnv = { ...process.env, NBJOB_HOME: home, NBJOB_STORE_WAIT_MS: "5000", JUPYTER_DATA_DIR: join(home, "jupyter") };
delete env.NBJOB_DATABASE_URL;
delete env.NBJOB_DEBUG;
delete env.NBJOB_STORE_GIVE_UP_MS;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let store: Store;

function nbjob(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [NBJOB, ...args], { env, cwd: ROOT, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const workerPid = (i: number) => Number(readFileSync(join(clusterDir, `worker-${i}.pid`), "utf8"));
const workerLog = (i: number) => readFileSync(join(clusterDir, `worker-${i}.log`), "utf8");

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

// 100 checkpoints per job, one every 100 ms, and a numbered line every 10th.
const CHECKPOINTS = 100;
const EVERY = 10;
const NAMES = ["a", "b", "c", "d"];

const NOTEBOOK = `
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code decl
%%snip sc
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
  return name + ":" + n;
}
### code submit
const jobs = [
${NAMES.map((name) => `  await db.createJob<string>(rc.loadBalanced(), ['tick("${name}", ${CHECKPOINTS})'], sc, { name: "restart-${name}" }),`).join("\n")}
];
console.log("submitted", jobs.map((j) => j.id).join(","));
### code await
const results = await Promise.all(jobs.map((j) => j.result));
console.log("results", JSON.stringify(results));
console.log("statuses", JSON.stringify(await Promise.all(jobs.map((j) => j.wait()))));
### code after
const listed = await db.jobs({ limit: 10 });
console.log("listed", listed.filter((j) => j.name?.startsWith("restart-")).map((j) => j.name + "=" + j.status).sort().join(","));
const next = await db.createJob<string>(rc.loadBalanced(), ["tick('e', 3)"], sc, { name: "after-restart" });
console.log("next", await next.result);
`;

async function restartJobs(): Promise<{ id: number; name: string; status: string }[]> {
  const { rows } = await store.query<{ id: number; name: string; status: string }>("SELECT id, name, status FROM nbjob.jobs WHERE name LIKE 'restart-%' ORDER BY id");
  return rows;
}

describe("PostgreSQL restarted while a notebook awaits its jobs", () => {
  test("4 jobs on 2 workers, the server stopped 10 s: every job done, the awaiting cell gets every result and line once, later cells reach the store", { timeout: 300_000 }, async () => {
    const pids = [workerPid(0), workerPid(1)];
    const path = join(home, "restart.ipynb");
    const out = join(home, "restart.out.ipynb");
    writeFileSync(path, JSON.stringify(notebookFrom(NOTEBOOK)));
    const run = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [NBJOB, "run", path, "-o", out, "--allow-errors", "--timeout", "240"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk) => (stdout += chunk));
      child.stderr.on("data", (chunk) => (stderr += chunk));
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });

    // The first two jobs well under way (20 checkpoints of 100) when the server stops.
    let running: number[] = [];
    for (let waited = 0; ; waited += 200) {
      const jobs = await restartJobs();
      running = jobs.filter((j) => j.status === "running").map((j) => j.id);
      if (jobs.length === 4 && running.length === 2) {
        const counts = await Promise.all(running.map(async (id) => (await listCheckpoints(store, id)).length));
        if (counts.every((n) => n >= 20)) break;
      }
      assert.ok(waited < 120_000, `the notebook's jobs did not get under way: ${JSON.stringify(jobs)}\nworker 0:\n${workerLog(0)}`);
      await sleep(200);
    }
    const stop = await nbjob("db", "stop");
    assert.equal(stop.code, 0, stop.stderr);
    await sleep(10_000);
    const start = await nbjob("db", "start");
    assert.equal(start.code, 0, start.stderr);
    const back = Date.now();

    const finished = await run;
    const ranFor = Date.now() - back;
    assert.equal(finished.code, 0, finished.stderr);
    const cells = new Map<string, RanCell>();
    const executed = JSON.parse(readFileSync(out, "utf8")) as { cells: { cell_type: string; id: string; source: string | string[]; outputs?: RanCell["outputs"] }[] };
    for (const cell of executed.cells) if (cell.cell_type === "code") cells.set(cell.id, { id: cell.id, source: String(cell.source), outputs: cell.outputs ?? [] });
    const awaited = cellText(cells.get("await"));
    const logs = `${awaited}\nworker 0:\n${workerLog(0)}\nworker 1:\n${workerLog(1)}`;
    assert.ok(awaited.includes(`results ${JSON.stringify(NAMES.map((n) => `${n}:${CHECKPOINTS}`))}`), logs);
    assert.match(awaited, /statuses \["done","done","done","done"\]/, logs);
    // The cell ran once, and each job's lines reached it once each, in order.
    assert.equal(cells.get("await")!.outputs.filter((o) => o.output_type === "error").length, 0, logs);
    for (const name of NAMES) {
      const lines = awaited.split("\n").filter((line) => line.startsWith(`${name} line `));
      assert.deepEqual(lines, Array.from({ length: CHECKPOINTS / EVERY }, (_, i) => `${name} line ${i}`), `job ${name}'s lines in the awaiting cell\n${logs}`);
    }
    // The notebook said why it was waiting.
    assert.match(awaited, /the store is unreachable[^\n]*still waiting/, logs);
    assert.match(awaited, /the store is back after/, logs);
    assert.match(cellText(cells.get("after")), /listed restart-a=done,restart-b=done,restart-c=done,restart-d=done/, cellText(cells.get("after")));
    assert.match(cellText(cells.get("after")), /next e:3/, cellText(cells.get("after")));

    // The stored rows: every checkpoint 0..99 and every line once, and the running jobs' logs say they waited.
    let firstWriteAfter = Infinity;
    for (const job of await restartJobs()) {
      assert.equal(job.status, "done");
      const stored = await listCheckpoints(store, job.id);
      assert.deepEqual(stored.map((c) => c.idx), Array.from({ length: CHECKPOINTS }, (_, i) => i), `job ${job.id}: every checkpoint once`);
      for (const c of stored) if (c.created_at.getTime() >= back) firstWriteAfter = Math.min(firstWriteAfter, c.created_at.getTime() - back);
      const name = job.name.slice("restart-".length);
      const lines = (await readLogs(store, job.id)).map((l) => l.line);
      assert.deepEqual(lines.filter((l) => !l.startsWith("[nbjob:")), Array.from({ length: CHECKPOINTS / EVERY }, (_, i) => `${name} line ${i}`), `job ${job.id}: every line once`);
      if (running.includes(job.id)) assert.ok(lines.some((l) => /store was unreachable/.test(l) && /waited/.test(l)), `job ${job.id} says it waited: ${JSON.stringify(lines)}`);
    }
    for (const i of [0, 1]) assert.ok(isAlive(pids[i]), `worker ${i} (pid ${pids[i]}) died:\n${workerLog(i)}`);
    console.log(`checkpoints ${4 * CHECKPOINTS}/${4 * CHECKPOINTS}, lines ${4 * CHECKPOINTS / EVERY}/${4 * CHECKPOINTS / EVERY}; first checkpoint written ${firstWriteAfter} ms after the server was back; the notebook finished ${(ranFor / 1000).toFixed(1)} s after`);
  });

  test("a notebook's wait gives up on a store away past NBJOB_STORE_GIVE_UP_MS, saying the store is unreachable; waiting again once it is back gets the result", { timeout: 120_000 }, async () => {
    process.env.NBJOB_HOME = home;
    delete process.env.NBJOB_DATABASE_URL;
    process.env.NBJOB_STORE_GIVE_UP_MS = "3000";
    const db = new DBWrapper();
    try {
      const [done] = (await restartJobs()).filter((j) => j.name === "restart-a");
      const job = await db.job<string>(done.id);
      // Made to look running again on a live worker (which does not run it), so the handle waits for it.
      await store.query("UPDATE nbjob.jobs SET status = 'running', result = NULL, finished_at = NULL WHERE id = $1", [done.id]);
      await job.refresh();
      assert.equal((await nbjob("db", "stop")).code, 0);
      const startedAt = Date.now();
      await assert.rejects(job.result, (err: Error) => {
        assert.match(err.message, new RegExp(`job ${done.id}: stopped waiting: the store at \\S+ has been unreachable for \\d+ s`));
        assert.match(err.message, /await job\.result .*again/);
        return true;
      });
      const gaveUpAfter = Date.now() - startedAt;
      assert.ok(gaveUpAfter >= 3_000 && gaveUpAfter < 20_000, `gave up after ${gaveUpAfter} ms`);
      assert.equal((await nbjob("db", "start")).code, 0);
      await store.query("UPDATE nbjob.jobs SET status = 'done', result = '\"again\"'::jsonb, finished_at = now() WHERE id = $1", [done.id]);
      assert.equal(await job.result, "again");
    } finally {
      delete process.env.NBJOB_STORE_GIVE_UP_MS;
      // Up again for the next tests even when this one failed.
      await nbjob("db", "start");
      await db.close();
    }
  });

  test("a read of the job's output whose connection is ended mid-wait is retried, not the wait's end: the handle gets the result", { timeout: 60_000 }, async () => {
    process.env.NBJOB_HOME = home;
    delete process.env.NBJOB_DATABASE_URL;
    const db = new DBWrapper();
    try {
      const [row] = (await restartJobs()).filter((j) => j.name === "restart-b");
      const job = await db.job<string>(row.id);
      await store.query("UPDATE nbjob.jobs SET status = 'running', result = NULL, finished_at = NULL WHERE id = $1", [row.id]);
      await store.withClient(async (admin) => {
        // The handle's read of the logs waits on this lock; its connection is then ended, as a
        // server going down ends it in the middle of a query.
        await admin.query("BEGIN");
        await admin.query("LOCK TABLE nbjob.logs IN ACCESS EXCLUSIVE MODE");
        const result = job.result;
        let terminated = 0;
        for (let waited = 0; terminated === 0; waited += 50) {
          assert.ok(waited < 20_000, "the handle's read of the logs never waited on the lock");
          const { rows } = await store.query<{ n: number }>(
            "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'nbjob notebook' AND wait_event_type = 'Lock' AND query LIKE '%nbjob.logs%'",
          );
          terminated = rows[0].n;
          if (terminated === 0) await sleep(50);
        }
        await admin.query("COMMIT");
        await sleep(500);
        await store.query("UPDATE nbjob.jobs SET status = 'done', result = '\"cut\"'::jsonb, finished_at = now() WHERE id = $1", [row.id]);
        assert.equal(await result, "cut");
      });
    } finally {
      await db.close();
    }
  });

  test("a worker's final write retried after its answer was lost (the same status under the same claim) is taken as written, not refused", async () => {
    const [row] = (await restartJobs()).filter((j) => j.name === "restart-c");
    const { rows } = await store.query<{ claim: string }>("UPDATE nbjob.jobs SET status = 'running', finished_at = NULL WHERE id = $1 RETURNING claim::text", [row.id]);
    const claim = rows[0].claim;
    const first = await transitionJob(store, row.id, "done", { result: "c:again", resultText: "'c:again'", claim });
    const again = await transitionJob(store, row.id, "done", { result: "c:again", resultText: "'c:again'", claim });
    assert.equal(again.status, "done");
    assert.deepEqual(again.finished_at, first.finished_at, "the retry changed nothing");
    await assert.rejects(transitionJob(store, row.id, "failed", { error: { name: "E", message: "m" }, claim }), /IllegalTransition|cannot|done/);
  });
});
