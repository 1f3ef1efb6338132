// Where a local cluster keeps its workers: $NBJOB_HOME/cluster/<profile>/worker-<i>.json (the
// connection file each worker writes once bound), worker-<i>.pid and worker-<i>.log. Read by
// `nbjob cluster` and by clients looking for the workers of a profile.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { nbjobHome } from "../../store";

export const DEFAULT_PROFILE = "default";

export interface ClusterWorkerFiles {
  index: number;
  /** The worker's name in job records: `<profile>/<index>`. */
  workerId: string;
  connectionFile: string;
  pidFile: string;
  logFile: string;
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
  return {
    index,
    workerId: `${profile}/${index}`,
    connectionFile: join(dir, `worker-${index}.json`),
    pidFile: join(dir, `worker-${index}.pid`),
    logFile: join(dir, `worker-${index}.log`),
  };
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
export function readWorkerPid(files: ClusterWorkerFiles): number | undefined {
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
