// Analyses: functions run against each checkpoint of a job. Rows are keyed by (job, checkpoint,
// function source hash), so the same function over the same checkpoint is computed once,
// whichever analyzer asks, and asking again is a lookup.
import type { Db, Queryable } from "./db";
import { checkSnippetText, INSERT_SNIPPETS, snippetValues } from "./code";
import { StoreError } from "./errors";
import { checkStorableJson, checkStorableText, visibleText } from "./text";
import { UnknownJobError } from "./jobs";
import type { DbAnalysis, DbAnalysisRow, JobStatus, Json } from "./types";

export interface AnalysisFunctionInput {
  /** The function's TypeScript source (stored as a snippet; its sha256 is the function hash). */
  source: string;
  name: string;
}

/** `value`: what the function returned; analyzers store it as [field, value] pairs (jsonb keeps array order, not key order). */
export interface AnalysisRowInput {
  functionHash: string;
  jobId: number;
  checkpointIdx: number;
  value?: Json;
  error?: { name: string; message: string; traceback?: string[] };
  workerId?: string | null;
}

/**
 * Records an analyzer's functions (as snippets) and the analysis, in one statement, so that an
 * analyzer's start waits for one round trip. Functions stored already are locked (FOR KEY SHARE)
 * for the statement, as putSnippets does, so garbage collection (cleanup.ts) cannot remove one
 * the record refers to. One case is left: a function found stored by the insert but deleted by a
 * collection before the lock was taken. The record is then not inserted, and the statement is
 * run again, which stores that function anew.
 */
const CREATE_ANALYSIS = `WITH held AS (
    SELECT hash FROM nbjob.snippets WHERE hash = ANY($1::text[]) FOR KEY SHARE
  ), new_snippets AS (
    ${INSERT_SNIPPETS} RETURNING hash
  )
  INSERT INTO nbjob.analyses (job_id, function_hashes)
  SELECT $5, $1::text[]
   WHERE (SELECT count(*) FROM (SELECT hash FROM held UNION SELECT hash FROM new_snippets) kept) = (SELECT count(DISTINCT h) FROM unnest($1::text[]) h)
  RETURNING *`;

/** How many times createAnalysis runs its statement while collections remove its functions. */
const CREATE_ANALYSIS_ATTEMPTS = 5;

/** Records an analyzer request; stores its functions as snippets. Returns it with the function hashes in order. */
export async function createAnalysis(db: Db, jobId: number, functions: AnalysisFunctionInput[]): Promise<DbAnalysis> {
  for (const f of functions) checkStorableText("an analysis function's name", f.name);
  const snippets = functions.map((f) => ({ kind: "function", names: [f.name], source: f.source }));
  snippets.forEach(checkSnippetText);
  for (let attempt = 1; attempt <= CREATE_ANALYSIS_ATTEMPTS; attempt++) {
    const { rows } = await db.query<DbAnalysis>(CREATE_ANALYSIS, [...snippetValues(snippets), jobId]);
    if (rows.length === 1) return rows[0];
  }
  throw new StoreError(`could not record the analysis of job ${jobId}: a garbage collection (nbjob gc) kept removing its functions' code; run it again once the collection has ended`);
}

/**
 * Stores what one function returned at one checkpoint. Returns false (and keeps the first) when
 * that row was stored already, e.g. by another worker sharing the checkpoints.
 */
export async function putAnalysisRow(db: Db, row: AnalysisRowInput): Promise<boolean> {
  return (await putAnalysisRows(db, [row])) === 1;
}

/**
 * Stores several rows (a worker's functions at one checkpoint) in one statement, each as
 * putAnalysisRow would; a row stored already is kept as it was. Returns how many were new.
 */
export async function putAnalysisRows(db: Queryable, rows: readonly AnalysisRowInput[]): Promise<number> {
  if (rows.length === 0) return 0;
  const values: Array<string | null> = [];
  const errors: Array<string | null> = [];
  for (const row of rows) {
    let { value, error } = row;
    try {
      checkStorableJson("the value returned", value);
    } catch (err) {
      // jsonb cannot hold it: the row says so (as if the function had thrown) rather than the write failing.
      value = undefined;
      error = { name: "TypeError", message: (err as Error).message };
    }
    if (error) error = { name: visibleText(error.name), message: visibleText(error.message), ...(error.traceback ? { traceback: error.traceback.map((l) => visibleText(l)) } : {}) };
    values.push(value === undefined ? null : JSON.stringify(value));
    errors.push(error ? JSON.stringify(error) : null);
  }
  const { rowCount } = await db.query(
    `INSERT INTO nbjob.analysis_rows (function_hash, job_id, checkpoint_idx, value, error, worker_id)
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::jsonb[], $5::jsonb[], $6::text[]) ON CONFLICT DO NOTHING`,
    [rows.map((r) => r.functionHash), rows.map((r) => r.jobId), rows.map((r) => r.checkpointIdx), values, errors, rows.map((r) => r.workerId ?? null)],
  );
  return rowCount ?? 0;
}

/** Stored rows of these functions over a job, by checkpoint then function. */
export async function getAnalysisRows(db: Db, jobId: number, functionHashes: string[]): Promise<DbAnalysisRow[]> {
  const { rows } = await db.query<DbAnalysisRow>(
    `SELECT * FROM nbjob.analysis_rows WHERE job_id = $1 AND function_hash = ANY($2::text[])
      ORDER BY checkpoint_idx, array_position($2::text[], function_hash)`,
    [jobId, functionHashes],
  );
  return rows;
}

/**
 * The job's status, how many checkpoints it has, and which of them (in order) lack the row of at
 * least one of these functions: what an analyzer has left to hand out. One statement, so the
 * status and the checkpoints come from one snapshot: a job that had ended by then had stored all
 * its checkpoints. Throws UnknownJobError when there is no such job.
 */
export async function analysisBacklog(db: Db, jobId: number, functionHashes: string[]): Promise<{ status: JobStatus; checkpoints: number; missing: number[] }> {
  const { rows } = await db.query<{ status: JobStatus; idx: number | null; missing: boolean }>(
    `SELECT j.status, c.idx,
            (SELECT count(*) FROM nbjob.analysis_rows r
              WHERE r.job_id = c.job_id AND r.checkpoint_idx = c.idx AND r.function_hash = ANY($2::text[])) < cardinality($2::text[]) AS missing
       FROM nbjob.jobs j LEFT JOIN nbjob.checkpoints c ON c.job_id = j.id
      WHERE j.id = $1
      ORDER BY c.idx`,
    [jobId, [...new Set(functionHashes)]],
  );
  if (rows.length === 0) throw new UnknownJobError(jobId);
  // A job without checkpoints comes back as one row whose idx is null.
  const stored = rows.filter((row) => row.idx !== null);
  return { status: rows[0].status, checkpoints: stored.length, missing: stored.filter((row) => row.missing).map((row) => row.idx!) };
}

/** Removes an analysis record (one createAnalyzer made and then refused); its rows are keyed by function, not by it. */
export async function deleteAnalysis(db: Db, id: number): Promise<void> {
  await db.query("DELETE FROM nbjob.analyses WHERE id = $1", [id]);
}

export async function getAnalysis(db: Db, id: number): Promise<DbAnalysis | undefined> {
  const { rows } = await db.query<DbAnalysis>("SELECT * FROM nbjob.analyses WHERE id = $1", [id]);
  return rows[0];
}

/** Which (checkpoint, function) rows are stored already, as `"idx:hash"` keys, among these checkpoints. */
export async function storedAnalysisCells(db: Queryable, jobId: number, functionHashes: string[], checkpoints: number[]): Promise<Set<string>> {
  const { rows } = await db.query<{ checkpoint_idx: number; function_hash: string }>(
    `SELECT checkpoint_idx, function_hash FROM nbjob.analysis_rows
      WHERE job_id = $1 AND function_hash = ANY($2::text[]) AND checkpoint_idx = ANY($3::int[])`,
    [jobId, functionHashes, checkpoints],
  );
  return new Set(rows.map((row) => `${row.checkpoint_idx}:${row.function_hash}`));
}


/**
 * Runs `cb` holding the analysis lock of one checkpoint of a job (a session advisory lock on a
 * borrowed connection), so two workers never compute the same rows at the same time: the second
 * waits, then finds them stored. The lock goes with the connection if that drops.
 */
export async function withAnalysisLock<T>(db: Db, jobId: number, checkpointIdx: number, cb: () => Promise<T>): Promise<T> {
  return withAnalysisLocks(db, jobId, [checkpointIdx], cb);
}

/**
 * withAnalysisLock for several checkpoints of a job at once: one statement takes their locks in
 * ascending order (every worker takes them in that order, so two workers locking overlapping sets
 * cannot deadlock), one releases them. `cb` gets the connection holding the locks, idle otherwise:
 * statements on it need no other connection from the pool.
 */
export async function withAnalysisLocks<T>(db: Db, jobId: number, checkpointIdxs: readonly number[], cb: (locked: Queryable) => Promise<T>): Promise<T> {
  const idxs = [...new Set(checkpointIdxs)].sort((a, b) => a - b);
  // The same key per (job, checkpoint) as a single lock: `nbjob.analysis:<job>:<checkpoint>`.
  const keys = "hashtextextended('nbjob.analysis:' || $1::bigint::text || ':' || i::text, 0)";
  return db.withClient(async (client) => {
    try {
      await client.query(`SELECT pg_advisory_lock(${keys}) FROM unnest($2::int[]) WITH ORDINALITY AS l(i, n) ORDER BY n`, [jobId, idxs]);
    } catch (err) {
      // Some of the locks may be held: this session's are only ours (the connection is borrowed), so release all.
      await client.query("SELECT pg_advisory_unlock_all()").catch(() => undefined);
      throw err;
    }
    try {
      return await cb(client);
    } finally {
      await client.query(`SELECT pg_advisory_unlock(${keys}) FROM unnest($2::int[]) AS i`, [jobId, idxs]);
    }
  });
}
