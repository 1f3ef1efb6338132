// `nbjob export JOB DIR` as a subprocess, on a job stored through the store API (no worker, no
// npm install: test/export.test.ts runs an exported project). A target that cannot be created is
// refused with one line, quickly (Node's recursive mkdir spins forever on /proc); the printed
// `cd` line keeps a path with spaces and quotes one shell word.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createJob, openStore, putBundle } from "../store";
import type { Store } from "../store";
import { shellQuote } from "../runtime/shell-quote";
import { admin, databaseUrl } from "./pg-admin";

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");
const DATABASE = `nbjob_export_target_${process.pid}`;
const URL = databaseUrl(DATABASE);
const dir = mkdtempSync(join(tmpdir(), "nbjob-export-target-"));
let store: Store;
let jobId: number;


/** The CLI with a 20 s limit: a spinning mkdir is killed and fails the test. */
function nbjob(...args: string[]): Promise<{ code: number | string | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [NBJOB, ...args], { env: { ...process.env, NBJOB_DEBUG: "", NBJOB_DATABASE_URL: URL, NBJOB_HOME: dir }, timeout: 20_000, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.killed ? "killed after 20 s" : err.code ?? 1) : 0, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function sh(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("/bin/sh", ["-c", script], { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
  });
}

before(async () => {
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE}`));
  await admin((c) => c.query(`CREATE DATABASE ${DATABASE}`));
  store = openStore({ url: URL });
  await store.ready();
  const bundleHash = await putBundle(store, { source: "const answer = 42;\n", snippets: [], params: {}, entries: ["answer"] });
  jobId = (await createJob(store, { bundleHash })).id;
});

after(async () => {
  await store?.close();
  if (!process.env.KEEP_DB) await admin((c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`));
  rmSync(dir, { recursive: true, force: true });
});

describe("nbjob export: the target directory", () => {
  test("a target that cannot be created is refused with one line naming it and why, at once", async () => {
    const proc = await nbjob("export", String(jobId), "/proc/nope/x");
    assert.equal(proc.code, 2, `exit ${proc.code} after ${proc.ms} ms: ${proc.stderr}`);
    assert.equal(proc.stderr, "nbjob: cannot create /proc/nope/x: creating /proc/nope failed (/proc does not allow new directories); give a directory that can be created, nothing was written\n");
    assert.equal(proc.stdout, "");

    const file = join(dir, "a-file");
    writeFileSync(file, "x");
    const underFile = await nbjob("export", String(jobId), join(file, "sub", "dir"));
    assert.equal(underFile.code, 2);
    assert.equal(underFile.stderr, `nbjob: cannot create ${join(file, "sub", "dir")}: ${file} is not a directory; give a directory that can be created\n`);
  });

  test("the printed cd line quotes a path with spaces and quotes, and works when pasted into a shell", async () => {
    const target = join(dir, "my exports", "job's $HOME dir", "new");
    const exported = await nbjob("export", String(jobId), target);
    assert.equal(exported.code, 0, exported.stderr);
    assert.deepEqual(readdirSync(target).sort(), ["README.md", "job.ts", "nbjob-runtime.ts", "package.json"]);
    assert.ok(exported.stdout.includes(`job ${jobId} exported to ${shellQuote(target)}: `), exported.stdout);
    const cd = /^run it: (cd .*?) && npm install/m.exec(exported.stdout)?.[1];
    assert.equal(cd, `cd '${target.replace(/'/g, `'\\''`)}'`);
    const pasted = await sh(`${cd} && pwd && ls job.ts`);
    assert.equal(pasted.code, 0, pasted.stderr);
    assert.equal(pasted.stdout, `${target}\njob.ts\n`);
    assert.equal(shellQuote("/plain/path-1.2_x"), "/plain/path-1.2_x");
  });

  test("an existing empty directory is still a fine target", async () => {
    const empty = join(dir, "empty");
    mkdirSync(empty);
    const exported = await nbjob("export", String(jobId), empty);
    assert.equal(exported.code, 0, exported.stderr);
    assert.ok(existsSync(join(empty, "job.ts")));
  });
});
