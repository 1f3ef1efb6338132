// A job's stdout/stderr, one row per line. Writers append in batches (one INSERT per batch);
// LogWriter does the batching for a running job.
import type { Db } from "./db";
import type { DbLog } from "./types";

export interface LogLine {
  stream: "stdout" | "stderr";
  line: string;
  /** When it was printed; default: when it is stored. */
  at?: Date;
}

/** Appends lines in order, in one statement. */
export async function appendLogs(db: Db, jobId: number, lines: LogLine[]): Promise<void> {
  if (lines.length === 0) return;
  const now = new Date();
  await db.query(
    `INSERT INTO nbjob.logs (job_id, stream, at, line)
     SELECT $1, l.stream, l.at, l.line FROM unnest($2::text[], $3::timestamptz[], $4::text[]) WITH ORDINALITY AS l(stream, at, line, n)
     ORDER BY l.n`,
    [jobId, lines.map((l) => l.stream), lines.map((l) => l.at ?? now), lines.map((l) => l.line)],
  );
}

/** Lines in the order they were written; `afterId` continues from a previous read (for following). */
export async function readLogs(db: Db, jobId: number, options: { afterId?: number; limit?: number } = {}): Promise<DbLog[]> {
  const { rows } = await db.query<DbLog>(
    `SELECT * FROM nbjob.logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
    [jobId, options.afterId ?? 0, options.limit ?? 1_000_000],
  );
  return rows;
}

/**
 * Buffers a job's output and stores it in batches: at most every `intervalMs` or when
 * `maxLines` are waiting. Text is split into lines; a partial last line waits for its end (or
 * for close()).
 */
export class LogWriter {
  private pending: LogLine[] = [];
  private partial: { stdout: string; stderr: string } = { stdout: "", stderr: "" };
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private failure?: unknown;

  constructor(
    private readonly db: Db,
    private readonly jobId: number,
    private readonly options: { intervalMs?: number; maxLines?: number } = {},
  ) {}

  /** Adds printed text (may hold several lines or part of one). */
  write(stream: "stdout" | "stderr", text: string): void {
    const parts = (this.partial[stream] + text).split("\n");
    this.partial[stream] = parts.pop() ?? "";
    const at = new Date();
    for (const line of parts) this.pending.push({ stream, line, at });
    if (this.pending.length >= (this.options.maxLines ?? 500)) void this.flush();
    else if (this.pending.length > 0 && !this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.options.intervalMs ?? 200);
      this.timer.unref();
    }
  }

  /** Stores everything complete so far; rejects if an earlier batch failed. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    this.flushing = this.flushing.then(async () => {
      if (batch.length === 0) return;
      try {
        await appendLogs(this.db, this.jobId, batch);
      } catch (err) {
        this.failure ??= err;
      }
    });
    return this.flushing.then(() => {
      if (this.failure) throw this.failure;
    });
  }

  /** Stores the unfinished last lines too, then everything pending. */
  close(): Promise<void> {
    const at = new Date();
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partial[stream] !== "") this.pending.push({ stream, line: this.partial[stream], at });
      this.partial[stream] = "";
    }
    return this.flush();
  }
}
