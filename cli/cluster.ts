// `nbjob cluster start | status | stop`: a local cluster of detached worker kernels, one
// directory per profile under $NBJOB_HOME/cluster, so the workers outlive the notebook.
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { KernelClient } from "../wire/client";
import { readConnectionFile } from "../wire/connection";
import {
  clusterDir, DEFAULT_PROFILE, ensureWorkerId, listClusterWorkers, processAlive, readRestartState, readWorkerPid, supervisorFiles, workerFiles,
} from "../runtime/shared/cluster-files";
import type { ClusterWorkerFiles } from "../runtime/shared/cluster-files";
import type { JobId } from "../runtime/shared/protocol";
import { probeWorker } from "../worker/probe";
import { databaseUrlFromEnv, openStore, redactUrl } from "../store";
import { spawnSupervisor, spawnWorker, supervise } from "./cluster-supervisor";
import { actionError, oneLineUsageError, parseCommandArgs, UsageError, WILDCARD_ADDRESSES } from "./args";
import type { Command } from "./args";

const usage = `usage: nbjob cluster start -n N [--profile NAME] [--ip ADDR]
       nbjob cluster status [--profile NAME]
       nbjob cluster stop [--profile NAME]

  start   launch N detached worker kernels and a supervisor that restarts any that dies (same
          index, name and connection file; backoff 1 s doubling to 10 s; it gives a worker up
          after 6 deaths in a row within 30 s of its start). Their connection files, pids and
          logs go to $NBJOB_HOME/cluster/NAME (NBJOB_HOME defaults to ~/.nbjob). With fewer than
          N workers alive, starts the missing ones. Fails, starting nothing, when the store
          (NBJOB_DATABASE_URL, else the embedded PostgreSQL) cannot be reached.
  status  each worker: pid, whether its process and heartbeat are alive, the job it runs, how
          often the supervisor restarted it; and whether the supervisor runs
  stop    stop the supervisor, shut the workers down (shutdown_request, then SIGTERM, then
          SIGKILL) and remove their files; jobs running or queued on a worker are cancelled,
          and the stop names them (jobs still waiting in the store stay queued)

  -n N            number of workers (start)
  --profile NAME  which cluster (default "default")
  --ip ADDR       address the workers bind (default 127.0.0.1, loopback only)`;

const READY_TIMEOUT_MS = 30_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const command: Command = {
  summary: "start, inspect or stop a local cluster of worker kernels",
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      {
        args: argv,
        options: {
          n: { type: "string", short: "n" },
          profile: { type: "string" },
          ip: { type: "string" },
        },
        strict: true,
        allowPositionals: true,
      },
      usage,
    );
    const [action, ...extra] = positionals;
    if (extra.length > 0) throw oneLineUsageError("cluster", `unexpected argument "${extra[0]}"`);
    const profile = values.profile ?? DEFAULT_PROFILE;
    let dir: string;
    try {
      dir = clusterDir(profile);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    // The supervisor's own loop (started detached by "start"; not for users).
    if (action === "supervise") return supervise(dir, profile, values.ip ?? "127.0.0.1");
    if (action !== "start" && (values.n !== undefined || values.ip !== undefined)) {
      throw oneLineUsageError("cluster", `-n and --ip are options of "nbjob cluster start"`);
    }
    switch (action) {
      case "start":
        return start(profile, dir, parseCount(values.n), values.ip ?? "127.0.0.1");
      case "status":
        return status(profile, dir);
      case "stop":
        return stop(profile, dir);
      default:
        throw actionError("cluster", ["start", "status", "stop"], action);
    }
  },
};

function parseCount(n: string | undefined): number {
  if (n === undefined) throw oneLineUsageError("cluster", `nbjob cluster start needs -n N, the number of workers (e.g. -n 2)`);
  const count = Number(n);
  if (!Number.isInteger(count) || count < 1 || count > 256) throw new UsageError(`-n must be a whole number of workers from 1 to 256; got "${n}"`);
  return count;
}

/** Workers of the profile whose process still runs. */
function runningWorkers(profile: string): Array<ClusterWorkerFiles & { pid: number }> {
  const running: Array<ClusterWorkerFiles & { pid: number }> = [];
  for (const files of listClusterWorkers(profile)) {
    const pid = readWorkerPid(files);
    if (pid !== undefined && processAlive(pid)) running.push({ ...files, pid });
  }
  return running;
}

function removeWorkerFiles(files: ClusterWorkerFiles): void {
  rmSync(files.connectionFile, { force: true });
  rmSync(files.pidFile, { force: true });
  rmSync(files.restartsFile, { force: true });
  rmSync(files.idFile, { force: true });
}

/** The supervisor's pid while it runs. */
function supervisorPid(dir: string): number | undefined {
  const pid = readWorkerPid(supervisorFiles(dir));
  return pid !== undefined && processAlive(pid) ? pid : undefined;
}

/** Ends the supervisor (SIGTERM, then SIGKILL); the workers go on. Says how it ended. */
async function stopSupervisor(dir: string): Promise<string> {
  const { pidFile } = supervisorFiles(dir);
  const pid = supervisorPid(dir);
  let how = "was not running";
  if (pid !== undefined) {
    process.kill(pid, "SIGTERM");
    how = "stopped";
    if (!(await exitsWithin(pid, 3_000))) {
      process.kill(pid, "SIGKILL");
      await exitsWithin(pid, 2_000);
      how = "killed (SIGKILL)";
    }
  }
  rmSync(pidFile, { force: true });
  return how;
}

function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

async function start(profile: string, dir: string, count: number, ip: string): Promise<number> {
  if (WILDCARD_ADDRESSES.has(ip)) {
    // Each worker writes its address into its connection file, which notebooks connect to.
    throw oneLineUsageError("cluster", `--ip ${ip} would bind every address but write ${ip} in the workers' connection files, where a notebook on another host would connect to itself; give the address other hosts reach this one by (e.g. --ip 10.0.0.5), or leave out --ip for 127.0.0.1`);
  }
  const running = runningWorkers(profile);
  const again = `use it as it is, or run "nbjob cluster stop${profile === DEFAULT_PROFILE ? "" : ` --profile ${profile}`}" first`;
  if (running.length >= count) {
    throw new UsageError(
      `cluster "${profile}" is already running (${running.length} worker${running.length === 1 ? "" : "s"}, pids ${running.map((w) => w.pid).join(", ")}); ${again}`,
    );
  }
  // Workers that cannot reach the store only retry in their logs: refuse before starting any.
  await checkStore(profile);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // The supervisor could restart a dead worker while this fills its place: stop it first and
  // start a fresh one (with fresh backoff) once the cluster is complete.
  await stopSupervisor(dir);

  // Fill the lowest free indices up to `count` workers; a dead worker's index (and connection
  // file: same ports and key, so a notebook's view reaches the new process) is reused.
  const alive = new Set(running.map((w) => w.index));
  const indices: number[] = [];
  for (let i = 0; alive.size + indices.length < count; i++) if (!alive.has(i)) indices.push(i);
  // Files of dead workers not restarted here would be restarted by the supervisor, or mistaken for live ones.
  for (const stale of listClusterWorkers(profile)) {
    if (!alive.has(stale.index) && !indices.includes(stale.index)) removeWorkerFiles(stale);
  }

  const started: Array<ClusterWorkerFiles & { pid: number }> = [];
  try {
    for (const i of indices) {
      const files = ensureWorkerId(workerFiles(dir, profile, i), profile);
      rmSync(files.restartsFile, { force: true });
      started.push({ ...files, pid: spawnWorker(files, profile, ip) });
    }
    await Promise.all(started.map((worker) => waitUntilReady(worker)));
  } catch (err) {
    for (const worker of started) {
      if (processAlive(worker.pid)) process.kill(worker.pid, "SIGKILL");
      removeWorkerFiles(worker);
    }
    // The workers that were running before go on, supervised again.
    if (running.length > 0) spawnSupervisor(dir, profile, ip);
    throw err;
  }
  const supervisor = spawnSupervisor(dir, profile, ip);
  const n = (k: number) => `${k} worker${k === 1 ? "" : "s"}`;
  if (running.length === 0) {
    console.log(`started ${n(count)} of cluster "${profile}" on ${ip} (files in ${dir}); supervisor pid ${supervisor} restarts any that dies`);
  } else {
    console.log(`started ${n(started.length)} of cluster "${profile}" on ${ip} (${started.map((w) => `worker ${w.index}`).join(", ")}) next to the ${n(running.length)} already running; it has ${n(count)} now; supervisor pid ${supervisor}`);
  }
  for (const worker of started) console.log(`  worker ${worker.index}  pid ${worker.pid}  ${worker.connectionFile}`);
  return 0;
}

/** Opens the store the workers will use (creating its schema if needed); one clear line when it cannot. */
async function checkStore(profile: string): Promise<void> {
  const store = openStore({ applicationName: "nbjob cluster", maxConnections: 1 });
  try {
    await store.query("SELECT 1");
  } catch (err) {
    const url = databaseUrlFromEnv();
    const where = url === undefined ? "the embedded PostgreSQL (nbjob db status)" : redactUrl(url);
    const message = (err as Error).message;
    // The store's own messages already name the URL; other failures get it added.
    throw new Error(`cluster "${profile}" not started, no worker was launched: ${message.includes(where) ? message : `the store at ${where} cannot be used (${message})`}`);
  } finally {
    await store.close().catch(() => undefined);
  }
}

/** Waits for the worker's connection file, then for its answer to kernel_info. */
async function waitUntilReady(worker: ClusterWorkerFiles & { pid: number }): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const failure = (what: string) => new Error(`worker ${worker.index} (pid ${worker.pid}) ${what}; its log ${worker.logFile} ends with:\n${logTail(worker.logFile)}`);
  while (!existsSync(worker.connectionFile)) {
    if (!processAlive(worker.pid)) throw failure("exited before it was ready");
    if (Date.now() > deadline) throw failure(`wrote no connection file within ${READY_TIMEOUT_MS / 1000} s`);
    await sleep(25);
  }
  const client = await KernelClient.connect(readConnectionFile(worker.connectionFile), { readyTimeoutMs: Math.max(1_000, deadline - Date.now()), log: () => {} }).catch((err: Error) => {
    throw failure(`did not answer: ${err.message}`);
  });
  client.close();
}

async function status(profile: string, dir: string): Promise<number> {
  const workers = listClusterWorkers(profile);
  if (workers.length === 0) {
    console.log(`no cluster "${profile}": nothing under ${dir}; start one with "nbjob cluster start -n 2${profile === DEFAULT_PROFILE ? "" : ` --profile ${profile}`}"`);
    return 1;
  }
  const rows = await Promise.all(
    workers.map(async (files) => {
      const pid = readWorkerPid(files);
      const alive = pid !== undefined && processAlive(pid);
      let heartbeat = "-";
      let busy = "-";
      let queued = "-";
      if (alive && existsSync(files.connectionFile)) {
        try {
          const probe = await probeWorker(readConnectionFile(files.connectionFile));
          heartbeat = probe.heartbeat ? "ok" : "no answer";
          if (probe.status) {
            busy = probe.status.busy === null ? "idle" : `job ${probe.status.busy}`;
            queued = String(probe.status.queued.length);
          }
        } catch (err) {
          heartbeat = `error: ${(err as Error).message}`;
        }
      }
      const restarts = readRestartState(files);
      return { files, pid, alive, heartbeat, busy, queued, restarts: restarts.gaveUp ? `${restarts.count} (gave up)` : String(restarts.count) };
    }),
  );
  const healthy = rows.filter((r) => r.alive && r.heartbeat === "ok").length;
  const supervisor = supervisorPid(dir);
  console.log(`cluster "${profile}" (${dir}): ${healthy} of ${rows.length} worker${rows.length === 1 ? "" : "s"} alive`);
  console.log(supervisor !== undefined
    ? `supervisor pid ${supervisor} restarts dead workers (log ${supervisorFiles(dir).logFile})`
    : `no supervisor: dead workers are not restarted; "nbjob cluster start -n ${rows.length}${profile === DEFAULT_PROFILE ? "" : ` --profile ${profile}`}" starts the missing ones and a supervisor`);
  const table = [["worker", "pid", "process", "heartbeat", "busy", "queued", "restarts"]];
  for (const r of rows) table.push([String(r.files.index), r.pid === undefined ? "?" : String(r.pid), r.alive ? "alive" : "dead", r.heartbeat, r.busy, r.queued, r.restarts]);
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
  for (const row of table) console.log(`  ${row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()}`);
  return healthy === rows.length ? 0 : 1;
}

async function stop(profile: string, dir: string): Promise<number> {
  // First the supervisor, so that it does not restart the workers being stopped.
  const supervisor = await stopSupervisor(dir);
  const workers = listClusterWorkers(profile);
  if (workers.length === 0) {
    console.log(`no cluster "${profile}" to stop (nothing under ${dir})`);
    return 0;
  }
  const outcomes = await Promise.all(workers.map((files) => stopWorker(files)));
  for (const files of workers) removeWorkerFiles(files);
  console.log(`stopped cluster "${profile}": ${outcomes.map((o, i) => `worker ${workers[i].index} ${o.how}`).join(", ")}; supervisor ${supervisor}`);
  // A worker that shuts down cancels what it runs and what was sent to it: say which, and how to get them back.
  const cut = outcomes.flatMap((o, i) => [
    ...(o.running !== null ? [`job ${o.running} (running on worker ${workers[i].index})`] : []),
    ...o.queued.map((id) => `job ${id} (queued on worker ${workers[i].index})`),
  ]);
  if (cut.length > 0) {
    console.log(`cancelled by the shutdown: ${cut.join(", ")}; "nbjob rerun ID" runs one again, and job.resume() in a notebook continues one from its last checkpoint`);
  }
  return 0;
}

/** What a worker was running and had queued just before it was asked to stop (null and [] if it did not say). */
async function workSentTo(files: ClusterWorkerFiles): Promise<{ running: JobId | null; queued: JobId[] }> {
  try {
    const { status } = await probeWorker(readConnectionFile(files.connectionFile));
    return { running: status?.busy ?? null, queued: status?.queued ?? [] };
  } catch {
    return { running: null, queued: [] };
  }
}

/** Asks politely (shutdown_request), then SIGTERM, then SIGKILL. Returns how it ended and the jobs it had. */
async function stopWorker(files: ClusterWorkerFiles): Promise<{ how: string; running: JobId | null; queued: JobId[] }> {
  const pid = readWorkerPid(files);
  if (pid === undefined || !processAlive(pid)) return { how: "was not running", running: null, queued: [] };
  const work = existsSync(files.connectionFile) ? await workSentTo(files) : { running: null, queued: [] };
  return { how: await endWorker(files, pid), ...work };
}

async function endWorker(files: ClusterWorkerFiles, pid: number): Promise<string> {
  if (existsSync(files.connectionFile)) {
    try {
      const client = await KernelClient.connect(readConnectionFile(files.connectionFile), { waitForReady: false, log: () => {} });
      try {
        await client.shutdown({ timeoutMs: 3_000 });
      } finally {
        client.close();
      }
    } catch {
      // Not answering: the signals below take over.
    }
  }
  if (await exitsWithin(pid, 5_000)) return "shut down";
  process.kill(pid, "SIGTERM");
  if (await exitsWithin(pid, 3_000)) return "ended by SIGTERM";
  process.kill(pid, "SIGKILL");
  await exitsWithin(pid, 2_000);
  return "killed (SIGKILL)";
}

async function exitsWithin(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (processAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}
