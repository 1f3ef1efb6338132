// `nbjob cluster start | status | stop` as a user runs them: subprocesses with a private
// NBJOB_HOME, real detached worker processes, and a real client sending them a job.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { KernelClient } from "../wire/client";
import { readConnectionFile } from "../wire/connection";
import type { WorkerEvent } from "../runtime/shared/protocol";
import { Client } from "../runtime/client";
import type { DispatchBundle } from "../runtime/client";
import { DBWrapper } from "../runtime/db-wrapper";
import { createJob, getJob, openStore, putBundle, signBundle } from "../store";
import type { DbJob, Store } from "../store";
import { admin, databaseUrl } from "./pg-admin";
import { isAlive } from "./processes";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const home = mkdtempSync(join(tmpdir(), "nbjob-cluster-test-"));
// Workers heartbeat in the store: give them a database of their own on the local server.
const DATABASE = `nbjob_cluster_test_${process.pid}`;
const DATABASE_URL = databaseUrl(DATABASE);
// Quick heartbeats and a short lost threshold, so that a gone worker is noticed within seconds.
// Jobs are stored by this process and run by the cluster's workers: one cluster key for both.
process.env.NBJOB_CLUSTER_KEY = randomBytes(32).toString("hex");
const env = { ...process.env, NBJOB_HOME: home, NBJOB_DATABASE_URL: DATABASE_URL, NBJOB_WORKER_HEARTBEAT_MS: "500", NBJOB_WORKER_STALE_MS: "4000" };
const clusterDir = join(home, "cluster", "default");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function nbjob(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return nbjobWith(env, ...args);
}

function nbjobWith(withEnv: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [NBJOB, ...args], { env: withEnv, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function pidOf(index: number): number {
  return Number(readFileSync(join(clusterDir, `worker-${index}.pid`), "utf8"));
}

/** The supervisor ends (SIGKILL: as if it crashed), so that nothing restarts a worker killed next. */
async function killSupervisor(): Promise<void> {
  if (existsSync(join(clusterDir, "supervisor.pid"))) await killAndWait(supervisorPid());
}

function supervisorPid(): number {
  return Number(readFileSync(join(clusterDir, "supervisor.pid"), "utf8"));
}

async function waitUntil<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

async function killAndWait(pid: number): Promise<void> {
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
  await waitUntil(`pid ${pid} ends`, () => (isAlive(pid) ? undefined : true), 5_000);
}

/** A job as a direct view stores it: queued, for worker `target`. */
/** A stored job of `source` for worker `target`, and the bundle to send it with (`view.worker.run`). */
/** The worker's id in the store (`default/0@host.1a2b3c`), made by `cluster start` and kept across its restarts. */
function idOf(index: number): string {
  return readFileSync(join(clusterDir, `worker-${index}.id`), "utf8").trim();
}

/** An id as a regular expression's text. */
const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

async function storedJob(source: string, target: string): Promise<{ id: number; bundle: DispatchBundle }> {
  const hash = await putBundle(store, { source, snippets: [], params: {}, entries: [] });
  const bundle = { source, hash, params: {}, entries: [], signature: signBundle({ hash, params: {}, entries: [] }) };
  return { id: (await createJob(store, { bundleHash: hash, targetWorker: target })).id, bundle };
}

async function jobEnds(id: number): Promise<DbJob> {
  return waitUntil(`job ${id} ends`, async () => {
    const row = await getJob(store, id);
    return row && ["done", "failed", "cancelled", "lost"].includes(row.status) ? row : undefined;
  });
}

/** Processes (workers, supervisor) whose command line names `--profile profile`. */
function processesOfProfile(profile: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (args.includes(NBJOB) && args.includes("--profile") && args[args.indexOf("--profile") + 1] === profile) found.push(Number(entry));
    } catch {
      // it ended meanwhile
    }
  }
  return found;
}

const pidsSeen = new Set<number>();
let store: Store;


before(async () => {
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE}`));
  await admin((c) => c.query(`CREATE DATABASE ${DATABASE}`));
  store = openStore({ url: DATABASE_URL });
});

after(async () => {
  // Whatever a failed test left running (this test's home only).
  for (const profile of ["default", "lab", "offline"]) {
    for (const pid of processesOfProfile(profile)) {
      try {
        if (readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(`NBJOB_HOME=${home}`)) pidsSeen.add(pid);
      } catch {
        // it ended meanwhile
      }
    }
  }
  for (const pid of pidsSeen) if (isAlive(pid)) process.kill(pid, "SIGKILL");
  await store.close();
  rmSync(home, { recursive: true, force: true });
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`));
});

/** Sends the worker a job that keeps its thread busy for `ms` and waits until it started; returns the events it keeps receiving. */
async function startBusyJob(client: KernelClient, jobId: number, ms: number): Promise<WorkerEvent[]> {
  const comm = await client.openComm("nbjob.worker");
  const events: WorkerEvent[] = [];
  comm.onMsg((data) => events.push(data as WorkerEvent));
  await comm.send({ action: "run", job_id: jobId, bundle: { source: `const end = Date.now() + ${ms};\nwhile (Date.now() < end) {}`, entries: ["'slept'"] } });
  for (let waited = 0; !events.some((e) => e.action === "started"); waited += 20) {
    assert.ok(waited < 10_000, `job ${jobId} did not start`);
    await sleep(20);
  }
  return events;
}

describe("nbjob cluster", () => {
  test("start -n 2 launches two detached workers that outlive the command", async () => {
    const run = await nbjob("cluster", "start", "-n", "2");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /started 2 workers of cluster "default"/);
    for (const i of [0, 1]) {
      const pid = pidOf(i);
      pidsSeen.add(pid);
      assert.ok(isAlive(pid), `worker ${i} (pid ${pid}) is not running after start returned`);
      const info = readConnectionFile(join(clusterDir, `worker-${i}.json`));
      assert.equal(info.ip, "127.0.0.1");
      assert.ok(info.key.length > 0);
    }
    pidsSeen.add(supervisorPid());
    assert.ok(isAlive(supervisorPid()), "the supervisor is not running after start returned");
    assert.match(run.stdout, new RegExp(`supervisor pid ${supervisorPid()} restarts any that dies`));
  });

  test("starting a profile that already runs says so and changes nothing", async () => {
    const before = [pidOf(0), pidOf(1)];
    const run = await nbjob("cluster", "start", "-n", "2");
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /cluster "default" is already running \(2 workers/);
    assert.deepEqual([pidOf(0), pidOf(1)], before);
    assert.ok(!existsSync(join(clusterDir, "worker-2.pid")));
  });

  test("status shows each worker alive and idle, then busy with the job it runs", async () => {
    const idle = await nbjob("cluster", "status");
    assert.equal(idle.code, 0, idle.stdout + idle.stderr);
    assert.match(idle.stdout, /2 of 2 workers alive/);
    assert.match(idle.stdout, new RegExp(`supervisor pid ${supervisorPid()} restarts dead workers`));
    assert.match(idle.stdout, /worker\s+pid\s+process\s+heartbeat\s+busy\s+queued\s+restarts/);
    assert.match(idle.stdout, new RegExp(`\\n\\s+0\\s+${pidOf(0)}\\s+alive\\s+ok\\s+idle`));
    assert.match(idle.stdout, new RegExp(`\\n\\s+1\\s+${pidOf(1)}\\s+alive\\s+ok\\s+idle`));

    const client = await KernelClient.connect(readConnectionFile(join(clusterDir, "worker-1.json")), { readyTimeoutMs: 20_000 });
    try {
      assert.equal((client.kernelInfo?.nbjob as { worker_id: string }).worker_id, idOf(1));
      assert.match(idOf(1), /^default\/1@[^.]+.*\.[0-9a-f]{6}$/);
      const events = await startBusyJob(client, 77, 4000);
      const busy = await nbjob("cluster", "status");
      assert.match(busy.stdout, new RegExp(`\\n\\s+1\\s+${pidOf(1)}\\s+alive\\s+ok\\s+job 77`));
      assert.match(busy.stdout, /\n\s+0\s+\d+\s+alive\s+ok\s+idle/);
      for (let waited = 0; !events.some((e) => e.action === "done"); waited += 50) {
        assert.ok(waited < 15_000, `the job did not finish: ${JSON.stringify(events)}`);
        await sleep(50);
      }
    } finally {
      client.close();
    }
  });

  test("a job that SIGKILLs its worker: the supervisor restarts it in place (status counts it) and the next job on the same view runs", async () => {
    const killedPid = pidOf(0);
    const rc = await Client.connect({ connectionFiles: [join(clusterDir, "worker-0.json"), join(clusterDir, "worker-1.json")], timeoutMs: 20_000 });
    try {
      const view = rc.view(0);
      assert.equal(view.workerId, idOf(0));
      const kill = 'process.kill(process.pid, "SIGKILL");';
      const killer = await storedJob(kill, idOf(0));
      await view.worker.run(killer.id, killer.bundle, () => {});
      await waitUntil("the worker dies", () => (isAlive(killedPid) ? undefined : true), 20_000);
      const newPid = await waitUntil("worker 0 is restarted", () => {
        const pid = pidOf(0);
        return pid !== killedPid && isAlive(pid) ? pid : undefined;
      }, 20_000);
      pidsSeen.add(newPid);
      const lost = await jobEnds(killer.id);
      assert.equal(lost.status, "lost");
      // Said by the new process's first heartbeat, or by worker 1 if worker 0 was silent for 4 s first.
      assert.match(lost.error_message ?? "", new RegExp(`worker ${re(idOf(0))} (restarted while running this job|stopped answering)`));

      // The same view (connection, comm) reaches the new process: its name, ports and key are the old ones.
      const next = await storedJob("6 * 7", idOf(0));
      const events: WorkerEvent[] = [];
      await view.worker.run(next.id, next.bundle, (event) => events.push(event));
      const done = await jobEnds(next.id);
      assert.equal(done.status, "done", done.error_message ?? "");
      assert.equal(done.result_text, "42");
      assert.equal(done.worker_id, idOf(0), "the restarted worker kept its id");
      assert.equal(done.pid, newPid);
      await waitUntil("the done event over the comm", () => (events.some((e) => e.action === "done") ? true : undefined), 10_000);

      const status = await nbjob("cluster", "status");
      assert.equal(status.code, 0, status.stdout + status.stderr);
      assert.match(status.stdout, /2 of 2 workers alive/);
      assert.match(status.stdout, new RegExp(`\\n\\s+0\\s+${newPid}\\s+alive\\s+ok\\s+idle\\s+0\\s+1\\n`));
      assert.match(status.stdout, new RegExp(`\\n\\s+1\\s+${pidOf(1)}\\s+alive\\s+ok\\s+idle\\s+0\\s+0`));
    } finally {
      await rc.close();
    }
  });

  test("without its supervisor a dead worker stays dead and status says so; start -n 2 fills up to 2", async () => {
    await killSupervisor();
    const pid = pidOf(0);
    const other = pidOf(1);
    await killAndWait(pid);
    const run = await nbjob("cluster", "status");
    assert.equal(run.code, 1);
    assert.match(run.stdout, /1 of 2 workers alive/);
    assert.match(run.stdout, new RegExp(`\\n\\s+0\\s+${pid}\\s+dead`));
    assert.match(run.stdout, /no supervisor: dead workers are not restarted; "nbjob cluster start -n 2" starts the missing ones/);

    const fill = await nbjob("cluster", "start", "-n", "2");
    assert.equal(fill.code, 0, fill.stderr);
    assert.match(fill.stdout, /started 1 worker of cluster "default" on 127\.0\.0\.1 \(worker 0\) next to the 1 worker already running; it has 2 workers now/);
    pidsSeen.add(pidOf(0));
    pidsSeen.add(supervisorPid());
    assert.notEqual(pidOf(0), pid);
    assert.ok(isAlive(pidOf(0)));
    assert.equal(pidOf(1), other, "the running worker was left alone");
    assert.ok(isAlive(supervisorPid()), "start left no supervisor running");
    const status = await nbjob("cluster", "status");
    assert.equal(status.code, 0, status.stdout);
    assert.match(status.stdout, /2 of 2 workers alive/);
  });

  test("a job queued for a worker that is gone fails naming it; job.wait({ timeout }) says whom it waits for", async () => {
    await killSupervisor();
    await killAndWait(pidOf(1));
    const { id } = await storedJob("1 + 1", idOf(1));
    const db = new DBWrapper(DATABASE_URL);
    try {
      const job = await db.job(id);
      await assert.rejects(job.wait({ timeout: 300 }), (err: Error) => {
        assert.match(err.message, new RegExp(`^job ${id} is still queued after 300 ms; it goes on \\(wait again, or job\\.cancel\\(\\)\\); it is queued for worker ${re(idOf(1))}, whose last heartbeat was \\d+ s ago$`));
        return true;
      });
      // Worker 0 (alive) finds within its lost threshold (4 s here) that worker 1 is gone.
      const row = await jobEnds(id);
      assert.equal(row.status, "lost");
      assert.match(row.error_message ?? "", new RegExp(`^worker ${re(idOf(1))}, which`));
      assert.match(row.error_message ?? "", /, which this job was queued for \(a direct view\), is gone: its last heartbeat was \d+ s ago and no supervisor restarted it/);
      await assert.rejects(job.result, new RegExp(`job \\d+ was lost: WorkerLost: worker ${re(idOf(1))}, which this job was queued for`));
    } finally {
      await db.store.close();
    }
  });

  test("stop ends the supervisor and the workers and removes their files; status then says there is no cluster", async () => {
    const fill = await nbjob("cluster", "start", "-n", "2");
    assert.equal(fill.code, 0, fill.stderr);
    assert.match(fill.stdout, /started 1 worker of cluster "default" on 127\.0\.0\.1 \(worker 1\)/);
    const pids = [pidOf(0), pidOf(1), supervisorPid()];
    for (const pid of pids) pidsSeen.add(pid);
    // A job running on worker 1 when the cluster stops: the stop names it and how to get it back.
    const client = await KernelClient.connect(readConnectionFile(join(clusterDir, "worker-1.json")), { readyTimeoutMs: 20_000 });
    let run: Awaited<ReturnType<typeof nbjob>>;
    try {
      await startBusyJob(client, 88, 60_000);
      run = await nbjob("cluster", "stop");
    } finally {
      client.close();
    }
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /worker 0 shut down, worker 1 shut down; supervisor stopped/);
    assert.match(run.stdout, /^cancelled by the shutdown: job 88 \(running on worker 1\); "nbjob rerun ID" runs one again/m);
    for (const pid of pids) assert.ok(!isAlive(pid), `pid ${pid} still runs`);
    for (const i of [0, 1]) {
      assert.ok(!existsSync(join(clusterDir, `worker-${i}.json`)));
      assert.ok(!existsSync(join(clusterDir, `worker-${i}.pid`)));
    }
    assert.ok(!existsSync(join(clusterDir, "supervisor.pid")));
    const status = await nbjob("cluster", "status");
    assert.equal(status.code, 1);
    assert.match(status.stdout, /no cluster "default"/);
  });

  test("start with an unreachable database fails with one line naming it (password masked) and leaves nothing running", async () => {
    // A port nothing listens on: chosen by the system, then closed.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    await new Promise((resolve) => server.close(resolve));
    const run = await nbjobWith({ ...env, NBJOB_DATABASE_URL: `postgres://alice:s3cret@127.0.0.1:${port}/nbjob` }, "cluster", "start", "-n", "2", "--profile", "offline");
    assert.notEqual(run.code, 0);
    const lines = run.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0], new RegExp(`^nbjob: cluster "offline" not started, no worker was launched: cannot reach PostgreSQL at postgres://alice:\\*\\*\\*@127\\.0\\.0\\.1:${port}/nbjob \\(connection refused\\); start the server or point NBJOB_DATABASE_URL at a running one$`));
    assert.ok(!run.stderr.includes("s3cret") && !run.stdout.includes("s3cret"));
    const dir = join(home, "cluster", "offline");
    assert.ok(!existsSync(join(dir, "worker-0.pid")) && !existsSync(join(dir, "supervisor.pid")));
    await sleep(500); // a worker or supervisor launched anyway would show by now
    assert.deepEqual(processesOfProfile("offline"), []);
  });

  test("a named profile with --ip gets its own directory and binds that address", async () => {
    const run = await nbjob("cluster", "start", "-n", "1", "--profile", "lab", "--ip", "127.0.0.1");
    assert.equal(run.code, 0, run.stderr);
    const dir = join(home, "cluster", "lab");
    pidsSeen.add(Number(readFileSync(join(dir, "worker-0.pid"), "utf8")));
    assert.equal(readConnectionFile(join(dir, "worker-0.json")).ip, "127.0.0.1");
    const stop = await nbjob("cluster", "stop", "--profile", "lab");
    assert.equal(stop.code, 0, stop.stderr);
    assert.ok(!existsSync(join(dir, "worker-0.json")));
  });

  test("bad arguments are one clear line and a non-zero exit", async () => {
    const noCount = await nbjob("cluster", "start");
    assert.notEqual(noCount.code, 0);
    assert.match(noCount.stderr, /needs -n N, the number of workers/);
    const badProfile = await nbjob("cluster", "status", "--profile", "../etc");
    assert.notEqual(badProfile.code, 0);
    assert.match(badProfile.stderr, /profile name "\.\.\/etc" is not allowed/);
    const badAction = await nbjob("cluster", "restart");
    assert.match(badAction.stderr, /unknown action "restart"; expected start, status or stop/);
    for (const run of [noCount, badProfile, badAction]) assert.ok(!run.stderr.includes("    at "), run.stderr);
  });
});
