// The kernel's input history (history_request: tail, range, search), kept across kernel
// restarts in a JSON-lines file so a new session can search what earlier sessions ran.
import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";

export interface HistoryEntry {
  session: number;
  line: number;
  input: string;
  /** text/plain of the cell's execute_result, when it had one. */
  output?: string;
}

/** One row of history_reply: (session, line, input) or (session, line, [input, output]). */
export type HistoryRow = [number, number, string | [string, string | null]];

// Older sessions beyond this many entries are not loaded: history is a convenience, not an archive.
const MAX_LOADED = 20_000;

export class History {
  /** This kernel's session number: one more than the highest found in the file. */
  readonly session: number;
  private readonly entries: HistoryEntry[];
  /** Lines recorded but not yet appended to the file. */
  private readonly unwritten: string[] = [];
  private exitHooked = false;

  /** `file` undefined keeps history in memory only. A file that cannot be read starts empty. */
  constructor(private readonly file?: string) {
    this.entries = file ? loadEntries(file) : [];
    this.session = this.entries.reduce((max, e) => Math.max(max, e.session), 0) + 1;
  }

  /**
   * Adds an entry; history requests see it at once. The file gets it just after: the cell's
   * reply and idle status go out first (a write is two system calls on the way to them), and
   * a kernel that exits meanwhile writes what is left on its way out.
   */
  record(line: number, input: string, output?: string): void {
    const entry: HistoryEntry = { session: this.session, line, input, ...(output !== undefined ? { output } : {}) };
    this.entries.push(entry);
    if (!this.file) return;
    if (this.unwritten.length === 0) {
      setImmediate(this.write);
      if (!this.exitHooked) process.once("exit", this.write);
      this.exitHooked = true;
    }
    this.unwritten.push(JSON.stringify(entry) + "\n");
  }

  /** Appends the entries not yet in the file (run just after the request that recorded them, and at exit). */
  private readonly write = (): void => {
    if (!this.file || this.unwritten.length === 0) return;
    const text = this.unwritten.splice(0).join("");
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      appendFileSync(this.file, text);
    } catch (err) {
      // Losing a history line must never fail the cell that produced it.
      process.stderr.write(`nbjob kernel: cannot append to history file ${this.file}: ${(err as Error).message}\n`);
    }
  };

  /** The last `n` entries (all sessions, oldest first). */
  tail(n: number, withOutput: boolean): HistoryRow[] {
    return this.entries.slice(Math.max(0, this.entries.length - n)).map((e) => row(e, withOutput));
  }

  /**
   * Lines `start` <= line < `stop` of one session. As in IPython, session 0 or below counts back
   * from the current one (0 = current), and stop 0 or missing means "to the end".
   */
  range(session: number, start: number, stop: number | undefined, withOutput: boolean): HistoryRow[] {
    const wanted = session <= 0 ? this.session + session : session;
    return this.entries
      .filter((e) => e.session === wanted && e.line >= start && (!stop || e.line < stop))
      .map((e) => row(e, withOutput));
  }

  /**
   * Inputs matching a glob (`*` any text, `?` one character), newest `n` when given, oldest
   * first; with `unique` each input appears once (its latest run).
   */
  search(pattern: string, n: number | undefined, unique: boolean, withOutput: boolean): HistoryRow[] {
    const matcher = globToRegExp(pattern || "*");
    let found = this.entries.filter((e) => matcher.test(e.input));
    if (unique) {
      const seen = new Set<string>();
      found = found.reverse().filter((e) => !seen.has(e.input) && seen.add(e.input)).reverse();
    }
    if (n !== undefined && n > 0) found = found.slice(Math.max(0, found.length - n));
    return found.map((e) => row(e, withOutput));
  }
}

function row(entry: HistoryEntry, withOutput: boolean): HistoryRow {
  return [entry.session, entry.line, withOutput ? [entry.input, entry.output ?? null] : entry.input];
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[\\s\\S]*").replace(/\?/g, "[\\s\\S]");
  return new RegExp(`^${body}$`);
}

function loadEntries(file: string): HistoryEntry[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  const entries: HistoryEntry[] = [];
  for (const line of text.split("\n").slice(-MAX_LOADED)) {
    if (!line) continue;
    try {
      const entry = JSON.parse(line) as HistoryEntry;
      if (typeof entry.session === "number" && typeof entry.line === "number" && typeof entry.input === "string") entries.push(entry);
    } catch {
      // A line cut short by a crash is skipped; the rest of the history is still useful.
    }
  }
  return entries;
}
