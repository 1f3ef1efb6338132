// A 1 GiB value (past bytea's 1 GB cap) stored by content and read back intact, streamed both
// ways. Slow (about a minute), so it runs only with NBJOB_TEST_LARGE=1.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { Client } from "pg";
import { openStore, putBlob, readBlobChunks, getBlobInfo, CHUNK_SIZE } from "../store";
import type { Store } from "../store";

const ADMIN_URL = process.env.NBJOB_TEST_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const SIZE = 1024 * 1024 * 1024 + 12_345; // a little over 1 GiB, so the last chunk is partial
const database = `nbjob_test_large_${process.pid}_${randomBytes(3).toString("hex")}`;
let store: Store | undefined;
let created = false;

/** The same pseudo-random bytes every time (AES-CTR keystream), generated piece by piece. */
function* deterministicBytes(size: number): Generator<Buffer> {
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  const zeros = Buffer.alloc(3 * 1024 * 1024 + 17); // not a divisor of the chunk size, on purpose
  for (let left = size; left > 0; left -= zeros.length) yield cipher.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
}

after(async () => {
  await store?.close();
  if (created) {
    const admin = new Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  }
});

test("a value over 1 GiB round-trips and storing it again uploads nothing", { skip: process.env.NBJOB_TEST_LARGE !== "1" && "set NBJOB_TEST_LARGE=1 (takes about a minute)" }, async () => {
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  created = true;
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  store = openStore({ url: url.toString() });

  const expected = createHash("sha256");
  for (const piece of deterministicBytes(SIZE)) expected.update(piece);
  const expectedHash = expected.digest("hex");

  let started = Date.now();
  const put = await putBlob(store, deterministicBytes(SIZE));
  const writeSeconds = (Date.now() - started) / 1000;
  assert.equal(put.hash, expectedHash);
  assert.equal(put.size, SIZE);
  assert.equal(put.uploaded, SIZE);
  const info = await getBlobInfo(store, put.hash);
  assert.equal(info!.chunk_count, Math.ceil(SIZE / CHUNK_SIZE));

  started = Date.now();
  const actual = createHash("sha256");
  let read = 0;
  for await (const chunk of readBlobChunks(store, put.hash)) {
    actual.update(chunk);
    read += chunk.length;
  }
  const readSeconds = (Date.now() - started) / 1000;
  assert.equal(read, SIZE);
  assert.equal(actual.digest("hex"), expectedHash);

  const again = await putBlob(store, deterministicBytes(SIZE));
  assert.equal(again.uploaded, 0, "an unchanged value costs no upload");
  console.log(`# 1 GiB value: write ${writeSeconds.toFixed(1)} s (${(SIZE / 2 ** 20 / writeSeconds).toFixed(0)} MiB/s), read ${readSeconds.toFixed(1)} s (${(SIZE / 2 ** 20 / readSeconds).toFixed(0)} MiB/s)`);
});
