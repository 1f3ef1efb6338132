// The error every magic misuse is reported with.
import { CellError } from "./types";

/** A misuse of a magic or decorator, placed at a 0-based line of the cell. */
export function usageError(message: string, line?: number): CellError {
  const where = line === undefined ? [] : [`  at cell line ${line + 1}`];
  return new CellError("UsageError", message, [`UsageError: ${message}`, ...where]);
}
