// What the web dashboard reads and writes beyond the CLI's functions: a page of jobs sorted and
// filtered in SQL with every long value cut there (a list never carries a whole parameter or
// result: one 200 MB parameter must not travel with every page), the tail of a job's log, the
// jobs rerun or resumed from a job, and a job's note (migration 000016).
import type { Db } from "./db";
import { StoreError } from "./errors";
import { isJobStatus, UnknownJobError } from "./jobs";
import { checkStorableText, decodeLogLine } from "./text";
import type { DbJob, DbLog, JobStatus } from "./types";
import { JOB_STATUSES } from "./types";

/** How many characters of a parameter list, result or error a list row carries. */
export const PREVIEW_CHARS = 200;

/** Parameters whose stored (possibly compressed) size is above this are not even cut into a preview. */
const PREVIEW_MAX_STORED_BYTES = 256 * 1024;

export const BROWSE_SORTS = ["id", "name", "status", "queued_at", "started_at", "finished_at", "duration", "worker"] as const;
export type BrowseSort = (typeof BROWSE_SORTS)[number];

export const PARAM_OPERATORS = ["=", "!=", "<", "<=", ">", ">="] as const;
export type ParamOperator = (typeof PARAM_OPERATORS)[number];

/** `lr < 0.01`: numbers compare as numbers (a job whose lr is not a number does not match); else as text. */
export interface ParamCondition {
  name: string;
  op: ParamOperator;
  value: string | number;
}

export interface BrowseJobsFilter {
  statuses?: JobStatus[];
  tag?: string;
  /** Part of the name, any case. */
  name?: string;
  /** Part of the worker id (the worker that ran it, or the one it was sent to). */
  worker?: string;
  queuedFrom?: Date;
  queuedBefore?: Date;
  /** Only jobs queued more than this many milliseconds ago (as `nbjob rm --older-than`, measured by the server's clock). */
  olderThanMs?: number;
  params?: ParamCondition[];
  groupId?: number;
  /** Default id (newest first with `descending`, the default). */
  sort?: BrowseSort;
  descending?: boolean;
  /** Default 0. */
  offset?: number;
  /** Default 50, at most 1 000. */
  limit?: number;
}

/** A job as a list shows it: long values cut to PREVIEW_CHARS, with `…` when cut. */
export interface JobPreview {
  id: number;
  name: string | null;
  tags: string[];
  status: JobStatus;
  queued_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  worker: string | null;
  host: string | null;
  group_id: number | null;
  /** The parameters as JSON text, cut; null when too large to cut cheaply (open the job). */
  params_preview: string | null;
  result_preview: string | null;
  error_preview: string | null;
  note_preview: string | null;
}

const SORT_SQL: Record<BrowseSort, string> = {
  id: "j.id",
  name: "j.name",
  status: "j.status",
  queued_at: "j.queued_at",
  started_at: "j.started_at",
  finished_at: "j.finished_at",
  duration: "(coalesce(j.finished_at, now()) - j.started_at)",
  worker: "coalesce(j.worker_id, j.target_worker)",
};

function cut(text: string | null): string | null {
  return text === null || text.length <= PREVIEW_CHARS ? text : `${text.slice(0, PREVIEW_CHARS)}…`;
}

/** The WHERE clause and its values for a filter (shared by the page and its count). */
function whereOf(filter: BrowseJobsFilter): { sql: string; values: unknown[]; needsBundle: boolean } {
  const where: string[] = [];
  const values: unknown[] = [];
  let needsBundle = false;
  const add = (clause: string, ...args: unknown[]) => {
    let text = clause;
    for (const arg of args) {
      values.push(arg);
      text = text.replace("?", `$${values.length}`);
    }
    where.push(text);
  };
  if (filter.statuses?.length) {
    for (const status of filter.statuses) if (!isJobStatus(status)) throw new StoreError(`unknown job status "${status}"; expected one of ${JOB_STATUSES.join(", ")}`);
    add("j.status = ANY(?::text[])", filter.statuses);
  }
  checkStorableText("the tag to list", filter.tag);
  checkStorableText("the name to list", filter.name);
  checkStorableText("the worker to list", filter.worker);
  const like = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  if (filter.tag) add("j.tags @> ARRAY[?::text]", filter.tag);
  if (filter.name) add("j.name ILIKE ?", like(filter.name));
  if (filter.worker) add("coalesce(j.worker_id, j.target_worker) ILIKE ?", like(filter.worker));
  if (filter.queuedFrom) add("j.queued_at >= ?", filter.queuedFrom);
  if (filter.queuedBefore) add("j.queued_at < ?", filter.queuedBefore);
  if (filter.olderThanMs !== undefined) {
    if (!(Number.isFinite(filter.olderThanMs) && filter.olderThanMs >= 0)) throw new StoreError(`older-than must be a non-negative duration, got ${filter.olderThanMs}`);
    add("j.queued_at < now() - make_interval(secs => ?::double precision / 1000)", filter.olderThanMs);
  }
  if (filter.groupId !== undefined) add("j.group_id = ?", filter.groupId);
  for (const condition of filter.params ?? []) {
    if (!(PARAM_OPERATORS as readonly string[]).includes(condition.op)) throw new StoreError(`unknown operator "${condition.op}" in a parameter condition; expected one of ${PARAM_OPERATORS.join(" ")}`);
    checkStorableText("the parameter's name", condition.name);
    needsBundle = true;
    if (typeof condition.value === "number") {
      // CASE, not AND: SQL may evaluate either side of an AND first, and a string cannot be cast.
      add(`(CASE WHEN jsonb_typeof(b.params -> ?) = 'number' THEN (b.params ->> ?)::numeric END) ${condition.op} ?::numeric`, condition.name, condition.name, condition.value);
    } else {
      add(`(b.params ->> ?) ${condition.op} ?`, condition.name, condition.value);
    }
  }
  return { sql: where.length ? `WHERE ${where.join(" AND ")}` : "", values, needsBundle };
}

/** Counting stops this far past the page (a count of 100k rows would cost more than the page). */
const COUNT_AHEAD = 10_000;

/**
 * One page of jobs and how many match: exactly when fewer than the page's end plus COUNT_AHEAD,
 * else that many with `more` set. The page's ids are found first (an index walk for the default
 * order), then only those rows are read with their previews.
 */
export async function browseJobs(db: Db, filter: BrowseJobsFilter = {}): Promise<{ jobs: JobPreview[]; total: number; more: boolean }> {
  const sort = filter.sort ?? "id";
  if (!(BROWSE_SORTS as readonly string[]).includes(sort)) throw new StoreError(`cannot sort jobs by "${sort}"; expected one of ${BROWSE_SORTS.join(", ")}`);
  const limit = filter.limit ?? 50;
  const offset = filter.offset ?? 0;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1_000) throw new StoreError(`limit must be a whole number from 1 to 1000, got ${limit}`);
  if (!Number.isInteger(offset) || offset < 0) throw new StoreError(`offset must be a whole number from 0, got ${offset}`);
  const where = whereOf(filter);
  const direction = filter.descending === false ? "ASC" : "DESC";
  // id is never null: no NULLS clause, so the primary key's index gives the order.
  const order = sort === "id" ? `j.id ${direction}` : `${SORT_SQL[sort]} ${direction} NULLS LAST, j.id ${direction}`;
  const from = `FROM nbjob.jobs j ${where.needsBundle ? "JOIN nbjob.bundles b ON b.hash = j.bundle_hash" : ""} ${where.sql}`;
  const n = where.values.length;
  const page = await db.query<{ id: number }>(`SELECT j.id ${from} ORDER BY ${order} LIMIT $${n + 1} OFFSET $${n + 2}`, [...where.values, limit, offset]);
  const ids = page.rows.map((row) => Number(row.id));
  const { rows } = await db.query<JobPreview>(
    `SELECT j.id, j.name, j.tags, j.status, j.queued_at, j.started_at, j.finished_at, coalesce(j.worker_id, j.target_worker) AS worker, j.host, j.group_id,
            CASE WHEN pg_column_size(b.params) <= ${PREVIEW_MAX_STORED_BYTES} THEN left(b.params::text, ${PREVIEW_CHARS + 1}) END AS params_preview,
            left(j.result_text, ${PREVIEW_CHARS + 1}) AS result_preview,
            CASE WHEN j.error_name IS NOT NULL THEN left(j.error_name || ': ' || coalesce(j.error_message, ''), ${PREVIEW_CHARS + 1}) END AS error_preview,
            left(j.note, ${PREVIEW_CHARS + 1}) AS note_preview
       FROM nbjob.jobs j LEFT JOIN nbjob.bundles b ON b.hash = j.bundle_hash WHERE j.id = ANY($1::bigint[])`,
    [ids],
  );
  const byId = new Map(rows.map((row) => [Number(row.id), row]));
  const cap = offset + limit + COUNT_AHEAD;
  const counted = await db.query<{ total: number }>(`SELECT count(*)::int AS total FROM (SELECT 1 ${from} LIMIT ${cap}) t`, where.values);
  const jobs = ids.flatMap((id) => {
    const row = byId.get(id);
    if (!row) return []; // deleted between the two reads
    return [{
      ...row,
      id,
      group_id: row.group_id === null ? null : Number(row.group_id),
      params_preview: cut(row.params_preview),
      result_preview: cut(row.result_preview),
      error_preview: cut(row.error_preview),
      note_preview: cut(row.note_preview),
    }];
  });
  const total = counted.rows[0].total;
  return { jobs, total, more: total >= cap };
}

/** The last `limit` lines before `beforeId` (all lines when absent), in order, and how many lines the job has. */
export async function readLogTail(db: Db, jobId: number, options: { beforeId?: number; limit: number }): Promise<{ lines: DbLog[]; total: number }> {
  const { rows } = await db.query<DbLog & { escaped: boolean }>(
    `SELECT * FROM (SELECT id, job_id, stream, at, line, escaped FROM nbjob.logs
                     WHERE job_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3) t ORDER BY id`,
    [jobId, options.beforeId ?? null, options.limit],
  );
  const counted = await db.query<{ total: number }>("SELECT count(*)::int AS total FROM nbjob.logs WHERE job_id = $1", [jobId]);
  return { lines: rows.map(({ escaped, ...row }) => ({ ...row, id: Number(row.id), line: decodeLogLine(row.line, escaped) })), total: counted.rows[0].total };
}

/** Jobs made from this one: its reruns and resumptions. */
export async function jobsDerivedFrom(db: Db, jobId: number): Promise<Array<{ id: number; kind: "rerun" | "resumed"; status: JobStatus }>> {
  const { rows } = await db.query<{ id: number; kind: "rerun" | "resumed"; status: JobStatus }>(
    `SELECT id, CASE WHEN rerun_of = $1 THEN 'rerun' ELSE 'resumed' END AS kind, status FROM nbjob.jobs
      WHERE rerun_of = $1 OR resumed_from = $1 ORDER BY id LIMIT 100`,
    [jobId],
  );
  return rows.map((row) => ({ ...row, id: Number(row.id) }));
}

/** Sets (or with null/"" clears) a job's note. */
export async function setJobNote(db: Db, jobId: number, note: string | null): Promise<void> {
  checkStorableText("the note", note);
  if (note !== null && note.length > 100_000) throw new StoreError(`a note is at most 100000 characters, got ${note.length}`);
  const { rowCount } = await db.query("UPDATE nbjob.jobs SET note = $2 WHERE id = $1", [jobId, note === "" ? null : note]);
  if (rowCount === 0) throw new UnknownJobError(jobId);
}

/** A job's parameters one by one, each value's JSON cut to `chars` (the job page; the whole value is fetched on request). */
export async function paramPreviews(db: Db, bundleHash: string, chars = 2_000): Promise<Array<{ name: string; preview: string; cut: boolean }>> {
  const { rows } = await db.query<{ name: string; preview: string }>(
    `SELECT p.key AS name, left(p.value::text, $2) AS preview
       FROM nbjob.bundles b, jsonb_each(b.params) AS p WHERE b.hash = $1 ORDER BY p.key`,
    [bundleHash, chars + 1],
  );
  return rows.map((row) => ({ name: row.name, preview: row.preview.length > chars ? `${row.preview.slice(0, chars)}…` : row.preview, cut: row.preview.length > chars }));
}

/** One parameter's whole value as JSON text, or undefined when the bundle has no such parameter. */
export async function paramValueText(db: Db, bundleHash: string, name: string): Promise<string | undefined> {
  const { rows } = await db.query<{ value: string | null }>("SELECT (params -> $2)::text AS value FROM nbjob.bundles WHERE hash = $1", [bundleHash, name]);
  return rows[0]?.value ?? undefined;
}

/** How many bytes a bundle's parameters take as stored (compressed), to decide whether to read them whole. */
export async function storedParamsBytes(db: Db, bundleHash: string): Promise<number> {
  const { rows } = await db.query<{ bytes: number }>("SELECT pg_column_size(params)::int AS bytes FROM nbjob.bundles WHERE hash = $1", [bundleHash]);
  return rows[0]?.bytes ?? 0;
}

/** A job's analysis values by function name and checkpoint (values above 16 KiB stored are left out: charts want numbers). */
export async function analysisPoints(db: Db, jobIds: number[]): Promise<Array<{ job_id: number; function_name: string; checkpoint_idx: number; value: unknown }>> {
  const { rows } = await db.query<{ job_id: number; function_name: string; checkpoint_idx: number; value: unknown }>(
    `SELECT r.job_id, coalesce(s.names[1], left(r.function_hash, 12)) AS function_name, r.checkpoint_idx,
            CASE WHEN pg_column_size(r.value) <= 16384 THEN r.value END AS value
       FROM nbjob.analysis_rows r JOIN nbjob.snippets s ON s.hash = r.function_hash
      WHERE r.job_id = ANY($1::bigint[]) AND r.error IS NULL
      ORDER BY r.job_id, function_name, r.checkpoint_idx LIMIT 20000`,
    [jobIds],
  );
  return rows.map((row) => ({ ...row, job_id: Number(row.job_id) }));
}

/** A job as its page shows it: every column but the result value, with the printed result cut to `chars`. */
export type JobForPage = Omit<DbJob, "result" | "result_text"> & { note: string | null; result_text: string | null; result_cut: boolean };

export async function jobForPage(db: Db, jobId: number, chars = 10_000): Promise<JobForPage> {
  const { rows } = await db.query<JobForPage & { result_head: string | null }>(
    `SELECT id, bundle_hash, name, tags, status, queued_at, started_at, finished_at, target_worker, worker_id, host, pid, claim,
            timeout_ms, group_id, resumed_from, resumed_from_checkpoint, rerun_of, notebook, environment_hash, note,
            left(result_text, $2) AS result_head, error_name, left(error_message, $2) AS error_message, error_traceback[1:500] AS error_traceback
       FROM nbjob.jobs WHERE id = $1`,
    [jobId, chars + 1],
  );
  if (rows.length === 0) throw new UnknownJobError(jobId);
  const { result_head, ...job } = rows[0];
  const cutResult = result_head !== null && result_head.length > chars;
  return { ...job, result_text: cutResult ? `${result_head.slice(0, chars)}…` : result_head, result_cut: cutResult };
}

/** The whole printed result, or the error with its whole traceback, of one job. */
export async function jobOutcomeText(db: Db, jobId: number, which: "result" | "error"): Promise<string | undefined> {
  const { rows } = await db.query<{ text: string | null }>(
    which === "result"
      ? "SELECT result_text AS text FROM nbjob.jobs WHERE id = $1"
      : "SELECT error_name || ': ' || coalesce(error_message, '') || E'\\n' || array_to_string(coalesce(error_traceback, '{}'), E'\\n') AS text FROM nbjob.jobs WHERE id = $1",
    [jobId],
  );
  if (rows.length === 0) throw new UnknownJobError(jobId);
  return rows[0].text ?? undefined;
}

/** A bundle's code without its parameter values: entries, snippets in program order and local modules, each text cut to `chars`. */
export async function bundleCode(db: Db, bundleHash: string, chars = 50_000): Promise<{
  entries: string[];
  snippets: Array<{ hash: string; kind: string; names: string[]; collector: string | null; source: string }>;
  files: Array<{ path: string; hash: string; content: string }>;
}> {
  const entries = await db.query<{ entries: string[] }>("SELECT entries FROM nbjob.bundles WHERE hash = $1", [bundleHash]);
  const snippets = await db.query<{ hash: string; kind: string; names: string[]; collector: string | null; source: string }>(
    `SELECT s.hash, s.kind, s.names, bs.collector, left(s.source, $2) AS source
       FROM nbjob.bundle_snippets bs JOIN nbjob.snippets s ON s.hash = bs.snippet_hash WHERE bs.bundle_hash = $1 ORDER BY bs.position`,
    [bundleHash, chars],
  );
  const files = await db.query<{ path: string; hash: string; content: string }>(
    `SELECT bf.path, f.hash, left(f.content, $2) AS content FROM nbjob.bundle_files bf JOIN nbjob.files f ON f.hash = bf.file_hash
      WHERE bf.bundle_hash = $1 ORDER BY bf.path`,
    [bundleHash, chars],
  );
  return { entries: entries.rows[0]?.entries ?? [], snippets: snippets.rows, files: files.rows };
}
