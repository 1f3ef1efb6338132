// npm packages travel with a job as pins (issue 14 point 2). A notebook project made by the test
// installs two small real packages from the npm registry, pinned to versions that are not the
// newest (is-number@6.0.0, and is-odd@2.0.0 whose own is-number@4.0.0 sits nested under it);
// a snippet imports is-number and a local module imports is-odd. The worker runs in an EMPTY
// directory with its own NBJOB_HOME, so it sees neither the project nor its node_modules: it
// installs the pinned set from the registry into $NBJOB_HOME/cache/packages/<set hash> once, and
// the job's result equals the notebook's. Needs the npm registry (checked first: without it the
// tests are skipped, saying so).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { getBundle, getEnvironment, readLogs, requireJob } from "../store";
import { packagesOfSource } from "../runtime/shared/bundle-packages";
import { collectPackages, MissingPackageError, PackagePinError } from "../runtime/packages";
import { PackageCache } from "../worker/package-cache";
import { cellText, JobsEnv, notebookFrom } from "./jobs-env";
import { npmRegistryHas } from "./npm-registry";

const env = new JobsEnv("npmpkgs");
const project = join(env.work, "project");
const badProject = join(env.work, "project-bad");
const empty = join(env.work, "empty");

const online = npmRegistryHas("is-number@6.0.0");

before(async () => {
  if (!online) return;
  mkdirSync(join(project, "lib"), { recursive: true });
  mkdirSync(empty, { recursive: true });
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "research", version: "1.0.0", private: true }, null, 2));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "is-number@6.0.0", "is-odd@2.0.0"], { cwd: project, stdio: "pipe", timeout: 120_000 });
  writeFileSync(join(project, "lib", "parity.ts"), 'import isOdd from "is-odd";\nexport function parity(n: number): string {\n  return isOdd(n) ? "odd" : "even";\n}\n');
  // A package the project does not have, though Node (and the cell check) find it above it.
  mkdirSync(join(env.work, "node_modules", "only-above"), { recursive: true });
  writeFileSync(join(env.work, "node_modules", "only-above", "package.json"), '{ "name": "only-above", "version": "1.0.0", "main": "index.js" }\n');
  writeFileSync(join(env.work, "node_modules", "only-above", "index.js"), "module.exports = () => 42;\n");
  // The same project whose lock file pins a version of is-number the registry does not have.
  cpSync(project, badProject, { recursive: true });
  const lock = JSON.parse(readFileSync(join(badProject, "package-lock.json"), "utf8")) as { packages: Record<string, { version: string; resolved?: string; integrity?: string }> };
  lock.packages["node_modules/is-number"] = { version: "99.99.0" };
  writeFileSync(join(badProject, "package-lock.json"), JSON.stringify(lock, null, 2));
  await env.start({ cwd: empty, workers: 1 });
});
after(() => env.cleanup());

async function runIn(dir: string, cells: string) {
  const name = `nb-${Math.random().toString(36).slice(2, 8)}.ipynb`;
  writeFileSync(join(dir, name), JSON.stringify(notebookFrom(cells)));
  return env.runNotebook(join(dir, name));
}

/** Every worker log line under the cluster's folder that says an install started. */
function installLines(): string[] {
  const lines: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".log")) lines.push(...readFileSync(path, "utf8").split("\n").filter((l) => l.includes("installing npm packages")));
    }
  };
  walk(join(env.work, "home", "cluster"));
  return lines;
}

const SETUP = `
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect();
`;

describe("npm packages travel with the bundle as pins", { skip: online ? false : "the npm registry is not reachable" }, () => {
  test("a worker in an empty directory installs the pinned set once; the result equals the notebook's; the second job installs nothing", async () => {
    const run = await runIn(project, `${SETUP}
### code imp
%%snip sc
import isNumber from "is-number";
import version from "is-number/package.json";
import { parity } from "./lib/parity";
### code use
%%snip sc
function facts(): string {
  return [isNumber("5"), isNumber(""), parity(3), parity(4), version.version].join(",");
}
### code local
facts()
### code job1
// The entry's Date.now() is when the job's code runs: submit→run includes the install.
const t1 = Date.now();
const job1 = await db.createJob(rc.view(0), ["[facts(), Date.now()]"], sc);
const [r1, ran1] = await job1.result as [string, number];
console.log("job1", job1.id, r1, ran1 - t1, ran1);
### code job2
await new Promise((r) => setTimeout(r, 1500)); // not measured while job 1's environment record is computed
const t2 = Date.now();
const job2 = await db.createJob(rc.view(0), ["[facts() + '!', Date.now()]"], sc);
const [r2, ran2] = await job2.result as [string, number];
console.log("job2", job2.id, r2, ran2 - t2, ran2);
### code plain
// A job that imports nothing, run twice (the second is warm), for comparison.
const sc0 = new SnippetCollector();
### code plainsnip
%%snip sc0
function one(): number {
  return 1;
}
### code plainjobs
for (const k of [1, 2]) {
  const t0 = Date.now();
  const job0 = await db.createJob(rc.view(0), ["[one() + " + k + ", Date.now()]"], sc0);
  const [, ran0] = await job0.result as [number, number];
  console.log("plain", k, ran0 - t0, job0.id, ran0);
}
`);
    assert.equal(run.code, 0, run.stderr);
    const local = cellText(run.cells.get("local")).trim();
    assert.match(local, /^'?true,false,odd,even,6\.0\.0'?$/m, local);
    const one = /^job1 (\d+) (\S+) (\d+) (\d+)$/m.exec(cellText(run.cells.get("job1")));
    const two = /^job2 (\d+) (\S+) (\d+) (\d+)$/m.exec(cellText(run.cells.get("job2")));
    assert.ok(one, cellText(run.cells.get("job1")));
    assert.ok(two, cellText(run.cells.get("job2")));
    assert.equal(one[2], local.replace(/'/g, ""));
    assert.equal(two[2], `${local.replace(/'/g, "")}!`);
    // One install, by the first job; the second found the set in the cache.
    assert.equal(installLines().length, 1, installLines().join("\n"));
    const log1 = (await readLogs(env.store, Number(one[1]))).map((l) => l.line).join("\n");
    const log2 = (await readLogs(env.store, Number(two[1]))).map((l) => l.line).join("\n");
    assert.match(log1, /nbjob: installing 3 npm packages \(is-number@6\.0\.0, is-odd@2\.0\.0, is-number@4\.0\.0\) with npm ci/, log1);
    assert.match(log1, /added 3 packages/, log1);
    assert.doesNotMatch(log2, /installing/, log2);
    // The nested is-number@4.0.0 is installed under is-odd, as in the project.
    const cache = join(env.work, "home", "cache", "packages");
    const [key] = readdirSync(cache).filter((name) => /^[0-9a-f]{64}$/.test(name));
    const nested = JSON.parse(readFileSync(join(cache, key, "node_modules", "is-odd", "node_modules", "is-number", "package.json"), "utf8")) as { version: string };
    assert.equal(nested.version, "4.0.0");
    // The pins are in the bundle's text (covered by its hash) and the environment says where they came from.
    const row1 = await requireJob(env.store, Number(one[1]));
    const bundle = await getBundle(env.store, row1.bundle_hash);
    assert.match(bundle!.source.split("\n")[3], /^\/\/ packages: \{"node_modules\/is-number":\{"version":"6\.0\.0","integrity":"sha512-/);
    let environment;
    for (let i = 0; i < 50 && !environment; i++) {
      const row = await requireJob(env.store, row1.id);
      if (row.environment_hash) environment = await getEnvironment(env.store, row.environment_hash);
      else await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(environment);
    assert.deepEqual(environment.packages, { "is-number": "6.0.0", "is-odd": "2.0.0", "is-odd > is-number": "4.0.0" });
    assert.match(environment.package_sources["is-odd > is-number"], /^npm registry → \$NBJOB_HOME\/cache\/packages\/[0-9a-f]{12} \(pinned by the notebook's project\)$/);
    // Figures: submit to start (row) and submit to result (notebook) for the first and second job.
    const row2 = await requireJob(env.store, Number(two[1]));
    const start = (row: typeof row1) => row.started_at!.getTime() - row.queued_at.getTime();
    const plain = [...cellText(run.cells.get("plainjobs")).matchAll(/^plain (\d) (-?\d+) (\d+) (\d+)$/gm)];
    // Stored (row queued) → the job's code runs: the worker's part, without createJob's bundle check.
    const stored = async (id: number, ran: number) => ran - (await requireJob(env.store, id)).queued_at.getTime();
    const plainStored = await Promise.all(plain.map((m) => stored(Number(m[3]), Number(m[4]))));
    console.log(`# submit→run (the job's code starts): first job (installs the set) ${one[3]} ms, second job ${two[3]} ms, a job importing nothing ${plain.map((m) => m[2]).join(" then ")} ms`);
    console.log(`# stored→run: first ${await stored(row1.id, Number(one[4]))} ms, second ${await stored(row2.id, Number(two[4]))} ms, importing nothing ${plainStored.join(" then ")} ms; claim (queued→running) ${start(row1)} / ${start(row2)} ms`);
  });

  test("a package the notebook's project does not have: createJob names it and the npm install to run; nothing stored", async () => {
    const run = await runIn(project, `${SETUP}
### code imp
%%snip sc
import above from "only-above";
### code use
%%snip sc
function f(): number {
  return above();
}
### code job
try {
  await db.createJob(rc.view(0), ["f()"], sc);
  console.log("created");
} catch (err) {
  console.log(String(err));
}
`);
    assert.equal(run.code, 0, run.stderr);
    const text = cellText(run.cells.get("job"));
    assert.match(text, /the job imports the npm package 'only-above', but the notebook's project \(.*project\) does not have it installed: run `npm install only-above`/, text);
    assert.doesNotMatch(text, /^created$/m);
  });

  test("an install that fails (a version the registry does not have) fails the job naming the package, the version and npm's reason", async () => {
    const run = await runIn(badProject, `${SETUP}
### code imp
%%snip sc
import isNumber from "is-number";
### code use
%%snip sc
function g(): boolean {
  return isNumber(1);
}
### code job
const job = await db.createJob(rc.view(0), ["g()"], sc);
try {
  await job.result;
  console.log("done?");
} catch (err) {
  console.log("failed:", (err as Error).message);
}
`);
    assert.equal(run.code, 0, run.stderr);
    const text = cellText(run.cells.get("job"));
    assert.match(text, /failed:.*installing is-number@99\.99\.0 failed: .*(?:notarget|No matching version)/s, text);
  });
});

describe("the package cache", { skip: online ? false : "the npm registry is not reachable" }, () => {
  const set = packagesOfSource('// nbjob bundle: x\n// params: {}\n// packages: {"node_modules/is-number":{"version":"6.0.0","integrity":"sha512-Wu1VHeILBK8KAWJUAiSZQX94GmOE45Rg6/538fKwiloUu21KncEkYGPqob2oSZ5mUT73vLGrHQjKw3KMPwfDzg==","resolved":"https://registry.npmjs.org/is-number/-/is-number-6.0.0.tgz"}}\n');

  test("two workers (two caches on one host) asking for the same set at once: one install, both get the folder", { skip: !online }, async () => {
    const root = join(env.work, "shared-cache");
    const a = new PackageCache(root);
    const b = new PackageCache(root);
    const out: string[] = [];
    const [dirA, dirB] = await Promise.all([a.dir(set, (t) => out.push(`a: ${t}`)), b.dir(set, (t) => out.push(`b: ${t}`))]);
    assert.equal(dirA, dirB);
    assert.equal(a.installs + b.installs, 1, out.join(""));
    assert.equal(JSON.parse(readFileSync(join(dirA, "node_modules", "is-number", "package.json"), "utf8")).version, "6.0.0");
    // A third worker finds it at once.
    assert.equal(new PackageCache(root).known(set), dirA);
    // A damaged entry (one file's bytes changed, its version unchanged) is not taken: the file
    // hashes recorded at install find it, and the set is installed again.
    const code = join(dirA, "node_modules", "is-number", "index.js");
    const original = readFileSync(code, "utf8");
    writeFileSync(code, `${original}\nglobalThis.tampered = true;\n`);
    const c = new PackageCache(root);
    assert.equal(c.known(set), undefined);
    const said: string[] = [];
    assert.equal(await c.dir(set, (t) => said.push(t)), dirA);
    assert.equal(c.installs, 1);
    assert.match(said.join(""), /incomplete or damaged; installing them again/);
    assert.equal(readFileSync(code, "utf8"), original);
    // A package's version changed in its manifest: the same.
    const manifest = join(dirA, "node_modules", "is-number", "package.json");
    writeFileSync(manifest, '{ "name": "is-number", "version": "0.0.1" }\n');
    assert.equal(new PackageCache(root).known(set), undefined);
  });

  test("npm that never finishes: the install fails at the time limit, naming the packages", { skip: !online }, async () => {
    const hung = join(env.work, "hung-npm");
    writeFileSync(hung, "#!/bin/sh\nexec sleep 60\n");
    chmodSync(hung, 0o755);
    const cache = new PackageCache(join(env.work, "hung-cache"), { npm: hung, timeoutMs: 300 });
    const started = Date.now();
    await assert.rejects(cache.dir(set, () => undefined), /installing is-number@6\.0\.0 failed: npm did not finish within 300 ms/);
    assert.ok(Date.now() - started < 5000);
    assert.equal(cache.known(set), undefined);
  });
});

describe("pins from the notebook's project (no registry needed)", () => {
  test("from the lock file: the imported package and its nested dependency; a file: package and a missing one are refused", () => {
    const dir = join(env.work, "pins", "notebooks");
    mkdirSync(dir, { recursive: true });
    const tgz = (name: string, v: string) => `https://registry.npmjs.org/${name}/-/${name}-${v}.tgz`;
    writeFileSync(join(env.work, "pins", "package-lock.json"), JSON.stringify({
      lockfileVersion: 3,
      packages: {
        "": { dependencies: { a: "^1", b: "^3", c: "file:../c-1.0.0.tgz" } },
        "node_modules/a": { version: "1.0.0", resolved: tgz("a", "1.0.0"), integrity: "sha512-a", dependencies: { b: "^2" } },
        "node_modules/a/node_modules/b": { version: "2.1.0", resolved: tgz("b", "2.1.0"), integrity: "sha512-b2" },
        "node_modules/b": { version: "3.0.0", resolved: tgz("b", "3.0.0"), integrity: "sha512-b3" },
        "node_modules/c": { version: "1.0.0", resolved: "file:../c-1.0.0.tgz", integrity: "sha512-c" },
      },
    }));
    // The notebook sits below the project's root: the lock file is found above it.
    assert.deepEqual(collectPackages(['import a from "a";\nimport { x } from "nbjob";\nimport { y } from "./local";'], dir), {
      "node_modules/a": { version: "1.0.0", resolved: tgz("a", "1.0.0"), integrity: "sha512-a", dependencies: { b: "^2" } },
      "node_modules/a/node_modules/b": { version: "2.1.0", resolved: tgz("b", "2.1.0"), integrity: "sha512-b2" },
    });
    assert.deepEqual(Object.keys(collectPackages(['const b = require("b/sub");'], dir)), ["node_modules/b"]);
    assert.deepEqual(collectPackages(['import { readFileSync } from "node:fs";\nimport path from "path";'], dir), {});
    assert.throws(() => collectPackages(['import c from "c";'], dir), (err: Error) => err instanceof PackagePinError && /'c'.*file:\.\.\/c-1\.0\.0\.tgz.*npm registry only/.test(err.message));
    assert.throws(() => collectPackages(['import d from "d";'], dir), (err: Error) => err instanceof MissingPackageError && /'d'.*does not have it installed: run `npm install d`/.test(err.message));
    // In node_modules but not in the lock file: it runs in the notebook, yet nothing records its version.
    mkdirSync(join(env.work, "pins", "node_modules", "d"), { recursive: true });
    writeFileSync(join(env.work, "pins", "node_modules", "d", "package.json"), JSON.stringify({ name: "d", version: "1.0.0" }));
    assert.throws(() => collectPackages(['import d from "d";'], dir),
      (err: Error) => err instanceof MissingPackageError && /'d', but the notebook's project \(.*pins\) has it in node_modules but not in its package-lock\.json \(copied in, or installed with --no-save\?\), so no version is recorded: run `npm install d`/.test(err.message));
  });
});
