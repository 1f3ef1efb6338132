// Benchmark of dispatch across hosts (issue 16): N trivial jobs (default 300) on a load-balanced
// view of 2 workers, from a real notebook (`nbjob run`, db.createJobs over one parameter, then
// `await group.results`), timed inside the cell. Two layouts on the same machine, same PostgreSQL
// binaries and settings, run one after the other:
//   - rig: the store, each worker and the notebook on hosts of their own (network namespaces
//     linked by a bridge, test/rig.ts), everything reached by rig addresses;
//   - loopback: the same server, workers and notebook all in one namespace, over 127.0.0.1.
// Runs rig, loopback, loopback, rig; prints jobs/s of each round and the ratio of medians. Needs root (ip netns); otherwise it says so.
//   node dist/bench/multihost.js   (NBJOB_BENCH_JOBS: jobs per round, default 300; NBJOB_BENCH_ROUNDS: default 3)
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Client as PgClient } from "pg";
import { notebookFrom } from "../test/jobs-env";
import { Rig, rigUnavailable, startRigWorker } from "../test/rig";
import type { RigPostgres } from "../test/rig";

const JOBS = Number(process.env.NBJOB_BENCH_JOBS ?? 300);
const ROUNDS = Number(process.env.NBJOB_BENCH_ROUNDS ?? 3);
const NBJOB = join(resolve(__dirname, "..", ".."), "bin", "nbjob.js");

interface Layout {
  name: string;
  store: string;
  workers: [string, string];
  notebook: string;
  /** Workers bind, and PostgreSQL listens on, 127.0.0.1 (else each host's rig address). */
  loopback: boolean;
}

const NOTEBOOK = (files: string[]) => `
### code setup
const sc = new SnippetCollector();
const db = new DBWrapper();
const rc = await Client.connect({ connectionFiles: ${JSON.stringify(files)} });
### code decl
%%snip sc
function inc(x: number): number {
  return x + 1;
}
### code rounds
const params = new ParamLogger();
params.x = 0;
// Warm-up: both workers have compiled a job before the clock starts.
await (await db.createJobs(rc.loadBalanced(), ["inc(params.x)"], sc, { params, grid: { x: [-1, -2, -3, -4] }, review: false })).results;
for (let r = 0; r < ${ROUNDS}; r++) {
  const xs = Array.from({ length: ${JOBS} }, (_, i) => r * ${JOBS} + i);
  const t0 = performance.now();
  const group = await db.createJobs(rc.loadBalanced(), ["inc(params.x)"], sc, { params, grid: { x: xs }, review: false });
  const rows = await group.results;
  const seconds = (performance.now() - t0) / 1000;
  const wrong = rows.filter((row) => row.status !== "done" || row.result !== (row.params.x as number) + 1).length;
  console.log("ROUND " + JSON.stringify({ seconds, wrong }));
}
`;

async function runLayout(rig: Rig, layout: Layout, work: string, key: string): Promise<number[]> {
  const pg: RigPostgres = await rig.startPostgres(layout.store, layout.loopback ? "127.0.0.1" : undefined);
  const admin = new PgClient({ connectionString: pg.socketUrl("postgres") });
  await admin.connect();
  await admin.query("CREATE DATABASE nbjob");
  await admin.end();
  const env: NodeJS.ProcessEnv = { ...process.env, NBJOB_CLUSTER_KEY: key, NBJOB_DATABASE_URL: pg.url("nbjob") };
  delete env.NBJOB_DEBUG;
  const dir = mkdtempSync(join(work, `${layout.name}-`));
  chmodSync(dir, 0o755);
  const ip = layout.loopback ? "127.0.0.1" : undefined;
  const [first, second] = await Promise.all(layout.workers.map((host) => startRigWorker(rig, host, { dir, env, ip })));
  const path = join(dir, "bench.ipynb");
  writeFileSync(path, JSON.stringify(notebookFrom(NOTEBOOK([first.connectionFile, second.connectionFile]))));
  const out = join(dir, "bench.out.ipynb");
  const ran = await rig.run(layout.notebook, process.execPath, [NBJOB, "run", path, "-o", out, "--timeout", "900"], {
    cwd: dir, env: { ...env, NBJOB_HOME: join(dir, "notebook-home"), JUPYTER_DATA_DIR: join(dir, "jupyter") },
  });
  if (ran.code !== 0) throw new Error(`${layout.name}: the notebook failed (exit ${ran.code}):\n${ran.stderr}\n${first.log}\n${second.log}`);
  const executed = JSON.parse(readFileSync(out, "utf8")) as { cells: { id: string; outputs?: { text?: string | string[] }[] }[] };
  const text = executed.cells.flatMap((c) => c.outputs ?? []).map((o) => (Array.isArray(o.text) ? o.text.join("") : o.text ?? "")).join("");
  const rounds = [...text.matchAll(/^ROUND (.*)$/gm)].map((m) => JSON.parse(m[1]) as { seconds: number; wrong: number });
  if (rounds.length !== ROUNDS || rounds.some((r) => r.wrong > 0)) throw new Error(`${layout.name}: rounds incomplete or wrong: ${text}`);
  first.process.kill("SIGTERM");
  second.process.kill("SIGTERM");
  await pg.stop();
  return rounds.map((r) => JOBS / r.seconds);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const why = rigUnavailable();
  if (why) {
    console.log(`bench/multihost: skipped: ${why}`);
    return;
  }
  const rig = Rig.create(["store", "worker-a", "worker-b", "notebook", "loopback"]);
  const work = mkdtempSync(join(tmpdir(), "nbjob-bench-multihost-"));
  chmodSync(work, 0o755);
  const key = randomBytes(32).toString("hex");
  try {
    const layouts: Layout[] = [
      { name: "rig", store: "store", workers: ["worker-a", "worker-b"], notebook: "notebook", loopback: false },
      { name: "loopback", store: "loopback", workers: ["loopback", "loopback"], notebook: "loopback", loopback: true },
    ];
    // A B B A: a machine whose load drifts during the run favours neither layout.
    const rates = new Map<string, number[]>(layouts.map((l) => [l.name, []]));
    for (const layout of [layouts[0], layouts[1], layouts[1], layouts[0]]) {
      const r = await runLayout(rig, layout, work, key);
      rates.get(layout.name)!.push(...r);
      console.log(`${layout.name.padEnd(8)} ${r.map((x) => x.toFixed(1)).join(", ")} jobs/s (${JOBS} trivial jobs per round, load-balanced over 2 workers)`);
    }
    const ratio = median(rates.get("rig")!) / median(rates.get("loopback")!);
    console.log(`rig / loopback (medians): ${ratio.toFixed(2)}x`);
  } finally {
    rig.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
