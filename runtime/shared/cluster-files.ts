// Where a local cluster keeps its workers: $NBJOB_HOME/cluster/<profile>/worker-<i>.json (the
// connection file each worker writes once bound), worker-<i>.pid, worker-<i>.log and
// worker-<i>.restarts (how often its supervisor restarted it), worker-<i>.id (its id in the
// store, made once and kept across restarts in place), plus the cluster's supervisor
// (supervisor.pid, supervisor.log). Read by `nbjob cluster` and by clients looking for the
// workers of a profile.
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { nbjobHome } from "../../store";

export const DEFAULT_PROFILE = "default";

export interface ClusterWorkerFiles {
  index: number;
  /**
   * The worker's id in job records: `<profile>/<index>@<host>.<6 hex>` from its id file once
   * `cluster start` made it (unique across hosts and homes: two hosts' `default/0` no longer
   * share a row or keep each other's jobs alive); `<profile>/<index>` before that.
   */
  workerId: string;
  /** Holds the id; kept when the worker is restarted under the same index, so direct views keep working. */
  idFile: string;
  connectionFile: string;
  pidFile: string;
  logFile: string;
  /** JSON {@link RestartState}, written by the supervisor. */
  restartsFile: string;
}

/** What the supervisor records about one worker's restarts. */
export interface RestartState {
  count: number;
  /** ISO time of the last restart. */
  last: string | null;
  /** Set when the supervisor stopped restarting it (too many quick deaths): why. */
  gaveUp: string | null;
}

/** Profile names become directory names: keep them to letters, digits, `.`, `_` and `-`. */
export function checkProfileName(profile: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(profile)) {
    throw new Error(`profile name ${JSON.stringify(profile)} is not allowed; use letters, digits, ".", "_" and "-" (up to 64), e.g. --profile gpu-box`);
  }
  return profile;
}

export function clusterDir(profile: string = DEFAULT_PROFILE, home: string = nbjobHome()): string {
  return join(home, "cluster", checkProfileName(profile));
}

export function workerFiles(dir: string, profile: string, index: number): ClusterWorkerFiles {
  const idFile = join(dir, `worker-${index}.id`);
  let workerId = `${profile}/${index}`;
  try {
    workerId = readFileSync(idFile, "utf8").trim() || workerId;
  } catch {
    // no id made yet
  }
  return {
    index,
    workerId,
    idFile,
    connectionFile: join(dir, `worker-${index}.json`),
    pidFile: join(dir, `worker-${index}.pid`),
    logFile: join(dir, `worker-${index}.log`),
    restartsFile: join(dir, `worker-${index}.restarts`),
  };
}

/**
 * Makes the worker's id unless it has one: readable (`default/0@host`) and made unique by a
 * random part, since a host name and a pid can both repeat (containers, network namespaces).
 */
export function ensureWorkerId(files: ClusterWorkerFiles, profile: string): ClusterWorkerFiles {
  try {
    const kept = readFileSync(files.idFile, "utf8").trim();
    if (kept) return { ...files, workerId: kept };
  } catch {
    // made below
  }
  const workerId = `${profile}/${files.index}@${hostname()}.${randomBytes(3).toString("hex")}`;
  writeFileSync(files.idFile, `${workerId}\n`);
  return { ...files, workerId };
}

export function supervisorFiles(dir: string): { pidFile: string; logFile: string } {
  return { pidFile: join(dir, "supervisor.pid"), logFile: join(dir, "supervisor.log") };
}

/** The worker's restart record; a worker never restarted has count 0. */
export function readRestartState(files: ClusterWorkerFiles): RestartState {
  try {
    const state = JSON.parse(readFileSync(files.restartsFile, "utf8")) as Partial<RestartState>;
    return { count: Number(state.count) || 0, last: state.last ?? null, gaveUp: state.gaveUp ?? null };
  } catch {
    return { count: 0, last: null, gaveUp: null };
  }
}

export function writeRestartState(files: ClusterWorkerFiles, state: RestartState): void {
  // Written whole, then renamed: `cluster status` never reads half of it.
  const partial = `${files.restartsFile}.${process.pid}.tmp`;
  writeFileSync(partial, `${JSON.stringify(state)}\n`);
  renameSync(partial, files.restartsFile);
}

/** The workers a profile has files for (a pid file or a connection file), by index. */
export function listClusterWorkers(profile: string = DEFAULT_PROFILE, home?: string): ClusterWorkerFiles[] {
  const dir = clusterDir(profile, home);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const indices = new Set<number>();
  for (const name of names) {
    const match = /^worker-(\d+)\.(json|pid)$/.exec(name);
    if (match) indices.add(Number(match[1]));
  }
  return [...indices].sort((a, b) => a - b).map((i) => workerFiles(dir, profile, i));
}

/** The pid recorded for a worker, or undefined when there is no readable pid file. */
export function readWorkerPid(files: { pidFile: string }): number | undefined {
  try {
    const pid = Number(readFileSync(files.pidFile, "utf8").trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
