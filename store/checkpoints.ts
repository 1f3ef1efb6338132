// Checkpoints: per job and index, the serialized value of each registered variable, stored by
// content (see blobs.ts), so a variable that did not change since the last checkpoint costs a
// row of hashes and nothing more.
import type { Db } from "./db";
import { putBlob, putSmallBlobs, readBlob, CHUNK_SIZE } from "./blobs";
import { PgCode, pgCode, StoreError } from "./errors";
import type { DbCheckpoint } from "./types";

export interface CheckpointSummary extends DbCheckpoint {
  /** Variable name -> value hash. */
  values: { [name: string]: string };
}

export interface PutCheckpointResult {
  idx: number;
  /** Variable name -> value hash. */
  hashes: { [name: string]: string };
  /** Bytes sent to the server (0 when no value changed). */
  uploaded: number;
}

/**
 * Stores checkpoint `idx` of a job with its values (serialized bytes per variable name), in one
 * transaction. Storing an index twice is an error naming it.
 */
export async function putCheckpoint(db: Db, jobId: number, idx: number, values: { [name: string]: Uint8Array }): Promise<PutCheckpointResult> {
  if (!Number.isInteger(idx) || idx < 0) throw new StoreError(`checkpoint index must be a non-negative integer, got ${idx}`);
  const names = Object.keys(values);
  try {
    return await db.transaction(async (tx) => {
      await tx.query("INSERT INTO nbjob.checkpoints (job_id, idx) VALUES ($1, $2)", [jobId, idx]);
      const small = names.filter((name) => values[name].byteLength <= CHUNK_SIZE);
      const { hashes: smallHashes, uploaded: smallUploaded } = await putSmallBlobs(tx, small.map((name) => values[name]));
      const hashes: { [name: string]: string } = {};
      small.forEach((name, i) => (hashes[name] = smallHashes[i]));
      let uploaded = smallUploaded;
      for (const name of names.filter((n) => values[n].byteLength > CHUNK_SIZE)) {
        const put = await putBlob(tx, values[name]);
        hashes[name] = put.hash;
        uploaded += put.uploaded;
      }
      if (names.length > 0) {
        await tx.query(
          `INSERT INTO nbjob.checkpoint_values (job_id, idx, name, blob_hash) SELECT $1, $2, v.name, v.hash FROM unnest($3::text[], $4::text[]) AS v(name, hash)`,
          [jobId, idx, names, names.map((name) => hashes[name])],
        );
      }
      return { idx, hashes, uploaded };
    });
  } catch (err) {
    if (pgCode(err) === PgCode.uniqueViolation) throw new StoreError(`job ${jobId} already has checkpoint ${idx}; checkpoint indexes are written once`, { cause: err });
    if (pgCode(err) === PgCode.foreignKeyViolation) throw new StoreError(`there is no job ${jobId} to store checkpoint ${idx} for`, { cause: err });
    throw err;
  }
}

/** A job's checkpoints in order, with the hash of each value (no value bytes). */
export async function listCheckpoints(db: Db, jobId: number): Promise<CheckpointSummary[]> {
  const { rows } = await db.query<DbCheckpoint & { names: string[] | null; hashes: string[] | null }>(
    `SELECT c.job_id, c.idx, c.created_at, array_agg(v.name ORDER BY v.name) FILTER (WHERE v.name IS NOT NULL) AS names,
            array_agg(v.blob_hash ORDER BY v.name) FILTER (WHERE v.name IS NOT NULL) AS hashes
       FROM nbjob.checkpoints c LEFT JOIN nbjob.checkpoint_values v ON v.job_id = c.job_id AND v.idx = c.idx
      WHERE c.job_id = $1 GROUP BY c.job_id, c.idx, c.created_at ORDER BY c.idx`,
    [jobId],
  );
  return rows.map(({ names, hashes, ...checkpoint }) => ({
    ...checkpoint,
    values: Object.fromEntries((names ?? []).map((name, i) => [name, hashes![i]])),
  }));
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

/** The last checkpoint's index, or undefined when the job has none (for resume). */
export async function lastCheckpointIndex(db: Db, jobId: number): Promise<number | undefined> {
  const { rows } = await db.query<{ idx: number | null }>("SELECT max(idx) AS idx FROM nbjob.checkpoints WHERE job_id = $1", [jobId]);
  return rows[0].idx ?? undefined;
}

