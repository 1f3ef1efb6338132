// Turns a job's stack trace into a Jupyter traceback: frames in the compiled program are shown at
// their TypeScript line in `bundle.ts` (or in `entry N`), the worker's own frames are left out.
import { describeProgramLine, PROGRAM_FILE, sourceColumn } from "./program";
import type { ProgramLayout } from "./program";
import { SourceMap } from "node:module";
import { join, sep } from "node:path";

export interface ProgramLocations extends ProgramLayout {
  mappings: string;
}

const FRAME = /^\s+at /;
// A job's local modules sit in $NBJOB_HOME/cache/modules/<key>/ (worker/module-layout.ts, with a
// `_/` per level a path climbs above the notebook's folder): frames name them by their own path.
const LOCAL_MODULE_DIR = /(?<=\(|at )[^\s()]*\/cache\/modules\/[0-9a-f]{64}\/(?:_\/)*/g;
const PROGRAM_POSITION = new RegExp(`${PROGRAM_FILE.replace(".", "\\.")}:(\\d+):(\\d+)`, "g");
// The worker's own compiled files: this folder's and those it shares with the notebook side.
const WORKER_DIRS = [__dirname, join(__dirname, "..", "runtime", "shared")].map((dir) => dir + sep);

function isWorkerInternal(frame: string): boolean {
  return frame.includes("node:internal") || WORKER_DIRS.some((dir) => frame.includes(dir));
}

// Node's own source-map reader (node:module), so the worker keeps no decoder of its own.
const sourceMaps = new WeakMap<ProgramLocations, SourceMap>();

function sourceMapOf(program: ProgramLocations): SourceMap {
  let map = sourceMaps.get(program);
  if (!map) {
    map = new SourceMap({ version: 3, file: PROGRAM_FILE, sources: [PROGRAM_FILE], sourceRoot: "", sourcesContent: [], names: [], mappings: program.mappings });
    sourceMaps.set(program, map);
  }
  return map;
}

/** The original 1-based line and column of a 1-based generated position, if that line is mapped. */
function originalPosition(program: ProgramLocations, line: number, column: number): { line: number; column: number } | undefined {
  const entry = sourceMapOf(program).findEntry(line - 1, column - 1);
  if (!("originalLine" in entry) || entry.generatedLine !== line - 1) return undefined;
  // Past the segment's start within the same original line, the offset carries over.
  const offset = Math.max(0, column - 1 - entry.generatedColumn);
  return { line: entry.originalLine + 1, column: entry.originalColumn + offset + 1 };
}

/** `ename: evalue` first, then the job's own frames with their TypeScript positions. */
export function jobTraceback(ename: string, evalue: string, stack: string, program: ProgramLocations | undefined): string[] {
  const frames = stack.split("\n").filter((line) => FRAME.test(line));
  const lines = [`${ename}: ${evalue}`];
  for (const frame of frames) {
    if (!frame.includes(PROGRAM_FILE) && isWorkerInternal(frame)) continue;
    const local = frame.replace(LOCAL_MODULE_DIR, "./");
    lines.push(program ? mapFrame(local, program) : local);
  }
  return lines;
}

function mapFrame(frame: string, program: ProgramLocations): string {
  return frame.replace(PROGRAM_POSITION, (whole, line: string, column: string) => {
    const original = originalPosition(program, Number(line), Number(column));
    if (!original) return whole;
    const place = describeProgramLine(program, original.line);
    const userColumn = place.file === "bundle.ts" ? sourceColumn(program, original.line, original.column) : original.column;
    return `${place.file}:${place.line}:${userColumn}`;
  });
}
