// Several hosts on one machine (issue 16): a rig of network namespaces (test/rig.ts) with a
// "store" host running its own PostgreSQL on its rig address, two worker hosts each running
// `nbjob worker` with its own NBJOB_HOME in an empty folder, and a notebook host running real
// notebooks with `nbjob run`, reaching the workers through their connection files (rig
// addresses) and the store through its rig address. Faults: a worker host's link cut mid-job (its
// job lost, resumed on the other host, the first host back while its old run still goes on), the
// store's server stopped and started under 4 checkpointing jobs and an awaiting notebook, and the
// notebook host's link cut while a sweep runs. A "gateway" host runs Debian's jupyter-server on
// its rig address, whose nbjob-worker kernel runs a direct-view job for the notebook host.
// Assertions are on the stored rows; the figures are printed as `# ...` lines.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deserialize } from "node:v8";
import { after, before, describe, test } from "node:test";
import { Client as PgClient } from "pg";
import { createJob, getJob, listWorkers, notifyJobQueued, openStore, putBundle, readLogs } from "../store";
import type { DbJob, Store } from "../store";
import { listCheckpoints, readCheckpoint } from "../store/checkpoints";
import { resumeJob } from "../runtime/resume";
import type { StoredResult } from "../worker/recorder";
import { cellText, notebookFrom } from "./jobs-env";
import type { RanCell } from "./jobs-env";
import { Rig, rigUnavailable, startRigWorker } from "./rig";
import type { RigPostgres, RigWorker } from "./rig";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const DATABASE = "nbjob";
// Short liveness limits keep the file short: a worker silent 8 s is presumed dead (default 20 s).
const HEARTBEAT_MS = "1000";
const STALE_MS = "8000";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const FINAL = ["done", "failed", "lost", "cancelled"];
const PYTHON = "/usr/bin/python3";
const gatewaySkip = spawnSync(PYTHON, ["-c", "import jupyter_server"]).status === 0 ? false : "jupyter-server is not installed (apt-get install -y jupyter-server)";

const unavailable = rigUnavailable();
if (unavailable) {
  test(`multi-host rig: skipped: ${unavailable}`, { skip: unavailable }, () => undefined);
} else {
  let rig: Rig;
  let pg: RigPostgres;
  let store: Store;
  const workers: RigWorker[] = [];
  const work = mkdtempSync(join(tmpdir(), "nbjob-multihost-"));
  chmodSync(work, 0o755);
  const key = randomBytes(32).toString("hex");
  // This process stores bundles too (the first test): the same cluster key as the workers.
  process.env.NBJOB_CLUSTER_KEY = key;
  let baseEnv: NodeJS.ProcessEnv;

  const job = async (id: number): Promise<DbJob> => (await getJob(store, id))!;
  const logsOf = () => workers.map((w) => `${w.host} (${w.id}):\n${w.log}`).join("\n");

  async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
    for (const deadline = Date.now() + timeoutMs; !(await check());) {
      if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms\n${logsOf()}`);
      await sleep(100);
    }
  }

  async function startWorker(host: string): Promise<RigWorker> {
    const worker = await startRigWorker(rig, host, { dir: work, env: { ...baseEnv, NBJOB_WORKER_HEARTBEAT_MS: HEARTBEAT_MS, NBJOB_WORKER_STALE_MS: STALE_MS } });
    workers.push(worker);
    // The rig address in its connection file is what the notebook host connects to.
    assert.equal(JSON.parse(readFileSync(worker.connectionFile, "utf8")).ip, rig.host(host).address);
    await waitFor(`worker ${worker.id} heartbeats`, async () => (await listWorkers(store, { aliveWithinMs: 5_000 })).some((w) => w.id === worker.id), 30_000);
    return worker;
  }

  /** Runs a notebook with `nbjob run` on the notebook host; resolves when it ends. */
  function runNotebook(name: string, text: string): { done: Promise<{ code: number | null; stderr: string; cells: Map<string, RanCell> }> } {
    const path = join(work, `${name}.ipynb`);
    const out = join(work, `${name}.out.ipynb`);
    writeFileSync(path, JSON.stringify(notebookFrom(text)));
    const child = rig.spawn("notebook", process.execPath, [NBJOB, "run", path, "-o", out, "--allow-errors", "--timeout", "240"], {
      cwd: work,
      env: { ...baseEnv, NBJOB_HOME: join(work, "notebook-home"), JUPYTER_DATA_DIR: join(work, "notebook-jupyter") },
    });
    let stderr = "";
    child.stdout?.on("data", () => undefined);
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<{ code: number | null; stderr: string; cells: Map<string, RanCell> }>((resolve) => {
      child.on("close", (code) => {
        const cells = new Map<string, RanCell>();
        if (existsSync(out)) {
          const executed = JSON.parse(readFileSync(out, "utf8")) as { cells: { cell_type: string; id: string; source: string | string[]; outputs?: RanCell["outputs"] }[] };
          for (const cell of executed.cells) if (cell.cell_type === "code") cells.set(cell.id, { id: cell.id, source: String(cell.source), outputs: cell.outputs ?? [] });
        }
        resolve({ code, stderr, cells });
      });
    });
    return { done };
  }

  /** The value of each of a job's checkpoints' `state`, in index order. */
  async function checkpointStates(id: number): Promise<{ idx: number; i: number; hash: string }[]> {
    const out: { idx: number; i: number; hash: string }[] = [];
    for (const c of await listCheckpoints(store, id)) {
      const values = await readCheckpoint(store, id, c.idx);
      out.push({ idx: c.idx, i: (deserialize(values.state) as { i: number }).i, hash: c.values.state });
    }
    return out;
  }

  before(async () => {
    rig = Rig.create(["store", "worker-a", "worker-b", "notebook", "gateway"]);
    pg = await rig.startPostgres("store");
    const admin = new PgClient({ connectionString: pg.socketUrl("postgres") });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${DATABASE}`);
    await admin.end();
    // The test reads rows through the server's Unix socket; every rig host uses its rig address.
    store = openStore({ url: pg.socketUrl(DATABASE), maxConnections: 2 });
    await store.ready();
    baseEnv = { ...process.env, NBJOB_CLUSTER_KEY: key, NBJOB_DATABASE_URL: pg.url(DATABASE) };
    delete baseEnv.NBJOB_DEBUG;
    delete baseEnv.NBJOB_STORE_GIVE_UP_MS;
    await Promise.all([startWorker("worker-a"), startWorker("worker-b")]);
    assert.notEqual(workers[0].id, workers[1].id, "two hosts' workers have different ids");
    // A wildcard would land in the connection file, where another host cannot use it: refused, saying why.
    const wildcard = await rig.run("worker-a", process.execPath, [NBJOB, "worker", "--connection-file", join(work, "wildcard.json"), "--ip", "0.0.0.0"], { env: baseEnv });
    assert.notEqual(wildcard.code, 0);
    assert.match(wildcard.stderr, /--ip 0\.0\.0\.0 would bind every address but write 0\.0\.0\.0 in .*wildcard\.json.*give the address other hosts reach this one by/);
    assert.equal(existsSync(join(work, "wildcard.json")), false);
  });

  after(async () => {
    await store?.close().catch(() => undefined);
    rig?.destroy();
    if (process.env.NBJOB_TEST_KEEP === "1") console.log(`# kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  });

  describe("multi-host rig", () => {
    // 220 steps, a checkpoint every 100 ms and a line every 5th; a resumed run goes on from the restored step.
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
    const STEPS = 220;

    test("a worker host cut off mid-job: its job is lost, resumed on the other host from the last checkpoint; back online, the first host's writes are all refused", { timeout: 150_000 }, async () => {
      const bundleHash = await putBundle(store, { source: TICKING, snippets: [], params: {}, entries: [`tick(${STEPS})`] });
      const id = (await createJob(store, { bundleHash, targetWorker: null })).id;
      await notifyJobQueued(store, null);
      await waitFor(`job ${id} running with 15 checkpoints`, async () => (await job(id)).status === "running" && (await listCheckpoints(store, id)).length >= 15);
      const takenBy = (await job(id)).worker_id;
      const a = workers.find((w) => w.id === takenBy)!;
      const b = workers.find((w) => w !== a)!;
      assert.ok(a, "a rig worker took the job");

      rig.linkDown(a.host);
      const cutAt = Date.now();
      try {
        // The other host's worker sees A's heartbeats stop and marks the job lost (nobody else runs the check here).
        await waitFor(`job ${id} lost`, async () => (await job(id)).status === "lost", 60_000);
      } catch (err) {
        rig.linkUp(a.host);
        throw err;
      }
      const lostAfterMs = Date.now() - cutAt;
      const lostRow = await job(id);
      assert.equal(lostRow.error_name, "WorkerLost");
      const storedBefore = { logs: (await readLogs(store, id)).length, checkpoints: await checkpointStates(id) };

      const resumed = await resumeJob(store, id, undefined);
      const resumedAt = Date.now();
      await waitFor(`resumed job ${resumed.id} writes a checkpoint of its own`, async () => (await listCheckpoints(store, resumed.id)).some((c) => c.idx > resumed.fromCheckpoint!), 60_000);
      const firstCheckpointMs = Date.now() - resumedAt;
      assert.equal((await job(resumed.id)).worker_id, b.id, "the resumed job runs on the other host");

      // A comes back while its old run still goes on (it has several seconds of steps left).
      rig.linkUp(a.host);
      const backAt = Date.now();
      await waitFor(`worker ${a.id} stops job ${id}`, () => a.log.includes(`job ${id}: stop`), 60_000);
      const stoppedMs = Date.now() - backAt;
      await waitFor(`resumed job ${resumed.id} ends`, async () => FINAL.includes((await job(resumed.id)).status), 90_000);
      await sleep(1_000);

      // The lost job: nothing more stored after it was lost; no result.
      const old = await job(id);
      assert.equal(old.status, "lost");
      assert.equal(old.result, null);
      assert.equal((await readLogs(store, id)).length, storedBefore.logs, `A's later lines were refused\n${logsOf()}`);
      assert.deepEqual(await checkpointStates(id), storedBefore.checkpoints, "A's later checkpoints were refused");
      assert.match(a.log, new RegExp(`job ${id}: .*no longer running under claim ${old.claim}`));
      assert.ok(a.process.exitCode === null, "worker A is still running");

      // The resumed job: B's run continuing A's stored checkpoints, one per step, no gap, no duplicate.
      const done = await job(resumed.id);
      assert.equal(done.status, "done", `${done.error_name}: ${done.error_message}\n${logsOf()}`);
      assert.equal(done.worker_id, b.id);
      assert.equal(deserialize(Buffer.from((done.result as unknown as StoredResult).data, "base64")), STEPS - 1);
      const states = await checkpointStates(resumed.id);
      assert.deepEqual(states.map((s) => s.idx), Array.from({ length: STEPS }, (_, i) => i), "every checkpoint once");
      assert.deepEqual(states.map((s) => s.i), states.map((s) => s.idx), "each checkpoint holds its own step");
      assert.equal(resumed.fromCheckpoint, storedBefore.checkpoints.length - 1, "resumed from A's last stored checkpoint");
      assert.deepEqual(states.slice(0, storedBefore.checkpoints.length).map((s) => s.hash), storedBefore.checkpoints.map((s) => s.hash), "the history is A's stored checkpoints");
      const lines = (await readLogs(store, resumed.id)).map((l) => l.line).filter((l) => l.startsWith("step "));
      const firstStep = resumed.fromCheckpoint! + 1;
      assert.deepEqual(lines, Array.from({ length: STEPS }, (_, k) => k).filter((k) => k >= firstStep && k % 5 === 0).map((k) => `step ${k}`), "B's lines once each, in order");
      console.log(`# worker host cut: lost ${(lostAfterMs / 1000).toFixed(1)} s after the cut (stale limit ${Number(STALE_MS) / 1000} s, heartbeat ${Number(HEARTBEAT_MS) / 1000} s); resumed from checkpoint ${resumed.fromCheckpoint}, first new checkpoint ${(firstCheckpointMs / 1000).toFixed(1)} s after resume; old run stopped ${(stoppedMs / 1000).toFixed(1)} s after its link was back`);
    });

    // The notebook's preamble: the store by its rig address (NBJOB_DATABASE_URL), the workers by
    // their connection files (rig addresses inside).
    const setup = () => `
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect({ connectionFiles: ${JSON.stringify(workers.map((w) => w.connectionFile))} });
console.log("workers", rc.workers.map((w) => w.workerId).join(","));
### code decl
%%snip sc
const state = { i: -1 };
jobtracker.registerCheckpointer("state");
async function tick(name: string, n: number) {
  for (let k = state.i + 1; k < n; k++) {
    state.i = k;
    jobtracker.checkpoint();
    if (k % 10 === 0) console.log(name + " line " + k / 10);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await jobtracker.flush();
  return name + ":" + n;
}
`;

    /** The sweep's jobs (the only group), each with its `name` parameter. */
    async function sweepJobs(): Promise<(DbJob & { param: string })[]> {
      const { rows } = await store.query<{ id: number; param: string }>(
        "SELECT j.id, b.params->>'name' AS param FROM nbjob.jobs j JOIN nbjob.bundles b ON b.hash = j.bundle_hash WHERE j.group_id IS NOT NULL ORDER BY j.id",
      );
      return Promise.all(rows.map(async (r) => ({ ...(await job(r.id)), param: r.param })));
    }

    async function jobsNamed(prefix: string): Promise<DbJob[]> {
      const { rows } = await store.query<{ id: number }>("SELECT id FROM nbjob.jobs WHERE name LIKE $1 ORDER BY id", [`${prefix}%`]);
      return Promise.all(rows.map((r) => job(r.id)));
    }

    /** Every job done, its checkpoints 0..n-1 once each, its lines once each and in order. */
    async function checkStoredRuns(jobs: DbJob[], n: number, nameOf: (j: DbJob) => string): Promise<void> {
      for (const j of jobs) {
        assert.equal(j.status, "done", `job ${j.id} ${j.name}: ${j.error_name} ${j.error_message}\n${logsOf()}`);
        const stored = await listCheckpoints(store, j.id);
        assert.deepEqual(stored.map((c) => c.idx), Array.from({ length: n }, (_, i) => i), `job ${j.id}: every checkpoint once`);
        const lines = (await readLogs(store, j.id)).map((l) => l.line).filter((l) => !l.startsWith("[nbjob:"));
        assert.deepEqual(lines, Array.from({ length: n / 10 }, (_, i) => `${nameOf(j)} line ${i}`), `job ${j.id}: every line once, in order`);
      }
    }

    test("the store host's PostgreSQL stopped and started under 4 checkpointing jobs on 2 worker hosts and an awaiting notebook: every checkpoint and line once, every result", { timeout: 150_000 }, async () => {
      const NAMES = ["a", "b", "c", "d"];
      const N = 50;
      const pids = workers.map((w) => w.process.pid);
      const run = runNotebook("pg-restart", `${setup()}
### code submit
const jobs = [
${NAMES.map((name) => `  await db.createJob<string>(rc.loadBalanced(), ['tick("${name}", ${N})'], sc, { name: "pgr-${name}", review: false }),`).join("\n")}
];
### code await
const results = await Promise.all(jobs.map((j) => j.result));
console.log("results", JSON.stringify(results));
### code after
const next = await db.createJob<string>(rc.loadBalanced(), ["tick('e', 10)"], sc, { name: "pgr-after", review: false });
console.log("next", await next.result);
`);
      // Two jobs under way, one on each worker host, when the server stops.
      await waitFor("2 jobs running with 15 checkpoints each", async () => {
        const running = (await jobsNamed("pgr-")).filter((j) => j.status === "running");
        if (running.length < 2) return false;
        const counts = await Promise.all(running.map(async (j) => (await listCheckpoints(store, j.id)).length));
        return counts.every((c) => c >= 15);
      }, 90_000);
      const stored = async () => (await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.checkpoints")).rows[0].n;
      const before = await stored();
      await pg.stop();
      await sleep(6_000);
      await pg.start();
      const back = Date.now();
      // Checkpoints are stamped when the job took them, not when they reached the store: count rows instead.
      let firstWrite = Infinity;
      for (const deadline = back + 60_000; Date.now() < deadline; await sleep(50)) {
        if ((await stored().catch(() => 0)) > before) {
          firstWrite = Date.now() - back;
          break;
        }
      }

      const finished = await run.done;
      const awaited = cellText(finished.cells.get("await"));
      assert.equal(finished.code, 0, `${finished.stderr}\n${awaited}`);
      assert.ok(awaited.includes(`results ${JSON.stringify(NAMES.map((n) => `${n}:${N}`))}`), `${awaited}\n${logsOf()}`);
      for (const name of NAMES) {
        assert.deepEqual(awaited.split("\n").filter((l) => l.startsWith(`${name} line `)), Array.from({ length: N / 10 }, (_, i) => `${name} line ${i}`), `job ${name}'s lines in the awaiting cell`);
      }
      assert.match(cellText(finished.cells.get("after")), /next e:10/);
      const jobs = (await jobsNamed("pgr-")).filter((j) => j.name !== "pgr-after");
      assert.deepEqual(new Set(jobs.map((j) => j.worker_id)), new Set(workers.map((w) => w.id)), "the jobs ran on both worker hosts");
      await checkStoredRuns(jobs, N, (j) => j.name!.slice("pgr-".length));
      const setupText = cellText(finished.cells.get("setup"));
      assert.ok(setupText.includes(`workers ${workers.map((w) => w.id).join(",")}`), `the notebook reached both workers at their rig addresses: ${setupText}`);
      assert.deepEqual(workers.map((w) => w.process.pid), pids);
      for (const w of workers) assert.equal(w.process.exitCode, null, `worker ${w.id} still runs`);
      console.log(`# store host's PostgreSQL stopped 6 s: ${4 * N}/${4 * N} checkpoints, ${(4 * N) / 10}/${(4 * N) / 10} lines; first checkpoint written ${(firstWrite / 1000).toFixed(1)} s after the server was back`);
    });

    test("the notebook host cut off for 20 s while a sweep runs: the jobs finish, the awaiting cell gets every result, a new notebook reattaches with db.job(id)", { timeout: 150_000 }, async () => {
      const N = 50;
      const run = runNotebook("nb-away", `${setup()}
### code sweep
const params = new ParamLogger();
params.name = "s0";
const group = await db.createJobs(rc.loadBalanced(), ["tick(params.name, ${N})"], sc, { params, grid: { name: ["s0", "s1", "s2", "s3"] }, review: false });
### code await
const rows = await group.results;
console.log("results", JSON.stringify(rows.map((r) => r.status + ":" + r.result)));
`);
      await waitFor("the sweep's jobs running", async () => (await sweepJobs()).filter((j) => j.status === "running").length >= 2, 90_000);
      rig.linkDown("notebook");
      const cutAt = Date.now();
      try {
        // The workers go on without the notebook: the sweep ends while it is away (the link is back at most after 60 s).
        await waitFor("the sweep's jobs done while the notebook is away", async () => {
          const jobs = await sweepJobs();
          return jobs.length === 4 && jobs.every((j) => j.status === "done");
        }, 60_000).catch(() => undefined);
        const left = 20_000 - (Date.now() - cutAt);
        if (left > 0) await sleep(left);
      } finally {
        rig.linkUp("notebook");
      }
      const awayFor = Date.now() - cutAt;
      const finished = await run.done;
      const awaited = cellText(finished.cells.get("await"));
      assert.equal(finished.code, 0, `${finished.stderr}\n${awaited}`);
      const expected = ["s0", "s1", "s2", "s3"].map((n) => `done:${n}:${N}`);
      assert.ok(awaited.includes(`results ${JSON.stringify(expected)}`), `${awaited}\n${logsOf()}`);
      const jobs = await sweepJobs();
      assert.equal(jobs.length, 4);
      await checkStoredRuns(jobs, N, (j) => (j as DbJob & { param: string }).param);
      const doneWhileAway = jobs.filter((j) => j.finished_at && j.finished_at.getTime() < cutAt + awayFor).length;

      const again = runNotebook("nb-reattach", `
### code reattach
const db = new DBWrapper();
for (const id of ${JSON.stringify(jobs.map((j) => j.id))}) {
  const job = await db.job<string>(id);
  console.log("job", id, await job.result);
}
`);
      const reattached = await again.done;
      const text = cellText(reattached.cells.get("reattach"));
      assert.equal(reattached.code, 0, `${reattached.stderr}\n${text}`);
      assert.deepEqual(text.split("\n").filter((l) => l.startsWith("job ")), jobs.map((j) => `job ${j.id} ${j.param}:${N}`));
      console.log(`# notebook host away ${(awayFor / 1000).toFixed(1)} s: ${doneWhileAway}/4 jobs finished while it was away; every result reached the awaiting cell and a new notebook`);
    });

    test("a gateway host: Debian's jupyter-server on its rig address starts nbjob-worker kernels for a notebook on another host; a job on rc.view(0) runs there", { skip: gatewaySkip, timeout: 120_000 }, async () => {
      const dir = mkdtempSync(join(work, "gateway-"));
      const data = join(dir, "jupyter");
      const token = randomBytes(16).toString("hex");
      const address = rig.host("gateway").address;
      // The kernels the server starts inherit its environment: the store by its rig address.
      const env: NodeJS.ProcessEnv = {
        ...baseEnv, NBJOB_HOME: join(dir, "home"), JUPYTER_DATA_DIR: data, JUPYTER_PATH: data, JUPYTER_CONFIG_DIR: join(dir, "config"),
        JUPYTER_RUNTIME_DIR: join(dir, "runtime"), PYDEVD_DISABLE_FILE_VALIDATION: "1",
      };
      const install = await rig.run("gateway", process.execPath, [NBJOB, "install", "--worker", "--user"], { env });
      assert.equal(install.code, 0, install.stderr);
      const server = rig.spawn("gateway", PYTHON, ["-m", "jupyter_server", "--no-browser", "--allow-root", `--ServerApp.ip=${address}`, "--ServerApp.port=8888", "--ServerApp.port_retries=0", `--ServerApp.token=${token}`, `--ServerApp.root_dir=${dir}`], { cwd: dir, env });
      let serverLog = "";
      server.stdout?.on("data", (d: Buffer) => (serverLog += d.toString()));
      server.stderr?.on("data", (d: Buffer) => (serverLog += d.toString()));
      try {
        await waitFor("jupyter-server listening on the gateway host", () => serverLog.includes(`http://${address}:8888/`), 60_000);
        const run = runNotebook("gateway", `
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect({ gateway: { url: "http://${address}:8888", token: "${token}", kernels: 1 } });
rc
### code decl
%%snip sc
function square(x: number): number {
  console.log("squaring", x);
  return x * x;
}
### code direct
const job = await db.createJob(rc.view(0), ["square(7)"], sc, { name: "via-gateway", review: false });
console.log("result", await job.result, job.worker === rc.ids[0]);
### code close
await rc.close();
"closed"
`);
        const finished = await run.done;
        const direct = cellText(finished.cells.get("direct"));
        assert.equal(finished.code, 0, `${finished.stderr}\n${serverLog}`);
        assert.match(cellText(finished.cells.get("setup")), new RegExp(`Jupyter Server http://${address.replace(/\./g, "\\.")}:8888`));
        assert.match(direct, /squaring 7[\s\S]*result 49 true/, `${direct}\n${serverLog}`);
        const [row] = await jobsNamed("via-gateway");
        assert.equal(row.status, "done");
        assert.ok(!workers.some((w) => w.id === row.worker_id), `the job ran on the gateway's kernel, not on ${row.worker_id}`);
        assert.deepEqual((await readLogs(store, row.id)).map((l) => l.line).filter((l) => !l.startsWith("[nbjob:")), ["squaring 7"]);
      } finally {
        server.kill("SIGTERM");
      }
    });
  });
}
