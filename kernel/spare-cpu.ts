// How much CPU the rest of the machine is using, so the kernel's background work (the compiler's
// warm-up) runs only on cores nobody else wants. Resting as long as each step ran keeps our own
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
  /** This process's own CPU time (all its threads), microseconds. */
  ownMicros: number;
  wallMicros: number;
}

function read(): Reading | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
    // cpu  user nice system idle iowait irq softirq steal ...
    const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
    if (fields.length < 8 || fields.some((n) => !Number.isFinite(n))) return undefined;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
    const busy = user + nice + system + irq + softirq + steal;
    const own = process.cpuUsage();
    return { busy, total: busy + idle + iowait, ownMicros: own.user + own.system, wallMicros: performance.now() * 1000 };
  } catch {
    return undefined;
  }
}

/**
 * The shortest span a reading covers. Another kernel's cells come back to back with short pauses
 * between them (its client's turn): over a span of a few ticks a pause looked like a free core,
 * the warm-up ran in it and slowed the next cells (tslab's cells took 1.07-1.09x their time next
 * to an "idle" nbjob kernel that was still warming up, 2026-12-08).
 */
const MIN_SPAN_MS = 250;
/**
 * The longest: a span mostly of a quiet moment long past says nothing of now (the idle
 * collection, asked a second apart, once collected in another kernel's burst of cells after a
 * quiet stretch). An older reading starts a new span, and the answer is no until it is read.
 */
const MAX_SPAN_MS = 1000;

export class SpareCpu {
  private last = read();
  private readonly cores = Math.max(1, cpus().length);
  /** No until a first span has been read (when it can be read at all). */
  private spare = this.last === undefined;

  /**
   * Whether, over the last span (MIN_SPAN_MS to MAX_SPAN_MS), one and a half cores were free of
   * other processes' work (one for us, some headroom). Asked sooner, the answer of the last span;
   * asked later, no (a new span starts); without /proc/stat the answer is yes.
   */
  hasSpareCore(): boolean {
    const now = read();
    const before = this.last;
    if (!now || !before) return true;
    const totalTicks = now.total - before.total;
    const wall = now.wallMicros - before.wallMicros;
    if (wall > MAX_SPAN_MS * 1000) {
      this.last = now;
      this.spare = false;
      return false;
    }
    if (wall < MIN_SPAN_MS * 1000 || totalTicks < 2 * this.cores) return this.spare;
    this.last = now;
    const machine = ((now.busy - before.busy) / totalTicks) * this.cores;
    const own = (now.ownMicros - before.ownMicros) / wall;
    this.spare = this.cores - Math.max(0, machine - own) >= 1.5;
    return this.spare;
  }
}
