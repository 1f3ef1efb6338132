// The job queue on top of the jobs table: workers claim queued jobs with FOR UPDATE SKIP LOCKED
// (so two workers never take the same job and neither waits on the other), NOTIFY wakes idle
// workers, and running jobs of workers that stopped heartbeating are marked lost.
import { BUNDLE_ON_CONFLICT, checkBundleText, INSERT_SNIPPETS, snippetValues, type BundleInput } from "./code";
import { queryPrepared } from "./db";
import type { Db } from "./db";
import { sha256 } from "./hash";
import { checkJobText, getJob, IllegalTransitionError, requireJob, transitionJob } from "./jobs";
import { clusterKey, signBundle } from "./signing";
import type { DbJob, JobStatus } from "./types";

/**
 * How often a worker heartbeats in the store (ms). One constant for the code and every text that
 * names the default (`nbjob worker --help`), so they cannot disagree again.
 */
export const WORKER_HEARTBEAT_MS = 5_000;
/** A worker silent this long (ms) is presumed dead: its running jobs, and the queued jobs of a direct view for it, are marked lost. */
export const WORKER_STALE_MS = 20_000;

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
 * What a worker needs of the job it claimed. The claim returns only these: in a sweep of trivial
 * jobs, parsing result rows took about a tenth of the worker's main thread, and 6.5% once the
 * claim left out the row's other columns (arrays, dates, jsonb).
 */
export type ClaimedJobRow = Pick<DbJob, "id" | "status" | "claim" | "worker_id" | "started_at" | "bundle_hash" | "target_worker" | "resumed_from" | "resumed_from_checkpoint" | "timeout_ms">;

/** A claimed job, with its bundle's program when the worker did not say it has it already. */
export interface ClaimedJob extends ClaimedJobRow {
  /** The bundle's source, params and entries; null when its hash was among `knownBundles`. */
  bundle_source: string | null;
  bundle_params: Record<string, unknown> | null;
  bundle_entries: string[] | null;
  bundle_signature: string | null;
}

/**
 * The claim (claimNextJob; $1 worker id, $2 host, $3 pid, $4 targeted grace in ms, $5 the bundles
 * the worker has). The oldest job for any worker and the oldest for this one, each the first live
 * entry of its own index (migration 000019), so a claim does not read the jobs claimed before it;
 * the one of the two not taken is unlocked when the claim commits.
 */
export const CLAIM_NEXT_JOB_SQL = `WITH claimed AS (
       UPDATE nbjob.jobs SET status = 'running', started_at = now(), worker_id = $1, host = $2, pid = $3, claim = nextval('nbjob.job_claims')
        WHERE id = LEAST(
          (SELECT id FROM nbjob.jobs
            WHERE status = 'queued' AND target_worker IS NULL
            ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED),
          (SELECT id FROM nbjob.jobs
            WHERE status = 'queued' AND target_worker = $1 AND queued_at <= now() - make_interval(secs => $4 / 1000.0)
            ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED))
        RETURNING id, status, claim, worker_id, started_at, bundle_hash, target_worker, resumed_from, resumed_from_checkpoint, timeout_ms)
     SELECT c.*, b.source AS bundle_source, b.params AS bundle_params, b.entries AS bundle_entries, b.signature AS bundle_signature,
            set_config('synchronous_commit', 'off', true) AS claim_commit,
            set_config('nbjob.quiet_jobs_changed', 'on', true) AS claim_quiet
       FROM claimed c LEFT JOIN nbjob.bundles b ON b.hash = c.bundle_hash AND NOT (c.bundle_hash = ANY($5::text[]))`;

/**
 * Takes the oldest queued job this worker may run (its own or anyone's) and marks it running,
 * in one statement that also returns the job's bundle (unless its hash is in `knownBundles`,
 * the worker's cache), so starting a job costs one round trip. Undefined when there is none.
 *
 * `targetedGraceMs`: a job for this worker in particular is usually also sent to it over the
 * comm (so its output streams to the notebook); the queue takes such a job only once it has
 * waited this long, i.e. when the comm message never came. 0 (after a NOTIFY naming this worker)
 * takes it at once.
 *
 * The claim commits without waiting for its WAL flush (synchronous_commit off for this one
 * statement's transaction): that wait was most of a trivial job's time on the worker. What it
 * risks is small: only a crash of PostgreSQL itself within a fraction of a second can lose a
 * claim, which puts the job back in the queue (it then runs again; the first run's final write
 * is refused). The job's final write (status, result) still waits for the flush, and flushes
 * the claim with it.
 *
 * Nor does the claim notify the dashboard (migration 000018): a notifying commit waits for
 * every other one, flushes included. The worker announces what it claimed right after
 * (announceClaims).
 */
export async function claimNextJob(db: Db, worker: ClaimInput, targetedGraceMs = 0, knownBundles: readonly string[] = []): Promise<ClaimedJob | undefined> {
  const { rows } = await queryPrepared<ClaimedJob>(db, "nbjob_claim_next_job", CLAIM_NEXT_JOB_SQL,
    [worker.workerId, worker.host, worker.pid, targetedGraceMs, knownBundles]);
  return rows[0];
}

/**
 * Tells the dashboard that these jobs changed (what migration 000016's trigger says for any other
 * write of a job row), for claims, which commit without it. A transaction that writes nothing:
 * its commit has no flush to wait for.
 */
export async function announceClaims(db: Db, jobIds: readonly number[]): Promise<void> {
  if (jobIds.length === 0) return;
  await db.query("SELECT pg_notify('nbjob_jobs_changed', $1)", [jobIds.length > 200 ? "*" : jobIds.join(",")]);
}

/** One job of a batch: its bundle (stored if new) and its row's fields. */
export interface EnqueueItem {
  bundle: BundleInput;
  name?: string | null;
  tags?: string[];
  targetWorker?: string | null;
  groupId?: number | null;
  notebook?: string | null;
  /** The job's time limit in ms (jobs.timeout_ms); null or absent: none. */
  timeoutMs?: number | null;
}

/**
 * Stores many jobs at once (a sweep): their bundles and snippets (each only if new) and their
 * queued rows, in two statements. Call it inside a transaction so the batch is all or nothing,
 * and one commit stores it all; then notifyJobQueued once. Returns the rows in input order.
 */
export async function enqueueJobs(db: Db, items: EnqueueItem[]): Promise<DbJob[]> {
  if (items.length === 0) return [];
  for (const item of items) {
    checkBundleText(item.bundle);
    checkJobText(item);
  }
  // Bundles and snippets, each once, as flat arrays (unnest cannot take arrays of arrays of
  // different lengths, so entries go in as JSON, as names do in snippetValues).
  const snippets = new Map<string, { kind: string; names: string[]; source: string }>();
  const bundles = new Map<string, BundleInput>();
  const links: { bundle: string; position: number; snippet: string; collector: string | null }[] = [];
  for (const { bundle } of items) {
    const hash = sha256(bundle.source);
    if (bundles.has(hash)) continue;
    bundles.set(hash, bundle);
    bundle.snippets.forEach((s, position) => {
      const snippet = sha256(s.source);
      if (!snippets.has(snippet)) snippets.set(snippet, { kind: s.kind, names: s.names, source: s.source });
      links.push({ bundle: hash, position, snippet, collector: s.collector ?? null });
    });
  }
  const bundleList = [...bundles];
  const snippetList = [...snippets];
  const key = clusterKey();
  await db.query(
    `WITH new_snippets AS (
       ${INSERT_SNIPPETS}
     ), new_bundles AS (
       INSERT INTO nbjob.bundles (hash, source, params, entries, signature)
       SELECT b.hash, b.source, b.params, ARRAY(SELECT jsonb_array_elements_text(b.entries)), b.signature
         FROM unnest($5::text[], $6::text[], $7::jsonb[], $8::jsonb[], $13::text[]) AS b(hash, source, params, entries, signature)
       ${BUNDLE_ON_CONFLICT} RETURNING hash
     )
     INSERT INTO nbjob.bundle_snippets (bundle_hash, position, snippet_hash, collector)
     SELECT l.bundle_hash, l.position, l.snippet_hash, l.collector
       FROM unnest($9::text[], $10::int[], $11::text[], $12::text[]) AS l(bundle_hash, position, snippet_hash, collector)
      WHERE l.bundle_hash IN (SELECT hash FROM new_bundles)
     ON CONFLICT DO NOTHING`,
    [
      ...snippetValues(snippetList.map(([, s]) => s)),
      bundleList.map(([h]) => h), bundleList.map(([, b]) => b.source), bundleList.map(([, b]) => JSON.stringify(b.params ?? {})), bundleList.map(([, b]) => JSON.stringify(b.entries)),
      links.map((l) => l.bundle), links.map((l) => l.position), links.map((l) => l.snippet), links.map((l) => l.collector),
      bundleList.map(([h, b]) => signBundle({ hash: h, params: b.params ?? {}, entries: b.entries }, key)),
    ],
  );
  // Ids follow the input order (rows are inserted in ordinality order).
  const { rows } = await db.query<DbJob>(
    `INSERT INTO nbjob.jobs (bundle_hash, name, tags, target_worker, group_id, notebook, timeout_ms)
     SELECT j.bundle_hash, j.name, ARRAY(SELECT jsonb_array_elements_text(j.tags)), j.target_worker, j.group_id, j.notebook, j.timeout_ms
       FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::bigint[], $6::text[], $7::int[]) WITH ORDINALITY AS j(bundle_hash, name, tags, target_worker, group_id, notebook, timeout_ms, n)
      ORDER BY j.n
     RETURNING *`,
    [
      items.map((i) => sha256(i.bundle.source)), items.map((i) => i.name ?? null), items.map((i) => JSON.stringify(i.tags ?? [])),
      items.map((i) => i.targetWorker ?? null), items.map((i) => i.groupId ?? null), items.map((i) => i.notebook ?? null),
      items.map((i) => i.timeoutMs ?? null),
    ],
  );
  return rows.sort((a, b) => Number(a.id) - Number(b.id));
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

/** How long a cancel (job.cancel(), `nbjob cancel`, the dashboard) waits for the worker to store a running job's last lines, checkpoint and values. */
export const CANCEL_SETTLE_MS = 5_000;

export interface CancelOutcome {
  /** false: the job had already ended (`was` is how). */
  cancelled: boolean;
  was: JobStatus;
  /** The row after the cancel (after the wait, with `settleMs`). */
  row: DbJob;
  /** With `settleMs`, for a job that was running: whether its worker stored its last writes within it. */
  settled?: boolean;
}

/**
 * Cancels a queued or running job (job.cancel(), `nbjob cancel`, the dashboard): marks it
 * cancelled, so a queued job never starts and a running one's final write cannot overwrite it,
 * then tells its worker, which stops the job. A job that already ended keeps its status. With
 * `settleMs`, a running job's cancel then waits up to that long for its worker to have stored what
 * the job printed, checkpointed and logged before the stop (the worker then clears the run's
 * claim: releaseCancelledClaim), so what the caller reads next has all of it.
 */
export async function cancelJob(db: Db, jobId: number, message: string, options: { settleMs?: number } = {}): Promise<CancelOutcome> {
  for (;;) {
    const before = await requireJob(db, jobId);
    if (before.status !== "queued" && before.status !== "running") return { cancelled: false, was: before.status, row: before };
    let row: DbJob;
    try {
      row = await transitionJob(db, jobId, "cancelled", { error: { name: "Cancelled", message } });
    } catch (err) {
      // It started or ended between reading and writing: look again.
      if (err instanceof IllegalTransitionError) continue;
      throw err;
    }
    await notifyJobCancelled(db, jobId);
    if (before.status !== "running" || !options.settleMs) return { cancelled: true, was: before.status, row };
    const settled = (await untilCancelledRunsOver(db, [jobId], options.settleMs)).length === 0;
    return { cancelled: true, was: before.status, row: (await getJob(db, jobId)) ?? row, settled };
  }
}

/**
 * After running jobs were cancelled: until their workers have stopped them and stored what they
 * printed, checkpointed and logged before the stop (each worker then clears its run's claim,
 * releaseCancelledClaim), at most `ms`. One query per look for all of them. Returns the ids whose
 * workers had not finished by then.
 */
export async function untilCancelledRunsOver(db: Db, jobIds: readonly number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let open = [...jobIds];
  for (let pause = 20; open.length > 0 && Date.now() < deadline; pause = Math.min(pause * 2, 200)) {
    await new Promise((resolve) => setTimeout(resolve, pause));
    const { rows } = await db.query<{ id: string }>("SELECT id FROM nbjob.jobs WHERE id = ANY($1::bigint[]) AND status = 'cancelled' AND claim IS NOT NULL", [open]);
    open = rows.map((row) => Number(row.id));
  }
  return open;
}

export interface LostJobsInput {
  /** A worker not heard from for this long is presumed dead. */
  staleAfterMs: number;
  /** Also: jobs this worker id was running in an earlier life (a pid other than this one). */
  restartedWorker?: { workerId: string; pid: number };
  /** Only the restarted worker's jobs, not those of silent workers (a caller that just reconnected cannot judge silence yet). */
  skipSilent?: boolean;
}

/**
 * Marks `lost` the running jobs whose worker stopped heartbeating (or has no row at all, or
 * restarted since), and the queued jobs of a direct view whose worker is gone: silent for
 * `staleAfterMs` (so neither alive nor restarted by a supervisor, which keeps the name) while
 * the job waited at least that long. Such a job fails rather than moving to another worker: a
 * direct view asked for that worker (its message says how to run it elsewhere). Returns the ids
 * it marked. A server that started less than `staleAfterMs` ago judges no silence: while it was
 * down no worker could heartbeat, and they need that long to be heard from again.
 */
export async function markLostJobs(db: Db, input: LostJobsInput): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `UPDATE nbjob.jobs j SET status = 'lost', finished_at = now(),
            error_name = 'WorkerLost',
            error_message = CASE
              WHEN j.status = 'queued' THEN
                'worker ' || j.target_worker || ', which this job was queued for (a direct view), is gone: ' ||
                COALESCE('its last heartbeat was ' ||
                  (SELECT extract(epoch FROM now() - w.last_heartbeat_at)::bigint FROM nbjob.workers w WHERE w.id = j.target_worker) || ' s ago',
                  'it never checked in with the store') ||
                ' and no supervisor restarted it; run the job elsewhere (job.rerun(rc.loadBalanced())) or start the worker again (nbjob cluster start -n N)'
              WHEN $2::text IS NOT NULL AND j.worker_id = $2 THEN 'worker ' || j.worker_id || ' restarted while running this job'
              ELSE 'worker ' || COALESCE(j.worker_id, '?') || ' stopped answering (no heartbeat for ' || ($1 / 1000)::int || ' s) while running this job'
            END
      WHERE j.id IN (
        -- SKIP LOCKED: a job whose worker is writing for it right now (a fenced write holds its
        -- row, store/logs.ts) is alive; the check never waits on a worker.
        SELECT j.id FROM nbjob.jobs j WHERE (j.status = 'running'
        AND (
          ($2::text IS NOT NULL AND j.worker_id = $2 AND j.pid IS DISTINCT FROM $3::int)
          OR (
            NOT $4::boolean
            AND pg_postmaster_start_time() < now() - make_interval(secs => $1 / 1000.0)
            AND NOT EXISTS (
              SELECT 1 FROM nbjob.workers w
               WHERE w.id = j.worker_id AND w.last_heartbeat_at > now() - make_interval(secs => $1 / 1000.0))
            -- a job claimed just now by a worker whose first heartbeat is still on its way is not lost
            AND j.started_at < now() - make_interval(secs => $1 / 1000.0)
          )
        ))
        OR (j.status = 'queued' AND j.target_worker IS NOT NULL
          AND NOT $4::boolean
          AND pg_postmaster_start_time() < now() - make_interval(secs => $1 / 1000.0)
          AND j.queued_at < now() - make_interval(secs => $1 / 1000.0)
          AND NOT EXISTS (
            SELECT 1 FROM nbjob.workers w
             WHERE w.id = j.target_worker AND w.last_heartbeat_at > now() - make_interval(secs => $1 / 1000.0)))
        FOR UPDATE SKIP LOCKED)
      RETURNING j.id`,
    [input.staleAfterMs, input.restartedWorker?.workerId ?? null, input.restartedWorker?.pid ?? null, input.skipSilent === true],
  );
  return rows.map((r) => r.id);
}
