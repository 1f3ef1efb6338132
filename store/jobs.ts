// Job records: creation (queued), guarded status transitions with their timestamps, results and
// errors, lookups and listings. The queue (claiming with SKIP LOCKED, NOTIFY) builds on these rows.
import { queryPrepared } from "./db";
import type { Db } from "./db";
import { PgCode, pgCode, StoreError } from "./errors";
import { checkStorableJson, checkStorableText, visibleText } from "./text";
import type { DbGroupSample, DbJob, DbJobGroup, Json, JobStatus } from "./types";
import { JOB_STATUSES } from "./types";

export interface CreateJobInput {
  bundleHash: string;
  name?: string | null;
  tags?: string[];
  /** The worker that must run it; null or absent: any worker. */
  targetWorker?: string | null;
  groupId?: number | null;
  resumedFrom?: number | null;
  resumedFromCheckpoint?: number | null;
  rerunOf?: number | null;
  /** The notebook creating it (its path), when known; a rerun or resume keeps the original's. */
  notebook?: string | null;
  /** The job's time limit in ms (see jobs.timeout_ms); null or absent: none. */
  timeoutMs?: number | null;
}

export interface JobErrorInput {
  name: string;
  message: string;
  traceback?: string[];
}

export interface TransitionDetails {
  /** When becoming `running`: who runs it. */
  workerId?: string;
  host?: string;
  pid?: number;
  environmentHash?: string;
  /**
   * Fencing: for a move out of `running`, the claim the writer got when the job started; the
   * write is refused (ClaimLostError) unless the job is still running under it.
   */
  claim?: string;
  /** When becoming `done`: the serialized value and how it prints. */
  result?: Json;
  resultText?: string;
  /** When becoming `done`: the result as JSON when it is JSON data (jobs.result_json, what queries read); absent otherwise. */
  resultJson?: Json;
  /** When becoming `failed` (or `lost`/`cancelled` with a reason). */
  error?: JobErrorInput;
}

export interface ListJobsFilter {
  status?: JobStatus;
  tag?: string;
  name?: string;
  groupId?: number;
  /** Only jobs with a smaller id (for paging back). */
  beforeId?: number;
  /** Default 50. */
  limit?: number;
}

/** A job as listed: everything but the (possibly large) result value and traceback. */
export type DbJobListed = Omit<DbJob, "result" | "error_traceback">;

/** Which statuses a job may move to from each status. done, failed, cancelled and lost are final. */
export const LEGAL_TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  queued: ["running", "cancelled", "lost"],
  running: ["done", "failed", "cancelled", "lost"],
  done: [],
  failed: [],
  cancelled: [],
  lost: [],
};

/** A status change the job's current status does not allow (e.g. done -> running). */
export class IllegalTransitionError extends StoreError {
  override name = "IllegalTransitionError";
  constructor(readonly jobId: number, readonly from: JobStatus, readonly to: JobStatus) {
    super(`job ${jobId} is ${from} and cannot become ${to}${LEGAL_TRANSITIONS[from].length ? ` (from ${from} it can become ${LEGAL_TRANSITIONS[from].join(", ")})` : ` (${from} is final)`}`);
  }
}

/**
 * A write made under a claim the job no longer holds: it was marked lost, cancelled, or ended
 * since the writer's run started. Never worth retrying: the run that made it must stop.
 */
export class ClaimLostError extends StoreError {
  override name = "ClaimLostError";
  constructor(readonly jobId: number, readonly claim: string, readonly what: string) {
    super(`job ${jobId} is no longer running under claim ${claim} (it was marked lost, cancelled or ended since); ${what} refused`);
  }
}

/** No job with this id. */
export class UnknownJobError extends StoreError {
  override name = "UnknownJobError";
  constructor(readonly jobId: number | string) {
    super(`there is no job ${jobId}; "nbjob jobs" lists the jobs`);
  }
}

export function isJobStatus(value: string): value is JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(value);
}

export const LISTED_COLUMNS = `id, bundle_hash, name, tags, status, queued_at, started_at, finished_at, target_worker,
  worker_id, host, pid, claim, group_id, resumed_from, resumed_from_checkpoint, rerun_of, notebook, environment_hash,
  result_text, error_name, error_message, last_metrics`;

/** Stores a sweep's group; its jobs point at it with `groupId`. */
export async function createJobGroup(db: Db, input: { name?: string | null; grid: { [name: string]: Json }; sample?: DbGroupSample | null }): Promise<DbJobGroup> {
  checkStorableText("the sweep's name", input.name);
  checkStorableJson("grid", input.grid);
  if (input.sample) checkStorableJson("sample", input.sample.spec);
  const { rows } = await db.query<DbJobGroup>(
    "INSERT INTO nbjob.job_groups (name, grid, sample) VALUES ($1, $2, $3) RETURNING *",
    [input.name ?? null, JSON.stringify(input.grid), input.sample ? JSON.stringify(input.sample) : null],
  );
  return rows[0];
}

/** Records a new job in `queued`. The bundle must already be stored (putBundle). */
export async function createJob(db: Db, input: CreateJobInput): Promise<DbJob> {
  checkJobText(input);
  try {
    const { rows } = await db.query<DbJob>(
      `INSERT INTO nbjob.jobs (bundle_hash, name, tags, target_worker, group_id, resumed_from, resumed_from_checkpoint, rerun_of, notebook, timeout_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *`,
      [input.bundleHash, input.name ?? null, input.tags ?? [], input.targetWorker ?? null, input.groupId ?? null, input.resumedFrom ?? null, input.resumedFromCheckpoint ?? null, input.rerunOf ?? null, input.notebook ?? null, input.timeoutMs ?? null],
    );
    return rows[0];
  } catch (err) {
    if (pgCode(err) === PgCode.foreignKeyViolation) {
      throw new StoreError(`cannot create the job: ${(err as { detail?: string }).detail ?? (err as Error).message}; store the bundle first (putBundle) and refer only to existing jobs and groups`, { cause: err });
    }
    throw err;
  }
}

/** Refuses a job's name, tags or target worker that PostgreSQL cannot store (before any SQL). */
export function checkJobText(input: { name?: string | null; tags?: readonly string[]; targetWorker?: string | null }): void {
  checkStorableText("the job's name", input.name);
  input.tags?.forEach((tag, i) => checkStorableText(`tags[${i}]`, tag));
  checkStorableText("the target worker", input.targetWorker);
}

/**
 * Moves a job to `to`, stamping the transition's time (started_at for running, finished_at for
 * the final statuses) and recording the details in the same statement, so a job is never `done`
 * without its result. Throws IllegalTransitionError (changing nothing) when the job's current
 * status does not allow it, UnknownJobError when there is no such job.
 */
export async function transitionJob(db: Db, jobId: number, to: JobStatus, details: TransitionDetails = {}): Promise<DbJob> {
  if (!isJobStatus(to)) throw new StoreError(`unknown job status "${String(to)}"; expected one of ${JOB_STATUSES.join(", ")}`);
  const from = (Object.keys(LEGAL_TRANSITIONS) as JobStatus[]).filter((status) => LEGAL_TRANSITIONS[status].includes(to));
  // Prepared: every job runs it twice or more, and planning it took about as long as running it.
  const { rows } = await queryPrepared<DbJob>(db, "nbjob_transition_job",
    `UPDATE nbjob.jobs SET
        status = $2,
        started_at = CASE WHEN $2 = 'running' THEN now() ELSE started_at END,
        claim = CASE WHEN $2 = 'running' THEN nextval('nbjob.job_claims') ELSE claim END,
        finished_at = CASE WHEN $2 IN ('done', 'failed', 'cancelled', 'lost') THEN now() ELSE finished_at END,
        worker_id = COALESCE($4, worker_id),
        host = COALESCE($5, host),
        pid = COALESCE($6, pid),
        environment_hash = COALESCE($7, environment_hash),
        result = CASE WHEN $8::boolean THEN $9::jsonb ELSE result END,
        result_text = COALESCE($10, result_text),
        error_name = COALESCE($11, error_name),
        error_message = COALESCE($12, error_message),
        error_traceback = COALESCE($13, error_traceback),
        result_json = CASE WHEN $8::boolean THEN $15::jsonb ELSE result_json END
      WHERE id = $1 AND status = ANY($3::text[]) AND ($14::bigint IS NULL OR (status = 'running' AND claim = $14::bigint))
      RETURNING *`,
    [
      jobId, to, from,
      details.workerId ?? null, details.host ?? null, details.pid ?? null, details.environmentHash ?? null,
      details.result !== undefined, details.result === undefined ? null : JSON.stringify(details.result), visibleText(details.resultText) ?? null,
      // What a job threw is recorded whatever it holds: a NUL in it shows as \u0000.
      visibleText(details.error?.name) ?? null, visibleText(details.error?.message) ?? null, details.error ? (details.error.traceback ?? []).map((l) => visibleText(l)) : null,
      details.claim ?? null,
      details.resultJson === undefined ? null : JSON.stringify(details.resultJson),
    ],
  );
  if (rows.length === 1) return rows[0];
  const current = await getJob(db, jobId);
  if (!current) throw new UnknownJobError(jobId);
  if (details.claim !== undefined && current.status === "running" && String(current.claim) !== details.claim) throw new ClaimLostError(jobId, details.claim, `its ${to} status is`);
  // The same final write under the same claim already committed: an earlier attempt whose answer
  // was lost with its connection (a server restart at COMMIT) and that the writer retried.
  if (details.claim !== undefined && current.status === to && to !== "running" && String(current.claim) === details.claim) return current;
  throw new IllegalTransitionError(jobId, current.status, to);
}

/**
 * Marks a cancelled job's run as over: its worker has stored everything the job printed,
 * checkpointed and logged before it was stopped (the writes FENCED_STATUSES lets through after a
 * cancel). Clears the claim, so no write under it is accepted any more, and job.cancel() (which
 * waits for this) returns. Nothing happens unless the job is cancelled under that claim.
 */
export async function releaseCancelledClaim(db: Db, jobId: number, claim: string): Promise<void> {
  await db.query("UPDATE nbjob.jobs SET claim = NULL WHERE id = $1 AND status = 'cancelled' AND claim = $2::bigint", [jobId, claim]);
}

export async function getJob(db: Db, jobId: number): Promise<DbJob | undefined> {
  const { rows } = await db.query<DbJob>("SELECT * FROM nbjob.jobs WHERE id = $1", [jobId]);
  return rows[0];
}

/** The job, or an UnknownJobError naming the id. */
export async function requireJob(db: Db, jobId: number): Promise<DbJob> {
  const job = await getJob(db, jobId);
  if (!job) throw new UnknownJobError(jobId);
  return job;
}

/** Newest first. Uses the primary key (or status / tags / name indexes) so the newest page is cheap. */
export async function listJobs(db: Db, filter: ListJobsFilter = {}): Promise<DbJobListed[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (clause: string, value: unknown) => {
    values.push(value);
    where.push(clause.replace("?", `$${values.length}`));
  };
  if (filter.status !== undefined) {
    if (!isJobStatus(filter.status)) throw new StoreError(`unknown job status "${filter.status}"; expected one of ${JOB_STATUSES.join(", ")}`);
    add("status = ?", filter.status);
  }
  checkStorableText("the tag to list", filter.tag);
  checkStorableText("the name to list", filter.name);
  if (filter.tag !== undefined) add("tags @> ARRAY[?::text]", filter.tag);
  if (filter.name !== undefined) add("name = ?", filter.name);
  if (filter.groupId !== undefined) add("group_id = ?", filter.groupId);
  if (filter.beforeId !== undefined) add("id < ?", filter.beforeId);
  const limit = filter.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1) throw new StoreError(`limit must be a positive integer, got ${limit}`);
  values.push(limit);
  const { rows } = await db.query<DbJobListed>(
    `SELECT ${LISTED_COLUMNS} FROM nbjob.jobs ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT $${values.length}`,
    values,
  );
  return rows;
}

/** Several jobs by id (in no particular order; unknown ids are skipped). */
export async function listJobsByIds(db: Db, ids: number[]): Promise<DbJobListed[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<DbJobListed>(`SELECT ${LISTED_COLUMNS} FROM nbjob.jobs WHERE id = ANY($1::bigint[])`, [ids]);
  return rows;
}

/** The jobs with these ids, whole (result included), in no particular order; unknown ids are left out. */
export async function getJobsByIds(db: Db, ids: number[]): Promise<DbJob[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<DbJob>("SELECT * FROM nbjob.jobs WHERE id = ANY($1::bigint[])", [ids]);
  return rows;
}

/**
 * How many of these jobs are still queued or running, and the lowest id among them (null when
 * none is): every job below it has ended for good, so a caller waiting for a sweep asks about
 * fewer ids each time. Prepared: a sweep's waiter asks tens of times a second.
 */
export async function unfinishedAmong(db: Db, ids: readonly number[]): Promise<{ count: number; lowest: number | null }> {
  if (ids.length === 0) return { count: 0, lowest: null };
  const { rows } = await queryPrepared<{ count: number; lowest: number | null }>(db, "nbjob_unfinished_among",
    "SELECT count(*)::int AS count, min(id) AS lowest FROM nbjob.jobs WHERE id = ANY($1::bigint[]) AND status IN ('queued', 'running')", [ids]);
  return { count: rows[0].count, lowest: rows[0].lowest === null ? null : Number(rows[0].lowest) };
}

/** A sweep's jobs in creation order, whole (result included), with each job's parameter values. */
export async function listGroupJobs(db: Db, groupId: number): Promise<(DbJob & { params: { [name: string]: Json } })[]> {
  const { rows } = await db.query<DbJob & { params: { [name: string]: Json } }>(
    `SELECT j.*, b.params FROM nbjob.jobs j JOIN nbjob.bundles b ON b.hash = j.bundle_hash WHERE j.group_id = $1 ORDER BY j.id`,
    [groupId],
  );
  return rows;
}
