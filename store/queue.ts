// The job queue on top of the jobs table: workers claim queued jobs with FOR UPDATE SKIP LOCKED
// (so two workers never take the same job and neither waits on the other), NOTIFY wakes idle
// workers, and running jobs of workers that stopped heartbeating are marked lost.
import type { Db } from "./db";
import type { DbJob } from "./types";

/** NOTIFY channel: a job was queued. Payload: its target worker, or "" for any worker. */
export const JOB_QUEUED_CHANNEL = "nbjob_job_queued";
/** NOTIFY channel: a job was cancelled. Payload: the job id. Its worker stops it. */
export const JOB_CANCELLED_CHANNEL = "nbjob_job_cancelled";

export interface ClaimInput {
  workerId: string;
  host: string;
  pid: number;
}

/**
 * Takes the oldest queued job this worker may run (its own or anyone's) and marks it running,
 * in one statement. Undefined when there is none.
 *
 * `targetedGraceMs`: a job for this worker in particular is usually also sent to it over the
 * comm (so its output streams to the notebook); the queue takes such a job only once it has
 * waited this long, i.e. when the comm message never came. 0 (after a NOTIFY naming this worker)
 * takes it at once.
 */
export async function claimNextJob(db: Db, worker: ClaimInput, targetedGraceMs = 0): Promise<DbJob | undefined> {
  // A named (prepared) statement: planning it took longer than running it, and workers claim
  // once per job.
  const { rows } = await db.withClient((client) =>
    client.query<DbJob>({
      name: "nbjob_claim_next_job",
      text: `UPDATE nbjob.jobs SET status = 'running', started_at = now(), worker_id = $1, host = $2, pid = $3
              WHERE id = (
                SELECT id FROM nbjob.jobs
                 WHERE status = 'queued'
                   AND (target_worker IS NULL OR (target_worker = $1 AND queued_at <= now() - make_interval(secs => $4 / 1000.0)))
                 ORDER BY id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED)
              RETURNING *`,
      values: [worker.workerId, worker.host, worker.pid, targetedGraceMs],
    }),
  );
  return rows[0];
}

/**
 * Wakes idle workers after a job was queued (call after the job's transaction commits). Naming
 * the target worker makes it take its job at once instead of waiting for the comm's grace.
 */
export async function notifyJobQueued(db: Db, targetWorker: string | null = null): Promise<void> {
  await db.query("SELECT pg_notify($1, $2)", [JOB_QUEUED_CHANNEL, targetWorker ?? ""]);
}

/** Tells the job's worker to stop it (after the job was marked cancelled). */
export async function notifyJobCancelled(db: Db, jobId: number): Promise<void> {
  await db.query("SELECT pg_notify($1, $2)", [JOB_CANCELLED_CHANNEL, String(jobId)]);
}

export interface LostJobsInput {
  /** A worker not heard from for this long is presumed dead. */
  staleAfterMs: number;
  /** Also: jobs this worker id was running in an earlier life (a pid other than this one). */
  restartedWorker?: { workerId: string; pid: number };
}

/**
 * Marks `lost` the running jobs whose worker stopped heartbeating (or has no row at all, or
 * restarted since). Returns the ids it marked.
 */
export async function markLostJobs(db: Db, input: LostJobsInput): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `UPDATE nbjob.jobs j SET status = 'lost', finished_at = now(),
            error_name = 'WorkerLost',
            error_message = CASE
              WHEN $2::text IS NOT NULL AND j.worker_id = $2 THEN 'worker ' || j.worker_id || ' restarted while running this job'
              ELSE 'worker ' || COALESCE(j.worker_id, '?') || ' stopped answering (no heartbeat for ' || ($1 / 1000)::int || ' s) while running this job'
            END
      WHERE j.status = 'running'
        AND (
          ($2::text IS NOT NULL AND j.worker_id = $2 AND j.pid IS DISTINCT FROM $3::int)
          OR (
            NOT EXISTS (
              SELECT 1 FROM nbjob.workers w
               WHERE w.id = j.worker_id AND w.last_heartbeat_at > now() - make_interval(secs => $1 / 1000.0))
            -- a job claimed just now by a worker whose first heartbeat is still on its way is not lost
            AND j.started_at < now() - make_interval(secs => $1 / 1000.0)
          )
        )
      RETURNING j.id`,
    [input.staleAfterMs, input.restartedWorker?.workerId ?? null, input.restartedWorker?.pid ?? null],
  );
  return rows.map((r) => r.id);
}
