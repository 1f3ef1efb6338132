// Benchmark of jobs that need npm packages (issue 14): one worker started in an EMPTY folder with
// its own NBJOB_HOME (so it has neither the project nor its node_modules), and a project made
// here with is-number@6.0.0 and is-odd@2.0.0 (is-odd brings a nested is-number@4.0.0: 3 pins);
// the job imports is-number itself and is-odd through a local module (./lib/parity.ts).
// Through the notebook's own API (DBWrapper.createJob on rc.view(0), run from the project's
// folder), it times from submit to the job's code running, and from the job's row being stored
// (queued) to its code running (the worker's part):
//   - the first job that needs the set on the fresh worker (it installs the set: npm ci);
//   - then, alternately, ROUNDS jobs that need the same set and ROUNDS jobs that import nothing,
//     each a new bundle (its own parameter), so each is compiled on the worker as usual;
//   - then jobs importing a local .mjs that imports a local .ts: the first, then ROUNDS more.
// Prints medians and the difference between a job with packages and one without (target: within
// 10 ms). Needs the npm registry. Asserts only that the results are right.
//   node dist/bench/packages.js   (NBJOB_BENCH_URL: an admin URL, default postgres://postgres@127.0.0.1:5432/postgres;
//                                  NBJOB_BENCH_ROUNDS: default 15)
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Client as PgClient } from "pg";

const ADMIN_URL = process.env.NBJOB_BENCH_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const ROUNDS = Number(process.env.NBJOB_BENCH_ROUNDS ?? 15);
const ROOT = resolve(__dirname, "..", "..");
const NBJOB = join(ROOT, "bin", "nbjob.js");

async function admin(sql: string): Promise<void> {
  const client = new PgClient({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "nbjob-bench-packages-"));
  const project = join(work, "project");
  const empty = join(work, "empty");
  const home = join(work, "home");
  mkdirSync(project, { recursive: true });
  mkdirSync(empty, { recursive: true });
  const database = `nbjob_bench_packages_${randomBytes(3).toString("hex")}`;
  const url = ADMIN_URL.replace(/\/[^/]*$/, `/${database}`);
  const env = { ...process.env, NBJOB_HOME: home, NBJOB_DATABASE_URL: url };
  await admin(`CREATE DATABASE ${database}`);
  try {
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "bench", version: "1.0.0", private: true }));
    mkdirSync(join(project, "lib"));
    writeFileSync(join(project, "lib", "parity.ts"), 'import isOdd from "is-odd";\nexport function parity(n: number): boolean {\n  return isOdd(n);\n}\n');
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline", "is-number@6.0.0", "is-odd@2.0.0"], { cwd: project, stdio: "pipe", timeout: 120_000 });
    const started = spawnSync(process.execPath, [NBJOB, "cluster", "start", "-n", "1"], { cwd: empty, env, encoding: "utf8" });
    if (started.status !== 0) throw new Error(`nbjob cluster start failed: ${started.stderr}`);
    try {
      process.env.NBJOB_HOME = home;
      process.env.NBJOB_DATABASE_URL = url;
      process.chdir(project); // the notebook's folder: its lock file pins the packages
      const runtime = await import("../runtime");
      const { recordSnippet } = await import("../runtime/snippets");
      const db = new runtime.DBWrapper(url);
      const rc = await runtime.Client.connect();
      const withPackages = new runtime.SnippetCollector();
      recordSnippet(withPackages, { source: 'import isNumber from "is-number";\nimport { parity } from "./lib/parity";', kind: "import" });
      recordSnippet(withPackages, { source: "function facts(x: number): string {\n  return `${isNumber(x)},${parity(x)}`;\n}", kind: "function" });
      const plain = new runtime.SnippetCollector();
      recordSnippet(plain, { source: "function facts(x: number): string {\n  return `${x}`;\n}", kind: "function" });

      /** Submit → code runs, and row stored → code runs (ms). */
      const time = async (sc: InstanceType<typeof runtime.SnippetCollector>, x: number) => {
        const t0 = Date.now();
        const job = await db.createJob(rc.view(0), ["[facts(params.x), Date.now()]"], sc, { params: { x }, review: false });
        const [text, ran] = (await job.result) as [string, number];
        const row = await db.store.query<{ queued_at: Date }>("SELECT queued_at FROM nbjob.jobs WHERE id = $1", [job.id]);
        return { id: job.id, text, submit: ran - t0, stored: ran - row.rows[0].queued_at.getTime() };
      };
      const first = await time(withPackages, 3);
      if (first.text !== "true,true") throw new Error(`wrong result ${first.text}`);
      const packaged: { submit: number; stored: number }[] = [];
      const nothing: { submit: number; stored: number }[] = [];
      const packagedIds: number[] = [];
      const plainIds: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const a = await time(withPackages, 10 + r);
        if (a.text !== `true,${(10 + r) % 2 === 1}`) throw new Error(`wrong result ${a.text}`);
        packaged.push(a);
        packagedIds.push(a.id);
        const b = await time(plain, 10 + r);
        if (b.text !== String(10 + r)) throw new Error(`wrong result ${b.text}`);
        nothing.push(b);
        plainIds.push(b.id);
      }
      // The same bundle again (job.rerun()): the worker has its program compiled and its folder
      // ready, so this is what packages add to a job once nothing is new.
      const again = async (job: Awaited<ReturnType<typeof db.job>>) => {
        const t0 = Date.now();
        const rerun = await job.rerun(rc.view(0));
        const [, ran] = (await rerun.result) as [string, number];
        const row = await db.store.query<{ queued_at: Date }>("SELECT queued_at FROM nbjob.jobs WHERE id = $1", [rerun.id]);
        return { submit: ran - t0, stored: ran - row.rows[0].queued_at.getTime() };
      };
      const packagedJob = await db.job(packagedIds[packagedIds.length - 1]);
      const plainJob = await db.job(plainIds[plainIds.length - 1]);
      const packagedAgain: { submit: number; stored: number }[] = [];
      const nothingAgain: { submit: number; stored: number }[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        packagedAgain.push(await again(packagedJob));
        nothingAgain.push(await again(plainJob));
      }
      // Local ES modules importing TypeScript (runtime/esm-preload.ts): the first such job on the
      // worker's job thread starts Node's ES loader hooks (a thread that loads the compiler);
      // later jobs with the same files find them imported already.
      mkdirSync(join(project, "lib", "esm"));
      writeFileSync(join(project, "lib", "esm", "entry.mjs"), 'import { half } from "./half.ts";\nexport function esmHalf(n) {\n  return half(n);\n}\n');
      writeFileSync(join(project, "lib", "esm", "half.ts"), "export function half(n: number): number {\n  return n / 2;\n}\n");
      const esm = new runtime.SnippetCollector();
      recordSnippet(esm, { source: 'import { esmHalf } from "./lib/esm/entry.mjs";', kind: "import" });
      recordSnippet(esm, { source: "function facts(x: number): string {\n  return `${esmHalf(x)}`;\n}", kind: "function" });
      const esmFirst = await time(esm, 4);
      if (esmFirst.text !== "2") throw new Error(`wrong result ${esmFirst.text}`);
      const esmNext: { submit: number; stored: number }[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const a = await time(esm, 2 * r);
        if (a.text !== String(r)) throw new Error(`wrong result ${a.text}`);
        esmNext.push(a);
      }
      const m = (rows: { submit: number; stored: number }[], key: "submit" | "stored") => median(rows.map((row) => row[key]));
      console.log(`first job needing the 2 packages (3 pins) on a fresh worker: submit→run ${first.submit} ms, stored→run ${first.stored} ms`);
      console.log(`next jobs with the same set (median of ${ROUNDS}): submit→run ${m(packaged, "submit")} ms, stored→run ${m(packaged, "stored")} ms`);
      console.log(`jobs importing nothing (median of ${ROUNDS}):      submit→run ${m(nothing, "submit")} ms, stored→run ${m(nothing, "stored")} ms`);
      console.log(`difference (packages − nothing): submit→run ${m(packaged, "submit") - m(nothing, "submit")} ms, stored→run ${m(packaged, "stored") - m(nothing, "stored")} ms`);
      console.log(`reruns of one bundle (compiled, folder ready; median of ${ROUNDS}): with packages submit→run ${m(packagedAgain, "submit")} ms, stored→run ${m(packagedAgain, "stored")} ms; importing nothing ${m(nothingAgain, "submit")} ms, ${m(nothingAgain, "stored")} ms; difference ${m(packagedAgain, "stored") - m(nothingAgain, "stored")} ms`);
      console.log(`an .mjs importing a .ts: first such job on the worker submit→run ${esmFirst.submit} ms, stored→run ${esmFirst.stored} ms; next (median of ${ROUNDS}) submit→run ${m(esmNext, "submit")} ms, stored→run ${m(esmNext, "stored")} ms`);
      await rc.close();
      await db.close();
    } finally {
      if (process.env.NBJOB_BENCH_KEEP) console.log(`kept ${work}`);
      else spawnSync(process.execPath, [NBJOB, "cluster", "stop"], { env, encoding: "utf8" });
    }
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    if (!process.env.NBJOB_BENCH_KEEP) rmSync(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
