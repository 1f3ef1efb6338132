// Values stored by content. A blob (sha256 of its bytes) is an ordered list of chunks of at most
// CHUNK_SIZE bytes, each stored once by its own sha256: an unchanged value costs one lookup and
// no upload, a value that changed in part re-uses its unchanged chunks, and values far beyond
// bytea's 1 GB per-field cap fit.
import { createHash } from "node:crypto";
import type { Db, Queryable } from "./db";
import { StoreError } from "./errors";
import { sha256 } from "./hash";
import type { DbBlob } from "./types";

/** Bytes per chunk: big enough that a 1 GiB value is 128 rows, small enough to hold a few in memory. */
export const CHUNK_SIZE = 8 * 1024 * 1024;

export interface PutBlobResult {
  hash: string;
  size: number;
  /** Bytes actually sent to the server (0 when the value or all its chunks were stored already). */
  uploaded: number;
}

type ByteSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** Re-cuts any sequence of byte arrays into CHUNK_SIZE pieces (the last may be shorter). */
async function* rechunk(source: ByteSource, size: number): AsyncGenerator<Buffer> {
  if (source instanceof Uint8Array) {
    const buffer = Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    for (let offset = 0; offset < buffer.length; offset += size) yield buffer.subarray(offset, offset + size);
    return;
  }
  let parts: Buffer[] = [];
  let held = 0;
  for await (const piece of source as AsyncIterable<Uint8Array>) {
    let buffer = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    while (held + buffer.length >= size) {
      const take = size - held;
      parts.push(buffer.subarray(0, take));
      yield parts.length === 1 ? Buffer.from(parts[0]) : Buffer.concat(parts, size);
      buffer = buffer.subarray(take);
      parts = [];
      held = 0;
    }
    if (buffer.length > 0) {
      parts.push(Buffer.from(buffer)); // copy: the caller may reuse its buffer
      held += buffer.length;
    }
  }
  if (held > 0) yield Buffer.concat(parts, held);
}

async function blobExists(db: Queryable, hash: string): Promise<boolean> {
  const { rowCount } = await db.query("SELECT 1 FROM nbjob.blobs WHERE hash = $1", [hash]);
  return rowCount === 1;
}

/**
 * Stores small values (each at most CHUNK_SIZE) that are not stored yet, in one statement; a
 * single-chunk blob's hash is its chunk's hash. Returns the hashes in input order and the bytes
 * uploaded.
 */
export async function putSmallBlobs(db: Db, values: Uint8Array[]): Promise<{ hashes: string[]; uploaded: number }> {
  const hashes = values.map((value) => {
    if (value.byteLength > CHUNK_SIZE) throw new StoreError(`putSmallBlobs takes values up to ${CHUNK_SIZE} bytes, got ${value.byteLength}; use putBlob`);
    return sha256(value);
  });
  if (values.length === 0) return { hashes, uploaded: 0 };
  const { rows } = await db.query<{ hash: string }>("SELECT hash FROM nbjob.blobs WHERE hash = ANY($1::text[])", [hashes]);
  const present = new Set(rows.map((row) => row.hash));
  const missing = new Map<string, Buffer>();
  values.forEach((value, i) => {
    if (!present.has(hashes[i])) missing.set(hashes[i], Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  });
  if (missing.size === 0) return { hashes, uploaded: 0 };
  const missingHashes = [...missing.keys()];
  const missingData = [...missing.values()];
  await db.query(
    `WITH c AS (
       INSERT INTO nbjob.chunks (hash, data) SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT (hash) DO NOTHING
     ), b AS (
       INSERT INTO nbjob.blobs (hash, size, chunk_count)
       SELECT h, s, CASE WHEN s = 0 THEN 0 ELSE 1 END FROM unnest($1::text[], $3::bigint[]) AS v(h, s)
       ON CONFLICT (hash) DO NOTHING RETURNING hash, size
     )
     INSERT INTO nbjob.blob_chunks (blob_hash, position, chunk_hash) SELECT hash, 0, hash FROM b WHERE size > 0`,
    [missingHashes, missingData, missingData.map((d) => d.length)],
  );
  return { hashes, uploaded: missingData.reduce((sum, d) => sum + d.length, 0) };
}

// Chunks of one large value sent at once: each INSERT is a server backend writing its chunk, so
// two run on two cores (a single INSERT of the whole value uses one).
const PARALLEL_CHUNK_UPLOADS = 2;

/**
 * Uploads the chunks of `data` that the store lacks, PARALLEL_CHUNK_UPLOADS at a time. Each chunk
 * is committed on its own (content-addressed, so one that a failed caller leaves unreferenced is
 * only found again by the next value that has it). On a pool the uploads use separate connections;
 * inside a transaction they run one after another on its connection.
 */
async function uploadChunks(db: Db, data: Uint8Array): Promise<{ chunkHashes: string[]; uploaded: number }> {
  const whole = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < whole.length; offset += CHUNK_SIZE) chunks.push(whole.subarray(offset, offset + CHUNK_SIZE));
  const chunkHashes = chunks.map((chunk) => sha256(chunk));
  const { rows } = await db.query<{ hash: string }>("SELECT hash FROM nbjob.chunks WHERE hash = ANY($1::text[])", [chunkHashes]);
  const present = new Set(rows.map((row) => row.hash));
  const missing = [...new Set(chunkHashes.filter((hash) => !present.has(hash)))];
  let uploaded = 0;
  let next = 0;
  const uploader = async () => {
    for (let i = next++; i < missing.length; i = next++) {
      const chunk = chunks[chunkHashes.indexOf(missing[i])];
      await db.query("INSERT INTO nbjob.chunks (hash, data) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING", [missing[i], chunk]);
      uploaded += chunk.length;
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_CHUNK_UPLOADS, missing.length) }, uploader));
  return { chunkHashes, uploaded };
}

/**
 * Stores a value of any size by content and returns its hash. A Uint8Array is hashed first, so
 * storing a value that is already there sends nothing, and its missing chunks are uploaded in
 * parallel before the blob row that lists them; a stream is uploaded chunk by chunk (chunks
 * already stored are skipped) and never held whole in memory.
 */
export async function putBlob(db: Db, data: ByteSource): Promise<PutBlobResult> {
  if (data instanceof Uint8Array) {
    if (data.byteLength <= CHUNK_SIZE) {
      const { hashes, uploaded } = await putSmallBlobs(db, [data]);
      return { hash: hashes[0], size: data.byteLength, uploaded };
    }
    const hash = sha256(data);
    if (await blobExists(db, hash)) return { hash, size: data.byteLength, uploaded: 0 };
    const { chunkHashes, uploaded } = await uploadChunks(db, data);
    await db.transaction(async (tx) => {
      const inserted = await tx.query("INSERT INTO nbjob.blobs (hash, size, chunk_count) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING RETURNING hash", [hash, data.byteLength, chunkHashes.length]);
      if (inserted.rowCount === 1) await linkChunks(tx, hash, chunkHashes);
    });
    return { hash, size: data.byteLength, uploaded };
  }
  return db.transaction(async (tx) => {
    const whole = createHash("sha256");
    const chunkHashes: string[] = [];
    let size = 0;
    let uploaded = 0;
    for await (const chunk of rechunk(data, CHUNK_SIZE)) {
      whole.update(chunk);
      size += chunk.length;
      const chunkHash = sha256(chunk);
      chunkHashes.push(chunkHash);
      const { rowCount } = await tx.query("SELECT 1 FROM nbjob.chunks WHERE hash = $1", [chunkHash]);
      if (rowCount === 0) {
        await tx.query("INSERT INTO nbjob.chunks (hash, data) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING", [chunkHash, chunk]);
        uploaded += chunk.length;
      }
    }
    const hash = whole.digest("hex");
    const inserted = await tx.query("INSERT INTO nbjob.blobs (hash, size, chunk_count) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING RETURNING hash", [hash, size, chunkHashes.length]);
    if (inserted.rowCount === 1) await linkChunks(tx, hash, chunkHashes);
    return { hash, size, uploaded };
  });
}

/** The blob's chunk list, in order. */
async function linkChunks(tx: Queryable, hash: string, chunkHashes: string[]): Promise<void> {
  if (chunkHashes.length === 0) return;
  await tx.query(
    `INSERT INTO nbjob.blob_chunks (blob_hash, position, chunk_hash)
     SELECT $1, c.n - 1, c.h FROM unnest($2::text[]) WITH ORDINALITY AS c(h, n)`,
    [hash, chunkHashes],
  );
}

export async function getBlobInfo(db: Db, hash: string): Promise<DbBlob | undefined> {
  const { rows } = await db.query<DbBlob>("SELECT * FROM nbjob.blobs WHERE hash = $1", [hash]);
  return rows[0];
}

/**
 * One chunk's bytes. Fetched as 1 MiB base64 slices in rows: the driver decodes text results, and
 * many small base64 fields are several times faster than one field of hex twice the chunk's size.
 */
async function readChunk(db: Db, hash: string, position: number): Promise<Buffer | undefined> {
  const { rows } = await db.query<{ d: string }>(
    `SELECT encode(substring(c.data FROM s FOR $3), 'base64') AS d
       FROM nbjob.blob_chunks bc JOIN nbjob.chunks c ON c.hash = bc.chunk_hash,
            generate_series(1, length(c.data), $3) AS s
      WHERE bc.blob_hash = $1 AND bc.position = $2
      ORDER BY s`,
    [hash, position, READ_SLICE],
  );
  if (rows.length === 0) return undefined;
  return rows.length === 1 ? Buffer.from(rows[0].d, "base64") : Buffer.concat(rows.map((row) => Buffer.from(row.d, "base64")));
}
const READ_SLICE = 1024 * 1024;
/** Values up to this size are read inline, as one base64 field, by statements that read several at once. */
export const INLINE_READ_MAX = READ_SLICE;

/** The value's chunks in order, fetched one at a time (for values too large to hold twice). */
export async function* readBlobChunks(db: Db, hash: string): AsyncGenerator<Buffer> {
  const info = await getBlobInfo(db, hash);
  if (!info) throw new StoreError(`no stored value has hash ${hash}`);
  for (let position = 0; position < info.chunk_count; position++) {
    const chunk = await readChunk(db, hash, position);
    if (!chunk) throw new StoreError(`stored value ${hash} is missing chunk ${position}; the store is damaged`);
    yield chunk;
  }
}

/** The whole value as one Buffer. */
export async function readBlob(db: Db, hash: string): Promise<Buffer> {
  const info = await getBlobInfo(db, hash);
  if (!info) throw new StoreError(`no stored value has hash ${hash}`);
  if (info.chunk_count === 1) {
    const chunk = await readChunk(db, hash, 0);
    if (!chunk) throw new StoreError(`stored value ${hash} is missing its chunk; the store is damaged`);
    return chunk;
  }
  const out = Buffer.allocUnsafe(info.size);
  let offset = 0;
  for await (const chunk of readBlobChunks(db, hash)) offset += chunk.copy(out, offset);
  if (offset !== info.size) throw new StoreError(`stored value ${hash} should be ${info.size} bytes but its chunks hold ${offset}; the store is damaged`);
  return out;
}
