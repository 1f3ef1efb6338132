// Issue 14's gap: a local ES module (`.mjs`, or `.js` with import/export) that imports a local `.ts` one, and a `.ts` that
// imports such an `.mjs`, two levels deep, in a cell and in a job on a real worker started in an
// empty folder with its own NBJOB_HOME: the job's result equals the cell's, and the `.ts` module
// reached from both sides is one instance (a counter in it counts on). An analysis of the job
// imports them too. Bad input: a syntax error in a `.ts` imported from an `.mjs` fails the cell
// naming the file and place; a type error in one fails createJob naming the file (the bundle
// check now sees `.ts` files reached only through JavaScript).
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cellText, JobsEnv, notebookFrom } from "./jobs-env";

const env = new JobsEnv("esm_ts");
const project = join(env.work, "project");
const empty = join(env.work, "empty");

before(async () => {
  mkdirSync(join(project, "lib", "esm"), { recursive: true });
  mkdirSync(join(project, "lib", "deep"), { recursive: true });
  mkdirSync(join(project, "lib", "bad"), { recursive: true });
  mkdirSync(empty, { recursive: true });
  // entry.mjs → scale.ts → ../deep/offset.mjs → base.ts; entry.mjs → counter.ts (default export).
  writeFileSync(join(project, "lib", "esm", "entry.mjs"), [
    'import { scale } from "./scale.ts";',
    'import counter from "./counter.ts";',
    "export function combined(n) {",
    "  return scale(n) + counter.next();",
    "}",
    "",
  ].join("\n"));
  writeFileSync(join(project, "lib", "esm", "scale.ts"), [
    'import { offset } from "../deep/offset.mjs";',
    "export function scale(n: number): number {",
    "  return n * 10 + offset;",
    "}",
    "",
  ].join("\n"));
  writeFileSync(join(project, "lib", "esm", "counter.ts"), "let count: number = 0;\nexport default {\n  next(): number {\n    count += 1;\n    return count;\n  },\n};\n");
  writeFileSync(join(project, "lib", "deep", "offset.mjs"), 'import { base, Kind } from "./base.ts";\nexport const offset = base + Kind.Extra;\n');
  // A `.js` file with import/export is an ES module too (Node's syntax detection).
  writeFileSync(join(project, "lib", "deep", "label.js"), 'import { base } from "./base.ts";\nexport const label = `base-${base}`;\n');
  writeFileSync(join(project, "lib", "deep", "base.ts"), "export const base: number = 100;\nexport enum Kind {\n  None,\n  Extra,\n}\n");
  // Bad input: a syntax error and a type error in .ts files only an .mjs imports.
  writeFileSync(join(project, "lib", "bad", "syntax.mjs"), 'import { half } from "./syntax-error.ts";\nexport const h = half(4);\n');
  writeFileSync(join(project, "lib", "bad", "syntax-error.ts"), "export function half(x: number): number {\n  return x / 2;\n}\nexport function broken(: number {\n  return 1;\n}\n");
  writeFileSync(join(project, "lib", "bad", "typed.mjs"), 'import { label } from "./type-error.ts";\nexport const typed = label;\n');
  writeFileSync(join(project, "lib", "bad", "type-error.ts"), "export const label: string = 5;\n");
  await env.start({ cwd: empty, workers: 1 });
});
after(() => env.cleanup());

async function runInProject(cells: string) {
  const name = `nb-${Math.random().toString(36).slice(2, 8)}.ipynb`;
  writeFileSync(join(project, name), JSON.stringify(notebookFrom(cells)));
  return env.runNotebook(join(project, name));
}

describe("an ES module importing TypeScript", () => {
  test(".mjs → .ts → .mjs → .ts runs in the cell and on a worker in an empty folder with the same result; one instance of each .ts; an analysis imports them too", async () => {
    const run = await runInProject(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code imp
%%snip sc
import { combined } from "./lib/esm/entry.mjs";
import { scale } from "./lib/esm/scale";
import counter from "./lib/esm/counter";
import { label } from "./lib/deep/label.js";
### code use
%%snip sc
let step = 0;
jobtracker.registerCheckpointer("step");
function facts(): string {
  return [combined(1), combined(2), scale(3), counter.next(), label].join(",");
}
function train(): number {
  for (step = 1; step <= 2; step++) jobtracker.checkpoint();
  return step;
}
### code local
facts()
### code job
const job = await db.createJob(rc.view(0), ["train()", "facts()"], sc);
console.log("job", await job.result);
### code analysis
function viaEsm() {
  return { v: combined(step) };
}
const analyzer = await db.createAnalyzer(rc.view(0), job, [viaEsm]);
console.log("rows", JSON.stringify((await analyzer.result).map((row) => row.v)));
`);
    assert.equal(run.code, 0, run.stderr);
    const local = cellText(run.cells.get("local")).trim().replace(/^'|'$/g, "");
    // combined(1) = 1*10 + (100 + 1) + 1st count; combined(2) = 20 + 101 + 2nd; scale(3) = 131;
    // counter.next() from the TypeScript side is the 3rd count: the same instance as the .mjs's.
    assert.equal(local, "112,123,131,3,base-100", cellText(run.cells.get("local")));
    // Before: the worker failed with ERR_UNKNOWN_FILE_EXTENSION: Unknown file extension ".ts".
    const job = /^job (\S+)$/m.exec(cellText(run.cells.get("job")));
    assert.ok(job, cellText(run.cells.get("job")));
    assert.equal(job[1], local);
    // The analysis thread has its own instance of the modules (as a second job thread would): its
    // count starts at 0 and goes on from one checkpoint to the next.
    assert.match(cellText(run.cells.get("analysis")), /^rows \[112,123\]$/m, cellText(run.cells.get("analysis")));
  });

  test("a syntax error in a .ts imported from an .mjs names the file in the cell; a type error in one makes createJob refuse, naming the file", async () => {
    const run = await runInProject(`
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
### code syntax
import { h } from "./lib/bad/syntax.mjs";
### code imp
%%snip sc
import { typed } from "./lib/bad/typed.mjs";
### code use
%%snip sc
function show(): unknown {
  return typed;
}
### code local
show()
### code job
const job = await db.createJob(rc.view(0), ["show()"], sc);
console.log("job", await job.result);
`);
    const syntax = cellText(run.cells.get("syntax"));
    assert.match(syntax, /SyntaxError: \.\/lib\/bad\/syntax-error\.ts \(line 4, column 24\): Parameter declaration expected\. \(imported by an ES module; fix the file, then restart the kernel/, syntax);
    // The cell runs it (JavaScript is not type-checked); the job's check reads the .ts and refuses.
    assert.match(cellText(run.cells.get("local")), /^5$/m, cellText(run.cells.get("local")));
    const refused = cellText(run.cells.get("job"));
    assert.match(refused, /lib\/bad\/type-error\.ts \(line 1, column 14\): Type 'number' is not assignable to type 'string'/, refused);
    assert.doesNotMatch(refused, /^job /m);
  });
});
