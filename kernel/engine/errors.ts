// Turns what stops a cell (type errors, thrown values, interrupts) into the one `error`
// output Jupyter shows: plain ename/evalue, and a traceback that points at the cell's lines.
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";
import type { CellDiagnostic } from "./checker";
import type { CellOutcome } from "./types";

type ErrorOutcome = Extract<CellOutcome, { status: "error" }>;

/** A frame in a cell: which cell, and where in its TypeScript (1-based). */
export interface CellFrame {
  label: string;
  line: number;
  column: number;
  /** The TypeScript text of that line. */
  sourceLine?: string;
}

/** Maps a generated script position to the cell's; undefined for files that are not cells. */
export type FrameMapper = (file: string, line: number, column: number) => CellFrame | undefined;

/** Thrown into a pending await when the user interrupts the cell. */
export class InterruptedError extends Error {
  constructor() {
    super("the cell was interrupted; the notebook's variables are kept");
    this.name = "Interrupted";
  }
}

function caret(sourceLine: string | undefined, line: number, column: number): string[] {
  if (sourceLine === undefined) return [];
  const gutter = String(line);
  return [`  ${gutter} | ${sourceLine}`, `  ${" ".repeat(gutter.length)} | ${" ".repeat(Math.max(0, column - 1))}^`];
}

export function compileErrorOutcome(code: string, diagnostics: readonly CellDiagnostic[]): ErrorOutcome {
  const lines = code.split("\n");
  const describe = (d: CellDiagnostic) => `${d.line}:${d.column} ${d.message}${d.code > 0 ? ` (TS${d.code})` : ""}`;
  const first = diagnostics[0]!;
  const ename = first.syntactic ? "SyntaxError" : "CompileError";
  const traceback: string[] = [];
  for (const diagnostic of diagnostics) {
    traceback.push(`${ename}: ${describe(diagnostic)}`, ...caret(lines[diagnostic.line - 1], diagnostic.line, diagnostic.column));
  }
  const more = diagnostics.length > 1 ? ` (and ${diagnostics.length - 1} more)` : "";
  return { status: "error", ename, evalue: describe(first) + more, traceback };
}

export function isInterrupt(error: unknown): boolean {
  return error instanceof InterruptedError || (error as { code?: unknown } | null)?.code === "ERR_SCRIPT_EXECUTION_INTERRUPTED";
}

export function interruptedOutcome(): ErrorOutcome {
  const evalue = new InterruptedError().message;
  return { status: "error", ename: "Interrupted", evalue, traceback: [`Interrupted: ${evalue}`] };
}

/** One `    at ...` line of a V8 stack, read: the function's name (if any) and where it ran. */
interface StackFrame {
  text: string;
  fn?: string;
  file: string;
  line: number;
  column: number;
}

// `at f (file:1:2)`, `at file:1:2`, `at async f (file:1:2)`, `at async file:1:2`, `at new C (...)`.
const FRAME = /^\s*at (async )?(?:(.*?) \((.*)\)|(.*))$/;
const LOCATION = /^(.*?):(\d+):(\d+)$/;

function parseFrame(text: string): StackFrame | undefined {
  const match = FRAME.exec(text);
  if (!match) return undefined;
  const [, isAsync, fn, inParens, bare] = match;
  const location = LOCATION.exec(inParens ?? bare ?? "");
  if (!location) return undefined; // `at Promise.all (index 0)`, `(native)`: no place to show
  let file = location[1]!;
  if (file.startsWith("file://")) {
    try {
      file = fileURLToPath(file);
    } catch {
      // not a local file URL: kept as written
    }
  }
  return { text, fn: fn && isAsync ? `async ${fn}` : fn, file, line: Number(location[2]), column: Number(location[3]) };
}

/** Node's own code, and scripts without a file (the engine's helper scripts, `<anonymous>`). */
function isNodeInternal(file: string): boolean {
  return file.startsWith("node:") || file.startsWith("internal/") || !file.includes("/");
}

/**
 * The error as the user should see it. Frames in cells are mapped to their TypeScript lines.
 * Frames of nbjob itself (under `hiddenRoot`: the kernel, the engine, the runtime the cell called
 * into, the store) and of Node's internals are left out, and so are frames of other packages
 * that nbjob called (pg under the store): they say nothing about the user's code. A package the
 * cell called itself keeps its frames; what ran the cell (frames beyond its outermost one, when
 * nbjob's are among them) is left out too. With NBJOB_DEBUG=1 every frame is shown.
 */
export function runtimeErrorOutcome(error: unknown, mapFrame: FrameMapper, hiddenRoot: string): ErrorOutcome {
  if (!(error instanceof Error)) {
    const evalue = inspect(error, { colors: false });
    return { status: "error", ename: "Thrown", evalue, traceback: [`Thrown: ${evalue} (a value that is not an Error was thrown)`] };
  }
  const constructorName = (error.constructor as { name?: unknown } | undefined)?.name;
  const ename = error.name !== "Error" || typeof constructorName !== "string" || constructorName === "" ? error.name : constructorName;
  const evalue = error.message;
  const traceback = [`${ename}: ${evalue}`];
  const debug = process.env.NBJOB_DEBUG === "1";
  const frames = (error.stack ?? "").split("\n").map(parseFrame).filter((frame): frame is StackFrame => frame !== undefined);
  const mapped = frames.map((frame) => mapFrame(frame.file, frame.line, frame.column));
  const root = hiddenRoot.endsWith("/") ? hiddenRoot : `${hiddenRoot}/`;
  const isNbjob = (index: number) => !mapped[index] && frames[index]!.file.startsWith(root);
  // Whether the frame's nearest caller that is the user's code or nbjob's (skipping other
  // packages and Node's internals in between) is nbjob's: then it ran on nbjob's behalf.
  const calledByNbjob = (index: number): boolean => {
    for (let caller = index + 1; caller < frames.length; caller++) {
      if (mapped[caller]) return false;
      if (isNbjob(caller)) return true;
    }
    return false;
  };
  // What ran the cell (the engine, and whoever called the engine) is outward of its outermost frame.
  const outermostCell = mapped.reduce((found, frame, index) => (frame ? index : found), -1);
  const ranByNbjob = outermostCell >= 0 && frames.some((_, index) => index > outermostCell && isNbjob(index));
  let shownSource = false;
  frames.forEach((frame, index) => {
    const cellFrame = mapped[index];
    if (cellFrame) {
      const where = `${cellFrame.label}:${cellFrame.line}:${cellFrame.column}`;
      const name = frame.fn && !/^(?:async )?<anonymous>$/.test(frame.fn) ? frame.fn : undefined;
      traceback.push(name ? `    at ${name} (${where})` : `    at ${where}`);
      if (!shownSource) traceback.push(...caret(cellFrame.sourceLine, cellFrame.line, cellFrame.column).map((text) => `  ${text}`));
      shownSource = true;
      return;
    }
    const hidden = isNbjob(index) || isNodeInternal(frame.file) || calledByNbjob(index) || (ranByNbjob && index > outermostCell);
    if (hidden && !debug) return;
    traceback.push(frame.text.replace(/^\s*/, "    "));
  });
  return { status: "error", ename, evalue, traceback };
}
