// Turns a job's stack trace into a Jupyter traceback: frames in the compiled program are shown at
// their TypeScript line in `bundle.ts` (or in `entry N`), the worker's own frames are left out.
import { describeProgramLine, PROGRAM_FILE, sourceColumn } from "./program";
import type { ProgramLayout } from "./program";
import { LineMap } from "./source-map";

export interface ProgramLocations extends ProgramLayout {
  mappings: string;
}

const FRAME = /^\s+at /;
const PROGRAM_POSITION = new RegExp(`${PROGRAM_FILE.replace(".", "\\.")}:(\\d+):(\\d+)`, "g");
const WORKER_INTERNALS = /(node:internal|[/\\]runtime[/\\]worker[/\\][\w-]+\.js)/;

const lineMaps = new WeakMap<ProgramLocations, LineMap>();

function lineMapOf(program: ProgramLocations): LineMap {
  let map = lineMaps.get(program);
  if (!map) {
    map = new LineMap(program.mappings);
    lineMaps.set(program, map);
  }
  return map;
}

/** `ename: evalue` first, then the job's own frames with their TypeScript positions. */
export function jobTraceback(ename: string, evalue: string, stack: string, program: ProgramLocations | undefined): string[] {
  const frames = stack.split("\n").filter((line) => FRAME.test(line));
  const lines = [`${ename}: ${evalue}`];
  for (const frame of frames) {
    if (!frame.includes(PROGRAM_FILE) && WORKER_INTERNALS.test(frame)) continue;
    lines.push(program ? mapFrame(frame, program) : frame);
  }
  return lines;
}

function mapFrame(frame: string, program: ProgramLocations): string {
  return frame.replace(PROGRAM_POSITION, (whole, line: string, column: string) => {
    const original = lineMapOf(program).lookup(Number(line), Number(column));
    if (!original) return whole;
    const place = describeProgramLine(program, original.line);
    const userColumn = place.file === "bundle.ts" ? sourceColumn(program, original.line, original.column) : original.column;
    return `${place.file}:${place.line}:${userColumn}`;
  });
}
