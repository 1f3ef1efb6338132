// Turns what stops a cell (type errors, thrown values, interrupts) into the one `error`
// output Jupyter shows: plain ename/evalue, and a traceback that points at the cell's lines.
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

const FRAME = /^\s*at (?:(.*?) \()?(.*?):(\d+):(\d+)\)?$/;

/**
 * The error as the user should see it. Frames in cells are mapped to their TypeScript lines;
 * frames of the kernel (`hiddenRoot`) and of Node's internals are left out.
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
  let shownSource = false;
  for (const line of (error.stack ?? "").split("\n")) {
    const match = FRAME.exec(line);
    if (!match) continue;
    const [, fn, file = "", lineText = "0", columnText = "0"] = match;
    const frame = mapFrame(file, Number(lineText), Number(columnText));
    if (frame) {
      const where = `${frame.label}:${frame.line}:${frame.column}`;
      const name = fn && !/^(?:async )?<anonymous>$/.test(fn) ? fn : undefined;
      traceback.push(name ? `    at ${name} (${where})` : `    at ${where}`);
      if (!shownSource) traceback.push(...caret(frame.sourceLine, frame.line, frame.column).map((text) => `  ${text}`));
      shownSource = true;
      continue;
    }
    if (file.startsWith("node:") || file.startsWith(hiddenRoot) || !file.includes("/") || file.startsWith("internal/")) continue;
    traceback.push(line.replace(/^\s*/, "    "));
  }
  return { status: "error", ename, evalue, traceback };
}
