// Local modules travel with a job (issue 14, points 1 and 3): a notebook in a project folder of
// its own imports ./localmod (which imports ./lib/other.ts and ./config.json); the job runs on a
// real worker of a local cluster whose current directory is elsewhere (the repository), from the
// files stored with the bundle. Editing a module makes a new bundle, `nbjob diff` shows the edit,
// `nbjob export` writes the files; a package without type declarations passes createJob as it
// passes the cell check.
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { requireJob } from "../store";
import { cellText, JobsEnv, notebookFrom, ROOT } from "./jobs-env";

const env = new JobsEnv("localmods");
const project = join(env.work, "project");

before(async () => {
  mkdirSync(join(project, "lib"), { recursive: true });
  writeFileSync(join(project, "localmod.ts"), [
    'import { double } from "./lib/other";',
    'import config from "./config.json";',
    "export function helper(x: number): number {",
    "  return double(x) + config.offset;",
    "}",
    "",
  ].join("\n"));
  writeFileSync(join(project, "lib", "other.ts"), "export function double(x: number): number {\n  return 2 * x;\n}\n");
  writeFileSync(join(project, "config.json"), '{ "offset": 1 }\n');
  // Types only on the first lines: the JavaScript that runs has fewer lines than this file.
  writeFileSync(join(project, "thrower.ts"), 'interface Unused {\n  a: number;\n}\ntype Alias = string;\nexport function boom(): never {\n  throw new RangeError("from the local module");\n}\n');
  // A module outside the notebook's folder (another project's file, say).
  mkdirSync(join(env.work, "shared"), { recursive: true });
  writeFileSync(join(env.work, "shared", "base.ts"), "export const base = 41;\n");
  // A package without type declarations (like lodash-es), in a node_modules above the project.
  cpSync(join(ROOT, "test", "fixtures", "local-modules", "untyped-chunk"), join(env.work, "node_modules", "untyped-chunk"), { recursive: true });
  await env.start();
});
after(() => env.cleanup());

/** The notebook lives in the project folder: its kernel's current directory is that folder. */
async function runInProject(cells: string) {
  const name = `nb-${Math.random().toString(36).slice(2, 8)}.ipynb`;
  writeFileSync(join(project, name), JSON.stringify(notebookFrom(cells)));
  return env.runNotebook(join(project, name));
}

describe("local modules travel with the bundle", () => {
  test("a snippet importing ./localmod runs on a worker started elsewhere; an edit makes a new bundle that diff shows; an analyzer imports them too; export writes the files", async () => {
    const run = await runInProject(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code imp
%%snip sc
import { helper } from "./localmod";
### code compute
%%snip sc
function compute(n: number): number {
  return helper(n);
}
### code local
compute(5)
### code first
const first = await db.createJob(rc.view(0), ["compute(5)"], sc);
console.log("first", await first.result);
### code source
first.source.split("\\n")[2]
### code edit
require("node:fs").writeFileSync("lib/other.ts", "export function double(x: number): number {\\n  return 3 * x;\\n}\\n");
### code second
const second = await db.createJob(rc.loadBalanced(), ["compute(5)"], sc);
console.log("second", await second.result);
### code diff
console.log(await first.diff(second));
### code history
%nbjob history ./lib/other.ts
### code ckpt
const scA = new SnippetCollector();
### code ckptimp
%%snip scA
import { helper } from "./localmod";
### code ckptfn
%%snip scA
let step = 0;
jobtracker.registerCheckpointer("step");
// Analysis functions see the program's own names (an import's binding is renamed when compiled).
const viaModule = (n: number) => helper(n);
function steps(): number {
  for (step = 1; step <= 2; step++) jobtracker.checkpoint();
  return step;
}
### code analyze
const third = await db.createJob(rc.view(1), ["steps()"], scA);
await third.result;
function scaled() {
  return { v: viaModule(step) };
}
const analyzer = await db.createAnalyzer(rc.view(1), third, [scaled]);
const rows = await analyzer.result;
console.log("rows", JSON.stringify(rows.map((row) => row.v)), JSON.stringify(rows.map((row) => row.errors)));
`);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("local")), /^11$/m);
    // On main the worker failed here: Cannot find module './localmod'.
    assert.match(cellText(run.cells.get("first")), /^first 11$/m, cellText(run.cells.get("first")));
    assert.match(cellText(run.cells.get("source")), /files: \{\\?"config\.json\\?":\\?"[0-9a-f]{64}\\?",\\?"lib\/other\.ts\\?":\\?"[0-9a-f]{64}\\?",\\?"localmod\.ts\\?":\\?"[0-9a-f]{64}\\?"\}/);
    assert.match(cellText(run.cells.get("second")), /^second 16$/m, cellText(run.cells.get("second")));
    // The notebook still runs the version it loaded; the job takes the edited file: the cell says so.
    assert.match(cellText(run.cells.get("second")), /^note: lib\/other\.ts changed on disk since this kernel loaded it; the job runs it as it is now, this notebook's cells the version loaded \(import it again in a cell to load the new version\)$/m);
    assert.doesNotMatch(cellText(run.cells.get("first")), /changed on disk/);
    assert.match(cellText(run.cells.get("diff")), /-  return 2 \* x;\n\+  return 3 \* x;/);
    assert.match(cellText(run.cells.get("history")), /^\.\/lib\/other\.ts: 2 versions\n\nversion 1 {2}[0-9a-f]{12} {2}file {2}used by job 1\n/, cellText(run.cells.get("history")));
    // An analyzer runs the job's program on a worker's analysis thread: its imports resolve there too.
    assert.match(cellText(run.cells.get("analyze")), /^rows \[4,7\] \[null,null\]$/m, cellText(run.cells.get("analyze")));

    const [first, second] = [await requireJob(env.store, 1), await requireJob(env.store, 2)];
    assert.equal(first.status, "done");
    assert.notEqual(first.bundle_hash, second.bundle_hash);
    // Each file once by content: localmod.ts and config.json shared, lib/other.ts in two versions.
    const { rows } = await env.store.query<{ n: string }>("SELECT count(*) AS n FROM nbjob.files");
    assert.equal(Number(rows[0].n), 4);

    const diff = await env.nbjob("diff", "1", "2");
    assert.equal(diff.code, 0, diff.stderr);
    assert.match(diff.stdout, /\/\/ file lib\/other\.ts/);
    assert.match(diff.stdout, /-  return 2 \* x;\n\+  return 3 \* x;/);
    const show = await env.nbjob("show", "1");
    assert.match(show.stdout, /local modules\n {2}config\.json {2}[0-9a-f]{12} {2}2 lines\n {2}lib\/other\.ts {2}[0-9a-f]{12} {2}4 lines\n {2}localmod\.ts/);
    const log = await env.nbjob("log");
    assert.match(log.stdout, /changed +\.\/lib\/other\.ts/);
    const history = await env.nbjob("history", "./lib/other.ts");
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, /^\.\/lib\/other\.ts: 2 versions\n\nversion 1 {2}[0-9a-f]{12} {2}file {2}used by job 1\n {2}export function double[\s\S]*return 2 \* x;[\s\S]*version 2 {2}[0-9a-f]{12} {2}file {2}used by jobs 2-3\n[\s\S]*return 3 \* x;/);
    assert.match(history.stdout, /changed in \(newest first\)\n {2}job 2 {2}version 1 -> version 2 since job 1/);

    // The worker laid the files out once per set of files, under its NBJOB_HOME.
    const modules = join(env.work, "home", "cache", "modules");
    const laidOut = readdirSync(modules).filter((name) => !name.endsWith(".tmp"));
    assert.equal(laidOut.length, 2);
    // Their .ts files were compiled there by the compiler thread (the job thread only reads them).
    for (const key of laidOut) assert.match(readFileSync(join(modules, key, ".nbjob-js", "lib", "other.ts.js"), "utf8"), /exports\.double = double;[\s\S]*sourceMappingURL=data:/);

    const dir = join(env.work, "exported");
    const exported = await env.nbjob("export", "1", dir);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /job\.ts, nbjob-runtime\.ts, package\.json, README\.md, config\.json, lib\/other\.ts, localmod\.ts/);
    assert.doesNotMatch(exported.stdout, /imports local files/);
    // The first job's version, not the one on disk now.
    assert.match(readFileSync(join(dir, "lib", "other.ts"), "utf8"), /return 2 \* x;/);
    assert.equal(readFileSync(join(dir, "localmod.ts"), "utf8"), readFileSync(join(project, "localmod.ts"), "utf8"));
    assert.equal(readFileSync(join(dir, "config.json"), "utf8"), '{ "offset": 1 }\n');
  });

  test("a package without type declarations runs in a cell and passes createJob (the bundle check uses the cell check's options); an error in a local module names its file and line; a module outside the notebook's folder travels with a note", async () => {
    const run = await runInProject(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code imp
%%snip sc
import { chunk } from "untyped-chunk";
### code use
%%snip sc
function pairs(): number {
  return chunk([1, 2, 3, 4, 5], 2).length;
}
### code local
pairs()
### code job
const job = await db.createJob(rc.view(1), ["pairs()"], sc);
console.log("created", job.id);
### code boomimp
const scB = new SnippetCollector();
### code boomsnip
%%snip scB
import { boom } from "./thrower";
### code boomjob
const failing = await db.createJob(rc.view(1), ["boom()"], scB);
try {
  await failing.result;
} catch (err) {
  console.log((err as { traceback: string[] }).traceback.join("\\n"));
}
### code outimp
const scO = new SnippetCollector();
### code outsnip
%%snip scO
import { base } from "../shared/base";
### code outuse
%%snip scO
function shifted(n: number): number {
  return base + n;
}
### code outjob
const outside = await db.createJob(rc.view(1), ["shifted(1)"], scO);
console.log("outside result", await outside.result);
`);
    assert.equal(run.code, 0, run.stderr);
    assert.match(cellText(run.cells.get("local")), /^3$/m);
    // On main: BundleError ... Could not find a declaration file for module 'untyped-chunk'.
    assert.match(cellText(run.cells.get("job")), /^created \d+$/m, cellText(run.cells.get("job")));
    // An error thrown in a local module: its frame names the module by its path, at its TypeScript line.
    assert.match(cellText(run.cells.get("boomjob")), /RangeError: from the local module\n\s+at boom \(\.\/thrower\.ts:6:9\)/, cellText(run.cells.get("boomjob")));
    // A module outside the notebook's folder is stored with a note, and runs on the worker from there.
    const outside = cellText(run.cells.get("outjob"));
    assert.match(outside, /createJob: note: \.\.\/shared\/base\.ts is outside the notebook's folder \(.*project\); stored with the job/, outside);
    assert.match(outside, /^outside result 42$/m, outside);
  });
});
