// Deleting jobs and collecting garbage against a real PostgreSQL (fresh databases on
// 127.0.0.1:5432): `nbjob rm / gc / tag / jobs --size / db status` as a user runs them (a
// subprocess), db.deleteJobs and job.delete(), values shared between jobs kept byte-exact, and
// garbage collection racing the worker's checkpoint writer (worker/checkpoint-writer.ts).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  openStore, putBundle, createJob, transitionJob, appendLogs, putCheckpoint, readCheckpoint, listCheckpoints, createAnalysis, deleteAnalysis, putAnalysisRow,
  CHUNK_SIZE, sha256, linkJobEnvironments, putEnvironment,
} from "../store";
import type { Store, BundleInput, DbJob } from "../store";
import { copyCheckpoints } from "../store/checkpoints";
import { collectGarbage, deleteJobs } from "../store/cleanup";
import { CheckpointWriter } from "../worker/checkpoint-writer";
import { TestDatabases } from "./pg-admin";
import { DBWrapper } from "../runtime/db-wrapper";
import { resumeJob } from "../runtime/resume";

const BIN = join(__dirname, "..", "..", "bin", "nbjob.js");

const databases = new TestDatabases("cleanup");
const freshDatabase = (label: string) => databases.fresh(label);

after(async () => {
  await databases.dropAll();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function nbjob(args: string[], url: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, NBJOB_DEBUG: "", NBJOB_DATABASE_URL: url }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function assertOneLineError(run: Run, pattern: RegExp): void {
  assert.notEqual(run.code, 0, `expected failure, got exit 0 with ${run.stdout}`);
  const lines = run.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0], /^nbjob: /);
  assert.match(lines[0], pattern);
}

let bundleCounter = 0;
function bundle(label = "walk"): BundleInput {
  const source = `function step(x: number): number {\n  return x + 1;\n}\nconst params = {"label":${JSON.stringify(label)}};\nstep(1);\n`;
  bundleCounter++;
  return { source, snippets: [{ kind: "function", names: ["step"], source: "function step(x: number): number {\n  return x + 1;\n}" }], params: { label }, entries: ["step(1)"] };
}

/** A done job with logs, a result and one checkpoint per value given. */
async function doneJob(store: Store, values: Array<{ [name: string]: Uint8Array }>, options: { tags?: string[]; label?: string; rerunOf?: number; resumedFrom?: number } = {}): Promise<DbJob> {
  const hash = await putBundle(store, bundle(options.label));
  const job = await createJob(store, { bundleHash: hash, tags: options.tags, rerunOf: options.rerunOf, resumedFrom: options.resumedFrom });
  await transitionJob(store, job.id, "running", { workerId: "w-0", host: "lab", pid: 1 });
  await appendLogs(store, job.id, [{ stream: "stdout", line: `job ${job.id} says hello` }]);
  for (const [idx, v] of values.entries()) await putCheckpoint(store, job.id, idx, v);
  return transitionJob(store, job.id, "done", { result: 2, resultText: "2" });
}

async function count(store: Store, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await store.query<{ n: number }>(sql, params);
  return Number(rows[0].n);
}

/** Every stored value is whole: each blob has all its chunks and their bytes add up to its size. */
async function assertStoreWhole(store: Store): Promise<void> {
  const broken = await count(store, `
    SELECT count(*) AS n FROM nbjob.blobs b
     WHERE b.chunk_count <> (SELECT count(*) FROM nbjob.blob_chunks bc JOIN nbjob.chunks c ON c.hash = bc.chunk_hash WHERE bc.blob_hash = b.hash)
        OR b.size <> coalesce((SELECT sum(octet_length(c.data)) FROM nbjob.blob_chunks bc JOIN nbjob.chunks c ON c.hash = bc.chunk_hash WHERE bc.blob_hash = b.hash), 0)`);
  assert.equal(broken, 0, "every value has all its chunks");
}

describe("nbjob rm, tag, gc, jobs --size, db status", () => {
  let url: string;
  let store: Store;

  before(async () => {
    url = await freshDatabase("cli");
    store = openStore({ url });
    await store.ready();
  });
  after(async () => {
    await store.close();
  });

  test("rm JOB removes the row, logs, checkpoints, result and analysis rows; a rerun and a resumed child stay, showing the parent deleted", async () => {
    const parent = await doneJob(store, [{ x: randomBytes(1000) }, { x: randomBytes(1000) }]);
    const analysis = await createAnalysis(store, parent.id, [{ name: "size", source: "function size(x: Uint8Array) { return x.length; }" }]);
    assert.equal(await putAnalysisRow(store, { functionHash: analysis.function_hashes[0], jobId: parent.id, checkpointIdx: 0, value: 1000 }), true);
    const rerun = await doneJob(store, [], { rerunOf: parent.id, label: "walk" });
    const resumed = await doneJob(store, [], { resumedFrom: parent.id, label: "walk" });
    await copyCheckpoints(store, parent.id, resumed.id, 1);
    const resumedBefore = await readCheckpoint(store, resumed.id, 1);

    const dry = await nbjob(["rm", String(parent.id), "--dry-run"], url);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`^would delete 1 job: ${parent.id}; frees \\d`));
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.jobs WHERE id = $1", [parent.id]), 1, "a dry run deletes nothing");

    const rm = await nbjob(["rm", String(parent.id)], url);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, new RegExp(`^deleted 1 job: ${parent.id}; frees`));
    assert.match(rm.stdout, /collected \d+ values? /);
    for (const table of ["jobs WHERE id = $1", "logs WHERE job_id = $1", "checkpoints WHERE job_id = $1", "checkpoint_values WHERE job_id = $1", "analyses WHERE job_id = $1", "analysis_rows WHERE job_id = $1"]) {
      assert.equal(await count(store, `SELECT count(*) AS n FROM nbjob.${table}`, [parent.id]), 0, table);
    }
    // The resumed job's copied checkpoints share the parent's values: still whole.
    assert.deepEqual(await readCheckpoint(store, resumed.id, 1), resumedBefore);
    const showRerun = await nbjob(["show", String(rerun.id)], url);
    assert.equal(showRerun.code, 0, showRerun.stderr);
    assert.match(showRerun.stdout, new RegExp(`rerun of\\s+job ${parent.id} \\(deleted\\)`));
    const showResumed = await nbjob(["show", String(resumed.id)], url);
    assert.match(showResumed.stdout, new RegExp(`resumed\\s+from job ${parent.id} \\(deleted\\)`));
    await assertStoreWhole(store);
  });

  test("rm of a job that ran minutes ago says its values are kept for gc's grace period, and how to collect them now", async () => {
    const recent = await doneJob(store, [{ x: randomBytes(5000) }, { y: randomBytes(3000) }], { label: "recent" });
    const rm = await nbjob(["rm", String(recent.id)], url);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /^collected 0 values /m);
    assert.match(rm.stdout, /^kept 2 values \(7\.8 KiB\) that nothing refers to but are younger than gc's grace period of 10m \(a running job writes a value before referring to it\); "nbjob gc --grace 0s" collects them now$/m);
    const gc = await nbjob(["gc", "--grace", "0s"], url);
    assert.equal(gc.code, 0, gc.stderr);
    assert.match(gc.stdout, /^collected 2 values /);
    assert.doesNotMatch(gc.stdout, /^kept /m);
  });

  test("rm of a queued or running job is refused naming it and nbjob cancel; nothing is deleted", async () => {
    const hash = await putBundle(store, bundle("active"));
    const queued = await createJob(store, { bundleHash: hash });
    const running = await createJob(store, { bundleHash: hash });
    await transitionJob(store, running.id, "running", { workerId: "w-0", host: "lab", pid: 1 });
    const done = await doneJob(store, [], { label: "active" });
    assertOneLineError(await nbjob(["rm", String(done.id), String(running.id)], url), new RegExp(`job ${running.id} is running; cancel it first \\("nbjob cancel ${running.id}"`));
    assertOneLineError(await nbjob(["rm", String(queued.id)], url), new RegExp(`job ${queued.id} is queued; cancel it first`));
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.jobs WHERE id = ANY($1::bigint[])", [[queued.id, running.id, done.id]]), 3);
    // By filter they are left alone and named.
    const byStatus = await nbjob(["rm", "--status", "running", "--no-gc"], url);
    assert.equal(byStatus.code, 0, byStatus.stderr);
    assert.match(byStatus.stdout, new RegExp(`left 1 job still queued or running: ${running.id} \\(cancel first`));
    const cancel = await nbjob(["cancel", String(running.id)], url);
    assert.equal(cancel.code, 0, cancel.stderr);
    const rmCancelled = await nbjob(["rm", String(running.id)], url);
    assert.equal(rmCancelled.code, 0, rmCancelled.stderr);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.jobs WHERE id = $1", [running.id]), 0);
    assertOneLineError(await nbjob(["rm", "12345678"], url), /there is no job 12345678/);
    assertOneLineError(await nbjob(["rm"], url), /say which jobs to delete/);
    assertOneLineError(await nbjob(["rm", "--older-than", "soon"], url), /--older-than: a duration looks like 30d/);
    // A repeated filter option is refused, not narrowed to its last value (which deleted more).
    const jobsBefore = await count(store, "SELECT count(*) AS n FROM nbjob.jobs");
    assertOneLineError(await nbjob(["rm", "--tag", "long", "--tag", "explore"], url), /^nbjob: --tag may be given once \(got "long", "explore"\); to delete several sets of jobs, run nbjob rm once for each$/);
    assertOneLineError(await nbjob(["rm", "--status", "done", "--status", "lost", "--dry-run"], url), /--status may be given once \(got "done", "lost"\)/);
    assertOneLineError(await nbjob(["rm", "--older-than", "1d", "--older-than", "0s"], url), /--older-than may be given once/);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.jobs"), jobsBefore, "nothing was deleted");
  });

  test("tag +keep: rm by filter skips the job, rm by id is refused until -keep", async () => {
    const kept = await doneJob(store, [], { tags: ["sweep-a"], label: "kept" });
    const other = await doneJob(store, [], { tags: ["sweep-a"], label: "kept" });
    const tag = await nbjob(["tag", String(kept.id), "+keep"], url);
    assert.equal(tag.code, 0, tag.stderr);
    assert.equal(tag.stdout.trim(), `job ${kept.id} tags: sweep-a, keep`);
    const rm = await nbjob(["rm", "--tag", "sweep-a", "--older-than", "0s"], url);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, new RegExp(`deleted 1 job: ${other.id};`));
    assert.match(rm.stdout, new RegExp(`left 1 job tagged keep: ${kept.id}`));
    assertOneLineError(await nbjob(["rm", String(kept.id)], url), new RegExp(`job ${kept.id} is tagged "keep"; remove the tag first \\("nbjob tag ${kept.id} -keep"\\)`));
    const untag = await nbjob(["tag", String(kept.id), "-keep"], url);
    assert.equal(untag.stdout.trim(), `job ${kept.id} tags: sweep-a`);
    assert.equal(untag.stderr, "");
    // Removing a tag the job does not have (a typo?) changes nothing and says so.
    const typo = await nbjob(["tag", String(kept.id), "-nonexistent"], url);
    assert.equal(typo.code, 0, typo.stderr);
    assert.equal(typo.stdout.trim(), `job ${kept.id} tags: sweep-a`);
    assert.equal(typo.stderr, `job ${kept.id} has no tag "nonexistent": nothing removed\n`);
    // A tag is one word (the same rule as createJob's tags): a comma would read as two tags in nbjob jobs.
    assertOneLineError(await nbjob(["tag", String(kept.id), "+a,b"], url), /^nbjob: a tag is a non-empty word without spaces or commas, got "a,b"$/);
    assert.equal((await nbjob(["rm", String(kept.id)], url)).code, 0);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.jobs WHERE id = $1", [kept.id]), 0);
    // A tag stored before the rule can still be removed.
    const legacy = await doneJob(store, [], { tags: ["with space", "ok"], label: "kept" });
    const removed = await nbjob(["tag", String(legacy.id), "-with space"], url);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout.trim(), `job ${legacy.id} tags: ok`);
  });

  test("jobs --size and db status report the bytes per job and the store's size", async () => {
    const big = await doneJob(store, [{ x: randomBytes(300_000) }], { label: "big" });
    const jobs = await nbjob(["jobs", "--size"], url);
    assert.equal(jobs.code, 0, jobs.stderr);
    assert.match(jobs.stdout.split("\n")[0], /WORKER\s+SIZE$/);
    assert.match(jobs.stdout, new RegExp(`^${big.id}\\s.*\\s29\\d KiB$`, "m"));
    const status = await nbjob(["db", "status"], url);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^size:\s+\d+(\.\d)? MiB on disk; /m);
    assert.match(status.stdout, new RegExp(`^  job ${big.id}\\s+done\\s+29\\d KiB\\s+\\(checkpoints 29\\d KiB, logs \\d+ B, results \\d+ B\\)`, "m"));
  });
});

describe("shared values and garbage collection", () => {
  let url: string;
  let store: Store;

  before(async () => {
    url = await freshDatabase("gc");
    store = openStore({ url });
    await store.ready();
  });
  after(async () => {
    await store.close();
  });
  /** Runs `use` with a second store on the same database (a collection racing this test's own store), closed after. */
  async function withSecondStore(maxConnections: number, use: (gcStore: Store) => Promise<void>): Promise<void> {
    const gcStore = openStore({ url, maxConnections });
    try {
      await use(gcStore);
    } finally {
      await gcStore.close();
    }
  }

  test("two jobs share a value and a chunk: deleting one keeps the other's values whole, byte-exact; the rest is collected", async () => {
    const shared = randomBytes(CHUNK_SIZE + 1000); // two chunks
    const sameHead = Buffer.concat([shared.subarray(0, CHUNK_SIZE), randomBytes(500)]); // shares its first chunk with `shared`
    const onlyA = randomBytes(5000);
    const a = await doneJob(store, [{ s: shared, t: sameHead, u: onlyA }], { label: "a" });
    const b = await doneJob(store, [{ s: shared, own: randomBytes(100) }], { label: "b" });
    const bBefore = await readCheckpoint(store, b.id, 0);
    const plan = await deleteJobs(store, { ids: [a.id], dryRun: true });
    // What deleting A frees: its own value (5000) and sameHead's tail chunk (500), not the shared chunks.
    assert.equal(plan.bytes.values, 5500);
    await deleteJobs(store, { ids: [a.id] });
    const gc = await collectGarbage(store, { graceMs: 0 });
    assert.equal(gc.blobs, 2, "sameHead and onlyA");
    assert.equal(gc.chunks, 2, "sameHead's tail and onlyA");
    assert.equal(gc.chunkBytes, 5500);
    const bAfter = await readCheckpoint(store, b.id, 0);
    assert.ok(bAfter.s.equals(shared), "shared value byte-exact");
    assert.equal(sha256(bAfter.s), sha256(shared));
    assert.deepEqual(bAfter, bBefore);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.blobs WHERE hash = $1", [sha256(onlyA)]), 0);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.chunks WHERE hash = $1", [sha256(shared.subarray(0, CHUNK_SIZE))]), 1);
    // A's bundle went, B's stayed; a second collection finds nothing.
    assert.equal(gc.bundles, 1);
    const again = await collectGarbage(store, { graceMs: 0 });
    assert.deepEqual([again.blobs, again.chunks, again.bundles, again.snippets], [0, 0, 0, 0]);
    await assertStoreWhole(store);
  });

  test("local modules: deleting a job collects the files only its bundle listed; a file another bundle lists stays", async () => {
    const shared = { path: "lib/shared.ts", text: "export const shared = 1;\n" };
    const withFiles = (label: string, own: string): BundleInput => ({ ...bundle(label), files: [shared, { path: "lib/own.ts", text: own }] });
    const hashA = await putBundle(store, withFiles("files-a", "export const own = 'a';\n"));
    const hashB = await putBundle(store, withFiles("files-b", "export const own = 'b';\n"));
    const a = await createJob(store, { bundleHash: hashA });
    await createJob(store, { bundleHash: hashB });
    await transitionJob(store, a.id, "running", { workerId: "w-0", host: "lab", pid: 1 });
    await transitionJob(store, a.id, "done", { result: 2, resultText: "2" });
    await deleteJobs(store, { ids: [a.id] });
    const gc = await collectGarbage(store, { graceMs: 0 });
    assert.equal(gc.files, 1, "A's own file");
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.bundle_files WHERE bundle_hash = $1", [hashA]), 0);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.files WHERE hash = $1", [sha256("export const own = 'a';\n")]), 0);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.files WHERE hash = ANY($1::text[])", [[sha256(shared.text), sha256("export const own = 'b';\n")]]), 2);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.bundle_files WHERE bundle_hash = $1", [hashB]), 2);
  });

  test("the grace period leaves young unreferenced rows alone", async () => {
    // A chunk committed before its blob row (how a large value is written): not referenced yet.
    const young = randomBytes(64);
    await store.query("INSERT INTO nbjob.chunks (hash, data) VALUES ($1, $2)", [sha256(young), young]);
    const gc = await collectGarbage(store, { graceMs: 60_000 });
    assert.equal(gc.chunks, 0);
    assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.chunks WHERE hash = $1", [sha256(young)]), 1);
    assert.equal((await collectGarbage(store, { graceMs: 0 })).chunks, 1);
  });

  test("gc with no grace racing the worker's checkpoint writer: 100 rounds re-using values just freed, none missing, all byte-exact", async () => {
    await withSecondStore(2, async (gcStore) => {
      const hash = await putBundle(store, bundle("racing"));
      const running = await createJob(store, { bundleHash: hash });
      await transitionJob(store, running.id, "running", { workerId: "w-0", host: "lab", pid: 1 });
      const logged: string[] = [];
      const writer = new CheckpointWriter(store, running.id, { log: (line) => logged.push(line) });
      const expected: Array<{ [name: string]: Buffer }> = [];
      let collectedValues = 0;
      let conflicts = 0;
      for (let round = 0; round < 100; round++) {
        // A value stored by a job that is then deleted: unreferenced and old enough for gc (grace 0),
        // while the running job checkpoints exactly those bytes again (found stored, then referred to).
        const reused = round % 10 === 0 ? randomBytes(CHUNK_SIZE + 4096) : randomBytes(2048 + round);
        const fresh = randomBytes(1024);
        const doomed = await doneJob(store, [{ v: reused }], { label: "racing" });
        await deleteJobs(store, { ids: [doomed.id] });
        expected.push({ fresh, reused });
        const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
        const [gc] = await Promise.all([
          delay(round % 3).then(() => collectGarbage(gcStore, { graceMs: 0, batchSize: 50 })),
          delay((round + 1) % 3).then(() => writer.write(round, { reused, fresh })),
        ]);
        collectedValues += gc.blobs;
        conflicts += gc.conflicts;
      }
      assert.ok(collectedValues > 0, "gc did collect values during the race");
      const stored = await listCheckpoints(store, running.id);
      assert.deepEqual(stored.map((c) => c.idx), expected.map((_, i) => i), "no checkpoint missing");
      for (const [idx, values] of expected.entries()) {
        const back = await readCheckpoint(store, running.id, idx);
        assert.ok(back.reused.equals(values.reused) && back.fresh.equals(values.fresh), `checkpoint ${idx} byte-exact`);
      }
      await collectGarbage(store, { graceMs: 0 });
      for (const [idx, values] of expected.entries()) assert.ok((await readCheckpoint(store, running.id, idx)).reused.equals(values.reused), `checkpoint ${idx} after a final gc`);
      await assertStoreWhole(store);
      assert.deepEqual(logged.filter((line) => /failed/.test(line)), [], "no checkpoint write failed");
      console.log(`race: gc collected ${collectedValues} values over 100 rounds; ${conflicts} gc batches lost a race`);
    });
  });

  test("a bundle nothing refers to, re-used by a job being created, is not collected in between", async () => {
    await withSecondStore(2, async (gcStore) => {
      const old = await doneJob(store, [], { label: "reuse" });
      await deleteJobs(store, { ids: [old.id] });
      // As db.createJob does: bundle and job row in one transaction; gc runs between the two.
      const job = await store.transaction(async (tx) => {
        const hash = await putBundle(tx, bundle("reuse"));
        const gc = await collectGarbage(gcStore, { graceMs: 0 });
        assert.equal(gc.bundles, 0, "the bundle being re-used is locked, so gc leaves it");
        return createJob(tx, { bundleHash: hash });
      });
      assert.equal(job.bundle_hash, old.bundle_hash);
      assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.bundle_snippets WHERE bundle_hash = $1", [job.bundle_hash]), 1, "the bundle keeps its snippet");
      await transitionJob(store, job.id, "cancelled", {});
      // Once nothing refers to it any more, it goes.
      await deleteJobs(store, { ids: [job.id] });
      assert.equal((await collectGarbage(gcStore, { graceMs: 0 })).bundles, 1);
    });
  });

  test("environments: one no job refers to is collected; a worker linking a later job to it stores it again, also racing gc (50 rounds)", async () => {
    const env = (tag: string) => ({ node_version: process.version, nbjob_version: `test-${tag}`, packages: { tagged: tag } });
    const environmentOf = async (id: number) => (await store.query<{ environment_hash: string | null }>("SELECT environment_hash FROM nbjob.jobs WHERE id = $1", [id])).rows[0].environment_hash;
    const stored = (hash: string) => count(store, "SELECT count(*) AS n FROM nbjob.environments WHERE hash = $1", [hash]);
    const first = await doneJob(store, [], { label: "env" });
    await linkJobEnvironments(store, new Map([[first.id, env("a")]]));
    const hash = await environmentOf(first.id);
    assert.ok(hash);
    const orphan = await putEnvironment(store, env("nobody"));
    const gc = await collectGarbage(store, { graceMs: 0 });
    assert.equal(gc.environments, 1, "the environment no job refers to");
    assert.equal(await stored(orphan), 0);
    assert.equal(await stored(hash), 1, "the linked one stays");

    // Its only job deleted, it goes; a worker that still has it links its next job, storing it again.
    await deleteJobs(store, { ids: [first.id] });
    assert.equal((await collectGarbage(store, { graceMs: 0 })).environments, 1);
    assert.equal(await stored(hash), 0);
    const next = await doneJob(store, [], { label: "env" });
    await linkJobEnvironments(store, new Map([[next.id, env("a")]]));
    assert.equal(await environmentOf(next.id), hash);
    assert.equal(await stored(hash), 1);

    // Racing: each round frees the environment (its job deleted) and links a new job to it while gc runs.
    await withSecondStore(2, async (gcStore) => {
      let collected = 0;
      for (let round = 0; round < 50; round++) {
        await deleteJobs(store, { ids: [(await store.query<{ id: number }>("SELECT id FROM nbjob.jobs WHERE environment_hash = $1", [hash])).rows.map((r) => Number(r.id))].flat() });
        const job = await doneJob(store, [], { label: "env" });
        // The link starts 0-9 ms after gc, so some rounds it comes first and some gc does.
        const link = new Promise((resolve) => setTimeout(resolve, round % 10)).then(() => linkJobEnvironments(store, new Map([[job.id, env("a")]])));
        const [result] = await Promise.all([collectGarbage(gcStore, { graceMs: 0, retention: false }), link]);
        collected += result.environments;
        assert.equal(await environmentOf(job.id), hash, `round ${round}: the job is linked`);
        assert.equal(await stored(hash), 1, `round ${round}: its environment is stored`);
      }
      console.log(`environments collected while racing the link: ${collected} of 50 rounds`);
    });
  });

  test("a function nothing refers to, re-used by an analysis being recorded, is not collected in between", async () => {
    const job = await doneJob(store, [], { label: "analysis-reuse" });
    const fn = { name: "kept", source: "function kept(s: { x: number }) { return -s.x; }" };
    const first = await createAnalysis(store, job.id, [fn]);
    await deleteAnalysis(store, first.id);
    await withSecondStore(2, async (gcStore) => {
      // The record is made but not committed when gc runs: only the lock keeps the function.
      const analysis = await store.transaction(async (tx) => {
        const analysis = await createAnalysis(tx, job.id, [fn]);
        const gc = await collectGarbage(gcStore, { graceMs: 0, retention: false });
        assert.equal(gc.snippets, 0, "the function being re-used is locked, so gc leaves it");
        return analysis;
      });
      assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.snippets WHERE hash = $1", [analysis.function_hashes[0]]), 1);
    });
  });

  test("an analysis whose function a collection is removing: the function is stored anew, never left missing", async () => {
    const job = await doneJob(store, [], { label: "analysis-race" });
    const fn = { name: "seen", source: "function seen(s: { x: number }) { return s.x; } // the race" };
    const first = await createAnalysis(store, job.id, [fn]);
    const hash = first.function_hashes[0];
    await deleteAnalysis(store, first.id);
    const stored = () => count(store, "SELECT count(*) AS n FROM nbjob.snippets WHERE hash = $1", [hash]);
    // As a collection does (cleanup.ts): the unreferenced row locked FOR UPDATE, then deleted.
    // createAnalysis starts in between and waits for the collection's transaction (the insert
    // or the lock, whichever PostgreSQL runs first); the collection then deletes the row and commits.
    await withSecondStore(1, async (gcStore) => {
      const creating = await gcStore.transaction(async (tx) => {
        await tx.query("SELECT hash FROM nbjob.snippets WHERE hash = $1 FOR UPDATE", [hash]);
        const creating = createAnalysis(store, job.id, [fn]);
        creating.catch(() => undefined);
        for (let waited = 0; ; waited += 10) {
          const blocked = await count(store, "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO nbjob.analyses%'");
          if (blocked === 1) break;
          assert.ok(waited < 10_000, "createAnalysis waits for the collection's lock");
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        await tx.query("DELETE FROM nbjob.snippets WHERE hash = $1", [hash]);
        // Wrapped: a promise returned as it is would be awaited before the collection commits.
        return { creating };
      });
      const analysis = await creating.creating;
      assert.deepEqual(analysis.function_hashes, [hash]);
      assert.equal(await stored(), 1, "the function the analysis refers to is stored again");
    });
  });

  test("analyses racing gc (50 rounds): each one's function stays stored", async () => {
    const job = await doneJob(store, [], { label: "analysis-gc" });
    const fn = { name: "raced", source: "function raced(s: { x: number }) { return s.x + 1; }" };
    const hash = (await createAnalysis(store, job.id, [fn])).function_hashes[0];
    await withSecondStore(2, async (gcStore) => {
      let collected = 0;
      for (let round = 0; round < 50; round++) {
        await store.query("DELETE FROM nbjob.analyses WHERE job_id = $1", [job.id]);
        // The analysis starts 0-9 ms after gc, so some rounds it comes first and some gc does.
        const creating = new Promise((resolve) => setTimeout(resolve, round % 10)).then(() => createAnalysis(store, job.id, [fn]));
        const [result, analysis] = await Promise.all([collectGarbage(gcStore, { graceMs: 0, retention: false }), creating]);
        collected += result.snippets;
        assert.deepEqual(analysis.function_hashes, [hash]);
        assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.snippets WHERE hash = $1", [hash]), 1, `round ${round}: the function is stored`);
      }
      console.log(`analysis functions collected while racing createAnalysis: ${collected} of 50 rounds`);
    });
  });
});

describe("db.deleteJobs and job.delete()", () => {
  test("delete by filter with a dry run, then job.delete(); a running job is refused", async () => {
    const url = await freshDatabase("api");
    const store = openStore({ url });
    const db = new DBWrapper(url);
    try {
      const a = await doneJob(store, [{ x: randomBytes(4000) }], { tags: ["draft"], label: "api" });
      const b = await doneJob(store, [{ x: randomBytes(4000) }], { tags: ["draft"], label: "api" });
      // A key deleteJobs does not know is refused before anything is deleted, never ignored
      // (ignoring `name` deleted every job of the status; ignoring `dryrun` deleted for real).
      const byName = { status: "done" as const, name: "deleteme" };
      // @ts-expect-error: the type refuses a key it lacks in a variable too, not only in a literal
      await assert.rejects(db.deleteJobs(byName), { name: "TypeError", message: /^db\.deleteJobs: unknown option name; the options are ids, tag, status, olderThan, dryRun, collect .*nothing was deleted$/ });
      await assert.rejects(db.deleteJobs({ status: "done", dryrun: true } as any), /unknown option dryrun; the options are ids, tag, status, olderThan, dryRun, collect/);
      await assert.rejects(deleteJobs(store, { status: "done", name: "deleteme" } as any), { name: "TypeError", message: /unknown filter key name; the keys are ids, tag, status, olderThanMs, dryRun/ });
      assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.jobs"), 2, "nothing was deleted");
      const dry = await db.deleteJobs({ tag: "draft", olderThan: "0s", dryRun: true });
      assert.deepEqual(dry.ids, [a.id, b.id]);
      assert.ok(dry.bytes.values >= 8000, `frees the values: ${JSON.stringify(dry.bytes)}`);
      assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.jobs"), 2);
      const done = await db.deleteJobs({ ids: [a.id] });
      assert.deepEqual(done.ids, [a.id]);
      const job = await db.job(b.id);
      await job.delete();
      assert.equal(await count(store, "SELECT count(*) AS n FROM nbjob.jobs"), 0);
      const hash = await putBundle(store, bundle("api"));
      const running = await createJob(store, { bundleHash: hash });
      await transitionJob(store, running.id, "running", { workerId: "w-0", host: "lab", pid: 1 });
      await assert.rejects((await db.job(running.id)).delete(), new RegExp(`job ${running.id} is running; cancel it first`));
    } finally {
      await db.close();
      await store.close();
    }
  });
});

describe("nbjob db dump / restore", () => {
  test("a store with jobs, checkpoints (a multi-chunk value), logs, analyses dumps and restores into an empty store whole; rerun and resume work from it", async () => {
    const fromUrl = await freshDatabase("dumpfrom");
    const toUrl = await freshDatabase("dumpto");
    const from = openStore({ url: fromUrl });
    const to = openStore({ url: toUrl });
    const file = join(mkdtempSync(join(tmpdir(), "nbjob-dump-")), "backup.jsonl");
    try {
      const big = randomBytes(CHUNK_SIZE + 12345);
      const a = await doneJob(from, [{ x: big, y: randomBytes(100) }, { x: big }], { tags: ["keep"], label: "dumped" });
      const b = await doneJob(from, [{ z: randomBytes(10) }], { rerunOf: a.id, label: "dumped" });
      const analysis = await createAnalysis(from, a.id, [{ name: "len", source: "function len(x: Uint8Array) { return x.length; }" }]);
      await putAnalysisRow(from, { functionHash: analysis.function_hashes[0], jobId: a.id, checkpointIdx: 1, value: [["len", big.length]] });
      const failed = await createJob(from, { bundleHash: a.bundle_hash });
      await transitionJob(from, failed.id, "running", { workerId: "w", host: "h", pid: 2 });
      const late = randomBytes(5000);
      await putCheckpoint(from, failed.id, 0, { x: big });
      await putCheckpoint(from, failed.id, 1, { x: late });
      await transitionJob(from, failed.id, "failed", { error: { name: "RangeError", message: "boom", traceback: ["RangeError: boom", "    at f (bundle.ts:1:1)"] } });

      const dump = await nbjob(["db", "dump", file], fromUrl);
      assert.equal(dump.code, 0, dump.stderr);
      assert.match(dump.stdout, /^dumped \d+ rows of \d+ tables to .*backup\.jsonl \(\d+(\.\d)? MiB\)/);
      assertOneLineError(await nbjob(["db", "dump", file], fromUrl), /exists; nbjob does not overwrite a file/);

      await to.ready();
      const restore = await nbjob(["db", "restore", file], toUrl);
      assert.equal(restore.code, 0, restore.stderr);
      assert.match(restore.stdout, /^restored \d+ rows \(3 jobs\)/);
      const rows = async (store: Store, sql: string) => (await store.query(sql)).rows;
      for (const sql of [
        "SELECT * FROM nbjob.jobs ORDER BY id", "SELECT * FROM nbjob.logs ORDER BY id", "SELECT * FROM nbjob.checkpoint_values ORDER BY job_id, idx, name",
        "SELECT * FROM nbjob.analysis_rows ORDER BY job_id", "SELECT * FROM nbjob.analyses ORDER BY id", "SELECT hash, source, params, entries FROM nbjob.bundles ORDER BY hash",
        "SELECT * FROM nbjob.bundle_snippets ORDER BY bundle_hash, position", "SELECT hash, md5(data) FROM nbjob.chunks ORDER BY hash",
      ]) assert.deepEqual(await rows(to, sql), await rows(from, sql), sql);
      const back = await readCheckpoint(to, a.id, 0);
      assert.ok(back.x.equals(big), "the multi-chunk value is byte-exact");
      assert.deepEqual(await readCheckpoint(to, b.id, 0), await readCheckpoint(from, b.id, 0));
      await assertStoreWhole(to);
      assertOneLineError(await nbjob(["db", "restore", file], toUrl), /this store is not empty; restore into a new one/);
      const notADump = join(mkdtempSync(join(tmpdir(), "nbjob-dump-")), "notes.txt");
      writeFileSync(notADump, "hello\n");
      assertOneLineError(await nbjob(["db", "restore", notADump], toUrl), /notes\.txt is not an nbjob dump \(a line is not JSON\)/);
      assertOneLineError(await nbjob(["db", "dump"], toUrl), /nbjob db dump takes one FILE/);

      // The restored store goes on: rerun makes a new job with a new number, from the restored bundle.
      const rerun = await nbjob(["rerun", String(a.id)], toUrl);
      assert.equal(rerun.code, 0, rerun.stderr);
      const { rows: [newest] } = await to.query<{ id: number; rerun_of: number; bundle_hash: string }>("SELECT id, rerun_of, bundle_hash FROM nbjob.jobs ORDER BY id DESC LIMIT 1");
      assert.equal(newest.id, failed.id + 1);
      assert.equal(newest.rerun_of, a.id);
      assert.equal(newest.bundle_hash, a.bundle_hash);
      const show = await nbjob(["show", String(failed.id)], toUrl);
      assert.match(show.stdout, /RangeError: boom/);
      // And resume: the failed job goes on from its last checkpoint, its values restored byte-exact.
      const resumed = await resumeJob(to, failed.id, undefined);
      assert.equal(resumed.fromCheckpoint, 1);
      const resumedRow = await to.query<{ status: string; resumed_from: string; resumed_from_checkpoint: number }>("SELECT status, resumed_from, resumed_from_checkpoint FROM nbjob.jobs WHERE id = $1", [resumed.id]);
      assert.deepEqual({ ...resumedRow.rows[0], resumed_from: Number(resumedRow.rows[0].resumed_from) }, { status: "queued", resumed_from: failed.id, resumed_from_checkpoint: 1 });
      assert.ok((await readCheckpoint(to, resumed.id, 1)).x.equals(late));
      assert.ok((await readCheckpoint(to, resumed.id, 0)).x.equals(big));
    } finally {
      await from.close();
      await to.close();
    }
  });
});

describe("checkpoint retention", () => {
  test("nbjob db retention --checkpoints keep-last 2 --older-than AGE: gc thins old jobs' checkpoints, keeps the last 2, recent and kept jobs whole", async () => {
    const url = await freshDatabase("retention");
    const store = openStore({ url });
    try {
      const values = Array.from({ length: 5 }, () => ({ x: randomBytes(3000) }));
      const old = await doneJob(store, values, { label: "ret" });
      const kept = await doneJob(store, values.map(() => ({ x: randomBytes(3000) })), { tags: ["keep"], label: "ret" });
      const recent = await doneJob(store, values.map(() => ({ x: randomBytes(3000) })), { label: "ret" });
      await store.query("UPDATE nbjob.jobs SET finished_at = now() - interval '20 days', started_at = now() - interval '21 days', queued_at = now() - interval '21 days' WHERE id = ANY($1::bigint[])", [[old.id, kept.id]]);
      const none = await nbjob(["db", "retention"], url);
      assert.equal(none.stdout.trim(), "retention: none (every checkpoint is kept)");
      const set = await nbjob(["db", "retention", "--checkpoints", "keep-last", "2", "--older-than", "14d"], url);
      assert.equal(set.code, 0, set.stderr);
      assert.equal(set.stdout.trim(), "retention: jobs that ended more than 14d ago keep their last 2 checkpoints (applied by nbjob gc)");
      assertOneLineError(await nbjob(["db", "retention", "--checkpoints", "keep-first", "2", "--older-than", "14d"], url), /--checkpoints keep-last N --older-than AGE/);
      assertOneLineError(await nbjob(["db", "retention", "--checkpoints", "keep-last", "0", "--older-than", "14d"], url), /^nbjob: keep-last N needs N of at least 1 \(a job's last checkpoint is always kept\), got 0;/);
      assertOneLineError(await nbjob(["db", "retention", "--checkpoints", "keep-last", "-2", "--older-than", "14d"], url), /keep-last N needs N of at least 1 .*got -2/);
      const gc = await nbjob(["gc", "--grace", "0s"], url);
      assert.equal(gc.code, 0, gc.stderr);
      assert.match(gc.stdout, /^retention thinned 3 checkpoints; collected 3 values/);
      assert.deepEqual((await listCheckpoints(store, old.id)).map((c) => c.idx), [3, 4]);
      assert.ok((await readCheckpoint(store, old.id, 4)).x.equals(values[4].x), "the last checkpoint is whole");
      assert.equal((await listCheckpoints(store, kept.id)).length, 5);
      assert.equal((await listCheckpoints(store, recent.id)).length, 5);
      assert.equal((await nbjob(["db", "retention", "--off"], url)).stdout.trim(), "retention: none (every checkpoint is kept)");
      await assertStoreWhole(store);
    } finally {
      await store.close();
    }
  });
});
