// Where a benchmark's CPU went, read from /proc (Linux): each worker's threads, PostgreSQL's
// processes and this process, as snapshots taken before and after a timed run. /proc counts in
// clock ticks (10 ms), so a figure below ~0.02 s is mostly rounding.
import { readdirSync, readFileSync } from "node:fs";

/** User + system CPU seconds of a process (all its threads) from /proc; undefined where there is none. */
export function cpuSeconds(pid: number, statFile = `/proc/${pid}/stat`): number | undefined {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = readFileSync(statFile, "utf8").replace(/^.*\) /s, "").split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks, 100 a second on Linux
  } catch {
    return undefined;
  }
}

/** CPU seconds of every thread of a process, by thread id. */
export function threadSeconds(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const seconds = cpuSeconds(Number(tid), `/proc/${pid}/task/${tid}/stat`);
      if (seconds !== undefined) out.set(Number(tid), seconds);
    }
  } catch {
    // The process is gone.
  }
  return out;
}

/** Where the machine's CPU went during one run: each worker's threads, PostgreSQL's processes, this process (the notebook's side). */
export interface CpuSnapshot {
  workers: Map<number, number>[];
  /** Thread names (/proc's comm) by thread id. */
  names: Map<number, string>;
  pids: number[];
  /** By process id: a backend that ends between two snapshots is left out, not counted as negative. */
  postgres: Map<number, number>;
  notebook: number;
}

export function cpuSnapshot(workerPids: number[]): CpuSnapshot {
  const postgres = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() === "postgres") postgres.set(Number(entry), cpuSeconds(Number(entry)) ?? 0);
    } catch {
      // Gone meanwhile.
    }
  }
  const own = process.cpuUsage();
  const names = new Map<number, string>();
  for (const pid of workerPids) {
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) names.set(Number(tid), readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim());
    } catch {
      // The process is gone.
    }
  }
  return { workers: workerPids.map(threadSeconds), names, pids: workerPids, postgres, notebook: (own.user + own.system) / 1e6 };
}

/**
 * The CPU used between two snapshots, split: `label` for the busiest thread of each worker other
 * than its main thread (the analysis thread, the job thread), the workers' other threads by name
 * (the main thread as "main"; V8's helpers, the compiler thread... are all "node"), PostgreSQL,
 * this process.
 */
export function cpuSplit(before: CpuSnapshot, after: CpuSnapshot, label: string, thisProcess = "notebook"): string {
  let busiest = 0;
  let other = 0;
  const byName = new Map<string, number>();
  after.workers.forEach((threads, w) => {
    const deltas = [...threads].map(([tid, s]) => ({ tid, cpu: s - (before.workers[w].get(tid) ?? 0) })).sort((a, b) => b.cpu - a.cpu);
    const top = deltas.find(({ tid }) => tid !== after.pids[w]);
    busiest += top?.cpu ?? 0;
    for (const { tid, cpu } of deltas) {
      if (tid === top?.tid) continue;
      other += cpu;
      const name = tid === after.pids[w] ? "main" : after.names.get(tid) ?? "?";
      if (cpu > 0) byName.set(name, (byName.get(name) ?? 0) + cpu);
    }
  });
  const names = [...byName].sort((a, b) => b[1] - a[1]).map(([name, cpu]) => `${name} ${cpu.toFixed(2)}`).join(", ");
  let postgres = 0;
  for (const [pid, seconds] of after.postgres) postgres += seconds - (before.postgres.get(pid) ?? 0);
  return `${label} ${busiest.toFixed(2)}, workers' other threads ${other.toFixed(2)} (${names || "none"}), PostgreSQL ${postgres.toFixed(2)}, ${thisProcess} ${(after.notebook - before.notebook).toFixed(2)} CPU s`;
}
