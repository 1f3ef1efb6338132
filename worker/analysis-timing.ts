// Where a worker's analysis time goes, for bench/checkpoint-analysis.ts: when the environment
// variable NBJOB_ANALYSIS_TIMING names a file, each analysis request appends one JSON line there
// with its checkpoints computed and milliseconds by phase. Unset (the default), nothing is timed.
import { appendFileSync } from "node:fs";

export const ANALYSIS_TIMING_ENV = "NBJOB_ANALYSIS_TIMING";

/** Milliseconds by phase: each lap adds the time since the previous lap to its phase. */
export class PhaseClock {
  readonly ms: { [phase: string]: number } = {};
  private last = performance.now();

  lap(phase: string): void {
    const now = performance.now();
    this.add(phase, now - this.last);
    this.last = now;
  }

  add(phase: string, ms: number): void {
    this.ms[phase] = (this.ms[phase] ?? 0) + ms;
  }
}

/** A clock when timing is on, else undefined (callers write `clock?.lap(...)`). */
export function phaseClock(): PhaseClock | undefined {
  return process.env[ANALYSIS_TIMING_ENV] ? new PhaseClock() : undefined;
}

/** Appends one request's phases to the timing file (a line of JSON). */
export function recordPhases(clock: PhaseClock | undefined, fields: { workerId: string; computed: number; received: number; windows: Array<[number, number]> }): void {
  const file = process.env[ANALYSIS_TIMING_ENV];
  if (!clock || !file) return;
  try {
    appendFileSync(file, `${JSON.stringify({ ...fields, ms: clock.ms })}\n`);
  } catch {
    // Timing is for benchmarks; an unwritable file must not fail the analysis.
  }
}
