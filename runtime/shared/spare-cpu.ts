// How much CPU the rest of the machine is using, so background work (the notebook kernel's
// compiler warm-up, a worker's analysis compiler warm-up) runs only on cores nobody else wants. Resting as long as each step ran keeps our own
// share to half a core, but V8's optimising compiler and garbage collector threads add to it, and
// on a 2-core machine another kernel's cells (plus its Jupyter client) already need most of the
// other core: measured, tslab's cells took 1.4x their time next to a warming nbjob kernel.
//
// Linux only (/proc/stat); elsewhere every core counts as spare and callers go on as before.
import { readFileSync } from "node:fs";
import { cpus } from "node:os";

interface Reading {
  /** Machine-wide busy and total jiffies (all cores), from /proc/stat's first line. */
  busy: number;
  total: number;
  /** Our own CPU time (what `ownMicros` measures), microseconds. */
  ownMicros: number;
  wallMicros: number;
}

/** This process's CPU time (all its threads), microseconds. */
export function processCpuMicros(): number {
  const own = process.cpuUsage();
  return own.user + own.system;
}

/**
 * The calling thread's own CPU time, microseconds (Linux's /proc/thread-self; elsewhere the
 * process's): for background work in a worker thread, whose process also runs jobs that must
 * count as others.
 */
export function threadCpuMicros(): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th, in 10 ms ticks.
    const fields = readFileSync("/proc/thread-self/stat", "utf8").replace(/^.*\) /s, "").split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return processCpuMicros();
  }
}

function read(ownMicros: () => number): Reading | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
    // cpu  user nice system idle iowait irq softirq steal ...
    const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
    if (fields.length < 8 || fields.some((n) => !Number.isFinite(n))) return undefined;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait, ownMicros: ownMicros(), wallMicros: performance.now() * 1000 };
  } catch {
    return undefined;
  }
}

export class SpareCpu {
  /** `ownMicros`: the CPU that is ours, not others' (default: this process's, every thread). */
  constructor(private readonly ownMicros: () => number = processCpuMicros) {
    this.last = read(ownMicros);
  }

  private last: Reading | undefined;
  private readonly cores = Math.max(1, cpus().length);
  private spare = true;

  /**
   * Whether, since the last reading, one and a half cores were free of other processes' work
   * (one for us, some headroom). Readings closer together than /proc/stat can tell apart (it
   * counts in 10 ms ticks) keep the previous answer; without /proc/stat the answer is yes.
   */
  hasSpareCore(): boolean {
    const now = read(this.ownMicros);
    const before = this.last;
    if (!now || !before) return true;
    const totalTicks = now.total - before.total;
    const wall = now.wallMicros - before.wallMicros;
    if (totalTicks < 2 * this.cores || wall <= 0) return this.spare;
    this.last = now;
    const machine = ((now.busy - before.busy) / totalTicks) * this.cores;
    const own = (now.ownMicros - before.ownMicros) / wall;
    this.spare = this.cores - Math.max(0, machine - own) >= 1.5;
    return this.spare;
  }
}
