// How a bundle becomes one runnable TypeScript program: the bundle's source followed by its entry
// expressions, each wrapped in an async arrow so it may `await` and so that it sees the program's
// top-level declarations (including imports, which CommonJS output renames).
import { createHash } from "node:crypto";

/** The name the program calls to hand its entry functions to the job thread. */
export const ENTRIES_HOOK = "__nbjob_entries__";
/** The file name compiled programs carry, so stack frames can be told apart and mapped back. */
export const PROGRAM_FILE = "bundle.js";

export interface ProgramText {
  /** TypeScript: source, then the entries. */
  typescript: string;
  /** 1-based line of the program where each entry's expression starts. */
  entryLines: number[];
  /** Number of lines that belong to the bundle's source. */
  sourceLines: number;
}

/** Identifies a compiled program: the same source and entries always compile to the same code. */
export function programKey(source: string, entries: readonly string[]): string {
  const hash = createHash("sha256").update(source);
  for (const entry of entries) hash.update("\0").update(entry);
  return hash.digest("hex");
}

export function assembleProgram(source: string, entries: readonly string[]): ProgramText {
  const sourceLines = source.split("\n").length;
  if (entries.length === 0) return { typescript: source, entryLines: [], sourceLines };
  const lines = [source, `;${ENTRIES_HOOK}([`];
  const entryLines: number[] = [];
  let line = sourceLines + 2;
  for (const entry of entries) {
    // The newline before ")" keeps a trailing `// comment` in the entry from eating the paren.
    lines.push("async () => (", entry, "),");
    entryLines.push(line + 1);
    line += 2 + entry.split("\n").length;
  }
  lines.push("]);");
  return { typescript: lines.join("\n"), entryLines, sourceLines };
}

/** Where a line of the assembled program came from, for tracebacks. */
export function describeProgramLine(program: Pick<ProgramText, "entryLines" | "sourceLines">, line: number): { file: string; line: number } {
  if (line <= program.sourceLines) return { file: "bundle.ts", line };
  for (let i = program.entryLines.length - 1; i >= 0; i--) {
    if (line >= program.entryLines[i]) return { file: `entry ${i}`, line: line - program.entryLines[i] + 1 };
  }
  return { file: "bundle.ts", line };
}
