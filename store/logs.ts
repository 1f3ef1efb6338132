// A job's stdout/stderr, one row per line. Writers append in batches (one INSERT per batch);
// runtime/worker/log-writer.ts does the batching for a running job.
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
