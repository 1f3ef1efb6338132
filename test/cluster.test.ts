// `nbjob cluster start | status | stop` as a user runs them: subprocesses with a private
// NBJOB_HOME, real detached worker processes, and a real client sending them a job.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client as PgClient } from "pg";
import { KernelClient } from "../wire/client";
import { readConnectionFile } from "../wire/connection";
import type { WorkerEvent } from "../runtime/shared/protocol";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const home = mkdtempSync(join(tmpdir(), "nbjob-cluster-test-"));
// Workers heartbeat in the store: give them a database of their own on the local server.
const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const DATABASE = `nbjob_cluster_test_${process.pid}`;
const env = { ...process.env, NBJOB_HOME: home, NBJOB_DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${DATABASE}` };
const clusterDir = join(home, "cluster", "default");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function nbjob(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [NBJOB, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function pidOf(index: number): number {
  return Number(readFileSync(join(clusterDir, `worker-${index}.pid`), "utf8"));
}

const pidsSeen = new Set<number>();

async function admin(sql: string): Promise<void> {
  const client = new PgClient({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

before(async () => {
  await admin(`DROP DATABASE IF EXISTS ${DATABASE}`);
  await admin(`CREATE DATABASE ${DATABASE}`);
});

after(async () => {
  // Whatever a failed test left running.
  for (const pid of pidsSeen) if (alive(pid)) process.kill(pid, "SIGKILL");
  rmSync(home, { recursive: true, force: true });
  await admin(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
});

describe("nbjob cluster", () => {
  test("start -n 2 launches two detached workers that outlive the command", async () => {
    const run = await nbjob("cluster", "start", "-n", "2");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /started 2 workers of cluster "default"/);
    for (const i of [0, 1]) {
      const pid = pidOf(i);
      pidsSeen.add(pid);
      assert.ok(alive(pid), `worker ${i} (pid ${pid}) is not running after start returned`);
      const info = readConnectionFile(join(clusterDir, `worker-${i}.json`));
      assert.equal(info.ip, "127.0.0.1");
      assert.ok(info.key.length > 0);
    }
  });

  test("starting a profile that already runs says so and changes nothing", async () => {
    const before = [pidOf(0), pidOf(1)];
    const run = await nbjob("cluster", "start", "-n", "3");
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /cluster "default" is already running \(2 workers/);
    assert.deepEqual([pidOf(0), pidOf(1)], before);
    assert.ok(!existsSync(join(clusterDir, "worker-2.pid")));
  });

  test("status shows each worker alive and idle, then busy with the job it runs", async () => {
    const idle = await nbjob("cluster", "status");
    assert.equal(idle.code, 0, idle.stdout + idle.stderr);
    assert.match(idle.stdout, /2 of 2 workers alive/);
    assert.match(idle.stdout, new RegExp(`\\n\\s+0\\s+${pidOf(0)}\\s+alive\\s+ok\\s+idle`));
    assert.match(idle.stdout, new RegExp(`\\n\\s+1\\s+${pidOf(1)}\\s+alive\\s+ok\\s+idle`));

    const client = await KernelClient.connect(readConnectionFile(join(clusterDir, "worker-1.json")), { readyTimeoutMs: 20_000 });
    try {
      assert.equal((client.kernelInfo?.nbjob as { worker_id: string }).worker_id, "default/1");
      const comm = await client.openComm("nbjob.worker");
      const events: WorkerEvent[] = [];
      comm.onMsg((data) => events.push(data as WorkerEvent));
      await comm.send({ action: "run", job_id: 77, bundle: { source: "const end = Date.now() + 4000;\nwhile (Date.now() < end) {}", entries: ["'slept'"] } });
      for (let waited = 0; !events.some((e) => e.action === "started"); waited += 20) {
        assert.ok(waited < 10_000, "the job did not start");
        await sleep(20);
      }
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

  test("a worker that died shows as dead and status exits non-zero", async () => {
    const pid = pidOf(0);
    process.kill(pid, "SIGKILL");
    for (let waited = 0; alive(pid) && waited < 5_000; waited += 20) await sleep(20);
    const run = await nbjob("cluster", "status");
    assert.equal(run.code, 1);
    assert.match(run.stdout, /1 of 2 workers alive/);
    assert.match(run.stdout, new RegExp(`\\n\\s+0\\s+${pid}\\s+dead`));
  });

  test("stop ends the workers and removes their files; status then says there is no cluster", async () => {
    const pids = [pidOf(0), pidOf(1)];
    const run = await nbjob("cluster", "stop");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /worker 0 was not running, worker 1 shut down/);
    for (const pid of pids) assert.ok(!alive(pid), `pid ${pid} still runs`);
    for (const i of [0, 1]) {
      assert.ok(!existsSync(join(clusterDir, `worker-${i}.json`)));
      assert.ok(!existsSync(join(clusterDir, `worker-${i}.pid`)));
    }
    const status = await nbjob("cluster", "status");
    assert.equal(status.code, 1);
    assert.match(status.stdout, /no cluster "default"/);
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
