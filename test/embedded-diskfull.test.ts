// The embedded server's whole data directory on a small disk (a tmpfs with a size limit, or a
// loop-mounted ext4 file, mounted at $NBJOB_HOME/postgres/cluster): a job checkpoints until the disk is full, nothing stored
// before is lost, the job waits; `nbjob rm` + `nbjob gc` run as a user would (CLI subprocesses)
// free room although the values' table was never vacuumed, and the job and a new one finish
// without restarting anything by hand. A server that stopped (PANIC) because the disk filled is
// started again by the next nbjob command, after nbjob released its disk reserve
// (store/disk-reserve.ts). Needs root (mount); skipped otherwise.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deserialize } from "node:v8";
import { openStore, putBundle, createJob, getJob, notifyJobQueued, readLogs, stopEmbeddedServer, embeddedLayout } from "../store";
import type { DbJob, Store } from "../store";
import { listCheckpoints, readCheckpoint } from "../store/checkpoints";
import { isAlive } from "./processes";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const KiB = 1024;
const MiB = 1024 * KiB;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const cleanups: Array<() => Promise<void> | void> = [];
// What nbjob says on this process's stderr (the test's own store may be the one that notices).
let ownStderr = "";
const writeStderr = process.stderr.write.bind(process.stderr);
process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  ownStderr += chunk.toString();
  return (writeStderr as (...args: unknown[]) => boolean)(chunk, ...rest);
}) as typeof process.stderr.write;

after(async () => {
  // Last in, first out: workers, stores, the server, then the mount.
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (err) {
      console.error(`cleanup failed: ${(err as Error).message}`);
    }
  }
});

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root to mount a small disk";
  try {
    execFileSync("id", ["-u", "postgres"], { stdio: "ignore" });
  } catch {
    return "needs the postgres system user (nbjob creates it on first embedded start as root)";
  }
  return undefined;
}

/**
 * A temporary NBJOB_HOME whose $NBJOB_HOME/postgres/cluster (data directory and server log) is
 * a small disk: a tmpfs of `size`, or an ext4 file system in a file of `size` mounted through a
 * loop device (no root-reserved blocks). Unmounted after the tests, also when one failed.
 * Returns why not when it cannot be made.
 */
function homeOnSmallDisk(fs: "tmpfs" | "ext4", size: string): { home: string; cluster: string } | string {
  const home = mkdtempSync(join(tmpdir(), "nbjob-smalldisk-"));
  chmodSync(home, 0o711);
  mkdirSync(join(home, "postgres"), { mode: 0o711 });
  const cluster = join(home, "postgres", "cluster");
  mkdirSync(cluster, { mode: 0o700 });
  const image = join(home, "disk.img");
  const uid = execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim();
  const gid = execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim();
  try {
    if (fs === "tmpfs") {
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},uid=${uid},gid=${gid},mode=0700`, "tmpfs", cluster], { stdio: "pipe" });
    } else {
      execFileSync("truncate", ["-s", size, image], { stdio: "pipe" });
      execFileSync("mkfs.ext4", ["-q", "-m", "0", "-F", image], { stdio: "pipe" });
      execFileSync("mount", ["-o", "loop", image, cluster], { stdio: "pipe" });
      rmSync(join(cluster, "lost+found"), { recursive: true, force: true });
      execFileSync("chown", [`${uid}:${gid}`, cluster]);
      chmodSync(cluster, 0o700);
    }
  } catch (err) {
    try {
      execFileSync("umount", [cluster], { stdio: "pipe" });
    } catch {
      // was not mounted
    }
    rmSync(home, { recursive: true, force: true });
    return `cannot mount a small ${fs} (${(err as Error).message.split("\n")[0]})`;
  }
  cleanups.push(async () => {
    await stopEmbeddedServer({ home }).catch(() => undefined);
    try {
      execFileSync("umount", [cluster], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", cluster], { stdio: "pipe" });
    }
    rmSync(home, { recursive: true, force: true });
  });
  return { home, cluster };
}

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
const PROGRAM = `function pattern(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 255;
  }
  return out;
}
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

/** What the tests drive: the store of a home, a worker on it, and nbjob commands as subprocesses. */
class Harness {
  readonly store: Store;
  readonly env: NodeJS.ProcessEnv;
  workerLog = "";
  private worker?: ChildProcess;

  constructor(readonly home: string, env: Record<string, string>) {
    this.env = { ...process.env, NBJOB_HOME: home, NBJOB_DEBUG: "", ...env };
    delete this.env.NBJOB_DATABASE_URL;
    // This process stores the bundles and the worker runs them: one cluster key for both.
    process.env.NBJOB_CLUSTER_KEY ??= randomBytes(32).toString("hex");
    this.env.NBJOB_CLUSTER_KEY = process.env.NBJOB_CLUSTER_KEY;
    for (const [key, value] of Object.entries(env)) process.env[key] = value;
    delete process.env.NBJOB_DATABASE_URL;
    this.store = openStore({ home });
    cleanups.push(() => this.store.close());
  }

  async startWorker(id: string): Promise<void> {
    const file = join(this.home, `${id.replace(/\W/g, "_")}.json`);
    const worker = spawn(process.execPath, [NBJOB, "worker", "--connection-file", file, "--id", id, "--profile", "small-disk"], { stdio: ["ignore", "pipe", "pipe"], env: this.env });
    this.worker = worker;
    worker.stdout?.on("data", (d: Buffer) => (this.workerLog += d.toString()));
    worker.stderr?.on("data", (d: Buffer) => (this.workerLog += d.toString()));
    cleanups.push(() => {
      if (worker.exitCode === null) worker.kill("SIGKILL");
    });
    for (let waited = 0; !existsSync(file); waited += 50) {
      assert.ok(waited < 60_000, `the worker wrote no connection file:\n${this.workerLog}`);
      await sleep(50);
    }
  }

  get workerAlive(): boolean {
    return this.worker?.exitCode === null;
  }

  nbjob(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [NBJOB, ...args], { env: this.env, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, out: stdout, err: stderr }));
    });
  }

  async queue(name: string, entry: string): Promise<number> {
    const bundleHash = await putBundle(this.store, { source: `// ${name}\n${PROGRAM}`, snippets: [], params: {}, entries: [entry] });
    const job = await createJob(this.store, { bundleHash, name });
    await notifyJobQueued(this.store);
    return job.id;
  }

  async waitFor(id: number, statuses: DbJob["status"][], timeoutMs: number): Promise<DbJob> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await getJob(this.store, id).catch(() => undefined);
      if (job && statuses.includes(job.status)) return job;
      assert.ok(Date.now() < deadline, `job ${id} is ${job?.status}, not ${statuses.join("/")}, after ${timeoutMs} ms;\n${this.workerLog}`);
      await sleep(200);
    }
  }

  async notes(id: number): Promise<string[]> {
    return (await readLogs(this.store, id)).map((l) => l.line).filter((line) => line.startsWith("[nbjob:"));
  }

  /** The note job `id` gets when the disk fills (it keeps waiting, queued or running); fails after `limitMs` from `since`. */
  async untilDiskFullNote(id: number, since: number, limitMs: number): Promise<string> {
    for (;;) {
      const said = (await this.notes(id).catch(() => [])).find((line) => /store's disk.* is full/.test(line));
      if (said) return said;
      const job = await getJob(this.store, id).catch(() => undefined);
      assert.ok(!job || job.status === "queued" || job.status === "running", `job ${id} is ${job?.status} (${job?.error_message}), not waiting for the disk;\n${this.workerLog}`);
      assert.ok(Date.now() - since < limitMs, `job ${id} never said the disk is full;\n${this.workerLog}`);
      await sleep(250);
    }
  }

  /** Checkpoint `idx` of job `id`, read back, is exactly the bytes the job made. */
  async assertWhole(id: number, idx: number, expected: Uint8Array): Promise<void> {
    const values = await readCheckpoint(this.store, id, idx);
    const state = deserialize(values.state) as { data: Uint8Array };
    assert.equal(state.data.byteLength, expected.byteLength, `job ${id} checkpoint ${idx}: size`);
    assert.ok(Buffer.from(state.data.buffer, state.data.byteOffset, state.data.byteLength).equals(Buffer.from(expected)), `job ${id} checkpoint ${idx}: byte-exact`);
  }
}

function dataDirOf(home: string): string {
  return embeddedLayout(home).dataDir;
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    return Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return undefined;
  }
}

function free(dir: string): number {
  const fs = statfsSync(dir);
  return fs.bavail * fs.bsize;
}

const RESERVE_LINE = /^nbjob: the disk holding the embedded PostgreSQL's data \(\S+\/postgres\/cluster\/data\) is full \(.*\); released nbjob's \d+ MiB disk reserve so the server can recover and clean up; free space with "nbjob rm <old jobs> && nbjob gc"/m;

for (const [fs, size] of [["tmpfs", "128m"], ["ext4", "144m"]] as const) test(`the whole data directory on a full disk (${fs}): a checkpointing job waits, loses nothing, and goes on after nbjob rm + gc, on a table never vacuumed; no restarts`, { timeout: 420_000 }, async (t) => {
  const why = unavailable();
  if (why) return t.skip(why);
  const disk = homeOnSmallDisk(fs, size);
  if (typeof disk === "string") return t.skip(disk);
  const h = new Harness(disk.home, { NBJOB_STORE_WAIT_MS: "300000", NBJOB_DISK_RESERVE_MB: "32" });
  await h.store.ready();
  const data = dataDirOf(disk.home);
  assert.ok(existsSync(join(data, "nbjob_disk_reserve")), "the reserve is made when the server is set up");
  // The disk fills before any VACUUM of the values' table: autovacuum would get to it within a
  // minute or so of the first checkpoints, so it is kept off for this table (as on a store that
  // filled its disk quickly).
  await h.store.query("ALTER TABLE nbjob.chunks SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)");
  await h.startWorker("small/0");

  // Two old jobs keep 8 MiB each.
  const olds: number[] = [];
  for (const seed of [100, 200]) {
    const id = await h.queue(`old-${seed}`, `grow(${seed}, [${8 * MiB}])`);
    assert.equal((await h.waitFor(id, ["done", "failed"], 120_000)).status, "done", h.workerLog);
    olds.push(id);
  }
  t.diagnostic(`after the old jobs: ${Math.round(free(disk.cluster) / MiB)} MiB free`);

  // The growing job's 3 MiB checkpoints fill the disk.
  const SIZES = Array.from({ length: 10 }, () => 3 * MiB);
  const growing = await h.queue("growing", `grow(1, [${SIZES.join(", ")}])`);
  const full = Date.now();
  const said = await h.untilDiskFullNote(growing, full, 240_000);
  t.diagnostic(`the job's note: ${said}`);
  assert.match(said, /the store's disk on \S+\/postgres\/cluster\/data \(the data directory\) is full: checkpoint \d+ \(3\.0 MiB\) could not be stored \(.*(No space left on device|no room for new checkpoints on the disk holding \S+\/data).*\); the job waits and retries/);
  assert.match(h.workerLog + ownStderr, RESERVE_LINE, "the process that saw the full disk said it released the reserve");
  t.diagnostic(`said: ${(h.workerLog + ownStderr).split("\n").find((line) => RESERVE_LINE.test(line))}`);
  const panicked = /PANIC:[^\n]*No space left on device/.test(readFileSync(join(disk.cluster, "server.log"), "utf8"));
  t.diagnostic(`the server ${panicked ? "stopped (PANIC) and was started again by nbjob" : "refused writes (53100) and stayed up"}`);
  assert.ok(!existsSync(join(data, "nbjob_disk_reserve")), "the reserve was released");

  // While it waits: still running, its stored checkpoints whole and in order, the old jobs intact.
  await sleep(3_000);
  assert.equal((await h.waitFor(growing, ["running"], 60_000)).status, "running", "the job waits, it does not fail");
  const before = await listCheckpoints(h.store, growing);
  assert.ok(before.length > 0 && before.length < SIZES.length, `job ${growing} stored ${before.length} of ${SIZES.length} checkpoints before the disk was full`);
  assert.deepEqual(before.map((c) => c.idx), before.map((_, i) => i), "no half-written checkpoint, no hole");
  for (const c of before) await h.assertWhole(growing, c.idx, pattern(1 + c.idx, SIZES[c.idx]));
  for (const [k, id] of olds.entries()) await h.assertWhole(id, 0, pattern(100 * (k + 1), 8 * MiB));
  const { rows: [never] } = await h.store.query<{ n: number }>(
    "SELECT coalesce(sum(vacuum_count + autovacuum_count), 0)::int AS n FROM pg_stat_all_tables WHERE relid IN ('nbjob.chunks'::regclass, (SELECT reltoastrelid FROM pg_class WHERE oid = 'nbjob.chunks'::regclass))");
  assert.equal(never.n, 0, "the values' table was never vacuumed before the disk filled");

  // A user frees space with nbjob's own commands; nothing is restarted by hand.
  const rm = await h.nbjob("rm", ...olds.map(String), "--no-gc");
  assert.equal(rm.code, 0, rm.out + rm.err);
  const gc = await h.nbjob("gc", "--grace", "0s");
  assert.equal(gc.code, 0, gc.out + gc.err);
  t.diagnostic(`rm: ${(rm.out + rm.err).trim().split("\n").join(" | ")}; gc: ${(gc.out + gc.err).trim().split("\n").join(" | ")}`);
  const freedAt = Date.now();
  const finished = await h.waitFor(growing, ["done", "failed", "lost", "cancelled"], 180_000);
  t.diagnostic(`the waiting job finished ${Date.now() - freedAt} ms after gc; it waited ${Math.round((freedAt - full) / 1000)} s`);
  assert.equal(finished.status, "done", `${finished.error_name}: ${finished.error_message}\n${h.workerLog}`);
  const stored = await listCheckpoints(h.store, growing);
  assert.deepEqual(stored.map((c) => c.idx), SIZES.map((_, i) => i), "every checkpoint once");
  for (const c of stored) await h.assertWhole(growing, c.idx, pattern(1 + c.idx, SIZES[c.idx]));

  // A new job runs on the same worker and server.
  const next = await h.queue("next", `grow(7, [${256 * KiB}])`);
  assert.equal((await h.waitFor(next, ["done", "failed"], 120_000)).status, "done", h.workerLog);
  await h.assertWhole(next, 0, pattern(7, 256 * KiB));
  assert.ok(h.workerAlive, `the worker lives on:\n${h.workerLog}`);
});

test("a server stopped (PANIC) by a disk something else filled is started again by the next nbjob command, which releases the reserve; it is made again once there is room", { timeout: 300_000 }, async (t) => {
  const why = unavailable();
  if (why) return t.skip(why);
  const disk = homeOnSmallDisk("tmpfs", "96m");
  if (typeof disk === "string") return t.skip(disk);
  const h = new Harness(disk.home, { NBJOB_STORE_WAIT_MS: "8000", NBJOB_DISK_RESERVE_MB: "24" });
  await h.store.ready();
  const data = dataDirOf(disk.home);
  assert.ok(existsSync(join(data, "nbjob_disk_reserve")));
  await h.startWorker("panic/0");
  const first = await h.queue("first", `grow(5, [${2 * MiB}, ${1 * MiB}])`);
  assert.equal((await h.waitFor(first, ["done", "failed"], 120_000)).status, "done", h.workerLog);

  // Something else fills the disk; the server's next checkpoint cannot write and PANICs.
  const original = postmasterPid(data);
  assert.ok(original !== undefined && isAlive(original), "a server runs before the disk fills");
  const filler = join(disk.cluster, "filler");
  const fd = openSync(filler, "w");
  try {
    const block = Buffer.alloc(MiB, 1);
    for (;;) writeSync(fd, block);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
  } finally {
    closeSync(fd);
  }
  await h.store.query("CHECKPOINT").then(
    () => assert.fail("a CHECKPOINT on a full disk was expected to stop the server"),
    () => undefined,
  );
  // After the PANIC the server's crash recovery needs room too: it fails and the server stops.
  // Recovery can also finish: when the crash freed enough room, or when the worker, retrying at
  // once, released the reserve while recovery ran (the next test's path). The server then runs on
  // and this run cannot show a stopped server being started again: skipped, saying which.
  const afterPanic = () => readFileSync(join(disk.cluster, "server.log"), "utf8").split("PANIC").pop()!;
  // Gone once its pid file is gone or names another server (the worker may start one at once);
  // the process itself can linger unreaped for seconds.
  for (let waited = 0; postmasterPid(data) === original && isAlive(original); waited += 200) {
    if (/database system is ready to accept connections/.test(afterPanic())) {
      const how = existsSync(join(data, "nbjob_disk_reserve")) ? "the crash freed enough room" : "nbjob had released the reserve meanwhile";
      return t.skip(`PostgreSQL recovered from the disk-full PANIC without stopping (${how}), so no stopped server was left to start again`);
    }
    assert.ok(waited < 60_000, `the server did not stop; its log after the last PANIC:\n${afterPanic().slice(-2000)}`);
    await sleep(200);
  }
  assert.match(readFileSync(join(disk.cluster, "server.log"), "utf8"), /PANIC:[^\n]*No space left on device/);

  const stopped = original;

  // The next thing that needs the store (the worker's heartbeat, this process queueing a job)
  // starts it again, after releasing the reserve. The reserve's room is for recovery and
  // cleanup: a checkpoint waits for a gc, and fails after NBJOB_STORE_WAIT_MS naming the disk
  // and the bytes it needed.
  const held = await h.queue("held", `grow(9, [${1 * MiB}])`);
  const refused = await h.waitFor(held, ["done", "failed", "lost", "cancelled"], 180_000);
  assert.equal(refused.status, "failed", h.workerLog);
  assert.equal(refused.error_name, "CheckpointError");
  assert.match(refused.error_message ?? "", /^checkpoint 0 of job \d+ could not be stored: the store's disk on \S+\/postgres\/cluster\/data \(the data directory\) is full \(no room for new checkpoints on the disk holding \S+\/postgres\/cluster\/data: [\d.]+ MiB free, and nbjob's 24 MiB disk reserve was released \d+ s ago for the server to recover and clean up \("nbjob rm <old jobs> && nbjob gc" lets checkpoints go on\)\); it needed 1\.0 MiB and no room came in \d+ s \(NBJOB_STORE_WAIT_MS=8000\); free space .*resume the job from its last checkpoint$/);
  assert.deepEqual(await listCheckpoints(h.store, held), [], "nothing of the held checkpoint is stored");

  // nbjob gc (a user's command) lets checkpoints go on; the release was said once, by whichever
  // process found the server stopped.
  const gc = await h.nbjob("gc", "--grace", "0s");
  assert.equal(gc.code, 0, gc.out + gc.err);
  const said = `${h.workerLog}\n${ownStderr}\n${gc.err}`.split("\n").filter((line) => line.startsWith("nbjob: the disk"));
  assert.equal(said.length, 1, `said once:\n${said.join("\n")}`);
  assert.match(said[0], RESERVE_LINE);
  assert.match(said[0], /\(the server stopped: No space left on device\); released nbjob's 24 MiB disk reserve/);
  t.diagnostic(`${said[0]} (said by ${h.workerLog.includes(said[0]) ? "the worker" : gc.err.includes(said[0]) ? "nbjob gc" : "the test's own store"})`);
  t.diagnostic(`the held job: ${refused.error_message}`);
  // A server runs again, started by nbjob (a new process: the stopped one's pid was read before the disk filled).
  const running = postmasterPid(data);
  assert.ok(running !== undefined && running !== stopped && isAlive(running), `a new server runs for ${data}`);
  assert.ok(!existsSync(join(data, "nbjob_disk_reserve")));
  const released = await h.nbjob("db", "status");
  assert.match(released.out, /^reserve: +released \S+ for a full disk \(the server stopped: No space left on device\); made again once there is room, [\d.]+ MiB free on its disk$/m, released.out + released.err);
  // What was stored is whole; the worker, never restarted, runs a new job.
  await h.assertWhole(first, 0, pattern(5, 2 * MiB));
  await h.assertWhole(first, 1, pattern(6, 1 * MiB));
  const next = await h.queue("next", `grow(8, [${512 * KiB}])`);
  assert.equal((await h.waitFor(next, ["done", "failed"], 120_000)).status, "done", h.workerLog);
  await h.assertWhole(next, 0, pattern(8, 512 * KiB));
  assert.ok(h.workerAlive, h.workerLog);

  // Room again: the reserve is made again by the next command that opens the store.
  rmSync(filler);
  const status = await h.nbjob("gc", "--grace", "0s");
  assert.equal(status.code, 0, status.out + status.err);
  assert.ok(existsSync(join(data, "nbjob_disk_reserve")), "the reserve is back");
  assert.ok(!existsSync(join(data, "nbjob_disk_reserve.released")), "and its release forgotten");
  const back = await h.nbjob("db", "status");
  assert.match(back.out, /^reserve: +24 MiB in \S+\/data\/nbjob_disk_reserve; [\d.]+ MiB free on its disk$/m, back.out + back.err);
});

test("a job's checkpoint that needs a new WAL segment on a full disk PANICs the server: the reserve released at once lets PostgreSQL recover by itself; the job waits, and finishes after nbjob rm + gc", { timeout: 300_000 }, async (t) => {
  const why = unavailable();
  if (why) return t.skip(why);
  const disk = homeOnSmallDisk("tmpfs", "128m");
  if (typeof disk === "string") return t.skip(disk);
  const h = new Harness(disk.home, { NBJOB_STORE_WAIT_MS: "300000", NBJOB_DISK_RESERVE_MB: "32" });
  await h.store.ready();
  const data = dataDirOf(disk.home);
  await h.startWorker("wal/0");
  const old = await h.queue("old", `grow(100, [${6 * MiB}])`);
  assert.equal((await h.waitFor(old, ["done", "failed"], 120_000)).status, "done", h.workerLog);
  // Room inside the table for the job's checkpoints: a value stored, deleted and vacuumed. The
  // checkpoints then take no new room on the disk, only WAL. Otherwise the table's growth can meet
  // the full disk first (seen once in CI: "could not extend file", an ERROR, not the PANIC this
  // test is about), most likely while the WAL writer was filling the next segment's temporary file.
  const spare = await h.queue("spare", `grow(101, [${8 * MiB}])`);
  assert.equal((await h.waitFor(spare, ["done", "failed"], 120_000)).status, "done", h.workerLog);
  for (const args of [["rm", String(spare)], ["gc", "--grace", "0s"]]) {
    const made = await h.nbjob(...args);
    assert.equal(made.code, 0, made.out + made.err);
  }

  // Make the next WAL segment one that must be created: use up the recycled ones, then fill the
  // current segment to about 4 MiB from its end; then another file leaves 10 MiB on the disk.
  // The job's 3 MiB checkpoints then find room in the table, but the second needs a new segment.
  const message = (bytes: number) => h.store.query("SELECT pg_logical_emit_message(false, 'nbjob-test', $1::bytea)", [Buffer.alloc(bytes, 7)]);
  for (let i = 0; i < 20; i++) {
    const { rows: [future] } = await h.store.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' AND name > pg_walfile_name(pg_current_wal_insert_lsn())");
    if (future.n === 0) break;
    await h.store.query("SELECT pg_switch_wal()");
    await message(100);
  }
  await h.store.query("SELECT pg_switch_wal()");
  await message(100);
  for (let i = 0; i < 12; i++) await message(MiB);
  const { rows: [position] } = await h.store.query<{ left: string }>("SELECT (16 * 1024 * 1024 - (pg_current_wal_insert_lsn() - '0/0'::pg_lsn) % (16 * 1024 * 1024))::text AS left");
  const filler = join(disk.cluster, "filler");
  const fd = openSync(filler, "w");
  try {
    const block = Buffer.alloc(MiB, 1);
    while (free(disk.cluster) > 11 * MiB) writeSync(fd, block);
  } finally {
    closeSync(fd);
  }
  t.diagnostic(`WAL segment: ${(Number(position.left) / MiB).toFixed(1)} MiB left; disk: ${(free(disk.cluster) / MiB).toFixed(1)} MiB free besides the reserve`);

  const SIZES = [3 * MiB, 3 * MiB, 3 * MiB, 3 * MiB];
  const growing = await h.queue("growing", `grow(1, [${SIZES.join(", ")}])`);
  const full = Date.now();
  const said = await h.untilDiskFullNote(growing, full, 120_000);
  t.diagnostic(`the job's note: ${said}`);
  assert.match(said, /the store's disk on \S+\/postgres\/cluster\/data \(the data directory\) is full: checkpoint \d+ \(3\.0 MiB\) could not be stored \(.*("pg_wal\/xlogtemp\.\d+": No space left on device|no room for new checkpoints on the disk holding).*\); the job waits and retries/);
  const log = readFileSync(join(disk.cluster, "server.log"), "utf8");
  assert.match(log, /PANIC:[^\n]*"pg_wal\/xlogtemp\.\d+": No space left on device/, "the server PANICked for want of a WAL segment");
  assert.match(h.workerLog, RESERVE_LINE, "the worker released the reserve and said so");
  // PostgreSQL restarted itself (crash recovery had the reserve's room); nothing was started by hand.
  assert.match(log.slice(log.lastIndexOf("PANIC")), /database system is ready to accept connections/);
  await sleep(2_000);
  assert.equal((await h.waitFor(growing, ["running"], 60_000)).status, "running", "the job waits, it does not fail");
  const before = await listCheckpoints(h.store, growing);
  assert.ok(before.length < SIZES.length);
  assert.deepEqual(before.map((c) => c.idx), before.map((_, i) => i), "no half-written checkpoint, no hole");
  for (const c of before) await h.assertWhole(growing, c.idx, pattern(1 + c.idx, SIZES[c.idx]));
  await h.assertWhole(old, 0, pattern(100, 6 * MiB));

  const rm = await h.nbjob("rm", String(old));
  assert.equal(rm.code, 0, rm.out + rm.err);
  const gc = await h.nbjob("gc", "--grace", "0s");
  assert.equal(gc.code, 0, gc.out + gc.err);
  const finished = await h.waitFor(growing, ["done", "failed", "lost", "cancelled"], 120_000);
  assert.equal(finished.status, "done", `${finished.error_name}: ${finished.error_message}\n${h.workerLog}`);
  for (const [i, size] of SIZES.entries()) await h.assertWhole(growing, i, pattern(1 + i, size));
  const next = await h.queue("next", `grow(7, [${256 * KiB}])`);
  assert.equal((await h.waitFor(next, ["done", "failed"], 120_000)).status, "done", h.workerLog);
  assert.ok(h.workerAlive, h.workerLog);
  assert.ok(existsSync(data));
});
