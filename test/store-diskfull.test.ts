// A disk without room: the store's values live on a tablespace on a small tmpfs; writing a value
// that does not fit is one clear error and leaves everything stored before unchanged, and a real
// worker whose job checkpoints onto a full disk waits, says so, and goes on once `nbjob rm` and
// `nbjob gc` free space. Needs root (mount); skipped otherwise.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "pg";
import { deserialize } from "node:v8";
import { openStore, putBlob, readBlob, putBundle, createJob, getJob, notifyJobQueued, readLogs, StoreError } from "../store";
import type { DbJob, Store } from "../store";
import { listCheckpoints, readCheckpoint } from "../store/checkpoints";

const ADMIN_URL = process.env.NBJOB_TEST_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const suffix = `${process.pid}_${randomBytes(3).toString("hex")}`;
const database = `nbjob_test_diskfull_${suffix}`;
const tablespace = `nbjob_test_full_${suffix}`;
const mountPoints: string[] = [];
let mountPoint: string | undefined;
let admin: Client;
let store: Store | undefined;
let skipReason: string | false = false;

function tryMountTinyDisk(size = "4m"): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "nbjob-full-"));
  try {
    const uid = execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim();
    const gid = execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim();
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},uid=${uid},gid=${gid},mode=0700`, "tmpfs", dir], { stdio: "ignore" });
    mountPoints.push(dir);
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
  for (const dir of mountPoints) {
    execFileSync("umount", [dir]);
    rmdirSync(dir);
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

// ---------------------------------------------------------------- a worker's job on a full disk

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Deterministic bytes that do not compress (xorshift32), so TOAST stores them at full size. */
function pattern(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 255;
  }
  return out;
}
// The same function in the job's bundle (a bundle is TypeScript source).
const PATTERN = `function pattern(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 255;
  }
  return out;
}`;
const KiB = 1024;
const MiB = 1024 * KiB;
// A 5 MiB disk: the old job keeps 2.5 MiB; the growing job's 0.5, 1 and 1.5 MiB checkpoints fit
// only once the old job's value is gone.
const OLD_BYTES = 2.5 * MiB;
const GROWING = [512 * KiB, 1 * MiB, 1.5 * MiB];
const PROGRAM = `${PATTERN}
const state = { data: new Uint8Array(0) };
jobtracker.registerCheckpointer("state");
async function grow(seed: number, sizes: number[]) {
  for (const [k, size] of sizes.entries()) {
    state.data = pattern(seed + k, size);
    jobtracker.checkpoint();
    await jobtracker.flush();
    console.log("stored " + k);
  }
  return sizes.length;
}
`;

test("a job checkpointing onto a full disk waits and says so, loses nothing, and goes on once nbjob rm and gc free space; no restarts", { timeout: 180_000 }, async (t) => {
  if (skipReason) return t.skip(skipReason);
  const disk = tryMountTinyDisk("5m");
  if (!disk) return t.skip("needs root and mount to make a small disk");
  const space = `${tablespace}_w`;
  const db = `${database}_w`;
  const home = mkdtempSync(join(tmpdir(), "nbjob-full-home-"));
  let worker: ChildProcess | undefined;
  let workerLog = "";
  let jobs: Store | undefined;
  t.after(async () => {
    if (worker?.exitCode === null) worker.kill("SIGKILL");
    await jobs?.close();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.query(`DROP TABLESPACE IF EXISTS ${space}`).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });
  await admin.query(`CREATE TABLESPACE ${space} LOCATION '${disk}'`);
  await admin.query(`CREATE DATABASE ${db}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${db}`;
  jobs = openStore({ url: url.toString() });
  await jobs.ready();
  await jobs.query(`ALTER TABLE nbjob.chunks SET TABLESPACE ${space}`);
  const store = jobs;

  // This process stores the bundles and the worker runs them: one cluster key for both.
  process.env.NBJOB_CLUSTER_KEY ??= randomBytes(32).toString("hex");
  const env = { ...process.env, NBJOB_DATABASE_URL: url.toString(), NBJOB_HOME: home, NBJOB_STORE_WAIT_MS: "20000", NBJOB_DEBUG: "" };
  const file = join(home, "worker.json");
  worker = spawn(process.execPath, [NBJOB, "worker", "--connection-file", file, "--id", "full/0", "--profile", "full"], { stdio: ["ignore", "pipe", "pipe"], env });
  worker.stdout?.on("data", (d: Buffer) => (workerLog += d.toString()));
  worker.stderr?.on("data", (d: Buffer) => (workerLog += d.toString()));
  for (let waited = 0; !existsSync(file); waited += 50) {
    assert.ok(waited < 30_000, `the worker wrote no connection file:\n${workerLog}`);
    await sleep(50);
  }
  const nbjob = (...args: string[]) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      execFile(process.execPath, [NBJOB, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, out: stdout + stderr }));
    });
  const queue = async (name: string, entry: string) => {
    const bundleHash = await putBundle(store, { source: `// ${name}\n${PROGRAM}`, snippets: [], params: {}, entries: [entry] });
    const job = await createJob(store, { bundleHash, name });
    await notifyJobQueued(store);
    return job.id;
  };
  const waitFor = async (id: number, statuses: DbJob["status"][], timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = (await getJob(store, id))!;
      if (statuses.includes(job.status)) return job;
      assert.ok(Date.now() < deadline, `job ${id} is ${job.status}, not ${statuses.join("/")}, after ${timeoutMs} ms;\n${workerLog}`);
      await sleep(100);
    }
  };
  const notes = async (id: number) => (await readLogs(store, id)).map((l) => l.line).filter((line) => line.startsWith("[nbjob:"));
  /** Checkpoint `idx` of job `id`, read back, is exactly the bytes the job made. */
  const assertWhole = async (id: number, idx: number, expected: Uint8Array) => {
    const values = await readCheckpoint(store, id, idx);
    const state = deserialize(values.state) as { data: Uint8Array };
    assert.equal(state.data.byteLength, expected.byteLength, `job ${id} checkpoint ${idx}: size`);
    assert.ok(Buffer.from(state.data.buffer, state.data.byteOffset, state.data.byteLength).equals(Buffer.from(expected)), `job ${id} checkpoint ${idx}: byte-exact`);
  };

  // An old job keeps 2.5 MiB on the small disk.
  const old = await queue("old", `grow(100, [${OLD_BYTES}])`);
  assert.equal((await waitFor(old, ["done", "failed"], 60_000)).status, "done", workerLog);
  await assertWhole(old, 0, pattern(100, OLD_BYTES));
  // A store in use has been vacuumed (autovacuum, an earlier nbjob gc): the values' table has its
  // free-space and visibility maps. VACUUM on a full disk cannot create them (it fails with
  // "could not extend file ..._vm"), so without them no space freed by rm can be reused.
  await store.query("VACUUM nbjob.chunks");

  // The growing job fills the disk: its last checkpoint cannot be stored, and it waits.
  const growing = await queue("growing", `grow(1, [${GROWING.join(", ")}])`);
  const full = Date.now();
  for (;;) {
    const said = (await notes(growing)).find((line) => /store's disk .*is full/.test(line));
    if (said) {
      assert.match(said, /store's disk on \/tmp\/nbjob-full-\w+ \(tablespace nbjob_test_full_\w+_w\) is full: checkpoint \d+ \(\d+\.\d MiB\) could not be stored \(.*No space left on device.*\); the job waits and retries for up to 20 s \(NBJOB_STORE_WAIT_MS\)/);
      assert.match(said, /nbjob rm old jobs, then nbjob gc/);
      break;
    }
    const job = (await getJob(store, growing))!;
    assert.ok(job.status === "queued" || job.status === "running", `job ${growing} is ${job.status} (${job.error_message}), not waiting for the disk;\n${workerLog}`);
    assert.ok(Date.now() - full < 60_000, `job ${growing} never said the disk is full;\n${workerLog}`);
    await sleep(200);
  }
  await sleep(2_000);
  assert.equal((await getJob(store, growing))!.status, "running", "the job waits, it does not fail");
  const before = await listCheckpoints(store, growing);
  assert.ok(before.length < GROWING.length, `job ${growing} stored all its checkpoints on a full disk?`);
  assert.deepEqual(before.map((c) => c.idx), Array.from({ length: before.length }, (_, i) => i), "no half-written checkpoint, no hole");
  for (const c of before) await assertWhole(growing, c.idx, pattern(1 + c.idx, GROWING[c.idx]));
  await assertWhole(old, 0, pattern(100, OLD_BYTES));
  const printed = (await readLogs(store, growing)).map((l) => l.line).filter((line) => line.startsWith("stored"));
  assert.deepEqual(printed, before.map((c) => `stored ${c.idx}`), "the job went no further than its stored checkpoints");

  // Space is freed with nbjob's own commands; the worker and the server are not restarted.
  const rm = await nbjob("rm", String(old));
  assert.equal(rm.code, 0, rm.out);
  const gc = await nbjob("gc", "--grace", "0s");
  assert.equal(gc.code, 0, gc.out);
  t.diagnostic(`after rm + gc: ${gc.out.trim().split("\n").join(" | ")}; df: ${execFileSync("df", ["-k", disk], { encoding: "utf8" }).trim().split("\n").pop()}`);
  const freedAt = Date.now();
  const finished = await waitFor(growing, ["done", "failed", "lost", "cancelled"], 60_000);
  t.diagnostic(`the waiting job finished ${Date.now() - freedAt} ms after gc; it waited ${Math.round((freedAt - full) / 1000)} s`);
  assert.equal(finished.status, "done", `${finished.error_name}: ${finished.error_message}\n${workerLog}`);
  const stored = await listCheckpoints(store, growing);
  assert.deepEqual(stored.map((c) => c.idx), GROWING.map((_, i) => i), "every checkpoint once");
  for (const c of stored) await assertWhole(growing, c.idx, pattern(1 + c.idx, GROWING[c.idx]));
  assert.ok((await notes(growing)).some((line) => /stored after waiting \d+ s for room on the store's disk/.test(line)), JSON.stringify(await notes(growing)));

  // A new job runs on the same worker.
  const next = await queue("next", `grow(7, [${64 * KiB}])`);
  assert.equal((await waitFor(next, ["done", "failed"], 60_000)).status, "done", workerLog);
  await assertWhole(next, 0, pattern(7, 64 * KiB));

  // A checkpoint that cannot fit, and nobody frees space: after NBJOB_STORE_WAIT_MS the job fails
  // with a message naming the disk and the bytes it needed; the worker lives on.
  const tooBig = await queue("too-big", `grow(9, [${4 * MiB}])`);
  const refused = await waitFor(tooBig, ["done", "failed", "lost", "cancelled"], 90_000);
  assert.equal(refused.status, "failed", workerLog);
  assert.equal(refused.error_name, "CheckpointError");
  assert.match(refused.error_message ?? "", /^checkpoint 0 of job \d+ could not be stored: the store's disk on \/tmp\/nbjob-full-\w+ \(tablespace nbjob_test_full_\w+_w\) is full \(PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:5432\/nbjob_test_diskfull_\w+_w: could not extend file .*No space left on device\); it needed 4\.0 MiB and no room came in 2\d s \(NBJOB_STORE_WAIT_MS=20000\); free space on the PostgreSQL server's disk \(nbjob rm old jobs, then nbjob gc\) and resume the job from its last checkpoint$/);
  assert.deepEqual(await listCheckpoints(store, tooBig), [], "nothing of the refused checkpoint is stored");
  for (const c of stored) await assertWhole(growing, c.idx, pattern(1 + c.idx, GROWING[c.idx]));
  // The refused attempts' pages are reusable after gc's VACUUM; the same worker runs the next job.
  const again = await nbjob("gc", "--grace", "0s");
  assert.equal(again.code, 0, again.out);
  const last = await queue("last", `grow(11, [${256 * KiB}])`);
  assert.equal((await waitFor(last, ["done", "failed"], 60_000)).status, "done", workerLog);
  await assertWhole(last, 0, pattern(11, 256 * KiB));
  assert.equal(worker.exitCode, null, `the worker is still alive:\n${workerLog}`);
});
