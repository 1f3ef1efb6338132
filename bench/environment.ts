// What recording the environment adds to a worker's per-job store work: N jobs each go queued ->
// running -> done as a worker writes them, once without and once with the environment link
// (recordJobEnvironment, as worker/recorder.ts calls it after the final write), in the
// same run against a fresh database. Prints the ratio; asserts nothing.
//   node dist/bench/environment.js   (NBJOB_BENCH_URL: admin URL, default postgres://postgres@127.0.0.1:5432/postgres;
//                                      NBJOB_BENCH_JOBS: default 1000)
import { Client } from "pg";
import { createJob, openStore, putBundle, transitionJob } from "../store";
import type { Store } from "../store";
import { recordJobEnvironment } from "../worker/environment";

const ADMIN_URL = process.env.NBJOB_BENCH_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const JOBS = Number(process.env.NBJOB_BENCH_JOBS ?? 1_000);
const WORKERS = 2;
const ROUNDS = 5;

async function admin(sql: string): Promise<void> {
  const client = new Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** WORKERS loops, each finishing jobs one after the other; the link runs alongside, as on a worker. */
async function finishJobs(store: Store, bundleHash: string, withEnvironment: boolean): Promise<number> {
  const ids: number[] = [];
  for (let i = 0; i < JOBS; i++) ids.push((await createJob(store, { bundleHash })).id);
  let next = 0;
  const links: Promise<void>[] = [];
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: WORKERS }, async (_, w) => {
    while (next < ids.length) {
      const id = ids[next++];
      await transitionJob(store, id, "running", { workerId: `w${w}`, host: "bench", pid: process.pid });
      const row = await transitionJob(store, id, "done", { result: 1, resultText: "1" });
      if (withEnvironment) links.push(recordJobEnvironment(store, id, row.bundle_hash));
    }
  }));
  await Promise.all(links);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function main(): Promise<void> {
  const database = `nbjob_bench_env_${process.pid}`;
  await admin(`CREATE DATABASE ${database}`);
  const store = openStore({ url: ADMIN_URL.replace(/\/[^/]*$/, `/${database}`), maxConnections: 4 });
  try {
    const source = `import { createTwoFilesPatch } from "diff";\nfunction f() { return createTwoFilesPatch("a", "b", "x", "y").length; }\nf();\n`;
    const bundleHash = await putBundle(store, { source, snippets: [{ kind: "function", names: ["f"], source }], params: {}, entries: ["f()"] });
    // The first job of a new set of imports pays for the scan once; the runs below measure the steady state.
    const first = process.hrtime.bigint();
    await recordJobEnvironment(store, (await createJob(store, { bundleHash })).id, bundleHash).catch(() => undefined);
    console.log(`first environment of a new set of imports: ${(Number(process.hrtime.bigint() - first) / 1e6).toFixed(0)} ms (off the job's path)`);
    // Alternating rounds, medians: the machine is shared and noisy.
    const times: { without: number[]; with: number[] } = { without: [], with: [] };
    for (let round = 0; round < ROUNDS; round++) {
      times.without.push(await finishJobs(store, bundleHash, false));
      times.with.push(await finishJobs(store, bundleHash, true));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const without = median(times.without);
    const withEnv = median(times.with);
    console.log(`${JOBS} jobs on ${WORKERS} writers (median of ${ROUNDS}): ${(JOBS / without).toFixed(0)} jobs/s without the environment link, ${(JOBS / withEnv).toFixed(0)} jobs/s with it`);
    console.log(`time ratio with/without: ${(withEnv / without).toFixed(2)}x`);
  } finally {
    await store.close();
    await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  }
}

void main();
