// Checkpoints: per job and index, the serialized value of each registered variable, stored by
// content (see blobs.ts), so a variable that did not change since the last checkpoint costs a
// row of hashes and nothing more.
import type { Db } from "./db";
import { putBlob, putSmallBlobs, readBlob, CHUNK_SIZE, INLINE_READ_MAX } from "./blobs";
import type { PutBlobResult } from "./blobs";
import { PgCode, pgCode, StoreError } from "./errors";
import { ClaimLostError } from "./jobs";
import { FENCE_IDLE_LIMIT, FENCED_STATUSES } from "./logs";
import { checkStorableText } from "./text";
import type { DbCheckpoint } from "./types";

export interface CheckpointSummary extends DbCheckpoint {
  /** Variable name -> value hash. */
  values: { [name: string]: string };
  /** Variable name -> size of its stored value in bytes. */
  sizes: { [name: string]: number };
}

export interface PutCheckpointResult {
  idx: number;
  /** Variable name -> value hash. */
  hashes: { [name: string]: string };
  /** Bytes sent to the server (0 when no value changed). */
  uploaded: number;
}

/** A checkpoint index that is already stored, or a job that does not exist: storing again cannot help. */
export class CheckpointConflictError extends StoreError {
  override name = "CheckpointConflictError";
  constructor(message: string, readonly kind: "duplicate" | "noJob", options?: ErrorOptions) {
    super(message, options);
  }
}

export interface CheckpointInput {
  idx: number;
  values: { [name: string]: Uint8Array };
  /** Where the job's metric series stood when it was taken (checkpoints.metric_seq/metric_step, migration 000017). */
  metrics?: { seq: number; step: number };
}

/**
 * Stores checkpoint `idx` of a job with its values (serialized bytes per variable name), in one
 * transaction. Storing an index twice is an error naming it.
 */
export async function putCheckpoint(db: Db, jobId: number, idx: number, values: { [name: string]: Uint8Array }, claim?: string): Promise<PutCheckpointResult> {
  const { hashes, uploaded } = await putCheckpoints(db, jobId, [{ idx, values }], claim);
  return { idx, hashes: hashes[0], uploaded };
}

/**
 * Stores several checkpoints of one job in one transaction (a worker catching up after a burst
 * of small checkpoints writes them in a few statements, not a few per checkpoint). Values the
 * store holds already are not sent again. All or none are stored. With `claim` (a worker writing
 * for the run it claimed) they are stored only if the job is still running under that claim, or
 * was cancelled while it ran under it (store/logs.ts FENCED_STATUSES), checked and held in the
 * transaction's first statement; otherwise ClaimLostError.
 */
export async function putCheckpoints(db: Db, jobId: number, checkpoints: readonly CheckpointInput[], claim?: string): Promise<{ hashes: Array<{ [name: string]: string }>; uploaded: number }> {
  // A value found stored and referred to a moment later can have been removed in between by
  // garbage collection (store/cleanup.ts): the foreign key refuses the reference and nothing is
  // stored. Writing again uploads it anew. Collection skips rows a writer has locked, so a second
  // loss needs another collector racing the same value; a few tries are plenty.
  for (let attempt = 1; ; attempt++) {
    try {
      return await putCheckpointsOnce(db, jobId, checkpoints, claim);
    } catch (err) {
      if (attempt >= 5 || !valueWasCollected(err)) throw err;
    }
  }
}

/** A foreign-key error on a value or chunk reference (not on the job): see putCheckpoints. */
function valueWasCollected(err: unknown): boolean {
  for (let e = err as { code?: unknown; constraint?: unknown; cause?: unknown } | null | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (pgCode(e) === PgCode.foreignKeyViolation) return e.constraint === "checkpoint_values_blob_hash_fkey" || e.constraint === "blob_chunks_chunk_hash_fkey";
  }
  return false;
}

async function putCheckpointsOnce(db: Db, jobId: number, checkpoints: readonly CheckpointInput[], claim?: string): Promise<{ hashes: Array<{ [name: string]: string }>; uploaded: number }> {
  for (const { idx } of checkpoints) {
    if (!Number.isInteger(idx) || idx < 0) throw new StoreError(`checkpoint index must be a non-negative integer, got ${idx}`);
  }
  for (const { values } of checkpoints) for (const name of Object.keys(values)) checkStorableText("a checkpointed variable's name", name);
  if (checkpoints.length === 0) return { hashes: [], uploaded: 0 };
  // Large values go first, outside the transaction, so their chunks upload in parallel on the
  // pool's connections; a blob stored for a checkpoint that then fails to commit is found again
  // (not uploaded again) when the write is retried.
  const large = new Map<Uint8Array, PutBlobResult>();
  for (const { values } of checkpoints) {
    for (const bytes of Object.values(values)) if (bytes.byteLength > CHUNK_SIZE && !large.has(bytes)) large.set(bytes, await putBlob(db, bytes));
  }
  const which = checkpoints.length === 1 ? `checkpoint ${checkpoints[0].idx}` : `checkpoints ${checkpoints[0].idx}..${checkpoints[checkpoints.length - 1].idx}`;
  try {
    return await db.transaction(async (tx) => {
      if (claim !== undefined) {
        const fence = await tx.query(`SELECT ${FENCE_IDLE_LIMIT} FROM nbjob.jobs WHERE id = $1 AND status IN ${FENCED_STATUSES} AND claim = $2::bigint FOR SHARE`, [jobId, claim]);
        // Checked first and held to the commit (logs.ts FENCE_CTE says why).
        if (fence.rowCount === 0) throw new ClaimLostError(jobId, claim, which);
      }
      await tx.query(
        "INSERT INTO nbjob.checkpoints (job_id, idx, metric_seq, metric_step) SELECT $1, c.i, c.seq, c.step FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS c(i, seq, step)",
        [jobId, checkpoints.map((c) => c.idx), checkpoints.map((c) => c.metrics?.seq ?? null), checkpoints.map((c) => c.metrics?.step ?? null)],
      );
      const hashes = checkpoints.map(() => ({}) as { [name: string]: string });
      const small: Array<{ at: number; name: string; bytes: Uint8Array }> = [];
      let uploaded = [...large.values()].reduce((sum, put) => sum + put.uploaded, 0);
      for (const [at, { values }] of checkpoints.entries()) {
        for (const [name, bytes] of Object.entries(values)) {
          if (bytes.byteLength <= CHUNK_SIZE) small.push({ at, name, bytes });
          else hashes[at][name] = large.get(bytes)!.hash;
        }
      }
      const smallPut = await putSmallBlobs(tx, small.map((v) => v.bytes));
      small.forEach((v, i) => (hashes[v.at][v.name] = smallPut.hashes[i]));
      uploaded += smallPut.uploaded;
      const rows = checkpoints.flatMap((c, at) => Object.keys(c.values).map((name) => ({ idx: c.idx, name, hash: hashes[at][name] })));
      if (rows.length > 0) {
        await tx.query(
          `INSERT INTO nbjob.checkpoint_values (job_id, idx, name, blob_hash) SELECT $1, v.idx, v.name, v.hash FROM unnest($2::int[], $3::text[], $4::text[]) AS v(idx, name, hash)`,
          [jobId, rows.map((r) => r.idx), rows.map((r) => r.name), rows.map((r) => r.hash)],
        );
      }
      return { hashes, uploaded };
    });
  } catch (err) {
    const code = pgCode(err) ?? pgCode((err as { cause?: unknown } | null)?.cause);
    if (code === PgCode.uniqueViolation) throw new CheckpointConflictError(`job ${jobId} already has ${which}; checkpoint indexes are written once`, "duplicate", { cause: err });
    if (code === PgCode.foreignKeyViolation && !valueWasCollected(err)) throw new CheckpointConflictError(`there is no job ${jobId} to store ${which} for`, "noJob", { cause: err });
    throw err;
  }
}

/** A job's checkpoints in order, with the hash and size in bytes of each value (no value bytes). */
export async function listCheckpoints(db: Db, jobId: number): Promise<CheckpointSummary[]> {
  const { rows } = await db.query<DbCheckpoint & { names: string[] | null; hashes: string[] | null; sizes: string[] | null }>(
    `SELECT c.job_id, c.idx, c.created_at, array_agg(v.name ORDER BY v.name) FILTER (WHERE v.name IS NOT NULL) AS names,
            array_agg(v.blob_hash ORDER BY v.name) FILTER (WHERE v.name IS NOT NULL) AS hashes,
            array_agg(b.size ORDER BY v.name) FILTER (WHERE v.name IS NOT NULL) AS sizes
       FROM nbjob.checkpoints c LEFT JOIN nbjob.checkpoint_values v ON v.job_id = c.job_id AND v.idx = c.idx
            LEFT JOIN nbjob.blobs b ON b.hash = v.blob_hash
      WHERE c.job_id = $1 GROUP BY c.job_id, c.idx, c.created_at ORDER BY c.idx`,
    [jobId],
  );
  return rows.map(({ names, hashes, sizes, ...checkpoint }) => ({
    ...checkpoint,
    values: Object.fromEntries((names ?? []).map((name, i) => [name, hashes![i]])),
    sizes: Object.fromEntries((names ?? []).map((name, i) => [name, Number(sizes![i])])),
  }));
}

/**
 * Copies checkpoints 0..upTo of job `from` to job `to` (a resumed job's history starts with the
 * old job's): rows only, the values are shared blobs, so this costs no bytes. Returns how many.
 */
export async function copyCheckpoints(db: Db, from: number, to: number, upTo: number): Promise<number> {
  return db.transaction(async (tx) => {
    const copied = await tx.query(
      `INSERT INTO nbjob.checkpoints (job_id, idx, created_at, metric_seq, metric_step) SELECT $2, idx, created_at, metric_seq, metric_step FROM nbjob.checkpoints WHERE job_id = $1 AND idx <= $3`,
      [from, to, upTo],
    );
    await tx.query(
      `INSERT INTO nbjob.checkpoint_values (job_id, idx, name, blob_hash) SELECT $2, idx, name, blob_hash FROM nbjob.checkpoint_values WHERE job_id = $1 AND idx <= $3`,
      [from, to, upTo],
    );
    return copied.rowCount ?? 0;
  });
}

/** The serialized values of one checkpoint, by variable name. */
export async function readCheckpoint(db: Db, jobId: number, idx: number): Promise<{ [name: string]: Buffer }> {
  const { rows } = await db.query<{ name: string; blob_hash: string }>(
    "SELECT name, blob_hash FROM nbjob.checkpoint_values WHERE job_id = $1 AND idx = $2 ORDER BY name",
    [jobId, idx],
  );
  if (rows.length === 0) {
    const exists = await db.query("SELECT 1 FROM nbjob.checkpoints WHERE job_id = $1 AND idx = $2", [jobId, idx]);
    if (exists.rowCount === 0) throw new StoreError(`job ${jobId} has no checkpoint ${idx}`);
  }
  const out: { [name: string]: Buffer } = {};
  for (const row of rows) out[row.name] = await readBlob(db, row.blob_hash);
  return out;
}

/**
 * The serialized values of several checkpoints of a job, by index then variable name, as
 * readCheckpoint gives them: values up to INLINE_READ_MAX bytes in one statement for all the
 * checkpoints (an analysis reads a few small checkpoints per request), larger ones chunk by chunk.
 */
export async function readCheckpoints(db: Db, jobId: number, idxs: readonly number[]): Promise<Map<number, { [name: string]: Buffer }>> {
  const { rows } = await db.query<{ idx: number; name: string | null; blob_hash: string | null; d: string | null }>(
    `SELECT c.idx, v.name, v.blob_hash,
            CASE WHEN b.chunk_count = 1 AND b.size <= $3 THEN
              (SELECT encode(ch.data, 'base64') FROM nbjob.blob_chunks bc JOIN nbjob.chunks ch ON ch.hash = bc.chunk_hash
                WHERE bc.blob_hash = v.blob_hash AND bc.position = 0) END AS d
       FROM nbjob.checkpoints c
            LEFT JOIN nbjob.checkpoint_values v ON v.job_id = c.job_id AND v.idx = c.idx
            LEFT JOIN nbjob.blobs b ON b.hash = v.blob_hash
      WHERE c.job_id = $1 AND c.idx = ANY($2::int[])
      ORDER BY c.idx, v.name`,
    [jobId, [...new Set(idxs)], INLINE_READ_MAX],
  );
  const out = new Map<number, { [name: string]: Buffer }>();
  for (const row of rows) {
    let values = out.get(row.idx);
    if (!values) out.set(row.idx, (values = {}));
    if (row.name === null || row.blob_hash === null) continue; // a checkpoint with no values
    // Not inlined (large, several chunks, or its chunk row is missing): readBlob reads it or says what is wrong.
    values[row.name] = row.d !== null ? Buffer.from(row.d, "base64") : await readBlob(db, row.blob_hash);
  }
  for (const idx of idxs) if (!out.has(idx)) throw new StoreError(`job ${jobId} has no checkpoint ${idx}`);
  return out;
}

/** The last checkpoint's index, or undefined when the job has none (for resume). */
export async function lastCheckpointIndex(db: Db, jobId: number): Promise<number | undefined> {
  const { rows } = await db.query<{ idx: number | null }>("SELECT max(idx) AS idx FROM nbjob.checkpoints WHERE job_id = $1", [jobId]);
  return rows[0].idx ?? undefined;
}

