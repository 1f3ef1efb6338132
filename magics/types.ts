// The contract between the kernel's shell handler and the magics layer.
import type { CellSink, ExecutionEngine } from "../kernel/engine/types";

export interface MagicContext {
  engine: ExecutionEngine;
  sink: CellSink;
  /** Frontend cell id (request metadata `cellId`), when the client sends one. */
  cellId?: string;
}

/** A cell ready for the engine: magics and `@sc` removed (replaced by spaces, newlines kept). */
export interface PreparedCell {
  /** TypeScript for the engine; the same line:col as the user's cell. */
  code: string;
  /** Runs after the engine ran `code` successfully (e.g. records snippets in collectors). */
  onSuccess(): Promise<void>;
}

/**
 * A failure at the cell before or after TypeScript ran (unknown magic, `@sc` misuse, ...).
 * The kernel shows it as the cell's one `error` output.
 */
export class CellError extends Error {
  constructor(readonly ename: string, readonly evalue: string, readonly traceback: string[] = [`${ename}: ${evalue}`]) {
    super(evalue);
    this.name = ename;
  }
}
