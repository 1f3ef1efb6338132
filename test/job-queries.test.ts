// Queries by parameter, metric and result (issue 19 point 2), against a real PostgreSQL in a
// database of this file's own: db.jobs({ params, metrics, result, ... }) through DBWrapper,
// `nbjob jobs --where ... --order ...` as a subprocess, the --where errors, injection attempts in
// field names and values, the result's JSON form, and a sweep run by a real worker from a
// notebook (nbjob run, the real kernel) queried from a cell and from the CLI; and indexes on a
// field's number (nbjob db index, db.createIndex): same jobs with and without, EXPLAIN reads them. Jobs are written through the store API
// (so the migration's trigger copies their params); metrics are written with SQL as the metrics
// code would (jobs.last_metrics).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serialize } from "node:v8";
import { compileJobQuery, createJob, createJobGroup, fieldIndexName, indexedFields, listFieldIndexes, openStore, parseWhere, putBundle, transitionJob, WhereSyntaxError } from "../store";
import type { JobQuery, Json, OrderPart, Store } from "../store";
import { DBWrapper } from "../runtime/db-wrapper";
import type { JobsFilter } from "../runtime/db-wrapper";
import { resultAsJson } from "../worker/result-json";
import { cmdJobs } from "../cli/jobs";
import { cellText, JobsEnv } from "./jobs-env";
import { TestDatabases } from "./pg-admin";

const BIN = join(__dirname, "..", "..", "bin", "nbjob.js");
const home = mkdtempSync(join(tmpdir(), "nbjob-queries-"));
process.env.NBJOB_HOME = home; // the cluster key putBundle signs with lands here, not in ~/.nbjob


interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function nbjob(args: string[], url: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, NBJOB_DEBUG: "", NBJOB_DATABASE_URL: url }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function assertOneLineError(run: Run, expected: string | RegExp): void {
  assert.notEqual(run.code, 0, `expected failure, got exit 0 with ${run.stdout}`);
  const lines = run.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  if (typeof expected === "string") assert.equal(lines[0], expected);
  else assert.match(lines[0], expected);
  assert.doesNotMatch(run.stderr, /\n\s+at /, "no stack trace");
}

/** The ID column of `nbjob jobs` output. */
function listedIds(run: Run): number[] {
  assert.equal(run.code, 0, run.stderr);
  return run.stdout.trim().split("\n").slice(1).map((line) => Number(line.split(/\s+/)[0]));
}

const INJECTION = `it's "quoted"; DROP TABLE nbjob.jobs; --`;

// name -> params, last_metrics, status, result (its JSON form), tags
const JOBS: { params: { [k: string]: Json }; metrics: { [k: string]: Json }; status: "done" | "failed" | "queued"; result?: Json; tags?: string[] }[] = [
  // Metric names are flat: dots, slashes, quotes, commas and braces are part of the name.
  { params: { lr: 0.1, optimizer: "adam", model: { layers: 2 } }, metrics: { loss: 0.5, acc: 0.7, "layer0.grad_norm": 1.5, "val/loss": 0.6, 'say "hi", {x}': 3 }, status: "done", result: 3, tags: ["sweep"] },
  { params: { lr: 0.01, optimizer: "sgd", model: { layers: 4 } }, metrics: { loss: 0.08, acc: 0.9 }, status: "done", result: { acc: 0.93 }, tags: ["sweep"] },
  { params: { lr: 0.001, optimizer: "adam", model: { layers: 4 } }, metrics: { loss: 0.05 }, status: "done", result: { acc: 0.95 } },
  { params: { lr: 0.005, optimizer: "adam" }, metrics: { loss: "NaN" }, status: "failed" },
  { params: { lr: "auto", optimizer: "adam" }, metrics: {}, status: "queued" },
  { params: { lr: 0.002, optimizer: INJECTION }, metrics: { "loss') OR 1=1 --": 0.01 }, status: "done", result: INJECTION },
];

describe("queries by parameter, metric and result", () => {
  let url: string;
  let store: Store;
  let db: DBWrapper;
  const ids: number[] = [];
  let group = 0;
  const databases = new TestDatabases("queries");
  /** ids of JOBS[i] for the given indexes, as db.jobs returns them by default (newest first). */
  const newestFirst = (...indexes: number[]) => indexes.map((i) => ids[i]).sort((a, b) => b - a);
  const idsOf = (rows: { id: number }[]) => rows.map((row) => row.id);

  before(async () => {
    url = await databases.fresh("main");
    store = openStore({ url });
    group = (await createJobGroup(store, { grid: { lr: [0.1, 0.01] } })).id;
    for (const [i, spec] of JOBS.entries()) {
      const source = `// job ${i}\n// params: ${JSON.stringify(spec.params)}\nconst x = ${i};\n`;
      const hash = await putBundle(store, { source, snippets: [], params: spec.params, entries: ["x"] });
      const job = await createJob(store, { bundleHash: hash, name: `job ${i}`, tags: spec.tags, groupId: spec.tags ? group : null });
      ids.push(job.id);
      if (spec.status !== "queued") await transitionJob(store, job.id, "running", { workerId: "w", host: "h", pid: 1 });
      if (spec.status === "done") await transitionJob(store, job.id, "done", { result: { encoding: "v8", data: "" }, resultText: JSON.stringify(spec.result), resultJson: spec.result });
      if (spec.status === "failed") await transitionJob(store, job.id, "failed", { error: { name: "Error", message: "diverged" } });
      // What the metrics code writes as a job logs (the last value of each metric).
      await store.query("UPDATE nbjob.jobs SET last_metrics = $2::jsonb WHERE id = $1", [job.id, JSON.stringify(spec.metrics)]);
    }
    // The first job was made a week ago.
    await store.query("UPDATE nbjob.jobs SET queued_at = now() - interval '7 days' WHERE id = $1", [ids[0]]);
    db = new DBWrapper(url);
  });

  after(async () => {
    await db?.close();
    await store?.close();
    await databases.dropAll();
    rmSync(home, { recursive: true, force: true });
  });

  test("the job row holds its bundle's params (copied by the migration's trigger)", async () => {
    const { rows } = await store.query<{ id: number; params: Json }>("SELECT id, params FROM nbjob.jobs ORDER BY id");
    assert.deepEqual(rows.map((r) => r.params), JOBS.map((j) => j.params));
  });

  test("db.jobs: each kind of filter", async () => {
    // params: ranges compare numbers only ("auto" is not below 0.01), equality, nested paths, in, ne, exists
    assert.deepEqual(idsOf(await db.jobs({ params: { lr: { lt: 0.01 } } })), newestFirst(2, 3, 5));
    assert.deepEqual(idsOf(await db.jobs({ params: { lr: { lte: 0.01 } } })), newestFirst(1, 2, 3, 5));
    assert.deepEqual(idsOf(await db.jobs({ params: { lr: { gt: 0.001, lt: 0.05 } } })), newestFirst(1, 3, 5));
    assert.deepEqual(idsOf(await db.jobs({ params: { optimizer: "adam" } })), newestFirst(0, 2, 3, 4));
    assert.deepEqual(idsOf(await db.jobs({ params: { lr: "auto" } })), newestFirst(4));
    assert.deepEqual(idsOf(await db.jobs({ params: { lr: 0.01 } })), newestFirst(1), "1 and 1.0 alike: 0.01 equals 0.010");
    assert.deepEqual(idsOf(await db.jobs({ params: { "model.layers": 4 } })), newestFirst(1, 2));
    assert.deepEqual(idsOf(await db.jobs({ params: { "model.layers": { exists: false } } })), newestFirst(3, 4, 5));
    assert.deepEqual(idsOf(await db.jobs({ params: { lr: { in: [0.1, 0.001] } } })), newestFirst(0, 2));
    assert.deepEqual(idsOf(await db.jobs({ params: { optimizer: { ne: "adam" } } })), newestFirst(1, 5));
    // metrics: the last value; "NaN" (text) is not below anything
    assert.deepEqual(idsOf(await db.jobs({ metrics: { loss: { lt: 0.1 } } })), newestFirst(1, 2));
    assert.deepEqual(idsOf(await db.jobs({ metrics: { loss: "NaN" } })), newestFirst(3));
    assert.deepEqual(idsOf(await db.jobs({ metrics: { acc: { exists: true } } })), newestFirst(0, 1));
    // metrics: the key is the metric's whole name, dots and slashes included (not a path)
    assert.deepEqual(idsOf(await db.jobs({ metrics: { "layer0.grad_norm": { lt: 2 } } })), newestFirst(0));
    assert.deepEqual(idsOf(await db.jobs({ metrics: { "layer0.grad_norm": { exists: true } } })), newestFirst(0));
    assert.deepEqual(idsOf(await db.jobs({ metrics: { "val/loss": 0.6, 'say "hi", {x}': { in: [3] } } })), newestFirst(0));
    // result: the whole value, or its fields
    assert.deepEqual(idsOf(await db.jobs({ result: { gt: 2 } })), newestFirst(0));
    assert.deepEqual(idsOf(await db.jobs({ result: { acc: { gte: 0.94 } } })), newestFirst(2));
    assert.deepEqual(idsOf(await db.jobs({ result: { exists: true } })), newestFirst(0, 1, 2, 5));
    // the job's own columns
    assert.deepEqual(idsOf(await db.jobs({ status: "failed" })), newestFirst(3));
    assert.deepEqual(idsOf(await db.jobs({ tag: "sweep" })), newestFirst(0, 1));
    assert.deepEqual(idsOf(await db.jobs({ group })), newestFirst(0, 1));
    assert.deepEqual(idsOf(await db.jobs({ group: { id: group } })), newestFirst(0, 1));
    assert.deepEqual(idsOf(await db.jobs({ createdBefore: new Date(Date.now() - 86_400_000) })), newestFirst(0));
    assert.deepEqual(idsOf(await db.jobs({ createdAfter: new Date(Date.now() - 86_400_000).toISOString() })), newestFirst(1, 2, 3, 4, 5));
    // rows carry params, metrics and group
    const [row] = await db.jobs({ name: "job 1" });
    assert.deepEqual({ params: row.params, metrics: row.metrics, group: row.group, result: row.result }, { params: JOBS[1].params, metrics: JOBS[1].metrics, group, result: JSON.stringify({ acc: 0.93 }) });
  });

  test("db.jobs: conditions combined, orderBy, limit and offset", async () => {
    assert.deepEqual(idsOf(await db.jobs({ params: { lr: { lt: 0.05 } }, metrics: { loss: { lt: 0.1 } } })), newestFirst(1, 2));
    assert.deepEqual(idsOf(await db.jobs({ params: { optimizer: "adam", lr: { lt: 0.01 } }, status: "done" })), newestFirst(2));
    assert.deepEqual(idsOf(await db.jobs({ params: { lr: { lt: 0.05 } }, metrics: { loss: { lt: 0.1 } }, result: { acc: { gt: 0.94 } } })), newestFirst(2));
    // numbers first (ascending), then text ("NaN"), then jobs without the field (newest first)
    assert.deepEqual(idsOf(await db.jobs({ orderBy: "metrics.loss" })), [2, 1, 0, 3, 5, 4].map((i) => ids[i]));
    assert.deepEqual(idsOf(await db.jobs({ orderBy: "-params.lr" })), [0, 1, 3, 5, 2, 4].map((i) => ids[i]));
    assert.deepEqual(idsOf(await db.jobs({ orderBy: "created" })), ids);
    assert.deepEqual(idsOf(await db.jobs({ orderBy: "-created", limit: 2 })), newestFirst(4, 5));
    assert.deepEqual(idsOf(await db.jobs({ orderBy: "metrics.loss", limit: 2, offset: 1 })), [1, 0].map((i) => ids[i]));
    assert.deepEqual(idsOf(await db.jobs({ orderBy: "-result.acc", result: { exists: true } })), [2, 1, 5, 0].map((i) => ids[i]));
    assert.deepEqual(idsOf(await db.jobs({ orderBy: "-metrics.layer0.grad_norm", limit: 1 })), [ids[0]]);
  });

  test("db.jobs: bad filters are TypeErrors naming the option", async () => {
    await assert.rejects(db.jobs({ params: { lr: { lt: "0.01" as unknown as number } } }), { name: "TypeError", message: /params\.lr lt: expected a finite number \(lt compares numbers; use eq, ne or in for text\); got "0\.01"/ });
    await assert.rejects(db.jobs({ params: { lr: { less: 1 } as never } }), { name: "TypeError", message: /params\.lr: expected a value or an object of operators \(eq, ne, lt, lte, gt, gte, in, exists\)/ });
    await assert.rejects(db.jobs({ metrics: [] as never }), { name: "TypeError", message: /metrics: expected an object of conditions/ });
    await assert.rejects(db.jobs({ metrics: { "": 1 } }), { name: "TypeError", message: /metrics: a metric name cannot be empty/ });
    await assert.rejects(db.jobs({ orderBy: "metrix.loss" }), { name: "TypeError", message: /unknown field "metrix\.loss"; the fields are params\.NAME/ });
    await assert.rejects(db.jobs({ where: "x" } as never), { name: "TypeError", message: /db\.jobs: unknown option where; the options are status, tag, name, group, createdAfter/ });
    await assert.rejects(db.jobs({ createdAfter: "yesterday" }), { name: "TypeError", message: /created gte: expected a date/ });
    await assert.rejects(db.jobs({ params: { lr: { in: [] } } }), { name: "TypeError", message: /params\.lr in: expected a non-empty list/ });
    await assert.rejects(db.jobs({ offset: -1 }), { name: "TypeError", message: /offset must be a non-negative integer/ });
  });

  test("injection attempts in field names and values are data, never SQL", async () => {
    // A value full of quotes and SQL is compared as a value; a field name with SQL in it is a path.
    assert.deepEqual(idsOf(await db.jobs({ params: { optimizer: INJECTION } })), newestFirst(5));
    assert.deepEqual(idsOf(await db.jobs({ result: INJECTION })), newestFirst(5));
    assert.deepEqual(idsOf(await db.jobs({ metrics: { "loss') OR 1=1 --": { lt: 1 } } })), newestFirst(5));
    assert.deepEqual(idsOf(await db.jobs({ params: { "lr' OR '1'='1": { exists: true } } })), []);
    assert.deepEqual(idsOf(await db.jobs({ orderBy: "params.x", name: "job 1' OR 'a'='a" })), []);
    const where = await nbjob(["jobs", "--where", `params.optimizer = ${JSON.stringify(INJECTION)}`], url);
    assert.deepEqual(listedIds(where), newestFirst(5));
    assert.ok(where.stdout.includes(INJECTION), "the value is shown as stored");
    // A field name that is not a name does not parse.
    assertOneLineError(await nbjob(["jobs", "--where", "params.lr; DROP TABLE nbjob.jobs = 1"], url),
      `nbjob: nbjob jobs --where: unexpected character ";" at position 10: "params.lr; DROP TABLE nbjob.jobs = 1"`);
    const { rows } = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.jobs");
    assert.equal(rows[0].n, JOBS.length, "the table is still there, whole");
  });

  test("nbjob jobs --where ... --order ... lists the matching jobs with a column per field", async () => {
    const run = await nbjob(["jobs", "--where", "params.lr < 0.05 and metrics.loss < 0.1", "--order", "metrics.loss"], url);
    assert.deepEqual(listedIds(run), [ids[2], ids[1]]);
    const lines = run.stdout.trim().split("\n");
    // METRICS: the last values of the metrics without a column of their own (job 1's acc).
    assert.match(lines[0], /^ID\s+STATUS\s+NAME\s+TAGS\s+QUEUED\s+TIME\s+WORKER\s+PARAMS\.LR\s+METRICS\.LOSS\s+METRICS$/);
    assert.match(lines[1], new RegExp(`^${ids[2]}\\s+done\\s+job 2\\s+.*\\s0\\.001\\s+0\\.05$`));
    assert.match(lines[2], new RegExp(`^${ids[1]}\\s+done\\s+job 1\\s+sweep\\s+.*\\s0\\.01\\s+0\\.08\\s+acc=0\\.9$`));
    // or, parentheses, in, text, booleans of the language; descending order
    assert.deepEqual(listedIds(await nbjob(["jobs", "--where", `(params.optimizer = "sgd" or params.lr = 'auto') and status in ("done", "queued")`, "--order", "-id"], url)), newestFirst(1, 4));
    assert.deepEqual(listedIds(await nbjob(["jobs", "--where", `metrics.acc exists and tag = "sweep" and created < "${new Date(Date.now() - 86_400_000).toISOString()}"`, "--order", "-metrics.acc"], url)), [ids[0]]);
    assert.deepEqual(listedIds(await nbjob(["jobs", "--where", "(result > 2 or result.acc > 0.94) and params.model.layers exists", "--status", "done"], url)), newestFirst(0, 2));
    // A metric's name runs to the comparison, dots, slashes and dashes included; quoted when it holds blanks.
    const flat = await nbjob(["jobs", "--where", `metrics.layer0.grad_norm < 2 and metrics.val/loss>=0.6 and metrics."say \\"hi\\", {x}" = 3`, "--order", "-metrics.layer0.grad_norm"], url);
    assert.deepEqual(listedIds(flat), [ids[0]]);
    assert.match(flat.stdout.split("\n")[0], /\sMETRICS\.LAYER0\.GRAD_NORM\s+METRICS\.VAL\/LOSS\s+METRICS\.SAY "HI", \{X\}\s+METRICS$/);
    assert.match(flat.stdout.split("\n")[1], /\s1\.5\s+0\.6\s+3\s+acc=0\.7 loss=0\.5$/);
  });

  test("nbjob jobs: a bad --where or --order is one line naming the position or the field", async () => {
    const cases: [string[], string | RegExp][] = [
      [["--where", "params.lr < "], `nbjob: nbjob jobs --where: expected a value at position 13: "params.lr < " (a number, "quoted text", true, false or null)`],
      [["--where", "parms.lr < 0.01"], `nbjob: nbjob jobs --where: unknown field "parms.lr" at position 1: "parms.lr < 0.01" (the fields are params.NAME, metrics.NAME, result, result.NAME, status, name, tag, group, created or id)`],
      [["--where", "status = done"], `nbjob: nbjob jobs --where: expected a value at position 10: "status = done" (a number, "quoted text", true, false or null; quote text: "done")`],
      [["--where", "params.lr < 0.01 metrics.loss < 1"], /^nbjob: nbjob jobs --where: expected "and", "or" or the end, found "metrics\.loss" at position 18: /],
      [["--where", "(params.lr < 0.01"], /^nbjob: nbjob jobs --where: expected "\)" to close the "\(" at position 1, found the end at position 18: /],
      [["--where", "params.lr ~ 1"], /^nbjob: nbjob jobs --where: unexpected character "~" at position 11: /],
      [["--where", `name = "x`], /^nbjob: nbjob jobs --where: unterminated text \(no closing "\) at position 8: /],
      [["--where", "params.optimizer < \"adam\""], /^nbjob: nbjob jobs --where: params\.optimizer lt: expected a finite number \(lt compares numbers; use eq, ne or in for text\); got "adam"/],
      [["--where", "status = \"finished\""], /^nbjob: nbjob jobs --where: status: expected one of queued, running, done, failed, cancelled, lost; got "finished"/],
      [["--where", ""], `nbjob: nbjob jobs --where: the expression is empty at position 1: "" (write a condition such as params.lr < 0.01)`],
      [["--order", "loss"], /^nbjob: nbjob jobs --order: unknown field "loss"; the fields are params\.NAME/],
    ];
    // Three as a user sees them (one line on stderr, exit code); the rest in-process, where the
    // same UsageError is raised before the store is opened.
    for (const [args, expected] of cases.slice(0, 3)) assertOneLineError(await nbjob(["jobs", ...args], url), expected);
    for (const [args, expected] of cases.slice(3)) {
      await assert.rejects(cmdJobs([...args, "--database-url", url]), (err: Error) => {
        assert.equal(err.name, "UsageError");
        const message = `nbjob: ${err.message}`;
        if (typeof expected === "string") assert.equal(message, expected);
        else assert.match(message, expected);
        return true;
      });
    }
  });

  test("the parser: positions, precedence (and before or), errors as WhereSyntaxError", () => {
    assert.deepEqual(parseWhere("params.a = 1 or params.b = 2 and metrics.c > -1.5e-3"), {
      or: [
        { field: { kind: "params", path: ["a"] }, op: "eq", value: 1 },
        { and: [{ field: { kind: "params", path: ["b"] }, op: "eq", value: 2 }, { field: { kind: "metrics", path: ["c"] }, op: "gt", value: -1.5e-3 }] },
      ],
    });
    assert.deepEqual(parseWhere("result = null and name != 'it\\'s'"), {
      and: [{ field: { kind: "result", path: [] }, op: "eq", value: null }, { field: { kind: "name" }, op: "ne", value: "it's" }],
    });
    assert.throws(() => parseWhere("params.lr <"), (err: unknown) => err instanceof WhereSyntaxError && err.position === 12);
    // params and result are nested (a dot goes one level in); a metric's name is flat, quoted when it holds blanks
    assert.deepEqual(parseWhere(`params.model.layers = 2 and metrics.layer0.grad_norm<2 and metrics.val-loss exists or metrics.'my loss' in (1)`), {
      or: [
        { and: [
          { field: { kind: "params", path: ["model", "layers"] }, op: "eq", value: 2 },
          { field: { kind: "metrics", path: ["layer0.grad_norm"] }, op: "lt", value: 2 },
          { field: { kind: "metrics", path: ["val-loss"] }, op: "exists", value: true },
        ] },
        { field: { kind: "metrics", path: ["my loss"] }, op: "in", value: [1] },
      ],
    });
    assert.throws(() => parseWhere("metrics. < 1"), /^WhereSyntaxError: unknown field "metrics\.": a metric name cannot be empty at position 1/);
  });

  test("a job's result as JSON (what the worker stores in result_json)", () => {
    class Score {
      constructor(public acc: number) {}
    }
    assert.deepEqual(resultAsJson(serialize({ acc: 0.9, runs: [1, 2], ok: true, none: null })), { acc: 0.9, runs: [1, 2], ok: true, none: null });
    assert.deepEqual(resultAsJson(serialize(new Score(0.5))), { acc: 0.5 });
    assert.deepEqual(resultAsJson(serialize([NaN, Infinity, -Infinity])), ["NaN", "Infinity", "-Infinity"]);
    assert.equal(resultAsJson(serialize(null)), null);
    assert.equal(resultAsJson(serialize(new Map([["a", 1]]))), undefined);
    assert.equal(resultAsJson(serialize({ when: new Date() })), undefined);
    assert.equal(resultAsJson(serialize(undefined)), undefined);
    assert.equal(resultAsJson(serialize("a\u0000b")), undefined, "text jsonb cannot hold");
  });
});

// The whole path once: a sweep made in a notebook (nbjob run, the real kernel) runs on a real
// worker, whose final write stores each result's JSON form; the same notebook then queries by
// parameter and result, and so does the CLI.
describe("queries on jobs a real worker ran", () => {
  const env = new JobsEnv("queries");
  before(() => env.start({ workers: 1 }));
  after(() => env.cleanup());

  test("db.jobs by params and result from a notebook cell; nbjob jobs --where result.acc", async () => {
    const run = await env.runNotebook(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
const params = new ParamLogger();
params.lr = 0.1;
params.model = { layers: 2 };
### code train
@sc
function train(): { acc: number; lr: number } {
  return { acc: 1 - params.lr, lr: params.lr };
}
### code sweep
const group = await db.createJobs(rc.view(0), ["train()"], sc, { params, grid: { lr: [0.1, 0.003, 0.001] } });
console.log(JSON.stringify((await group.results).map((r) => r.status)));
### code query
const found = await db.jobs({ params: { lr: { lt: 0.01 }, "model.layers": 2 }, result: { acc: { gt: 0.998 } }, orderBy: "params.lr" });
console.log(JSON.stringify(found.map((j) => [j.params.lr, j.result, j.group === group.id])));
console.log(JSON.stringify((await db.jobs({ group: group.id, orderBy: "-result.acc" })).map((j) => j.params.lr)));
`, [], { allowErrors: false });
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("sweep")), /^\["done","done","done"\]$/m);
    const query = cellText(run.cells.get("query")).trim().split("\n");
    assert.deepEqual(JSON.parse(query[0]), [[0.001, "{ acc: 0.999, lr: 0.001 }", true]]);
    assert.deepEqual(JSON.parse(query[1]), [0.001, 0.003, 0.1]);
    const cli = await env.nbjob("jobs", "--where", "result.acc >= 0.997 and params.model.layers = 2", "--order", "params.lr");
    assert.equal(cli.code, 0, cli.stderr);
    const lines = cli.stdout.trim().split("\n");
    assert.match(lines[0], /\sRESULT\.ACC\s+PARAMS\.MODEL\.LAYERS\s+PARAMS\.LR$/);
    assert.deepEqual(lines.slice(1).map((line) => line.split(/\s+/).slice(-3)), [["0.999", "2", "0.001"], ["0.997", "2", "0.003"]]);
  });
});

// Indexes on a field's number (`nbjob db index`, db.createIndex): on 20,000 jobs whose params,
// metrics and results hold numbers (with ties and a number too big for float8) and, every few
// jobs, text, "NaN", arrays, objects, booleans or nothing. Each query must list the same jobs with
// the indexes as without them, and the planner must read the index (EXPLAIN) when one exists.
describe("indexes on a field's number", () => {
  const JOB_COUNT = 20_000;
  let url: string;
  let store: Store;
  let db: DBWrapper;
  const databases = new TestDatabases("queryindex");
  const idsOf = (rows: { id: number }[]) => rows.map((row) => row.id);

  // Ranges, orders both ways, pages that end among the numbers, span numbers and others, or start past the numbers.
  const QUERIES: JobsFilter[] = [
    { params: { lr: { lt: 0.0003 } } },
    { params: { lr: { gte: 0.05, lt: 0.0501 } }, limit: 500 },
    { params: { lr: { gt: 1e300 } }, limit: 1000 },
    { params: { lr: { lt: 0.000101 } } }, // about 0.15% of the jobs
    { params: { lr: { lte: 0.001 } }, metrics: { loss: { lt: 0.01 } }, limit: 500 },
    { metrics: { loss: { gt: 0.999 } }, orderBy: "-params.lr", limit: 500 },
    { orderBy: "params.lr" },
    { orderBy: "-params.lr" },
    { orderBy: "metrics.loss", limit: 30, offset: 11_985 }, // the last numbers, then others
    { orderBy: "-metrics.loss", limit: 30, offset: 11_985 },
    { orderBy: "-metrics.loss", limit: 30, offset: 13_000 }, // past the numbers
    { orderBy: "-params.lr", params: { lr: { lt: 0.0003 } }, limit: 5, offset: 3 },
    { orderBy: "result", result: { lt: 0.01 }, limit: 100 },
    { orderBy: "-result", limit: 20, offset: 6_660 },
    { orderBy: "-result.acc", result: { acc: { gte: 0.5 } }, limit: 100 },
    // Equality and in: numbers (the index; 0.5 also matches a stored 0.50), mixed with text (not).
    { metrics: { loss: 0.5 } },
    { metrics: { loss: { in: [0.25, 0.5, 0.75] } } },
    { metrics: { loss: { in: [0.5, "NaN"] } } },
  ];

  before(async () => {
    url = await databases.fresh("main");
    store = openStore({ url });
    // Edge values by g % 50: 0 text, 1 "NaN" / an array, 2 missing, 3 an object, 4 true, 5 a
    // number past float8 (1e400 for lr); ties: lr has 4 significant digits, loss 4 decimals.
    await store.query(
      `INSERT INTO nbjob.bundles (hash, source, params, entries)
       SELECT encode(sha256(('index test ' || g)::bytea), 'hex'), '// job ' || g,
         CASE g % 50 WHEN 0 THEN '{"lr": "auto"}'::jsonb WHEN 1 THEN '{"lr": [0.001]}' WHEN 2 THEN '{}' WHEN 3 THEN '{"lr": {"v": 1}}'
                     WHEN 4 THEN '{"lr": true}' WHEN 5 THEN '{"lr": 1e400}'
                     ELSE jsonb_build_object('lr', round((10 ^ (-4 + 3 * random()))::numeric, 7 - floor(log(10 ^ (-4 + 3 * random())))::int)) END,
         ARRAY['x']
       FROM generate_series(1, $1::int) g`, [JOB_COUNT]);
    await store.query(
      `INSERT INTO nbjob.jobs (bundle_hash, status, worker_id, started_at, finished_at, result_text, last_metrics, result_json)
       SELECT encode(sha256(('index test ' || g)::bytea), 'hex'), 'done', 'w', now(), now(), 'r',
         CASE g % 5 WHEN 0 THEN '{"loss": "NaN"}'::jsonb WHEN 1 THEN (CASE WHEN g % 2 = 0 THEN '{"loss": [0.5]}'::jsonb ELSE '{}' END)
                    ELSE jsonb_build_object('loss', round(random()::numeric, 4)) END,
         CASE g % 3 WHEN 0 THEN to_jsonb(round(random()::numeric, 4)) WHEN 1 THEN jsonb_build_object('acc', round(random()::numeric, 3)) ELSE NULL END
       FROM generate_series(1, $1::int) g`, [JOB_COUNT]);
    // Known ties for equality: 0.5 written two ways (jsonb keeps 0.50 as written).
    await store.query(`UPDATE nbjob.jobs SET last_metrics = CASE WHEN id % 2 = 0 THEN '{"loss": 0.5}'::jsonb ELSE '{"loss": 0.50}'::jsonb END WHERE id % 97 = 0`);
    await store.query("ANALYZE nbjob.jobs");
    db = new DBWrapper(url);
  });

  after(async () => {
    await db?.close();
    await store?.close();
    await databases.dropAll();
  });

  test("the same jobs with the indexes as without; nbjob db index / db.createIndex / --list / --drop", async () => {
    const without = [];
    for (const query of QUERIES) without.push(idsOf(await db.jobs(query)));
    // Each query lists something, so equal lists say something.
    without.forEach((ids, i) => assert.ok(ids.length > 0, `query ${i} lists jobs: ${JSON.stringify(QUERIES[i])}`));
    assert.equal(without[2].length, JOB_COUNT / 50, "1e400 is a number (numeric, no float8 overflow)");

    const made = await nbjob(["db", "index", "params.lr"], url);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, new RegExp(`^indexed params\\.lr \\(nbjob\\.${fieldIndexName("params.lr")}, [\\d.]+ [KM]i?B, built in [\\d.]+ s\\): ranges on it and orders by it read the index\\n$`));
    const again = await nbjob(["db", "index", "params.lr"], url);
    assert.match(again.stdout, /^params\.lr is already indexed \(nbjob\.jobs_field_[0-9a-f]{16}, /);
    assert.deepEqual(await db.createIndex("metrics.loss"), { field: "metrics.loss", index: `nbjob.${fieldIndexName("metrics.loss")}`, created: true });
    await db.createIndex("result");
    await db.createIndex("result.acc");
    assert.deepEqual([...await indexedFields(store)].sort(), ["metrics.loss", "params.lr", "result", "result.acc"]);
    const list = await nbjob(["db", "index", "--list"], url);
    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.trim().split("\n");
    assert.match(lines[0], /^FIELD\s+SIZE\s+SCANS\s+INDEX$/);
    assert.deepEqual(lines.slice(1).map((line) => line.split(/\s+/)[0]), ["metrics.loss", "params.lr", "result", "result.acc"]);

    for (const [i, query] of QUERIES.entries()) assert.deepEqual(idsOf(await db.jobs(query)), without[i], `query ${i} with the indexes: ${JSON.stringify(query)}`);

    const dropped = await nbjob(["db", "index", "--drop", "params.lr"], url);
    assert.equal(dropped.stdout, "dropped the index on params.lr\n");
    assert.equal((await nbjob(["db", "index", "--drop", "params.lr"], url)).stdout, `there is no index on params.lr ("nbjob db index --list" shows them)\n`);
    assert.deepEqual([...await indexedFields(store)].sort(), ["metrics.loss", "result", "result.acc"]);
    for (const [i, query] of QUERIES.entries()) assert.deepEqual(idsOf(await db.jobs(query)), without[i], `query ${i} after the drop: ${JSON.stringify(query)}`);
    await db.createIndex("params.lr");
  });

  test("EXPLAIN: ranges and orders on an indexed field read its index", async () => {
    await db.createIndex("params.lr");
    await db.createIndex("metrics.loss");
    const indexed = await indexedFields(store);
    const plan = async (query: JobQuery, part: OrderPart = "all", fields: ReadonlySet<string> = indexed) => {
      const { text, values } = compileJobQuery(query, fields, part);
      return JSON.stringify((await store.query(`EXPLAIN (FORMAT JSON) ${text}`, values)).rows);
    };
    const lr = fieldIndexName("params.lr");
    const loss = fieldIndexName("metrics.loss");
    const rare: JobQuery = { where: { field: { kind: "params", path: ["lr"] }, op: "lt", value: 0.000101 } };
    assert.ok((await plan(rare)).includes(lr), `a rare range reads the index: ${await plan(rare)}`);
    assert.ok(!(await plan(rare, "all", new Set())).includes(lr), "written without it (the jsonpath form), the same range cannot");
    // Rare values (a handful of jobs each): for 0.5, which ~200 jobs have, newest first through
    // the primary key is as good a plan for the first page, and the planner may take it.
    const equal: JobQuery = { where: { field: { kind: "metrics", path: ["loss"] }, op: "eq", value: 0.1234 } };
    assert.ok((await plan(equal)).includes(loss), `equality with a number reads the index: ${await plan(equal)}`);
    const among: JobQuery = { where: { field: { kind: "metrics", path: ["loss"] }, op: "in", value: [0.1234, 0.4321] } };
    assert.ok((await plan(among)).includes(loss), `in with numbers reads the index: ${await plan(among)}`);
    assert.ok((await plan({ orderBy: "metrics.loss", limit: 10 })).includes(loss), "ascending order");
    assert.ok((await plan({ orderBy: "-metrics.loss", limit: 10 }, "numbers")).includes(loss), "descending: the numbers");
    // (The second statement, the jobs without a number, may read the index's NULLs or the table:
    // the planner's choice by how many there are, so not asserted.)
    // A name that means something in an array literal stays a name (quoted in the index's path).
    await db.createIndex("params.NULL");
    const weird: JobQuery = { where: { field: { kind: "params", path: ["NULL"] }, op: "gt", value: 0 } };
    assert.ok((await plan(weird, "all", await indexedFields(store))).includes(fieldIndexName("params.NULL")), await plan(weird));
    // A metric's name is flat: dots, quotes, a comma and braces are one element of the index's path,
    // which is the path --where's quoted form and db.jobs query, so they read the index.
    const flatName = 'say "hi", {x}.y';
    await db.createIndex(`metrics.${flatName}`);
    const flat = parseWhere(`metrics."say \\"hi\\", {x}.y" > 0`);
    assert.deepEqual(flat, { field: { kind: "metrics", path: [flatName] }, op: "gt", value: 0 });
    assert.ok((await plan({ where: flat }, "all", await indexedFields(store))).includes(fieldIndexName(`metrics.${flatName}`)), await plan({ where: flat }));
    assert.deepEqual(await db.jobs({ metrics: { [flatName]: { gt: 0 } } }), []);
    assert.equal((await nbjob(["db", "index", "--drop", `metrics.${flatName}`], url)).stdout, `dropped the index on metrics.${flatName}\n`);
  });

  test("a bad field is one line naming it, and nothing is created", async () => {
    const before = (await listFieldIndexes(store)).length;
    assertOneLineError(await nbjob(["db", "index", "parms.lr"], url),
      `nbjob: nbjob db index: unknown field "parms.lr"; the fields are params.NAME, metrics.NAME, result, result.NAME, status, name, tag, group, created or id`);
    assertOneLineError(await nbjob(["db", "index", "params.lr'); DROP TABLE nbjob.jobs; --"], url),
      `nbjob: nbjob db index: unknown field "params.lr'); DROP TABLE nbjob.jobs; --": names are letters, digits, _ and $`);
    assertOneLineError(await nbjob(["db", "index", "status"], url),
      `nbjob: nbjob db index: status is a column of the job, not a params, metrics or result field; an index on a field's number is for params.NAME, metrics.NAME, result or result.NAME (nested: params.model.width)`);
    assertOneLineError(await nbjob(["db", "index", "params"], url), /^nbjob: nbjob db index: params needs a name: params\.NAME, e\.g\. params\.lr$/);
    assertOneLineError(await nbjob(["db", "index", "--drop", "params.a-b"], url), /^nbjob: nbjob db index: unknown field "params\.a-b": names are letters/);
    assertOneLineError(await nbjob(["db", "index", "--drop", "metrics.a\tb"], url), /^nbjob: nbjob db index: unknown field "metrics\.a\\tb": a metric name cannot contain control characters/);
    assertOneLineError(await nbjob(["db", "index", "params.lr", "--list"], url), /^nbjob: give one of FIELD, --list or --drop FIELD, not --list and FIELD /);
    await assert.rejects(db.createIndex("params.loss rate"), { name: "TypeError", message: /^db\.createIndex: unknown field "params\.loss rate": names are letters, digits, _ and \$/ });
    await assert.rejects(db.createIndex("metrics."), { name: "TypeError", message: /^db\.createIndex: unknown field "metrics\.": a metric name cannot be empty/ });
    assert.equal((await listFieldIndexes(store)).length, before);
    const { rows } = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.jobs");
    assert.equal(rows[0].n, JOB_COUNT, "the table is still there, whole");
  });
});
