// The read side of the CLI as a user runs it (a subprocess `node bin/nbjob.js ...`) on jobs
// written through the store API into a fresh database; plus the one-line errors for bad input.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { Client } from "pg";
import { openStore, putBundle, createJob, createJobGroup, transitionJob, appendLogs, knownMigrations, putMetrics, setJobNote, WORKER_HEARTBEAT_MS, WORKER_STALE_MS } from "../store";
import type { Store, BundleInput, SnippetInput } from "../store";
import { assembleBundle } from "../runtime/bundle";
import { TestDatabases } from "./pg-admin";
import type { BundleSnippet } from "../runtime/bundle";

const BIN = join(__dirname, "..", "..", "bin", "nbjob.js");

const databases = new TestDatabases("cli");
const freshDatabase = (label: string) => databases.fresh(label);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function nbjob(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, NBJOB_DEBUG: "", ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** A failed command: non-zero, exactly one line on stderr starting "nbjob:", no stack trace. */
function assertOneLineError(run: Run, pattern: RegExp): void {
  assert.notEqual(run.code, 0, `expected failure, got exit 0 with ${run.stdout}`);
  const lines = run.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0], /^nbjob: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(run.stderr, /\n\s+at /, "no stack trace");
}

const point: SnippetInput = { kind: "class", names: ["Point"], source: "class Point {\n  constructor(public x: number, public y: number) {}\n}" };
const normV1: SnippetInput = { kind: "function", names: ["norm"], source: "function norm(p: Point): number {\n  return Math.sqrt(p.x ** 2 + p.y ** 2);\n}" };
const normV2: SnippetInput = { kind: "function", names: ["norm"], source: "function norm(p: Point): number {\n  return Math.hypot(p.x, p.y);\n}" };
const origin: SnippetInput = { kind: "cell", names: ["origin"], source: "const origin = new Point(0, 0);" };

function makeBundle(snippets: SnippetInput[], params: { [k: string]: number }, entries: string[]): BundleInput {
  const source = [...snippets.map((s) => s.source), `const params = ${JSON.stringify(params)};`, ...entries.map((e) => `${e};`)].join("\n") + "\n";
  return { source, snippets, params, entries };
}

describe("nbjob read commands", () => {
  let url: string;
  let store: Store;
  const ids: number[] = [];

  before(async () => {
    url = await freshDatabase("read");
    store = openStore({ url });
    // job 1: done, first version of norm
    const b1 = await putBundle(store, makeBundle([point, normV1, origin], { x: 5, y: 5 }, ["norm(origin)"]));
    const j1 = await createJob(store, { bundleHash: b1, name: "first walk", tags: ["geometry"] });
    await transitionJob(store, j1.id, "running", { workerId: "default-0", host: "lab1", pid: 4242 });
    await appendLogs(store, j1.id, [{ stream: "stdout", line: "starting at origin" }, { stream: "stderr", line: "warning: slow" }, { stream: "stdout", line: "finished" }]);
    await transitionJob(store, j1.id, "done", { result: 0, resultText: "0" });
    // job 2: failed, norm changed, origin removed, x changed
    const b2 = await putBundle(store, makeBundle([point, normV2], { x: 7, y: 5 }, ["norm(new Point(params.x, params.y))"]));
    const j2 = await createJob(store, { bundleHash: b2, name: "second walk" });
    await transitionJob(store, j2.id, "running", { workerId: "default-1", host: "lab1", pid: 4343 });
    await transitionJob(store, j2.id, "failed", { error: { name: "RangeError", message: "x out of range", traceback: ["RangeError: x out of range", "    at norm (bundle.ts:2:10)"] } });
    // job 3: queued, same code as job 2
    const j3 = await createJob(store, { bundleHash: b2, tags: ["geometry", "later"] });
    ids.push(j1.id, j2.id, j3.id);
  });

  after(async () => {
    await store.close();
    await databases.dropAll();
  });

  test("jobs lists newest first and filters by status and tag", async () => {
    const all = await nbjob(["jobs"], { NBJOB_DATABASE_URL: url });
    assert.equal(all.code, 0, all.stderr);
    const lines = all.stdout.trim().split("\n");
    assert.match(lines[0], /^ID\s+STATUS\s+NAME\s+TAGS\s+QUEUED\s+TIME\s+WORKER/);
    assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/)[0]), ids.map(String).reverse());
    assert.match(all.stdout, /first walk\s+geometry/);
    assert.equal(all.stderr, "", "all 3 jobs shown: no note");
    // A list cut by --limit says so on stderr (stdout stays the table).
    const cut = await nbjob(["jobs", "--limit", "2"], { NBJOB_DATABASE_URL: url });
    assert.equal(cut.code, 0, cut.stderr);
    assert.deepEqual(cut.stdout.trim().split("\n").slice(1).map((l) => l.split(/\s+/)[0]), [ids[2], ids[1]].map(String));
    assert.equal(cut.stderr, "2 of 3 jobs shown; --limit N for more\n");
    const cutTagged = await nbjob(["jobs", "--tag", "geometry", "--limit", "1"], { NBJOB_DATABASE_URL: url });
    assert.equal(cutTagged.stderr, "1 of 2 jobs shown; --limit N for more\n", "the count is of the jobs matching the filter");
    const failed = await nbjob(["jobs", "--status", "failed"], { NBJOB_DATABASE_URL: url });
    assert.deepEqual(failed.stdout.trim().split("\n").slice(1).map((l) => l.split(/\s+/).slice(0, 2).join(" ")), [`${ids[1]} failed`]);
    const tagged = await nbjob(["jobs", "--tag", "geometry", "--limit", "1"], { NBJOB_DATABASE_URL: url });
    assert.deepEqual(tagged.stdout.trim().split("\n").slice(1).map((l) => l.split(/\s+/)[0]), [String(ids[2])]);
    const none = await nbjob(["jobs", "--tag", "nothing"], { NBJOB_DATABASE_URL: url });
    assert.equal(none.stdout.trim(), "no jobs match");
  });

  test("the --database-url flag wins over NBJOB_DATABASE_URL", async () => {
    const run = await nbjob(["jobs", "--database-url", url], { NBJOB_DATABASE_URL: "postgres://nobody@127.0.0.1:1/nothing" });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /first walk/);
  });

  test("show prints status, times, worker, parameters, result and the whole source", async () => {
    const run = await nbjob(["show", String(ids[0])], { NBJOB_DATABASE_URL: url });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^job ${ids[0]}  first walk\\n`));
    assert.match(run.stdout, /status\s+done/);
    assert.match(run.stdout, /started\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/);
    assert.match(run.stdout, /finished\s+.*\(took /);
    assert.match(run.stdout, /worker\s+default-0 on lab1 \(pid 4242\)/);
    assert.match(run.stdout, /parameters\n  x = 5\n  y = 5/);
    assert.match(run.stdout, /entries\n  norm\(origin\)/);
    assert.match(run.stdout, /result\n  0\n/);
    assert.ok(run.stdout.includes("  return Math.sqrt(p.x ** 2 + p.y ** 2);"), "the source is shown");
    assert.ok(run.stdout.includes("  const origin = new Point(0, 0);"));
  });

  test("show of a failed job prints the error and traceback", async () => {
    await setJobNote(store, ids[1], "x was too large\ntry 3 next");
    const run = await nbjob(["show", String(ids[1])], { NBJOB_DATABASE_URL: url });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /status\s+failed/);
    assert.match(run.stdout, /\nnote        x was too large\n            try 3 next\n/, "the job's note (set on the dashboard or with job.setNote)");
    assert.match(run.stdout, /error\n  RangeError: x out of range\n.*at norm \(bundle\.ts:2:10\)/);
    assert.doesNotMatch(run.stdout, /^result/m);
  });

  test("logs prints stdout lines to stdout and stderr lines to stderr", async () => {
    const run = await nbjob(["logs", String(ids[0])], { NBJOB_DATABASE_URL: url });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "starting at origin\nfinished\n");
    assert.equal(run.stderr, "warning: slow\n");
    const stamped = await nbjob(["logs", String(ids[0]), "--timestamps", "--stream", "stdout"], { NBJOB_DATABASE_URL: url });
    assert.match(stamped.stdout, /^\d{4}-\d\d-\d\dT[\d:.]+Z starting at origin\n/);
    // --follow keeps printing until the job finishes.
    const job = await createJob(store, { bundleHash: (await store.query<{ bundle_hash: string }>("SELECT bundle_hash FROM nbjob.jobs WHERE id = $1", [ids[0]])).rows[0].bundle_hash });
    await transitionJob(store, job.id, "running");
    await appendLogs(store, job.id, [{ stream: "stdout", line: "epoch 1" }]);
    const following = nbjob(["logs", String(job.id), "--follow"], { NBJOB_DATABASE_URL: url });
    await new Promise((r) => setTimeout(r, 1500));
    await appendLogs(store, job.id, [{ stream: "stdout", line: "epoch 2" }]);
    await transitionJob(store, job.id, "done", { result: null, resultText: "null" });
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.equal(followed.stdout, "epoch 1\nepoch 2\n");
    await store.query("DELETE FROM nbjob.jobs WHERE id = $1", [job.id]);
    const quiet = await nbjob(["logs", String(ids[2])], { NBJOB_DATABASE_URL: url });
    assert.equal(quiet.code, 0);
    assert.match(quiet.stderr, /has printed nothing yet/);
  });

  test("logs of a job that ended without printing says so, without \"yet\"", async () => {
    const ended = await nbjob(["logs", String(ids[1])], { NBJOB_DATABASE_URL: url });
    assert.equal(ended.code, 0, ended.stderr);
    assert.equal(ended.stderr, `job ${ids[1]} (failed) printed nothing\n`);
    const onStream = await nbjob(["logs", String(ids[0]), "--stream", "stdout"], { NBJOB_DATABASE_URL: url });
    assert.equal(onStream.stderr, "", "a job that printed says nothing about it");
  });

  test("diff is a unified diff of code and parameters", async () => {
    const run = await nbjob(["diff", String(ids[0]), String(ids[1])], { NBJOB_DATABASE_URL: url });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^--- job ${ids[0]} \\(first walk\\)`, "m"));
    assert.match(run.stdout, new RegExp(`^\\+\\+\\+ job ${ids[1]} \\(second walk\\)`, "m"));
    assert.match(run.stdout, /^-x = 5$/m);
    assert.match(run.stdout, /^\+x = 7$/m);
    assert.match(run.stdout, /^-  return Math\.sqrt\(p\.x \*\* 2 \+ p\.y \*\* 2\);$/m);
    assert.match(run.stdout, /^\+  return Math\.hypot\(p\.x, p\.y\);$/m);
    assert.match(run.stdout, /^-const origin = new Point\(0, 0\);$/m);
    assert.match(run.stdout, /^ class Point \{$/m, "unchanged code is context");
    const same = await nbjob(["diff", String(ids[1]), String(ids[2])], { NBJOB_DATABASE_URL: url });
    assert.equal(same.stdout.trim(), `jobs ${ids[1]} and ${ids[2]} have the same code and parameters`);
  });

  test("log shows what changed in each job's code since the previous job", async () => {
    const run = await nbjob(["log"], { NBJOB_DATABASE_URL: url });
    assert.equal(run.code, 0, run.stderr);
    const blocks = run.stdout.trim().split(/\n(?=job )/);
    assert.equal(blocks.length, 3);
    assert.match(blocks[0], new RegExp(`^job ${ids[2]}  \\[queued\\]`));
    // These jobs record no notebook and their collectors have no label: one lineage.
    assert.match(blocks[0], new RegExp(`\\n {4}no notebook recorded, collectors unlabelled: same code as job ${ids[1]}$`, "m"));
    assert.match(blocks[1], new RegExp(`compared with job ${ids[0]}$`, "m"));
    assert.match(blocks[2], /: its first job$/m);
    assert.match(blocks[1], /changed\s+norm/);
    assert.match(blocks[1], /removed\s+origin/);
    assert.doesNotMatch(blocks[1], /Point/);
    assert.match(blocks[2], /added\s+Point/);
    assert.match(blocks[2], /added\s+norm/);
    const byName = await nbjob(["log", "--name", "norm"], { NBJOB_DATABASE_URL: url });
    const jobsShown = [...byName.stdout.matchAll(/^job (\d+)/gm)].map((m) => Number(m[1]));
    assert.deepEqual(jobsShown, [ids[1], ids[0]], "only the jobs where norm changed");
  });

  test("history lists every version of a declaration with the jobs that used it", async () => {
    const run = await nbjob(["history", "norm"], { NBJOB_DATABASE_URL: url });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^norm: 2 versions/);
    assert.match(run.stdout, new RegExp(`version 1  [0-9a-f]{12}  function  used by job ${ids[0]}\\n  function norm\\(p: Point\\): number \\{\\n    return Math\\.sqrt`));
    assert.match(run.stdout, new RegExp(`version 2  [0-9a-f]{12}  function  used by jobs ${ids[1]}-${ids[2]}\\n.*\\n    return Math\\.hypot`));
    const point = await nbjob(["history", "Point"], { NBJOB_DATABASE_URL: url });
    assert.match(point.stdout, /^Point: 1 version\n/);
  });

  test("worker --help names the heartbeat and staleness defaults the code uses", async () => {
    const run = await nbjob(["worker", "--help"]);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.includes(`NBJOB_WORKER_HEARTBEAT_MS (default ${WORKER_HEARTBEAT_MS})`), run.stdout);
    assert.ok(run.stdout.includes(`NBJOB_WORKER_STALE_MS (default ${WORKER_STALE_MS})`), run.stdout);
  });

  test("a group command without its action is one line naming the actions and --help", async () => {
    assertOneLineError(await nbjob(["cluster"]), /^nbjob: nbjob cluster needs an action: start, status or stop \("nbjob cluster --help" explains each\)$/);
    assertOneLineError(await nbjob(["db"]), /^nbjob: nbjob db needs an action: migrate, status, start, stop, destroy, dump, restore, retention or index \("nbjob db --help" explains each\)$/);
    assertOneLineError(await nbjob(["worker"]), /^nbjob: nbjob worker needs --connection-file FILE.*\("nbjob worker --help" explains the options\)$/);
    assertOneLineError(await nbjob(["cluster", "restart"]), /unknown action "restart"; expected start, status or stop \("nbjob cluster --help"/);
    assertOneLineError(await nbjob(["cluster", "start"]), /nbjob cluster start needs -n N/);
    assertOneLineError(await nbjob(["cluster", "start", "-n", "1", "--ip", "0.0.0.0"]), /--ip 0\.0\.0\.0 would bind every address but write 0\.0\.0\.0 in the workers' connection files.*give the address other hosts reach this one by/);
    assertOneLineError(await nbjob(["db", "status", "now"]), /nbjob db takes one action, got "status now"/);
  });

  test("every command answers --help", async () => {
    for (const command of ["jobs", "show", "logs", "diff", "log", "history", "db"]) {
      const run = await nbjob([command, "--help"]);
      assert.equal(run.code, 0, `${command} --help: ${run.stderr}`);
      assert.match(run.stdout, new RegExp(`usage: nbjob ${command}`));
    }
  });

  test("bad input is one clear line, a non-zero exit and no stack trace", async () => {
    const env = { NBJOB_DATABASE_URL: url };
    assertOneLineError(await nbjob(["show", "424242"], env), /there is no job 424242/);
    assertOneLineError(await nbjob(["show", "abc"], env), /JOB must be a job id \(a positive integer/);
    assertOneLineError(await nbjob(["logs", "999999"], env), /there is no job 999999/);
    assertOneLineError(await nbjob(["diff", String(ids[0]), "999999"], env), /there is no job 999999/);
    assertOneLineError(await nbjob(["history", "nosuchname"], env), /no stored code declares "nosuchname"/);
    assertOneLineError(await nbjob(["jobs", "--status", "finished"], env), /--status must be one of queued, running, done, failed, cancelled, lost/);
    assertOneLineError(await nbjob(["jobs", "--limit", "0"], env), /--limit must be a positive integer, got "0"/);
    assertOneLineError(await nbjob(["jobs", "--frobnicate"], env), /Unknown option '--frobnicate'.*usage: nbjob jobs .*"nbjob jobs --help"/);
    // A negative number is a bad value, not an unknown option: the command's own check names it.
    assertOneLineError(await nbjob(["show", "-1"], env), /^nbjob: JOB must be a job id \(a positive integer, see "nbjob jobs"\), got "-1"$/);
    assertOneLineError(await nbjob(["jobs", "--limit", "-3"], env), /^nbjob: --limit must be a positive integer, got "-3"$/);
    assertOneLineError(await nbjob(["diff", "-1", String(ids[0])], env), /JOB_A must be a job id .*got "-1"$/);
    assertOneLineError(await nbjob(["jobs", "-2"], env), /^nbjob: unexpected argument "-2" \(usage: nbjob jobs /);
    // A declaration name matching no job: an error, as in nbjob history.
    assertOneLineError(await nbjob(["log", "--name", "nosuch"], env), /no job used a declaration named "nosuch"; names are case-sensitive/);
    assertOneLineError(await nbjob(["jobs"], { NBJOB_DATABASE_URL: "postgres//oops" }), /NBJOB_DATABASE_URL is not a valid URL/);
    const refused = await nbjob(["jobs"], { NBJOB_DATABASE_URL: "postgres://me:s3cret@127.0.0.1:1/nbjob" });
    assertOneLineError(refused, /cannot reach PostgreSQL at postgres:\/\/me:\*\*\*@127\.0\.0\.1:1\/nbjob \(connection refused\)/);
    assert.doesNotMatch(refused.stderr, /s3cret/);
    const debug = await nbjob(["show", "424242"], { ...env, NBJOB_DEBUG: "1" });
    assert.match(debug.stderr, /\n\s+at /, "NBJOB_DEBUG=1 shows the stack");
  });

  test("another application's database is refused and nothing in it changes", async () => {
    const foreign = await freshDatabase("foreign");
    const client = new Client({ connectionString: foreign });
    await client.connect();
    try {
      await client.query("CREATE TABLE invoices (id int PRIMARY KEY, total numeric); INSERT INTO invoices VALUES (1, 9.5)");
      for (const args of [["jobs"], ["db", "migrate"], ["show", "1"]]) {
        assertOneLineError(await nbjob(args, { NBJOB_DATABASE_URL: foreign }), /holds tables of another application \(public\.invoices\)/);
      }
      const { rows } = await client.query("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'nbjob'");
      assert.equal(rows[0].n, 0);
      assert.deepEqual((await client.query("SELECT id, total::text FROM invoices")).rows, [{ id: 1, total: "9.5" }]);
    } finally {
      await client.end();
    }
  });

  test("db migrate and db status report the schema", async () => {
    const fresh = await freshDatabase("migrate");
    const status0 = await nbjob(["db", "status"], { NBJOB_DATABASE_URL: fresh });
    assert.equal(status0.code, 0, status0.stderr);
    assert.match(status0.stdout, /schema:\s+none yet/);
    // The migrations this nbjob ships, as the runner reads them (not a list kept here).
    const known = knownMigrations().map((m) => m.id);
    const latest = known[known.length - 1];
    const first = await nbjob(["db", "migrate"], { NBJOB_DATABASE_URL: fresh });
    assert.ok(first.stdout.startsWith(`applied migration${known.length > 1 ? "s" : ""} ${known.map((id) => String(id).padStart(6, "0")).join(", ")} to postgres://`), first.stdout);
    const second = await nbjob(["db", "migrate"], { NBJOB_DATABASE_URL: fresh });
    assert.ok(second.stdout.includes(`is up to date (migration ${latest})`), second.stdout);
    const status = await nbjob(["db", "status"], { NBJOB_DATABASE_URL: url });
    assert.match(status.stdout, new RegExp(`schema:\\s+migration ${latest}, up to date`));
    assert.match(status.stdout, /jobs:\s+3 \(1 queued, 1 done, 1 failed\)/);
    assertOneLineError(await nbjob(["db", "start"], { NBJOB_DATABASE_URL: fresh }), /manages only the embedded server/);
    assertOneLineError(await nbjob(["db", "frobnicate"], { NBJOB_DATABASE_URL: fresh }), /unknown action "frobnicate"; expected migrate, status, start, stop, destroy, dump, restore, retention or index/);
    assertOneLineError(await nbjob(["db", "destroy", "--yes"], { NBJOB_DATABASE_URL: fresh }), /nbjob db destroy manages only the embedded server/);
  });
});

describe("nbjob log and history across notebooks, nbjob show's traceback", () => {
  let url: string;
  let store: Store;
  const nbA = "/work/notebooks/a.ipynb";
  const nbB = "/work/notebooks/b.ipynb";
  const walk: SnippetInput = { kind: "function", names: ["walk"], source: "function walk(n: number): number {\n  return n * 2;\n}" };

  before(async () => {
    url = await freshDatabase("lineage");
    store = openStore({ url });
  });

  // The first suite's dropAll ran before this database was made.
  after(async () => {
    await store.close();
    await databases.dropAll();
  });

  async function job(snippets: SnippetInput[], fields: { notebook?: string; collector?: string; entry?: string }): Promise<number> {
    const hash = await putBundle(store, { ...makeBundle(snippets, {}, [fields.entry ?? "0"]), snippets: snippets.map((s) => ({ ...s, collector: fields.collector ?? null })) });
    return (await createJob(store, { bundleHash: hash, notebook: fields.notebook ?? null })).id;
  }

  test("a job is compared with the previous job of its own notebook, and the output says which", async () => {
    const a1 = await job([point, normV1], { notebook: nbA });
    const b1 = await job([walk], { notebook: nbB }); // another notebook, in between
    const a2 = await job([point, normV2], { notebook: nbA });
    const c1 = await job([walk], { collector: "walks", entry: "walk(1)" }); // no notebook known: its collectors are its lineage

    const log = await nbjob(["log"], { NBJOB_DATABASE_URL: url });
    assert.equal(log.code, 0, log.stderr);
    const blocks = new Map(log.stdout.trim().split(/\n(?=job )/).map((block) => [Number(/^job (\d+)/.exec(block)![1]), block]));
    // a2 against a1 (not b1): only norm changed; nothing of b1's "removed", Point not "added".
    assert.match(blocks.get(a2)!, new RegExp(`^ {4}notebook ${nbA}: compared with job ${a1}$`, "m"));
    assert.match(blocks.get(a2)!, /changed\s+norm/);
    assert.doesNotMatch(blocks.get(a2)!, /removed|added|walk|Point/);
    assert.match(blocks.get(b1)!, new RegExp(`^ {4}notebook ${nbB}: its first job\\n {4}added {4}walk`, "m"));
    assert.doesNotMatch(blocks.get(b1)!, /removed/);
    assert.match(blocks.get(c1)!, /^ {4}no notebook recorded, collectors "walks": its first job$/m);

    const history = await nbjob(["history", "norm"], { NBJOB_DATABASE_URL: url });
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, new RegExp(`^ {2}job ${a2} {2}version 1 -> version 2 since job ${a1} \\(notebook ${nbA}\\)$`, "m"));
    assert.match(history.stdout, new RegExp(`^ {2}job ${a1} {2}version 1 appeared \\(first job of notebook ${nbA}\\)$`, "m"));
    assert.doesNotMatch(history.stdout, new RegExp(`job ${b1} `), "b1 never had norm: nothing changed for it");
    const byName = await nbjob(["log", "--name", "norm"], { NBJOB_DATABASE_URL: url });
    assert.deepEqual([...byName.stdout.matchAll(/^job (\d+)/gm)].map((m) => Number(m[1])), [a2, a1]);
  });

  test("show maps a failed job's frames to the snippet and line, as the notebook's JobError does", async () => {
    // A bundle laid out as createJob lays it out, so its lines map back to its snippets.
    const snippets: BundleSnippet[] = [point, normV1].map((s) => ({ hash: "", names: s.names, kind: s.kind as BundleSnippet["kind"], source: s.source }));
    const bundle = assembleBundle(snippets, ["norm(new Point(3, 4))"], { x: 1 }, { typeCheck: false });
    const normPart = bundle.parts.find((part) => part.label.startsWith("snippet norm"))!;
    const entryPart = bundle.parts.find((part) => part.kind === "entry")!;
    const hash = await putBundle(store, { source: bundle.source, params: bundle.params, entries: bundle.entries, snippets: bundle.snippets.map((s) => ({ kind: s.kind, names: s.names, source: s.source })) });
    assert.equal(hash, bundle.hash);
    const failed = await createJob(store, { bundleHash: hash });
    await transitionJob(store, failed.id, "running");
    await transitionJob(store, failed.id, "failed", {
      error: { name: "RangeError", message: "too far", traceback: ["RangeError: too far", `    at norm (bundle.ts:${normPart.firstLine + 1}:10)`, `    at bundle.ts:${entryPart.firstLine}:1`] },
    });
    const run = await nbjob(["show", String(failed.id)], { NBJOB_DATABASE_URL: url });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.includes(`error\n  RangeError: too far\n      at norm (bundle.ts:${normPart.firstLine + 1}:10 [snippet norm, line 2])\n      at bundle.ts:${entryPart.firstLine}:1 [entry 1 "norm(new Point(3, 4))", line 1]\n`), run.stdout);
  });
});

// A job may log hundreds of metrics: a row of `nbjob jobs` or `nbjob group` shows the first few
// and where to see the rest; `nbjob show` lists them all.
describe("rows of a job with 300 metrics", () => {
  let url: string;
  let store: Store;

  before(async () => {
    url = await freshDatabase("manymetrics");
    store = openStore({ url });
  });

  after(async () => {
    await store.close();
    await databases.dropAll();
  });

  test("nbjob jobs and nbjob group show 5 metrics and how many more; nbjob show shows all 300", async () => {
    const group = await createJobGroup(store, { grid: { lr: [0.1] } });
    const hash = await putBundle(store, makeBundle([], { lr: 0.1 }, ["0"]));
    const job = await createJob(store, { bundleHash: hash, groupId: group.id });
    await transitionJob(store, job.id, "running", { workerId: "w", host: "h", pid: 1 });
    const names = Array.from({ length: 300 }, (_, i) => `layer${String(i).padStart(3, "0")}.grad_norm`);
    await putMetrics(store, job.id, names.map((name, seq) => ({ seq, name, step: 0, value: seq / 1000, backwards: false })));
    await transitionJob(store, job.id, "done", { result: 0, resultText: "0" });

    const jobs = await nbjob(["jobs"], { NBJOB_DATABASE_URL: url });
    assert.equal(jobs.code, 0, jobs.stderr);
    const row = jobs.stdout.trim().split("\n")[1];
    assert.match(row, new RegExp(`^${job.id}\\s+done\\s.*\\slayer000\\.grad_norm=0 layer001\\.grad_norm=0\\.001 layer002\\.grad_norm=0\\.002 layer003\\.grad_norm=0\\.003 layer004\\.grad_norm=0\\.004 … \\(\\+295 more; nbjob show ${job.id}\\)$`));
    assert.ok(row.length < 300, `a short row: ${row.length} characters`);

    const shown = await nbjob(["group", String(group.id)], { NBJOB_DATABASE_URL: url });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`\\slayer004\\.grad_norm=0\\.004 … \\(\\+295 more; nbjob show ${job.id}\\)\\n?$`));

    const show = await nbjob(["show", String(job.id)], { NBJOB_DATABASE_URL: url });
    assert.equal(show.code, 0, show.stderr);
    for (const name of names) assert.ok(show.stdout.includes(` ${name}=`), `nbjob show lists ${name}`);
    assert.doesNotMatch(show.stdout, /more; nbjob show/);
  });
});
