// A job's stdout/stderr, one row per line. Writers append in batches (one INSERT per batch);
// worker/log-writer.ts does the batching for a running job. A line PostgreSQL's text type cannot
// hold as printed (NUL, a lone surrogate) is stored escaped and read back as printed (text.ts).
import type { Db } from "./db";
import { decodeLogLine, encodeLogLine } from "./text";
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
  const encoded = lines.map((l) => encodeLogLine(l.line));
  await db.query(
    `INSERT INTO nbjob.logs (job_id, stream, at, line, escaped)
     SELECT $1, l.stream, l.at, l.line, l.escaped
       FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::boolean[]) WITH ORDINALITY AS l(stream, at, line, escaped, n)
     ORDER BY l.n`,
    [jobId, lines.map((l) => l.stream), lines.map((l) => l.at ?? now), encoded.map((e) => e.line), encoded.map((e) => e.escaped)],
  );
}

/** Lines in the order they were written; `afterId` continues from a previous read (for following). */
export async function readLogs(db: Db, jobId: number, options: { afterId?: number; limit?: number } = {}): Promise<DbLog[]> {
  const { rows } = await db.query<DbLog & { escaped: boolean }>(
    `SELECT id, job_id, stream, at, line, escaped FROM nbjob.logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
    [jobId, options.afterId ?? 0, options.limit ?? 1_000_000],
  );
  return rows.map(({ escaped, ...row }) => (escaped ? { ...row, line: decodeLogLine(row.line, true) } : row));
}
