// How a bundle becomes one runnable program. runtime/bundle.ts lays a bundle out as its
// snippets followed by each entry as an expression statement; the worker runs that text as a
// script (so top-level declarations stay reachable by name) and turns each trailing entry
// statement into an async arrow it calls in order, so entries may `await` and the last one's
// value is the result. A source that does not end with its entries gets them appended.
import { createHash } from "node:crypto";

/** The name the program calls to hand each entry function to the job thread. */
export const ENTRY_HOOK = "__nbjob_entry__";
/** The file name compiled programs carry, so stack frames can be told apart and mapped back. */
export const PROGRAM_FILE = "bundle.js";

export interface ProgramLayout {
  /** 1-based line where each appended entry starts (entries found in the source have none). */
  entryLines: number[];
  /** Lines of the source where an entry statement was wrapped in place: columns there shift by ENTRY_PREFIX. */
  wrappedLines?: number[];
  /** Number of lines that belong to the bundle's source. */
  sourceLines: number;
}

/**
 * The text the worker compiles for a bundle: its own, with the params line (its second line, a
 * comment: the job is given its parameters as `params` at run time) made the same for every
 * bundle. A sweep's jobs differ only in that line, so they compile to one program, compiled once
 * and run as one cached script; the line count, and so every position, stays as it was.
 */
export function compiledText(source: string): string {
  return source.replace(/^(\/\/ nbjob bundle: [^\n]*\n)\/\/ params: [^\n]*\n/, "$1// params: (given to the job as `params`)\n");
}

/** Identifies a compiled program: the same compiled text and entries always compile to the same code. */
export function programKey(source: string, entries: readonly string[]): string {
  const hash = createHash("sha256").update(source);
  for (const entry of entries) hash.update("\0").update(entry);
  return hash.digest("hex");
}

/**
 * The statement that registers an entry, starting on the entry's own line. `mayEndInComment`:
 * an entry string given on its own may end in `// comment`, so the paren goes on a new line; an
 * entry statement taken from the source never does, and keeping it on one line keeps every later
 * line where it was.
 */
export function entryRegistration(expression: string, mayEndInComment: boolean): string {
  return `${ENTRY_PREFIX}${expression}${mayEndInComment ? "\n" : ""}));`;
}

/** What goes before an entry's expression; tracebacks take its length off columns on that line. */
export const ENTRY_PREFIX = `${ENTRY_HOOK}(async () => (`;

/** Appends entries that the source does not contain, after its last line. */
export function appendEntries(source: string, entries: readonly string[]): { typescript: string; layout: ProgramLayout } {
  const sourceLines = source.split("\n").length;
  const lines = [source];
  const entryLines: number[] = [];
  let line = sourceLines + 1;
  for (const entry of entries) {
    entryLines.push(line);
    const text = entryRegistration(entry, true);
    lines.push(text);
    line += text.split("\n").length;
  }
  return { typescript: lines.join("\n"), layout: { entryLines, sourceLines } };
}

/** The column the user wrote, for a column of the program's TypeScript on `line` of the source. */
export function sourceColumn(layout: ProgramLayout, line: number, column: number): number {
  return layout.wrappedLines?.includes(line) && column > ENTRY_PREFIX.length ? column - ENTRY_PREFIX.length : column;
}

/** Where a line of the compiled program's TypeScript came from, for tracebacks. */
export function describeProgramLine(layout: ProgramLayout, line: number): { file: string; line: number } {
  if (line <= layout.sourceLines) return { file: "bundle.ts", line };
  for (let i = layout.entryLines.length - 1; i >= 0; i--) {
    if (line >= layout.entryLines[i]) return { file: `entry ${i}`, line: line - layout.entryLines[i] + 1 };
  }
  return { file: "bundle.ts", line };
}
