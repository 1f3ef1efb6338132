// The error every magic misuse is reported with.
import { CellError } from "./types";

/** A misuse of a magic or decorator, placed at a 0-based line of the cell. */
export function usageError(message: string, line?: number): CellError {
  const where = line === undefined ? [] : [`  at cell line ${line + 1}`];
  return new CellError("UsageError", message, [`UsageError: ${message}`, ...where]);
}

/**
 * Code that would be recorded as a snippet must parse: a syntax error is reported here, at the
 * cell's own line:col, rather than recorded (whatever the engine makes of it).
 */
export function syntaxError(problem: { line: number; column: number; message: string }): CellError {
  const evalue = `${problem.line}:${problem.column} ${problem.message}`;
  return new CellError("SyntaxError", evalue, [`SyntaxError: ${evalue}`, `  at cell line ${problem.line}`]);
}
