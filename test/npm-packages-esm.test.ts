// Issue 14, the rest of it: an ES-module-only npm package (camelcase@7.0.0, `"type": "module"`)
// beside a CommonJS one (is-number@6.0.0), both pinned at versions that are not the newest, and
// a `./lib/` tree two levels deep with a `.mjs` local module. A worker in an EMPTY directory with
// its own NBJOB_HOME runs the job (and an analysis of it) with the result the notebook had.
// Then the project moves on (is-number upgraded to 7.0.0, a local module edited): a rerun of the
// old job still runs the old code with the old version (its environment record says 6.0.0), a new
// job runs the new one, and `nbjob diff` shows the change. Then the registry goes away for a
// worker with an empty npm cache: the job fails naming the package and npm's reason, and a rerun
// works once it is back. Needs the npm registry (checked first: without it the tests are skipped).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { getEnvironment, readLogs, requireJob } from "../store";
import type { Store } from "../store";
import { cellText, JobsEnv, NBJOB as NBJOB_BIN, notebookFrom } from "./jobs-env";
import { npmRegistryHas } from "./npm-registry";

const env = new JobsEnv("bundles_esm");
const project = join(env.work, "project");
const empty = join(env.work, "empty");

const online = npmRegistryHas("camelcase@7.0.0");

before(async () => {
  if (!online) return;
  mkdirSync(join(project, "lib", "text"), { recursive: true });
  mkdirSync(empty, { recursive: true });
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "research", version: "1.0.0", private: true }, null, 2));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline", "camelcase@7.0.0", "is-number@6.0.0"], { cwd: project, stdio: "pipe", timeout: 120_000 });
  // lib/num.ts (CommonJS package) → lib/text/label.ts; lib/text/shout.mjs (an ES module) → camelcase (ESM only).
  writeFileSync(join(project, "lib", "num.ts"), [
    'import isNumber from "is-number";',
    'import manifest from "is-number/package.json";',
    'import { label } from "./text/label";',
    "export function describeValue(v: unknown): string {",
    '  return label(`${isNumber(v) ? "number" : "other"}@${manifest.version}`);',
    "}",
    "",
  ].join("\n"));
  writeFileSync(join(project, "lib", "text", "label.ts"), "export function label(s: string): string {\n  return `<${s}>`;\n}\n");
  writeFileSync(join(project, "lib", "text", "shout.mjs"), 'import camelCase from "camelcase";\nexport function shout(s) {\n  return camelCase(s).toUpperCase() + "!";\n}\n');
  await env.start({ cwd: empty, workers: 1 });
});
after(() => env.cleanup());

async function runIn(dir: string, cells: string) {
  const name = `nb-${Math.random().toString(36).slice(2, 8)}.ipynb`;
  writeFileSync(join(dir, name), JSON.stringify(notebookFrom(cells)));
  return env.runNotebook(join(dir, name));
}

/** Worker log lines (under the cluster folders of every NBJOB_HOME used) that say an install started. */
function installLines(home: string): string[] {
  const lines: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".log")) lines.push(...readFileSync(path, "utf8").split("\n").filter((l) => l.includes("installing npm packages")));
    }
  };
  walk(join(home, "cluster"));
  return lines;
}

async function environmentOf(store: Store, id: number) {
  for (let i = 0; i < 100; i++) {
    const row = await requireJob(store, id);
    if (row.environment_hash) return getEnvironment(store, row.environment_hash);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} has no environment record`);
}

const SETUP = `
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
`;

const IMPORTS = `
### code imp
%%snip sc
import camelCase from "camelcase";
import { describeValue } from "./lib/num";
import { shout } from "./lib/text/shout.mjs";
### code use
%%snip sc
function facts(): string {
  return [camelCase("foo-bar"), describeValue(5), describeValue("x"), shout("hello-world")].join(",");
}
let step = 0;
jobtracker.registerCheckpointer("step");
function train(): number {
  for (step = 1; step <= 2; step++) jobtracker.checkpoint();
  return step;
}
function tagOf(n: number): string {
  return camelCase("step-" + n);
}
### code local
facts()
`;

describe("ES modules and a project that moves on", { skip: online ? false : "the npm registry is not reachable" }, () => {
  let firstJob = 0;
  let firstResult = "";
  let newJob = 0;

  test("an ESM-only package and a .mjs local module run on a worker in an empty folder; an analysis sees the packages too", async () => {
    const run = await runIn(project, `${SETUP}${IMPORTS}
### code job1
const job1 = await db.createJob(rc.view(0), ["train()", "facts()"], sc);
console.log("job1", job1.id, await job1.result);
### code analysis
// Calls the job's code, which uses the ESM package (the analysis's worker must have it too), and
// uses the job's imported name itself, as a cell may.
function named() {
  return { tag: tagOf(step), direct: camelCase("at-" + step) };
}
const analyzer = await db.createAnalyzer(rc.view(0), job1, [named]);
console.log("rows", JSON.stringify(await analyzer.result));
`);
    assert.equal(run.code, 0, run.stderr);
    const local = cellText(run.cells.get("local")).trim().replace(/^'|'$/g, "");
    assert.equal(local, "fooBar,<number@6.0.0>,<other@6.0.0>,HELLOWORLD!");
    const one = /^job1 (\d+) (\S+)$/m.exec(cellText(run.cells.get("job1")));
    assert.ok(one, cellText(run.cells.get("job1")));
    assert.equal(one[2], local);
    firstJob = Number(one[1]);
    firstResult = one[2];
    assert.match(cellText(run.cells.get("analysis")), /^rows \[\{"checkpoint":0,"tag":"step1","direct":"at1"\},\{"checkpoint":1,"tag":"step2","direct":"at2"\}\]$/m, cellText(run.cells.get("analysis")));
    const environment = await environmentOf(env.store, firstJob);
    assert.deepEqual(environment?.packages, { camelcase: "7.0.0", "is-number": "6.0.0" });
  });

  test("after the project upgrades is-number and edits a local module: a rerun keeps the old code and version, a new job has the new ones, nbjob diff shows both", { skip: online ? false : "offline" }, async () => {
    assert.ok(firstJob > 0, "the first test ran");
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline", "is-number@7.0.0"], { cwd: project, stdio: "pipe", timeout: 120_000 });
    writeFileSync(join(project, "lib", "text", "label.ts"), "export function label(s: string): string {\n  return `[${s}]`;\n}\n");
    const run = await runIn(project, `${SETUP}
### code old
const old = await db.job(${firstJob});
const again = await old.rerun(rc.view(0));
console.log("rerun", again.id, await again.result);
${IMPORTS}
### code job3
const job3 = await db.createJob(rc.view(0), ["facts()"], sc);
console.log("job3", job3.id, await job3.result);
`);
    assert.equal(run.code, 0, run.stderr);
    const rerun = /^rerun (\d+) (\S+)$/m.exec(cellText(run.cells.get("old")));
    assert.ok(rerun, cellText(run.cells.get("old")));
    assert.equal(rerun[2], firstResult);
    const local = cellText(run.cells.get("local")).trim().replace(/^'|'$/g, "");
    assert.equal(local, "fooBar,[number@7.0.0],[other@7.0.0],HELLOWORLD!");
    const three = /^job3 (\d+) (\S+)$/m.exec(cellText(run.cells.get("job3")));
    assert.ok(three, cellText(run.cells.get("job3")));
    assert.equal(three[2], local);
    newJob = Number(three[1]);
    assert.deepEqual((await environmentOf(env.store, Number(rerun[1])))?.packages, { camelcase: "7.0.0", "is-number": "6.0.0" });
    assert.deepEqual((await environmentOf(env.store, Number(three[1])))?.packages, { camelcase: "7.0.0", "is-number": "7.0.0" });
    // Two sets, two installs: the rerun found the old set in the worker's cache.
    assert.equal(installLines(join(env.work, "home")).length, 2, installLines(join(env.work, "home")).join("\n"));
    const rerunLog = (await readLogs(env.store, Number(rerun[1]))).map((l) => l.line).join("\n");
    assert.doesNotMatch(rerunLog, /installing/);

    const diff = await env.nbjob("diff", String(firstJob), three[1]);
    assert.equal(diff.code, 0, diff.stderr);
    assert.match(diff.stdout, /lib\/text\/label\.ts/, diff.stdout);
    assert.match(diff.stdout, /^-\s*return `<\$\{s\}>`;$/m, diff.stdout);
    assert.match(diff.stdout, /^\+\s*return `\[\$\{s\}\]`;$/m, diff.stdout);
    assert.match(diff.stdout, /is-number.*6\.0\.0/, diff.stdout);
    assert.match(diff.stdout, /is-number.*7\.0\.0/, diff.stdout);

    // `nbjob export` of the new job: package.json pins the versions; npm install && npx tsx job.ts
    // in a fresh folder (only PATH and HOME: no store) prints the stored result.
    const dir = join(env.work, "exported");
    const exported = await env.nbjob("export", three[1], dir);
    assert.equal(exported.code, 0, exported.stderr);
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    assert.deepEqual(manifest.dependencies, { camelcase: "7.0.0", "is-number": "7.0.0" });
    const plain = { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" }, cwd: dir, encoding: "utf8" as const, timeout: 120_000 };
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], plain);
    const printed = execFileSync("npx", ["tsx", "job.ts"], plain);
    assert.match(printed, /fooBar,\[number@7\.0\.0\],\[other@7\.0\.0\],HELLOWORLD!/, printed);
  });

  test("the npm registry unreachable while a worker installs: the job fails naming the package and npm's reason; a rerun works once it is back", { skip: online ? false : "offline" }, async () => {
    assert.ok(newJob > 0, "the second test ran");
    // A worker with its own NBJOB_HOME (no cached set), an empty npm cache and a registry nobody
    // listens at; no retries, so npm gives up at once (NBJOB_NPM_TIMEOUT_MS bounds it otherwise).
    assert.equal((await env.nbjob("cluster", "stop")).code, 0);
    env.env.NBJOB_HOME = join(env.work, "home-offline");
    const unreachable = { npm_config_registry: "http://127.0.0.1:9/", npm_config_cache: join(env.work, "npm-cache-offline"), npm_config_fetch_retries: "0", NBJOB_NPM_TIMEOUT_MS: "120000" };
    Object.assign(env.env, unreachable);
    const started = await env.exec(process.execPath, [NBJOB_BIN, "cluster", "start", "-n", "1"], { cwd: empty });
    assert.equal(started.code, 0, started.stderr);
    // --sign: this NBJOB_HOME has a cluster key of its own.
    const failed = await env.nbjob("rerun", String(newJob), "--sign", "--wait", "--timeout", "240");
    assert.equal(failed.code, 1, failed.stdout + failed.stderr);
    const failedId = Number(/^job (\d+) \(rerun of/m.exec(failed.stdout)?.[1]);
    const row = await requireJob(env.store, failedId);
    assert.equal(row.status, "failed");
    assert.match(row.error_message ?? "", /installing (?:camelcase|is-number)@7\.0\.0.* failed: .*(?:ECONNREFUSED|127\.0\.0\.1:9)/s, row.error_message ?? "");
    assert.doesNotMatch(row.error_message ?? "", /did not finish within/);

    // The registry is back (the worker restarted with the usual npm settings): a rerun installs and runs.
    assert.equal((await env.nbjob("cluster", "stop")).code, 0);
    for (const key of Object.keys(unreachable)) delete env.env[key];
    const restarted = await env.exec(process.execPath, [NBJOB_BIN, "cluster", "start", "-n", "1"], { cwd: empty });
    assert.equal(restarted.code, 0, restarted.stderr);
    const rerun = await env.nbjob("rerun", String(failedId), "--wait", "--timeout", "240");
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
    assert.match(rerun.stdout, /fooBar,\[number@7\.0\.0\],\[other@7\.0\.0\],HELLOWORLD!/, rerun.stdout);
  });
});
