// `nbjob export JOB DIR`: a done job (imports a package, two parameters, checkpoints, a class
// instance and a Map in its result) written as a standalone project, installed with npm in a
// fresh directory and run with `npx tsx job.ts`: it prints the job's stored result, and its
// checkpoints land in files there. No database is involved in that run.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deserialize } from "node:v8";
import { after, before, describe, test } from "node:test";
import { createJob, readLogs, requireJob } from "../store";
import { cellText, JobsEnv, ROOT } from "./jobs-env";

const env = new JobsEnv("export");
before(async () => {
  // The notebook imports "diff" (a dependency of nbjob): resolvable from the notebook's directory.
  symlinkSync(join(ROOT, "node_modules"), join(env.work, "node_modules"));
  // A local module the job imports (with one of its own): the export writes both and runs them.
  mkdirSync(join(env.work, "lib"));
  writeFileSync(join(env.work, "lib", "label.ts"), 'import { suffix } from "./suffix";\nexport function labelled(label: string): string {\n  return label + suffix;\n}\n');
  writeFileSync(join(env.work, "lib", "suffix.ts"), 'export const suffix = "";\n');
  await env.start();
});
after(() => env.cleanup());

const NOTEBOOK = `
### code setup
const sc = new SnippetCollector();
const params = new ParamLogger();
params.target = 5;
params.label = "walk";
const db = new DBWrapper();
const rc = await Client.connect();
### code imp
%%snip sc
import { diffWords } from "diff";
import { labelled } from "./lib/label";
### code train
%%snip sc
let iteration = 0;
const param_values = [0];
// A timer left behind: the job (and the exported program) ends all the same.
const heartbeat = setInterval(() => undefined, 60_000);
jobtracker.registerCheckpointer("iteration");
jobtracker.registerCheckpointer("param_values");
class Summary {
  constructor(public label: string, public iterations: number, public words: number) {}
}
function train(): Summary {
  while (Math.abs(param_values[0] - params.target) > 1e-3) {
    iteration += 1;
    param_values[0] += 0.5 * (params.target - param_values[0]);
    jobtracker.checkpoint();
  }
  console.log("trained");
  return new Summary(labelled(params.label), iteration, diffWords("a b", "a c").length);
}
### code run
const job = await db.createJob(rc.loadBalanced(), ["train()", "iteration", "[train(), new Map([['x', iteration]]), await Promise.resolve(param_values[0])]"], sc, { params, review: false });
console.log("job", job.id, job.status, await job.result.then(() => "ok"));
`;

/** Runs a command with only PATH and HOME: the exported program must need no NBJOB_* or database. */
function run(command: string, args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" }, stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("nbjob export", () => {
  test("the exported project, installed with npm and run with tsx, prints the stored result; checkpoints go to files", async () => {
    const ran = await env.runNotebook(NOTEBOOK);
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(cellText(ran.cells.get("run")), /^job 1 \w+ ok$/m, cellText(ran.cells.get("run")));
    const job = await requireJob(env.store, 1);
    assert.equal(job.status, "done");
    for (let i = 0; i < 100 && !(await requireJob(env.store, 1)).environment_hash; i++) await new Promise((r) => setTimeout(r, 100));

    const dir = join(env.work, "exported");
    const exported = await env.nbjob("export", "1", dir);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /job 1 exported to .*: job\.ts, nbjob-runtime\.ts, package\.json, README\.md, lib\/label\.ts, lib\/suffix\.ts\n/);
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const diffVersion = JSON.parse(readFileSync(join(ROOT, "node_modules", "diff", "package.json"), "utf8")).version;
    assert.deepEqual(pkg.dependencies, { diff: diffVersion });
    assert.ok(pkg.devDependencies.tsx);
    const program = readFileSync(join(dir, "job.ts"), "utf8");
    assert.match(program, /"target": 5/);
    assert.ok(program.includes('import { diffWords } from "diff";'));
    assert.match(readFileSync(join(dir, "README.md"), "utf8"), /npx tsx job\.ts/);

    const install = await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], dir);
    assert.equal(install.code, 0, install.stderr);
    const out = await run("npx", ["tsx", "job.ts"], dir);
    assert.equal(out.code, 0, out.stderr);
    // What the job printed on its worker, then its result as nbjob shows it.
    const printed = (await readLogs(env.store, 1)).filter((l) => l.stream === "stdout").map((l) => `${l.line}\n`).join("");
    assert.equal(printed, "trained\ntrained\n");
    assert.equal(out.stdout, `${printed}${job.result_text}\n`);
    assert.match(job.result_text ?? "", /^\[\n?\s*Summary \{ label: 'walk', iterations: \d+, words: 3 \}/);

    const checkpoints = readdirSync(join(dir, "checkpoints")).sort();
    const iterations = Number(/iterations: (\d+)/.exec(job.result_text ?? "")?.[1]);
    assert.equal(checkpoints.length, iterations);
    assert.equal(checkpoints[0], "000000");
    assert.equal(deserialize(readFileSync(join(dir, "checkpoints", "000000", "iteration.bin"))), 1);
    assert.deepEqual(deserialize(readFileSync(join(dir, "checkpoints", "000001", "param_values.bin"))), [3.75]);
  });

  test("an export target that is not empty, an unknown job, bad arguments: one clear error, nothing written", async () => {
    const busy = join(env.work, "busy");
    mkdirSync(busy);
    writeFileSync(join(busy, "keep.txt"), "mine");
    const refused = await env.nbjob("export", "1", busy);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /^nbjob: .*busy is not empty \(it holds keep\.txt\); give a new or empty directory, nothing was written$/m);
    assert.deepEqual(readdirSync(busy), ["keep.txt"]);
    assert.equal(readFileSync(join(busy, "keep.txt"), "utf8"), "mine");

    const file = join(env.work, "a-file");
    writeFileSync(file, "x");
    const notDir = await env.nbjob("export", "1", file);
    assert.equal(notDir.code, 2);
    assert.match(notDir.stderr, /a-file exists and is not a directory/);

    const unknown = await env.nbjob("export", "99", join(env.work, "nowhere"));
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^nbjob: there is no job 99/);
    assert.equal(existsSync(join(env.work, "nowhere")), false);

    const missing = await env.nbjob("export", "1");
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /needs a job id and a directory/);
  });

  test("a job resumed from a checkpoint: the export says it starts from the beginning instead", async () => {
    const original = await requireJob(env.store, 1);
    const resumed = await createJob(env.store, { bundleHash: original.bundle_hash, resumedFrom: 1, resumedFromCheckpoint: 2 });
    const dir = join(env.work, "exported-resumed");
    const exported = await env.nbjob("export", String(resumed.id), dir);
    assert.equal(exported.code, 0, exported.stderr);
    const note = `resumed from job 1 at checkpoint 2: job.ts runs the code from its start, not from that checkpoint, so its result can differ from the`;
    assert.ok(exported.stdout.includes(`${note} stored one\n`), exported.stdout);
    assert.ok(readFileSync(join(dir, "README.md"), "utf8").includes(`- ${note} one below`));
    // A job that was not resumed says nothing of it.
    assert.doesNotMatch(readFileSync(join(env.work, "exported", "README.md"), "utf8"), /resumed from/);
  });
});
