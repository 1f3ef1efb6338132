// A job's stdout/stderr, one row per line. Writers append in batches (one INSERT per batch);
// worker/log-writer.ts does the batching for a running job. A line PostgreSQL's text type cannot
// hold as printed (NUL, a lone surrogate) is stored escaped and read back as printed (text.ts).
import type { Db } from "./db";
import { ClaimLostError } from "./jobs";
import { decodeLogLine, encodeLogLine } from "./text";
import type { DbLog } from "./types";

export interface LogLine {
  stream: "stdout" | "stderr";
  line: string;
  /** When it was printed; default: when it is stored. */
  at?: Date;
}

/**
 * The check a fenced write makes in its own statement: the job is running (or was cancelled, see
 * FENCED_STATUSES) under this claim. FOR
 * SHARE holds the row until the write commits, so marking the job lost or cancelled (an UPDATE)
 * waits for the write, and a write that began after it sees the new status: a line or
 * checkpoint is either stored while the claim held, or refused. markLostJobs skips a row held
 * so (it never waits on a worker), and a held row is not held long: see FENCE_IDLE_LIMIT.
 */
/**
 * A fenced write's transaction ends this long after its worker stops talking (SIGSTOP, a cut
 * link): PostgreSQL ends the session, which releases the row, so the job can be marked lost.
 * Set as the transaction's own setting (set_config(..., true)), nothing else changes.
 */
export const FENCE_IDLE_LIMIT = "set_config('idle_in_transaction_session_timeout', '10000', true)";

/**
 * The statuses in which a fenced write is accepted, under the run's claim: running, and
 * cancelled. A job cancelled in the store (job.cancel(), group.cancel(), the dashboard) is marked
 * cancelled first and stopped by its worker after, which then stores what the job printed,
 * checkpointed and logged before it was stopped (worker/metric-stage.ts says how nothing staged
 * is lost). Only that run holds the claim (each run gets a new one), and a cancelled job never
 * runs again under it, so nothing else can write there. A job marked lost refuses them: another
 * party decided the run was gone, and may have resumed it elsewhere.
 */
export const FENCED_STATUSES = "('running', 'cancelled')";

export const FENCE_CTE = `fence AS (SELECT id, ${FENCE_IDLE_LIMIT} FROM nbjob.jobs WHERE id = $1 AND status IN ${FENCED_STATUSES} AND claim = $6::bigint FOR SHARE)`;

/**
 * Appends lines in order, in one statement. With `claim` (a worker writing for the run it
 * claimed) the lines are stored only if the job is still running under that claim (or was
 * cancelled while it ran under it); otherwise
 * nothing is stored and ClaimLostError is thrown.
 */
export async function appendLogs(db: Db, jobId: number, lines: LogLine[], claim?: string): Promise<void> {
  if (lines.length === 0) return;
  const now = new Date();
  const encoded = lines.map((l) => encodeLogLine(l.line));
  const result = await db.query(
    `WITH ${claim === undefined ? "fence AS (SELECT $6::bigint)" : FENCE_CTE}
     INSERT INTO nbjob.logs (job_id, stream, at, line, escaped)
     SELECT $1, l.stream, l.at, l.line, l.escaped
       FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::boolean[]) WITH ORDINALITY AS l(stream, at, line, escaped, n)
      WHERE EXISTS (SELECT 1 FROM fence)
     ORDER BY l.n`,
    [jobId, lines.map((l) => l.stream), lines.map((l) => l.at ?? now), encoded.map((e) => e.line), encoded.map((e) => e.escaped), claim ?? null],
  );
  if (claim !== undefined && result.rowCount === 0) throw new ClaimLostError(jobId, claim ?? "?", `${lines.length} log line${lines.length === 1 ? "" : "s"}`);
}

/** Lines in the order they were written; `afterId` continues from a previous read (for following). */
export async function readLogs(db: Db, jobId: number, options: { afterId?: number; limit?: number } = {}): Promise<DbLog[]> {
  const { rows } = await db.query<DbLog & { escaped: boolean }>(
    `SELECT id, job_id, stream, at, line, escaped FROM nbjob.logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
    [jobId, options.afterId ?? 0, options.limit ?? 1_000_000],
  );
  return rows.map(({ escaped, ...row }) => (escaped ? { ...row, line: decodeLogLine(row.line, true) } : row));
}
