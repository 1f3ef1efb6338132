// The contract between the execution engine (TypeScript cells -> values) and whoever serves
// it (the notebook kernel's shell handler, tests). The engine never touches sockets: every
// output goes through the sink it is handed for the cell.

// The cell-facing types live in the runtime (which display() and input() use); the engine's
// users get them from here with the rest of the contract.
export type { CellSink, DeclarationRecord, MimeBundle } from "../../runtime/cell-types";
import type { CellSink, DeclarationRecord, MimeBundle } from "../../runtime/cell-types";

export interface CellRequest {
  /** The code as TypeScript sees it (magics already removed by the magics layer). */
  code: string;
  /**
   * The cell as the user wrote it, when the magics layer blanked parts of it (`@sc`, `%%snip`)
   * in place: errors quote its lines, at the same lines and columns as in `code`.
   */
  shownCode?: string;
  /** Frontend cell id from the request metadata (`cellId`), when the client sends one. */
  cellId?: string;
  /** Whether the frontend accepts input_request for this cell. */
  allowStdin: boolean;
  sink: CellSink;
  /** The execution_count the kernel gives this cell; tracebacks name cells by it ("cell 3"). */
  executionCount?: number;
}

export type CellOutcome =
  | { status: "ok"; /** execute_result data, absent when the last statement has no value. */ result?: MimeBundle }
  | { status: "error"; ename: string; evalue: string; traceback: string[] };

export interface Completion {
  matches: string[];
  cursor_start: number;
  cursor_end: number;
  metadata: Record<string, unknown>;
}

export interface Inspection {
  found: boolean;
  data: MimeBundle;
}

/**
 * What the kernel and the magics layer use of the engine (implemented by `Engine` in
 * engine/index.ts). One engine per notebook kernel; it lives on the kernel's main thread.
 */
export interface ExecutionEngine {
  /** Type-check, then run one cell. Never throws: failures are an `error` outcome. */
  execute(request: CellRequest): Promise<CellOutcome>;
  /** Completions from the type checker at `cursorPos` (UTF-16 offset), filtered to the typed prefix. */
  complete(code: string, cursorPos: number): Completion;
  /** Type and docs of the name at `cursorPos`, as text/plain (and text/markdown). */
  inspect(code: string, cursorPos: number, detailLevel: 0 | 1): Inspection;
  /** For is_complete_request: "incomplete" comes with the indent to continue with. */
  isComplete(code: string): { status: "complete" | "incomplete" | "invalid"; indent?: string };
  /** Stop the running cell (pending await rejects; a synchronous loop is stopped by SIGINT). State is kept. */
  interrupt(): void;
  /** The latest TypeScript source of every top-level name declared by a cell that ran. */
  declarations(): ReadonlyMap<string, DeclarationRecord>;
  /** Evaluates a JavaScript expression in the notebook's global scope (no type-check). */
  evaluate(expression: string): unknown;
  /** Optional: does the slow first type-check now (call once the kernel is up and idle). */
  warmUp?(): void;
  /** Optional: small steps that warm up the per-cell work, for the kernel to run while idle. */
  warmUpSteps?(): Array<() => void>;
}
