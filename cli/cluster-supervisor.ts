// The local cluster's supervisor: one detached process per profile (`nbjob cluster start`
// launches it as `nbjob cluster supervise`) that keeps the cluster at its size. Every 500 ms it
// looks at the workers the profile has pid files for; one whose process is gone is started again
// under the same index, name (`<profile>/<index>`) and connection file (same ports and key), so
// a notebook's direct view reaches the new process without reconnecting.
//
// Backoff: a worker that dies within STABLE_MS of its start is a quick death; the restart after
// the k-th quick death in a row waits 2^(k-1) s (1, 2, 4, 8, then 10 s at most). After
// MAX_QUICK_DEATHS in a row the supervisor gives that worker up (recorded in its
// worker-<i>.restarts, shown by `nbjob cluster status`); `nbjob cluster start -n N` starts it
// again. From the third quick death on, the restart takes fresh ports, in case the old ones
// were taken by another process meanwhile.
//
// `nbjob cluster stop` ends the supervisor (SIGTERM) before the workers; it also ends by itself
// once the profile has no worker pid files left.
import { spawn } from "node:child_process";
import { appendFileSync, closeSync, existsSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  listClusterWorkers, processAlive, readRestartState, readWorkerPid, supervisorFiles, writeRestartState,
} from "../runtime/shared/cluster-files";
import type { ClusterWorkerFiles } from "../runtime/shared/cluster-files";

const NBJOB_BIN = join(__dirname, "..", "..", "bin", "nbjob.js");
const CHECK_MS = 500;
/** A worker that ran this long was healthy: its next death starts the backoff from the beginning. */
const STABLE_MS = 30_000;
const MAX_QUICK_DEATHS = 5;
const MAX_DELAY_MS = 10_000;

/**
 * Starts one detached worker (its own process group, so the shell or notebook ending does not
 * end it) and records its pid. An existing connection file is reused: same ports and key.
 */
export function spawnWorker(files: ClusterWorkerFiles, profile: string, ip: string): number {
  // A worker given an existing file binds the address in it (and refuses a different --ip).
  const bind = existsSync(files.connectionFile) ? [] : ["--ip", ip];
  const log = openSync(files.logFile, "a");
  const child = spawn(process.execPath, [NBJOB_BIN, "worker", "--connection-file", files.connectionFile, ...bind, "--id", files.workerId, "--profile", profile], {
    detached: true,
    stdio: ["ignore", log, log],
    cwd: process.cwd(), // jobs `require` packages from here
    // glibc gives each thread its own malloc arena and keeps what the compiler thread freed;
    // two arenas bring a worker back from ~190 to ~105 MiB after a burst of jobs (measured here).
    env: { MALLOC_ARENA_MAX: "2", ...process.env },
  });
  closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start worker ${files.index}: ${process.execPath} did not run; see ${files.logFile}`);
  writeFileSync(files.pidFile, `${child.pid}\n`);
  return child.pid;
}

/** Starts the profile's supervisor, detached; returns its pid (also written to supervisor.pid). */
export function spawnSupervisor(dir: string, profile: string, ip: string): number {
  const { pidFile, logFile } = supervisorFiles(dir);
  const log = openSync(logFile, "a");
  const child = spawn(process.execPath, [NBJOB_BIN, "cluster", "supervise", "--profile", profile, "--ip", ip], {
    detached: true,
    stdio: ["ignore", log, log],
    cwd: process.cwd(), // the workers it starts take their cwd from it
    env: process.env,
  });
  closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start the supervisor of cluster "${profile}"; see ${logFile}`);
  writeFileSync(pidFile, `${child.pid}\n`);
  return child.pid;
}

interface Watched {
  /** When the current process was started (or first seen). */
  startedAt: number;
  quickDeaths: number;
  /** Set while the worker is dead and waiting for its restart. */
  restartAt?: number;
  gaveUp: boolean;
}

/** The supervisor's loop (`nbjob cluster supervise`); resolves when the cluster is stopped. */
export async function supervise(dir: string, profile: string, ip: string): Promise<number> {
  const { pidFile, logFile } = supervisorFiles(dir);
  const say = (line: string) => appendFileSync(logFile, `${new Date().toISOString()} ${line}\n`);
  say(`supervising cluster "${profile}" (pid ${process.pid})`);
  let stopping = false;
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.once(signal, () => (stopping = true));
  const watched = new Map<number, Watched>();
  while (!stopping) {
    const workers = listClusterWorkers(profile).filter((w) => readWorkerPid(w) !== undefined);
    if (workers.length === 0) {
      say("no workers left (the cluster was stopped); exiting");
      break;
    }
    const now = Date.now();
    for (const files of workers) {
      let state = watched.get(files.index);
      if (!state) {
        state = { startedAt: now, quickDeaths: 0, gaveUp: readRestartState(files).gaveUp !== null };
        watched.set(files.index, state);
      }
      if (processAlive(readWorkerPid(files)!)) {
        if (now - state.startedAt > STABLE_MS) state.quickDeaths = 0;
        continue;
      }
      if (state.gaveUp) continue;
      if (state.restartAt === undefined) {
        state.quickDeaths = now - state.startedAt < STABLE_MS ? state.quickDeaths + 1 : 1;
        if (state.quickDeaths > MAX_QUICK_DEATHS) {
          state.gaveUp = true;
          const why = `died ${MAX_QUICK_DEATHS + 1} times within ${STABLE_MS / 1000} s of its start; see ${files.logFile}`;
          writeRestartState(files, { ...readRestartState(files), gaveUp: why });
          say(`worker ${files.index} ${why}; not restarting it (nbjob cluster start -n N starts it again)`);
          continue;
        }
        const delay = Math.min(1_000 * 2 ** (state.quickDeaths - 1), MAX_DELAY_MS);
        state.restartAt = now + delay;
        say(`worker ${files.index} (pid ${readWorkerPid(files)}) is gone; restarting it in ${delay / 1000} s`);
        continue;
      }
      if (now < state.restartAt) continue;
      // From the third quick death on, do not insist on the old ports: another process may hold them.
      if (state.quickDeaths >= 3) rmSync(files.connectionFile, { force: true });
      try {
        const pid = spawnWorker(files, profile, ip);
        const restarts = readRestartState(files);
        writeRestartState(files, { count: restarts.count + 1, last: new Date().toISOString(), gaveUp: null });
        say(`worker ${files.index} restarted as pid ${pid} (restart ${restarts.count + 1})`);
      } catch (err) {
        say(`could not restart worker ${files.index}: ${(err as Error).message}`);
      }
      state.startedAt = Date.now();
      state.restartAt = undefined;
    }
    for (const index of watched.keys()) if (!workers.some((w) => w.index === index)) watched.delete(index);
    await new Promise((resolve) => setTimeout(resolve, CHECK_MS));
  }
  if (readWorkerPid({ pidFile }) === process.pid) rmSync(pidFile, { force: true });
  return 0;
}
