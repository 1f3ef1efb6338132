// A sweep as a whole (issue 19 point 4): its row, its jobs' counts by status, and cancelling all
// of its jobs that have not ended, each in one statement.
import type { Db } from "./db";
import { JOB_CANCELLED_CHANNEL } from "./queue";
import type { DbJobGroup, JobStatus } from "./types";

/** How many of a group's jobs are in each status (every status present, 0 when none). */
export type GroupCounts = Record<JobStatus, number> & { total: number };

export async function getJobGroup(db: Db, groupId: number): Promise<DbJobGroup | undefined> {
  const { rows } = await db.query<DbJobGroup>("SELECT * FROM nbjob.job_groups WHERE id = $1", [groupId]);
  return rows[0];
}

export async function groupCounts(db: Db, groupId: number): Promise<GroupCounts> {
  const { rows } = await db.query<{ status: JobStatus; n: number }>(
    "SELECT status, count(*)::int AS n FROM nbjob.jobs WHERE group_id = $1 GROUP BY status",
    [groupId],
  );
  const counts: GroupCounts = { total: 0, queued: 0, running: 0, done: 0, failed: 0, cancelled: 0, lost: 0 };
  for (const { status, n } of rows) {
    counts[status] = n;
    counts.total += n;
  }
  return counts;
}

/**
 * Cancels every queued or running job of the group at once, so no worker can claim one of them
 * between the cancels of the others, then tells their workers (one NOTIFY per job, in the same
 * round trip): a running job's worker stops it, a worker holding one queued stops waiting for it.
 * A running job's final write is then refused (it is fenced on the running status). Returns the
 * ids cancelled, with the status each had.
 */
export async function cancelGroupJobs(db: Db, groupId: number, message: string): Promise<{ id: number; was: JobStatus }[]> {
  const { rows } = await db.query<{ id: string; was: JobStatus }>(
    `WITH cancelled AS (
       UPDATE nbjob.jobs j SET status = 'cancelled', finished_at = now(), error_name = 'Cancelled', error_message = $2
         FROM (SELECT id, status FROM nbjob.jobs WHERE group_id = $1 AND status IN ('queued', 'running') FOR UPDATE) old
        WHERE j.id = old.id
        RETURNING j.id, old.status AS was)
     SELECT c.id, c.was, pg_notify($3, c.id::text) FROM cancelled c ORDER BY c.id`,
    [groupId, message, JOB_CANCELLED_CHANNEL],
  );
  return rows.map((r) => ({ id: Number(r.id), was: r.was }));
}
