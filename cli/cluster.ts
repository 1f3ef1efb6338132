// `nbjob cluster start | status | stop`: a local cluster of detached worker kernels, one
// directory per profile under $NBJOB_HOME/cluster, so the workers outlive the notebook.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KernelClient } from "../wire/client";
import { readConnectionFile } from "../wire/connection";
import {
  clusterDir, DEFAULT_PROFILE, listClusterWorkers, processAlive, readWorkerPid, workerFiles,
} from "../runtime/shared/cluster-files";
import type { ClusterWorkerFiles } from "../runtime/shared/cluster-files";
import { probeWorker } from "../worker/probe";
import { parseCommandArgs, UsageError } from "./args";
import type { Command } from "./args";

const usage = `usage: nbjob cluster start -n N [--profile NAME] [--ip ADDR]
       nbjob cluster status [--profile NAME]
       nbjob cluster stop [--profile NAME]

  start   launch N detached worker kernels; their connection files, pids and logs go to
          $NBJOB_HOME/cluster/NAME (NBJOB_HOME defaults to ~/.nbjob)
  status  each worker: pid, whether its process and heartbeat are alive, the job it runs
  stop    shut the workers down (shutdown_request, then SIGTERM, then SIGKILL) and remove their files

  -n N            number of workers (start)
  --profile NAME  which cluster (default "default")
  --ip ADDR       address the workers bind (default 127.0.0.1, loopback only)`;

const NBJOB_BIN = join(__dirname, "..", "..", "bin", "nbjob.js");
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
    if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"\n${usage}`);
    const profile = values.profile ?? DEFAULT_PROFILE;
    let dir: string;
    try {
      dir = clusterDir(profile);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    if (action !== "start" && (values.n !== undefined || values.ip !== undefined)) {
      throw new UsageError(`-n and --ip are options of "nbjob cluster start"\n${usage}`);
    }
    switch (action) {
      case "start":
        return start(profile, dir, parseCount(values.n), values.ip ?? "127.0.0.1");
      case "status":
        return status(profile, dir);
      case "stop":
        return stop(profile, dir);
      case undefined:
        throw new UsageError(`say what to do: start, status or stop\n${usage}`);
      default:
        throw new UsageError(`unknown action "${action}"; expected start, status or stop\n${usage}`);
    }
  },
};

function parseCount(n: string | undefined): number {
  if (n === undefined) throw new UsageError(`nbjob cluster start needs -n N, the number of workers (e.g. -n 2)\n${usage}`);
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
}

function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

async function start(profile: string, dir: string, count: number, ip: string): Promise<number> {
  const running = runningWorkers(profile);
  if (running.length > 0) {
    throw new UsageError(
      `cluster "${profile}" is already running (${running.length} worker${running.length === 1 ? "" : "s"}, pids ${running.map((w) => w.pid).join(", ")}); ` +
        `use it as it is, or run "nbjob cluster stop${profile === DEFAULT_PROFILE ? "" : ` --profile ${profile}`}" first`,
    );
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Files of workers that died without cleaning up would be mistaken for live ones.
  for (const stale of listClusterWorkers(profile)) removeWorkerFiles(stale);

  const started: Array<ClusterWorkerFiles & { pid: number; exited: () => number | null }> = [];
  for (let i = 0; i < count; i++) {
    const files = workerFiles(dir, profile, i);
    const log = openSync(files.logFile, "a");
    const child = spawn(process.execPath, [NBJOB_BIN, "worker", "--connection-file", files.connectionFile, "--ip", ip, "--id", files.workerId, "--profile", profile], {
      detached: true, // its own process group: the notebook (or this shell) ending does not end it
      stdio: ["ignore", log, log],
      cwd: process.cwd(), // jobs `require` packages from here
      // glibc gives each thread its own malloc arena and keeps what the compiler thread freed;
      // two arenas bring a worker back from ~190 to ~105 MiB after a burst of jobs (measured here).
      env: { MALLOC_ARENA_MAX: "2", ...process.env },
    });
    closeSync(log);
    let exitCode: number | null = null;
    child.on("exit", (code, signal) => (exitCode = code ?? (signal ? 128 : 1)));
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start worker ${i}: ${process.execPath} did not run; see ${files.logFile}`);
    writeFileSync(files.pidFile, `${child.pid}\n`);
    started.push({ ...files, pid: child.pid, exited: () => exitCode });
  }

  try {
    await Promise.all(started.map((worker) => waitUntilReady(worker)));
  } catch (err) {
    for (const worker of started) {
      if (processAlive(worker.pid)) process.kill(worker.pid, "SIGKILL");
      removeWorkerFiles(worker);
    }
    throw err;
  }
  console.log(`started ${count} worker${count === 1 ? "" : "s"} of cluster "${profile}" on ${ip} (files in ${dir})`);
  for (const worker of started) console.log(`  worker ${worker.index}  pid ${worker.pid}  ${worker.connectionFile}`);
  return 0;
}

/** Waits for the worker's connection file, then for its answer to kernel_info. */
async function waitUntilReady(worker: ClusterWorkerFiles & { pid: number; exited: () => number | null }): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const failure = (what: string) => new Error(`worker ${worker.index} (pid ${worker.pid}) ${what}; its log ${worker.logFile} ends with:\n${logTail(worker.logFile)}`);
  while (!existsSync(worker.connectionFile)) {
    if (worker.exited() !== null) throw failure(`exited with code ${worker.exited()} before it was ready`);
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
      return { files, pid, alive, heartbeat, busy, queued };
    }),
  );
  const healthy = rows.filter((r) => r.alive && r.heartbeat === "ok").length;
  console.log(`cluster "${profile}" (${dir}): ${healthy} of ${rows.length} worker${rows.length === 1 ? "" : "s"} alive`);
  const table = [["worker", "pid", "process", "heartbeat", "busy", "queued"]];
  for (const r of rows) table.push([String(r.files.index), r.pid === undefined ? "?" : String(r.pid), r.alive ? "alive" : "dead", r.heartbeat, r.busy, r.queued]);
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
  for (const row of table) console.log(`  ${row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()}`);
  return healthy === rows.length ? 0 : 1;
}

async function stop(profile: string, dir: string): Promise<number> {
  const workers = listClusterWorkers(profile);
  if (workers.length === 0) {
    console.log(`no cluster "${profile}" to stop (nothing under ${dir})`);
    return 0;
  }
  const outcomes = await Promise.all(workers.map((files) => stopWorker(files)));
  for (const files of workers) removeWorkerFiles(files);
  console.log(`stopped cluster "${profile}": ${outcomes.map((how, i) => `worker ${workers[i].index} ${how}`).join(", ")}`);
  return 0;
}

/** Asks politely (shutdown_request), then SIGTERM, then SIGKILL. Returns how it ended. */
async function stopWorker(files: ClusterWorkerFiles): Promise<string> {
  const pid = readWorkerPid(files);
  if (pid === undefined || !processAlive(pid)) return "was not running";
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
