// A disk without room: the store's values live on a tablespace on a 4 MB tmpfs; writing a value
// that does not fit is one clear error and leaves everything stored before unchanged. Needs root
// (mount); skipped otherwise.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "pg";
import { openStore, putBlob, readBlob, putBundle, createJob, getJob, StoreError } from "../store";
import type { Store } from "../store";

const ADMIN_URL = process.env.NBJOB_TEST_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const suffix = `${process.pid}_${randomBytes(3).toString("hex")}`;
const database = `nbjob_test_diskfull_${suffix}`;
const tablespace = `nbjob_test_full_${suffix}`;
let mountPoint: string | undefined;
let admin: Client;
let store: Store | undefined;
let skipReason: string | false = false;

function tryMountTinyDisk(): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "nbjob-full-"));
  try {
    const uid = execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim();
    const gid = execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim();
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=4m,uid=${uid},gid=${gid},mode=0700`, "tmpfs", dir], { stdio: "ignore" });
    return dir;
  } catch {
    rmdirSync(dir);
    return undefined;
  }
}

before(async () => {
  admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  const host = new URL(ADMIN_URL).hostname;
  if (host !== "127.0.0.1" && host !== "localhost") skipReason = "the server must be on this machine";
  else {
    mountPoint = tryMountTinyDisk();
    if (!mountPoint) skipReason = "needs root and mount to make a small disk";
  }
});

after(async () => {
  await store?.close();
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.query(`DROP TABLESPACE IF EXISTS ${tablespace}`).catch(() => undefined);
  await admin.end();
  if (mountPoint) {
    execFileSync("umount", [mountPoint]);
    rmdirSync(mountPoint);
  }
});

test("a value that does not fit on the server's disk is one clear error and changes nothing", async (t) => {
  if (skipReason) return t.skip(skipReason);
  await admin.query(`CREATE TABLESPACE ${tablespace} LOCATION '${mountPoint}'`);
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  store = openStore({ url: url.toString() });
  await store.ready();
  // Values (chunks) go to the 4 MB disk; everything else stays where it was.
  await store.query(`ALTER TABLE nbjob.chunks SET TABLESPACE ${tablespace}`);

  const job = await createJob(store, { bundleHash: await putBundle(store, { source: "1;\n", snippets: [], params: {}, entries: ["1"] }) });
  const small = randomBytes(100_000);
  const kept = await putBlob(store, small);
  const { rows: before } = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.blobs");

  await assert.rejects(putBlob(store, randomBytes(8 * 1024 * 1024)), (err: Error) => {
    assert.ok(err instanceof StoreError, `a StoreError, got ${err.name}: ${err.message}`);
    assert.match(err.message, /has no room left on its disk .*; free space on the server's disk and retry; nothing was written/);
    assert.equal(err.message.split("\n").length, 1);
    return true;
  });

  const { rows: afterRows } = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.blobs");
  assert.equal(afterRows[0].n, before[0].n, "no half-stored value");
  assert.ok((await readBlob(store, kept.hash)).equals(small), "what was stored before is intact");
  assert.equal((await getJob(store, job.id))!.status, "queued");
});
