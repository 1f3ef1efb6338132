// Deleting jobs and collecting what nothing refers to any more (values, their chunks, bundles,
// snippets, local modules, environments), and what takes the space. Deleting a job removes its row and, by the schema's
// ON DELETE CASCADE, its logs, checkpoints (their value rows), analyses and analysis rows, in one
// transaction. Its values stay until garbage collection, because other jobs' checkpoints (a
// resumed job's, or any checkpoint of the same bytes) may share them.
//
// Why garbage collection is safe while jobs write checkpoints and notebooks create jobs:
//
// 1. Every reference a writer commits is checked by a foreign key (checkpoint_values -> blobs,
//    blob_chunks -> chunks, jobs -> bundles, bundle_snippets -> snippets). PostgreSQL's check
//    locks the referenced row FOR KEY SHARE in the writer's transaction and sees the latest
//    committed state, so no committed reference can point at a deleted row.
// 2. A batch here first locks its candidates FOR UPDATE SKIP LOCKED (a row a writer holds a key
//    share on, or locked by reusing it, is skipped, not waited for), then deletes in a NEW
//    statement whose snapshot is taken after those locks were granted: any writer that referred
//    to a row before our lock has committed (or we would not hold the lock) and its reference is
//    seen; any writer after our lock waits for our commit. So a row is deleted only when nothing
//    refers to it, and the writer that comes after either inserts it again (ON CONFLICT finds no
//    row) or gets a foreign-key error.
// 3. The writers that find a value already stored and refer to it later (putCheckpoints, putBlob)
//    redo the whole write once more on exactly that foreign-key error (checkpoints.ts), which
//    uploads the value again; putBundle and putSnippets lock FOR KEY SHARE the rows they are
//    about to re-use (code.ts), for the rest of the writer's transaction.
// 4. Rows younger than the grace period are not collected at all: a large value's chunks are
//    committed before the blob row that lists them (blobs.ts), so a young unreferenced chunk is
//    normally one being written. The grace period only spares writers a retry; 1-3 are what make
//    it correct, and test/store-cleanup.test.ts races collection with grace 0 against a writer.
import type { Db } from "./db";
import { StoreError, pgCode, PgCode, isDiskFull } from "./errors";
import { isJobStatus, UnknownJobError } from "./jobs";
import { diskFullMessage } from "./disk";
import type { JobStatus } from "./types";

/** The tag that keeps a job from deletion by filter (`nbjob tag JOB +keep`). */
export const KEEP_TAG = "keep";

/** Which jobs to delete: explicit ids, or a filter (all given conditions must hold). */
export interface DeleteJobsFilter {
  ids?: number[];
  tag?: string;
  status?: JobStatus;
  /** Only jobs queued more than this many milliseconds ago. */
  olderThanMs?: number;
  /** Say what would go, delete nothing. */
  dryRun?: boolean;
}

export interface DeletionPlan {
  /** Jobs deleted (or that would be, on a dry run), ascending. */
  ids: number[];
  /** Jobs matched by a filter but left alone: tagged keep, or still queued/running. */
  kept: number[];
  active: number[];
  /** Bytes of these jobs' logs, results, analysis rows, and of the stored values only they use. */
  bytes: { logs: number; results: number; analyses: number; values: number; total: number };
  dryRun: boolean;
}

/** A queued or running job named by id: it must be cancelled first. */
export class ActiveJobError extends StoreError {
  override name = "ActiveJobError";
  constructor(readonly jobId: number, readonly status: JobStatus) {
    super(`job ${jobId} is ${status}; cancel it first ("nbjob cancel ${jobId}" or job.cancel()), then delete it`);
  }
}

/** A job tagged keep named by id: its tag must be removed first. */
export class KeptJobError extends StoreError {
  override name = "KeptJobError";
  constructor(readonly jobId: number) {
    super(`job ${jobId} is tagged "${KEEP_TAG}"; remove the tag first ("nbjob tag ${jobId} -${KEEP_TAG}"), then delete it`);
  }
}

/** DeleteJobsFilter's keys; any other is refused rather than ignored (an ignored condition deletes more). */
const DELETE_FILTER_KEYS = ["ids", "tag", "status", "olderThanMs", "dryRun"] as const satisfies ReadonlyArray<keyof DeleteJobsFilter>;

function checkFilter(filter: DeleteJobsFilter): void {
  const unknown = Object.keys(filter).filter((k) => !(DELETE_FILTER_KEYS as readonly string[]).includes(k));
  if (unknown.length > 0) throw new TypeError(`deleteJobs: unknown filter key${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}; the keys are ${DELETE_FILTER_KEYS.join(", ")}; nothing was deleted`);
  const hasFilter = filter.tag !== undefined || filter.status !== undefined || filter.olderThanMs !== undefined;
  if (filter.ids && filter.ids.length > 0 && hasFilter) throw new StoreError("delete either jobs by id or jobs matching a filter (tag, status, older than), not both");
  if (!(filter.ids && filter.ids.length > 0) && !hasFilter) throw new StoreError("say which jobs to delete: ids, or a filter (tag, status, older than); deleting every job takes an explicit filter");
  for (const id of filter.ids ?? []) if (!Number.isSafeInteger(id) || id < 1) throw new StoreError(`a job id is a positive integer, got ${id}`);
  if (filter.status !== undefined && !isJobStatus(filter.status)) throw new StoreError(`unknown job status "${filter.status}"`);
  if (filter.olderThanMs !== undefined && !(Number.isFinite(filter.olderThanMs) && filter.olderThanMs >= 0)) throw new StoreError(`older-than must be a non-negative duration, got ${filter.olderThanMs}`);
}

/**
 * Bytes that deleting these jobs frees: their logs, results and analysis rows, and the chunks
 * that only their checkpoints use (a value shared with a job that stays frees nothing).
 */
async function bytesOf(db: Db, ids: number[]): Promise<DeletionPlan["bytes"]> {
  const { rows } = await db.query<{ logs: string; results: string; analyses: string; values: string }>(
    `WITH doomed AS (SELECT unnest($1::bigint[]) AS id),
     doomed_blobs AS (
       SELECT DISTINCT v.blob_hash FROM nbjob.checkpoint_values v WHERE v.job_id IN (SELECT id FROM doomed)
       EXCEPT SELECT v.blob_hash FROM nbjob.checkpoint_values v WHERE v.job_id NOT IN (SELECT id FROM doomed)
     ),
     doomed_chunks AS (
       SELECT DISTINCT bc.chunk_hash FROM nbjob.blob_chunks bc WHERE bc.blob_hash IN (SELECT blob_hash FROM doomed_blobs)
       EXCEPT SELECT bc.chunk_hash FROM nbjob.blob_chunks bc WHERE bc.blob_hash NOT IN (SELECT blob_hash FROM doomed_blobs)
     )
     SELECT
       (SELECT coalesce(sum(octet_length(l.line)), 0) FROM nbjob.logs l WHERE l.job_id IN (SELECT id FROM doomed)) AS logs,
       (SELECT coalesce(sum(coalesce(octet_length(j.result::text), 0) + coalesce(octet_length(j.result_text), 0)
                            + coalesce(octet_length(j.error_traceback::text), 0)), 0)
          FROM nbjob.jobs j WHERE j.id IN (SELECT id FROM doomed)) AS results,
       (SELECT coalesce(sum(coalesce(octet_length(r.value::text), 0) + coalesce(octet_length(r.error::text), 0)), 0)
          FROM nbjob.analysis_rows r WHERE r.job_id IN (SELECT id FROM doomed)) AS analyses,
       (SELECT coalesce(sum(octet_length(c.data)), 0) FROM nbjob.chunks c WHERE c.hash IN (SELECT chunk_hash FROM doomed_chunks)) AS values`,
    [ids],
  );
  const r = rows[0];
  const bytes = { logs: Number(r.logs), results: Number(r.results), analyses: Number(r.analyses), values: Number(r.values), total: 0 };
  bytes.total = bytes.logs + bytes.results + bytes.analyses + bytes.values;
  return bytes;
}

/**
 * Deletes jobs (or, with dryRun, only says which and how many bytes that frees), in one
 * transaction. By id: every job must exist, be final (not queued or running) and not be tagged
 * keep, else nothing is deleted and the error names the job. By filter: jobs tagged keep and
 * jobs still queued or running are left alone and listed in `kept` / `active`. Jobs rerun or
 * resumed from a deleted job stay, with their own checkpoints; their `rerun_of` / `resumed_from`
 * keeps the number. The values are removed by collectGarbage, not here.
 */
export async function deleteJobs(db: Db, filter: DeleteJobsFilter): Promise<DeletionPlan> {
  checkFilter(filter);
  return db.transaction(async (tx) => {
    // Locking the rows keeps a worker from claiming a queued one while we decide (the claim
    // skips locked rows) and a status change from slipping in between the check and the delete.
    let rows: Array<{ id: number; status: JobStatus; tags: string[] }>;
    if (filter.ids && filter.ids.length > 0) {
      const ids = [...new Set(filter.ids)];
      ({ rows } = await tx.query<{ id: number; status: JobStatus; tags: string[] }>(
        "SELECT id, status, tags FROM nbjob.jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", [ids]));
      const found = new Set(rows.map((row) => row.id));
      const missing = ids.filter((id) => !found.has(id));
      if (missing.length > 0) throw new UnknownJobError(missing.join(", "));
      for (const row of rows) {
        if (row.status === "queued" || row.status === "running") throw new ActiveJobError(row.id, row.status);
        if (row.tags.includes(KEEP_TAG)) throw new KeptJobError(row.id);
      }
    } else {
      const where: string[] = [];
      const values: unknown[] = [];
      const add = (clause: string, value: unknown) => {
        values.push(value);
        where.push(clause.replace("?", `$${values.length}`));
      };
      if (filter.tag !== undefined) add("tags @> ARRAY[?::text]", filter.tag);
      if (filter.status !== undefined) add("status = ?", filter.status);
      if (filter.olderThanMs !== undefined) add("queued_at < now() - make_interval(secs => ?::double precision / 1000)", filter.olderThanMs);
      ({ rows } = await tx.query<{ id: number; status: JobStatus; tags: string[] }>(
        `SELECT id, status, tags FROM nbjob.jobs WHERE ${where.join(" AND ")} ORDER BY id FOR UPDATE`, values));
    }
    const kept = rows.filter((row) => row.tags.includes(KEEP_TAG)).map((row) => row.id);
    const active = rows.filter((row) => !row.tags.includes(KEEP_TAG) && (row.status === "queued" || row.status === "running")).map((row) => row.id);
    const ids = rows.filter((row) => !kept.includes(row.id) && !active.includes(row.id)).map((row) => row.id);
    const bytes = ids.length > 0 ? await bytesOf(tx, ids) : { logs: 0, results: 0, analyses: 0, values: 0, total: 0 };
    if (!filter.dryRun && ids.length > 0) await tx.query("DELETE FROM nbjob.jobs WHERE id = ANY($1::bigint[])", [ids]);
    return { ids, kept, active, bytes, dryRun: filter.dryRun === true };
  });
}

/**
 * What is wrong with a new tag, or undefined: the one rule of `nbjob tag`, the dashboard and
 * createJob/createJobs. A tag is one word, so `nbjob tag JOB +T` can name it and the lists,
 * which join tags with commas, show each unambiguously.
 */
export function tagProblem(tag: string): string | undefined {
  if (tag === "" || /[\s,]/.test(tag)) return `a tag is a non-empty word without spaces or commas, got ${JSON.stringify(tag)}`;
  return undefined;
}

/** Adds and removes tags of one job; returns its tags after. */
export async function setJobTags(db: Db, jobId: number, add: string[], remove: string[]): Promise<string[]> {
  // Only the added ones: a tag stored before the rule must still be removable.
  for (const tag of add) {
    const problem = tagProblem(tag);
    if (problem !== undefined) throw new StoreError(problem);
  }
  const { rows } = await db.query<{ tags: string[] }>(
    `UPDATE nbjob.jobs SET tags = ARRAY(SELECT t FROM unnest(tags || $2::text[]) WITH ORDINALITY AS u(t, n)
                                         WHERE t <> ALL($3::text[]) GROUP BY t ORDER BY min(n))
      WHERE id = $1 RETURNING tags`,
    [jobId, add, remove],
  );
  if (rows.length === 0) throw new UnknownJobError(jobId);
  return rows[0].tags;
}

export interface GcOptions {
  /** Rows younger than this are left (default 10 minutes; see the comment at the top). */
  graceMs?: number;
  /** Rows per transaction (default 500): locks are held briefly, writers wait for at most one batch. */
  batchSize?: number;
  /** Apply the store's checkpoint retention policy first (default true). */
  retention?: boolean;
}

export interface GcResult {
  blobs: number;
  chunks: number;
  /** Bytes of the chunks removed. */
  chunkBytes: number;
  bundles: number;
  snippets: number;
  /** Local modules no bundle lists any more. */
  files: number;
  /** Environments (where jobs ran) no job refers to any more. */
  environments: number;
  /** Checkpoints thinned by the retention policy. */
  thinned: number;
  /**
   * Values no checkpoint refers to that were left because they are younger than the grace period
   * (those of jobs deleted minutes after they ran, or being written), with their size in bytes.
   */
  young: { values: number; bytes: number; graceMs: number };
  /** Batches that lost a race with a writer (a foreign-key error; retried with fresh candidates). */
  conflicts: number;
  ms: number;
}

interface Collectable {
  table: string;
  /** "Is anything referring to row x?" */
  referenced: string;
  /** Rows that belong to x and go with it, deleted first (their foreign keys point at x). */
  dependents?: string;
  /** What each deleted row counts (default 1). */
  measure?: string;
}

const BLOBS: Collectable = {
  table: "nbjob.blobs",
  referenced: "EXISTS (SELECT 1 FROM nbjob.checkpoint_values v WHERE v.blob_hash = x.hash)",
  dependents: "DELETE FROM nbjob.blob_chunks WHERE blob_hash = ANY($1::text[])",
};
const CHUNKS: Collectable = {
  table: "nbjob.chunks",
  referenced: "EXISTS (SELECT 1 FROM nbjob.blob_chunks bc WHERE bc.chunk_hash = x.hash)",
  measure: "octet_length(x.data)",
};
const BUNDLES: Collectable = {
  table: "nbjob.bundles",
  referenced: "EXISTS (SELECT 1 FROM nbjob.jobs j WHERE j.bundle_hash = x.hash)",
  // One statement (parameters allow no second one): the snippet list and the local-module list.
  dependents: `WITH snippets AS (DELETE FROM nbjob.bundle_snippets WHERE bundle_hash = ANY($1::text[]))
               DELETE FROM nbjob.bundle_files WHERE bundle_hash = ANY($1::text[])`,
};
/** Local modules (issue 14) that no bundle lists any more. */
const FILES: Collectable = {
  table: "nbjob.files",
  referenced: "EXISTS (SELECT 1 FROM nbjob.bundle_files bf WHERE bf.file_hash = x.hash)",
  measure: "octet_length(x.content)",
};
/**
 * Where jobs ran (Node, nbjob and package versions). A worker keeps an environment for its
 * lifetime and links later jobs to it: it stores it again if it is gone (linkJobEnvironments).
 */
const ENVIRONMENTS: Collectable = {
  table: "nbjob.environments",
  referenced: "EXISTS (SELECT 1 FROM nbjob.jobs j WHERE j.environment_hash = x.hash)",
};
const SNIPPETS: Collectable = {
  table: "nbjob.snippets",
  referenced: `(EXISTS (SELECT 1 FROM nbjob.bundle_snippets bs WHERE bs.snippet_hash = x.hash)
             OR EXISTS (SELECT 1 FROM nbjob.analysis_rows r WHERE r.function_hash = x.hash)
             OR EXISTS (SELECT 1 FROM nbjob.analyses a WHERE a.function_hashes @> ARRAY[x.hash]))`,
};

/** Removes one kind of unreferenced row, batch by batch. Returns [rows, measure] removed and conflicts. */
async function collect(db: Db, kind: Collectable, graceMs: number, batchSize: number): Promise<{ rows: number; measure: number; conflicts: number }> {
  let total = 0;
  let measure = 0;
  let conflicts = 0;
  // Rows a batch could not lock (a writer is using them) are not tried again in this run.
  const skipped: string[] = [];
  for (;;) {
    const { rows: candidates } = await db.query<{ hash: string }>(
      `SELECT x.hash FROM ${kind.table} x
        WHERE x.created_at < now() - make_interval(secs => $1::double precision / 1000) AND NOT ${kind.referenced}
          AND x.hash <> ALL($3::text[])
        LIMIT $2`,
      [graceMs, batchSize, skipped],
    );
    if (candidates.length === 0) break;
    try {
      const done = await db.transaction(async (tx) => {
        const { rows: locked } = await tx.query<{ hash: string }>(
          `SELECT hash FROM ${kind.table} WHERE hash = ANY($1::text[]) FOR UPDATE SKIP LOCKED`, [candidates.map((c) => c.hash)]);
        const lockedSet = new Set(locked.map((row) => row.hash));
        for (const c of candidates) if (!lockedSet.has(c.hash)) skipped.push(c.hash);
        if (locked.length === 0) return { rows: 0, measure: 0 };
        // A new statement, so a new snapshot taken after the locks: see the comment at the top.
        const { rows: gone } = await tx.query<{ hash: string }>(
          `SELECT x.hash FROM ${kind.table} x WHERE x.hash = ANY($1::text[]) AND NOT ${kind.referenced}`, [locked.map((row) => row.hash)]);
        const goneHashes = gone.map((row) => row.hash);
        if (goneHashes.length === 0) return { rows: 0, measure: 0 };
        if (kind.dependents) await tx.query(kind.dependents, [goneHashes]);
        const { rows: deleted } = await tx.query<{ m: string }>(
          `DELETE FROM ${kind.table} x WHERE x.hash = ANY($1::text[]) RETURNING ${kind.measure ?? "1"} AS m`, [goneHashes]);
        return { rows: deleted.length, measure: deleted.reduce((sum, row) => sum + Number(row.m), 0) };
      });
      total += done.rows;
      measure += done.measure;
    } catch (err) {
      const code = pgCode(err) ?? pgCode((err as { cause?: unknown } | null)?.cause);
      // A writer referred to a candidate between our check and its commit without our lock
      // seeing it (should not happen, see 2. above); the foreign key refused our delete and the
      // batch rolled back whole. Try again with fresh candidates, a bounded number of times.
      if (code !== PgCode.foreignKeyViolation || ++conflicts > 20) throw err;
    }
  }
  return { rows: total, measure, conflicts };
}

/** The checkpoint retention policy: of jobs that ended more than olderThanMs ago, keep the last keepLast checkpoints. */
export interface RetentionPolicy {
  keepLast: number;
  olderThanMs: number;
}

/** Stores the policy (undefined: none, checkpoints are kept for ever). */
export async function setRetention(db: Db, policy: RetentionPolicy | undefined): Promise<void> {
  if (policy === undefined) {
    await db.query("DELETE FROM nbjob.settings WHERE key = 'retention'");
    return;
  }
  if (!Number.isSafeInteger(policy.keepLast) || policy.keepLast < 1) throw new StoreError(`keep-last must be a positive integer (the last checkpoint is always kept), got ${policy.keepLast}`);
  if (!(Number.isFinite(policy.olderThanMs) && policy.olderThanMs >= 0)) throw new StoreError(`older-than must be a non-negative duration, got ${policy.olderThanMs}`);
  await db.query(
    `INSERT INTO nbjob.settings (key, value) VALUES ('retention', $1)
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
    [JSON.stringify({ keepLast: policy.keepLast, olderThanMs: policy.olderThanMs })],
  );
}

export async function getRetention(db: Db): Promise<RetentionPolicy | undefined> {
  const { rows } = await db.query<{ value: RetentionPolicy }>("SELECT value FROM nbjob.settings WHERE key = 'retention'");
  return rows[0]?.value;
}

/**
 * Applies the retention policy: of final jobs that ended more than olderThanMs ago and are not
 * tagged keep, deletes every checkpoint but the last keepLast (by index), with their analysis
 * rows. Their values go at the next collection. Returns how many checkpoints were deleted.
 */
export async function applyRetention(db: Db, policy?: RetentionPolicy): Promise<number> {
  const rule = policy ?? (await getRetention(db));
  if (!rule) return 0;
  const { rowCount } = await db.query(
    `DELETE FROM nbjob.checkpoints c
      USING (SELECT j.id FROM nbjob.jobs j
              WHERE j.finished_at < now() - make_interval(secs => $2::double precision / 1000)
                AND NOT j.tags @> ARRAY[$3::text]) old
      WHERE c.job_id = old.id
        AND c.idx < (SELECT min(k.idx) FROM (SELECT idx FROM nbjob.checkpoints WHERE job_id = old.id ORDER BY idx DESC LIMIT $1) k)`,
    [rule.keepLast, rule.olderThanMs, KEEP_TAG],
  );
  return rowCount ?? 0;
}

/**
 * Removes values (blobs and their chunks), bundles, snippets, local modules and environments that
 * no job, checkpoint or analysis refers to any more and that are older than the grace period. Safe while jobs run
 * (see the comment at the top). Does not VACUUM: vacuumStore does.
 */
export async function collectGarbage(db: Db, options: GcOptions = {}): Promise<GcResult> {
  const graceMs = options.graceMs ?? 10 * 60_000;
  const batchSize = options.batchSize ?? 500;
  if (!(Number.isFinite(graceMs) && graceMs >= 0)) throw new StoreError(`grace period must be a non-negative number of milliseconds, got ${graceMs}`);
  const started = performance.now();
  const thinned = options.retention === false ? 0 : await applyRetention(db);
  // Order matters: blobs first frees chunks, bundles first frees snippets and local modules.
  const blobs = await collect(db, BLOBS, graceMs, batchSize);
  const chunks = await collect(db, CHUNKS, graceMs, batchSize);
  const bundles = await collect(db, BUNDLES, graceMs, batchSize);
  const snippets = await collect(db, SNIPPETS, graceMs, batchSize);
  const files = await collect(db, FILES, graceMs, batchSize);
  const environments = await collect(db, ENVIRONMENTS, graceMs, batchSize);
  return {
    thinned, young: await youngValues(db, graceMs), blobs: blobs.rows, chunks: chunks.rows, chunkBytes: chunks.measure, bundles: bundles.rows, snippets: snippets.rows, files: files.rows,
    environments: environments.rows,
    conflicts: blobs.conflicts + chunks.conflicts + bundles.conflicts + snippets.conflicts + files.conflicts + environments.conflicts,
    ms: performance.now() - started,
  };
}

/** The values collection left only because they are younger than the grace period (see GcResult.young). */
async function youngValues(db: Db, graceMs: number): Promise<GcResult["young"]> {
  if (graceMs === 0) return { values: 0, bytes: 0, graceMs };
  const { rows: [r] } = await db.query<{ n: string; bytes: string }>(
    `SELECT count(*) AS n, coalesce(sum(x.size), 0) AS bytes FROM nbjob.blobs x
      WHERE x.created_at >= now() - make_interval(secs => $1::double precision / 1000) AND NOT ${BLOBS.referenced}`,
    [graceMs],
  );
  return { values: Number(r.n), bytes: Number(r.bytes), graceMs };
}

/**
 * Plain VACUUM of the tables garbage collection and deletion empty. It makes the freed space
 * reusable by new rows and gives back to the operating system only empty pages at the end of
 * each table file; it runs alongside writers. VACUUM FULL (full: true) rewrites the tables and
 * returns all free space, but holds an exclusive lock on each table while it runs (checkpoint
 * writes and job creation wait) and needs room for the copy.
 */
export async function vacuumStore(db: Db, options: { full?: boolean } = {}): Promise<void> {
  const tables = ["chunks", "blob_chunks", "blobs", "checkpoint_values", "checkpoints", "logs", "analysis_rows", "analyses", "jobs", "bundle_snippets", "bundle_files", "bundles", "snippets", "files"];
  for (const table of tables) {
    try {
      await db.query(`VACUUM ${options.full ? "FULL " : ""}nbjob.${table}`);
    } catch (err) {
      if (options.full || !isDiskFull(err)) throw err;
      // On a full disk VACUUM itself can need a page: a free-space map for an index whose
      // entries it removes (a refused checkpoint's value left thousands in the TOAST index).
      // Without index cleanup it only records the table's freed space in the map it has,
      // which is what lets new rows reuse it; the indexes are cleaned by a later VACUUM.
      try {
        await db.query(`VACUUM (INDEX_CLEANUP OFF) nbjob.${table}`);
      } catch (again) {
        if (!isDiskFull(again)) throw again;
        throw new StoreError(`the deleted rows are gone, but VACUUM of nbjob.${table}, which makes their space reusable, needs a little room on the disk itself and found none (${diskFullMessage(again)}); free a few MB on the server's disk by other means and run nbjob gc again`, { cause: again });
      }
    }
  }
}

/** What a collection and the VACUUM after it did: `nbjob gc`'s and the dashboard's answer. */
export interface GcReport {
  result: GcResult;
  /** The database's size on disk before and after. */
  before: number;
  after: number;
  /** Whether the VACUUM was FULL (the tables rewritten, all freed space given back). */
  full: boolean;
}

/** collectGarbage, then a plain VACUUM (or FULL) so the freed space is reusable: what `nbjob gc` and `rm` run. */
export async function collectAndVacuum(db: Db, options: { graceMs?: number; full?: boolean } = {}): Promise<GcReport> {
  const before = (await storeSize(db)).database;
  const result = await collectGarbage(db, { graceMs: options.graceMs });
  await vacuumStore(db, { full: options.full });
  // The embedded store: the freed rows' room is reusable now; checkpoints held back for a
  // released disk reserve go on, and the reserve is made again if there is room (disk-reserve.ts).
  await db.cleanedUp?.();
  return { result, before, after: (await storeSize(db)).database, full: options.full === true };
}

/** The database's size on disk and each nbjob table's (with its TOAST and indexes), largest first. */
export async function storeSize(db: Db): Promise<{ database: number; tables: Array<{ table: string; bytes: number }> }> {
  const { rows: [{ size }] } = await db.query<{ size: string }>("SELECT pg_database_size(current_database()) AS size");
  const { rows } = await db.query<{ table: string; bytes: string }>(
    `SELECT c.relname AS table, pg_total_relation_size(c.oid) AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'nbjob' AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC`,
  );
  return { database: Number(size), tables: rows.map((row) => ({ table: row.table, bytes: Number(row.bytes) })) };
}

export interface JobSize {
  id: number;
  name: string | null;
  status: JobStatus;
  /** Bytes of the values its checkpoints refer to (shared values count for each job that has them). */
  checkpoints: number;
  logs: number;
  results: number;
  total: number;
}

/** Bytes per job, for the given jobs, or the `limit` biggest. */
export async function jobSizes(db: Db, options: { ids?: number[]; limit?: number }): Promise<JobSize[]> {
  const { rows } = await db.query<{ id: number; name: string | null; status: JobStatus; checkpoints: string; logs: string; results: string }>(
    `SELECT j.id, j.name, j.status,
            coalesce((SELECT sum(b.size) FROM nbjob.checkpoint_values v JOIN nbjob.blobs b ON b.hash = v.blob_hash WHERE v.job_id = j.id), 0) AS checkpoints,
            coalesce((SELECT sum(octet_length(l.line)) FROM nbjob.logs l WHERE l.job_id = j.id), 0) AS logs,
            coalesce(octet_length(j.result::text), 0) + coalesce(octet_length(j.result_text), 0) + coalesce(octet_length(j.error_traceback::text), 0) AS results
       FROM nbjob.jobs j
      WHERE ($1::bigint[] IS NULL OR j.id = ANY($1::bigint[]))`,
    [options.ids ?? null],
  );
  const sizes = rows.map((row) => {
    const s = { id: row.id, name: row.name, status: row.status, checkpoints: Number(row.checkpoints), logs: Number(row.logs), results: Number(row.results), total: 0 };
    s.total = s.checkpoints + s.logs + s.results;
    return s;
  });
  sizes.sort((a, b) => b.total - a.total || b.id - a.id);
  return options.limit !== undefined ? sizes.slice(0, options.limit) : sizes;
}

/** "30d", "12h", "90m", "45s", "2w" (or a number of milliseconds) in milliseconds. */
export function parseDuration(text: string | number): number {
  if (typeof text === "number") {
    if (Number.isFinite(text) && text >= 0) return text;
    throw new StoreError(`a duration is a non-negative number of milliseconds or text like "30d", got ${text}`);
  }
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$/.exec(text.trim());
  if (!match) throw new StoreError(`a duration looks like 30d, 12h, 90m, 45s or 2w; got "${text}"`);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[match[2] as "s" | "m" | "h" | "d" | "w"];
  return Number(match[1]) * unit;
}

/** "1.5 MiB" */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
