// The table of `%%name` cell magics and `%name` line magics that prepareCell routes to.
import type { MagicContext } from "./types";

/** Where a magic was written in the cell (0-based line, as the cell numbers it from 1 in messages). */
export interface MagicInvocation {
  /** The magic's name without `%`/`%%`. */
  name: string;
  /** Everything after the name on its line, trimmed. */
  args: string;
  /** 0-based line of the magic in the cell. */
  line: number;
  ctx: MagicContext;
}

export interface CellMagicInvocation extends MagicInvocation {
  /**
   * The cell with the `%%name` line (and any line magics) already replaced by spaces, so offsets
   * in it are the user's own. Collector decorators (`@sc`) are blanked too.
   */
  code: string;
  /** The cell body as the user reads it: magic lines and collector decorators deleted, blank ends trimmed. */
  source: string;
}

/** What a magic contributes to the prepared cell. */
export interface MagicEffect {
  /** Replaces the TypeScript the engine runs (cell magics only); same line:col as the cell. */
  code?: string;
  /** Runs after the cell ran successfully, in the order the magics appear. */
  onSuccess?: () => Promise<void> | void;
}

/** `%%name args` on the first line; gets the cell body. */
export type CellMagicHandler = (invocation: CellMagicInvocation) => Promise<MagicEffect | void> | MagicEffect | void;
/** `%name args` on a line of its own; runs while the cell is prepared, before its code. */
export type LineMagicHandler = (invocation: MagicInvocation) => Promise<MagicEffect | void> | MagicEffect | void;

const cellMagics = new Map<string, CellMagicHandler>();
const lineMagics = new Map<string, LineMagicHandler>();

/** Adds (or replaces) a `%%name` cell magic. */
export function registerCellMagic(name: string, handler: CellMagicHandler): void {
  cellMagics.set(name, handler);
}

/** Adds (or replaces) a `%name` line magic. */
export function registerLineMagic(name: string, handler: LineMagicHandler): void {
  lineMagics.set(name, handler);
}

export function cellMagic(name: string): CellMagicHandler | undefined {
  return cellMagics.get(name);
}

export function lineMagic(name: string): LineMagicHandler | undefined {
  return lineMagics.get(name);
}

export function cellMagicNames(): string[] {
  return [...cellMagics.keys()].sort();
}

export function lineMagicNames(): string[] {
  return [...lineMagics.keys()].sort();
}
