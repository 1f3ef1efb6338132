// The types a TypeScript user of the package gets, checked as the kernel checks a notebook cell:
// the engine type-checks each cell against the package's own declarations (dist/runtime/*.d.ts,
// the globals DBWrapper, Client, jobtracker...). The code sits in functions that are never
// called, so no store or worker is needed: what is tested is only whether the cell compiles.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Engine } from "../kernel/engine";
import { typeCheckProgram } from "../runtime/bundle-check";
import { RUNTIME_TYPES_FILE, runtimeTypesText } from "../kernel/engine/runtime-types";
import type { CellOutcome, CellSink } from "../kernel/engine/types";

const quiet: CellSink = {
  stream: () => undefined,
  display: () => undefined,
  clearOutput: () => undefined,
  input: async () => "",
  payload: () => undefined,
};

let notebookDir: string;
let engine: Engine;

before(() => {
  notebookDir = mkdtempSync(join(tmpdir(), "nbjob-types-"));
  engine = new Engine({ cwd: notebookDir, lateOutputToLastCell: false, captureProcessStreams: false });
});

after(() => {
  engine.dispose();
  rmSync(notebookDir, { recursive: true, force: true });
});

function execute(code: string): Promise<CellOutcome> {
  return engine.execute({ code, allowStdin: false, sink: quiet });
}

/** The cell must type-check (and run: it only declares). */
async function compiles(code: string): Promise<void> {
  const outcome = await execute(code);
  if (outcome.status === "error") assert.fail(`the cell should type-check: ${outcome.ename}: ${outcome.evalue}\n--- cell:\n${code}`);
}

/** The cell must be refused by the type checker with a message matching `expected`. */
async function typeError(code: string, expected: RegExp): Promise<void> {
  const outcome = await execute(code);
  assert.equal(outcome.status, "error", `the cell should not type-check:\n${code}`);
  if (outcome.status !== "error") return;
  assert.equal(outcome.ename, "CompileError", `${outcome.ename}: ${outcome.evalue}`);
  assert.match(outcome.evalue, expected);
}

describe("analyzer rows and plot fields are typed from the analysis functions", () => {
  before(async () => {
    await compiles(`
function testPerformance() {
  return { iteration: 3, gap: 0.5 };
}
async function weightNorm() {
  return { norm: 2, label: "w" };
}
function relabel() {
  return { label: 7 };
}
function stamp() {
  return { at: new Date(), seen: new Set([1, 2]), weights: new Float64Array(2) };
}`);
  });

  test("fields of every function are on the row with their types; checkpoint is a number", async () => {
    await compiles(`
async function converged(db: DBWrapper, rc: Client, jobId: number): Promise<boolean> {
  const analyzer = await db.createAnalyzer(rc.view(0), jobId, [testPerformance, weightNorm]);
  const rows = await analyzer.result;
  const checkpoint: number = rows[0].checkpoint;
  const iteration: number = rows[0].iteration;
  const label: string = rows[0].label;
  const failed: string | undefined = rows[0].errors?.testPerformance;
  return rows[12].gap <= 1e-3 && rows[12].norm > 0 && checkpoint + iteration >= 0 && label !== failed;
}`);
  });

  test("a field's type is what the stored row holds (rows are JSON data: a Date is its ISO string)", async () => {
    await compiles(`
async function stamped(db: DBWrapper, rc: Client, jobId: number) {
  const rows = await (await db.createAnalyzer(rc.view(0), jobId, [stamp])).result;
  const at: string = rows[0].at;
  const seen: number[] = rows[0].seen;
  const weights: number[] = rows[0].weights;
  return [at, seen, weights];
}`);
    await typeError(`
async function notADate(db: DBWrapper, rc: Client, jobId: number) {
  const rows = await (await db.createAnalyzer(rc.view(0), jobId, [stamp])).result;
  return rows[0].at.getTime();
}`, /Property 'getTime' does not exist on type 'string'/);
  });

  test("a later function's field wins over an earlier one's of the same name, as in the rows", async () => {
    await compiles(`
async function relabelled(db: DBWrapper, rc: Client, jobId: number): Promise<number> {
  const rows = await (await db.createAnalyzer(rc.view(0), jobId, [weightNorm, relabel])).result;
  return rows[0].label * 2;
}`);
  });

  test("a field no function returns is a type error", async () => {
    await typeError(`
async function typo(db: DBWrapper, rc: Client, jobId: number) {
  const rows = await (await db.createAnalyzer(rc.loadBalanced(), jobId, [testPerformance])).result;
  return rows[12].gapp <= 1e-3;
}`, /Property 'gapp' does not exist/);
    await typeError(`
async function wrongType(db: DBWrapper, rc: Client, jobId: number) {
  const rows = await (await db.createAnalyzer(rc.view(0), jobId, [testPerformance])).result;
  const gap: string = rows[0].gap;
  return gap;
}`, /Type 'number' is not assignable to type 'string'/);
  });

  test("analyzer.plot takes the rows' field names; a typo is a type error", async () => {
    await compiles(`
async function plotted(db: DBWrapper, rc: Client, jobId: number) {
  const analyzer = await db.createAnalyzer(rc.view(0), jobId, [testPerformance, weightNorm]);
  analyzer.plot("iteration", "gap", { logY: true });
  analyzer.plot("checkpoint", ["gap", "norm"]);
}`);
    await typeError(`
async function plotTypo(db: DBWrapper, rc: Client, jobId: number) {
  const analyzer = await db.createAnalyzer(rc.view(0), jobId, [testPerformance]);
  analyzer.plot("iteration", "gapp");
}`, /Argument of type '"gapp"' is not assignable/);
    await typeError(`
async function plotTypoX(db: DBWrapper, rc: Client, jobId: number) {
  const analyzer = await db.createAnalyzer(rc.view(0), jobId, [testPerformance]);
  analyzer.plot("iteraton", ["gap"]);
}`, /Argument of type '"iteraton"' is not assignable/);
  });

  test("functions passed as a plain array (not a literal) still give rows whose fields can be read", async () => {
    await compiles(`
async function wide(db: DBWrapper, rc: Client, jobId: number, fns: (() => object)[]) {
  const analyzer = await db.createAnalyzer(rc.view(0), jobId, fns);
  const rows = await analyzer.result;
  analyzer.plot("checkpoint", "anything");
  return [rows[0].checkpoint + 1, rows[0].anything];
}`);
  });
});

describe("job results are typed by db.createJob<T>, createJobs<T>, db.job<T>, rerun and resume", () => {
  test("result is Promise<T> without casts", async () => {
    await compiles(`
async function typedJobs(db: DBWrapper, rc: Client, sc: SnippetCollector) {
  const job = await db.createJob<number>(rc.view(0), ["norm(origin)"], sc);
  const value: number = await job.result;
  const again = await job.rerun(rc.loadBalanced());
  const resumed = await again.resume();
  const total: number = value + (await again.result) + (await resumed.result);
  const old = await db.job<{ loss: number }>(3);
  const loss: number = (await old.result).loss;
  const group = await db.createJobs<string>(rc.loadBalanced(), ["label()"], sc, { params: { x: 1 }, grid: { x: [1, 2] } });
  const first: string = await group.jobs[0].result;
  const rows = await group.results;
  const text: string | undefined = rows[0].result;
  return [total, loss, first, text];
}`);
  });

  test("a wrong use of the typed result is a type error; an untyped job's result is unknown as before", async () => {
    await typeError(`
async function wrongResult(db: DBWrapper, rc: Client, sc: SnippetCollector) {
  const job = await db.createJob<number>(rc.view(0), ["norm(origin)"], sc);
  const text: string = await job.result;
  return text;
}`, /Type 'number' is not assignable to type 'string'/);
    await typeError(`
async function wrongGroup(db: DBWrapper, rc: Client, sc: SnippetCollector) {
  const group = await db.createJobs<number>(rc.view(0), ["f()"], sc, { grid: { x: [1] } });
  return (await group.results)[0].result?.toUpperCase();
}`, /Property 'toUpperCase' does not exist on type 'number'/);
    await typeError(`
async function untyped(db: DBWrapper, rc: Client, sc: SnippetCollector) {
  const job = await db.createJob(rc.view(0), ["norm(origin)"], sc);
  return (await job.result) + 1;
}`, /unknown/);
  });

  test("a typed job is still a Job: createAnalyzer and diff take it", async () => {
    await compiles(`
async function mixed(db: DBWrapper, rc: Client, sc: SnippetCollector) {
  const job = await db.createJob<number[]>(rc.view(0), ["weights()"], sc);
  const other = await db.job(2);
  await db.createAnalyzer(rc.view(0), job, [() => ({ n: 1 })]);
  return job.diff(other);
}`);
  });
});

describe("jobtracker.registerCheckpointer is generic in the value type", () => {
  test("{ get, set } with a typed set (and a typed get) type-checks", async () => {
    await compiles(`
let counter = 0;
jobtracker.registerCheckpointer("counterValue", { get: () => counter, set: (v: number) => { counter = v; } });
jobtracker.registerCheckpointer<Map<string, number>>("table", { get: () => new Map([["a", 1]]), set: (m) => { counter = m.get("a") ?? 0; } });
// Only set: the value is read from the variable of that name.
jobtracker.registerCheckpointer("counter", { set: (v: number) => { counter = Math.max(0, v); } });`);
  });

  test("a get and a set of different types is a type error", async () => {
    await typeError(`
let mismatched = 0;
jobtracker.registerCheckpointer("mismatched", { get: () => "text", set: (v: number) => { mismatched = v; } });`, /is not assignable/);
  });
});

describe("a job's program is checked with the same jobtracker types as the notebook", () => {
  test("a typed set passes the bundle check; a get and set of different types does not", () => {
    const typed = 'let counter = 0;\njobtracker.registerCheckpointer("counter", { get: () => counter, set: (v: number) => { counter = v; } });\ncounter';
    assert.deepEqual(typeCheckProgram(typed, {}).map((d) => d.message), []);
    const mismatched = 'let counter = 0;\njobtracker.registerCheckpointer("counter", { get: () => "text", set: (v: number) => { counter = v; } });\ncounter';
    assert.match(typeCheckProgram(mismatched, {}).map((d) => d.message).join("\n"), /is not assignable/);
  });
});

describe("the runtime's declarations reach cells as one file of ambient modules", () => {
  test("each declaration file is a module of the combined file; no relative import or nested declare is left", () => {
    const text = runtimeTypesText(RUNTIME_TYPES_FILE) ?? "";
    const modules = [...text.matchAll(/^declare module "([^"]+)" \{$/gm)].map((m) => m[1]);
    for (const name of ["nbjob", "nbjob:runtime/index", "nbjob:runtime/db-wrapper", "nbjob:runtime/job", "nbjob:store/index"]) assert.ok(modules.includes(name), `${name} in ${modules.join(", ")}`);
    assert.equal(new Set(modules).size, modules.length, "each file once");
    assert.doesNotMatch(text, /(from\s*|import\s*\(\s*)["']\.{1,2}\//, "a relative specifier was left");
    assert.doesNotMatch(text, /^export declare (class|function|const)/m, "declare inside an ambient module");
    assert.equal(runtimeTypesText("/elsewhere/index.d.ts"), undefined);
  });

  test("an import from \"nbjob\" and the globals are the same declarations (classes with private members match both ways)", async () => {
    await compiles(`
import { DBWrapper as ImportedDB, Job as ImportedJob } from "nbjob";
function toImported(db: DBWrapper): ImportedDB { return db; }
function fromImported(db: ImportedDB): DBWrapper { return db; }
function jobOf(job: ImportedJob): import("nbjob").Job { return job; }
type Summary = import("nbjob").JobSummary;
let lastSummary: Summary | undefined;`);
  });

  test("a runtime member's documentation shows on inspection", () => {
    const found = engine.inspect("jobtracker.checkpoint", "jobtracker.checkpoint".length - 1, 0);
    assert.equal(found.found, true);
    assert.match(String(found.data["text/plain"]), /checkpoint\(\): number[\s\S]*Captures every registered value/);
  });
});
