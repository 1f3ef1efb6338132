// `node dist/bench/store-gc.js [JOBS] [CHECKPOINTS_PER_JOB]`: garbage collection on a store of many
// jobs made by direct inserts through the store API (fresh database on 127.0.0.1:5432, dropped
// after). Each checkpoint holds a 4 KiB value of its own and a 4 KiB value every job shares.
// Deletes half the jobs (by tag), then times `collectGarbage` and VACUUM and reports the sizes.
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { openStore, putBundle, createJob, transitionJob, appendLogs } from "../store";
import { putCheckpoints } from "../store/checkpoints";
import { collectGarbage, deleteJobs, formatBytes, storeSize, vacuumStore } from "../store/cleanup";

const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";

async function main(): Promise<void> {
  const jobs = Number(process.argv[2] ?? 2000);
  const perJob = Number(process.argv[3] ?? 10);
  const name = `nbjob_bench_gc_${process.pid}`;
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const store = openStore({ url: url.toString(), maxConnections: 4 });
  try {
    const shared = randomBytes(4096);
    let t = performance.now();
    for (let i = 0; i < jobs; i++) {
      const source = `const params = {"i":${i}};\nfunction f() { return ${i}; }\nf();\n`;
      const hash = await putBundle(store, { source, snippets: [{ kind: "function", names: ["f"], source: `function f() { return ${i}; }` }], params: { i }, entries: ["f()"] });
      const job = await createJob(store, { bundleHash: hash, tags: [i % 2 === 0 ? "even" : "odd"] });
      await transitionJob(store, job.id, "running", { workerId: "w", host: "h", pid: 1 });
      await appendLogs(store, job.id, [{ stream: "stdout", line: `job ${i} ran` }]);
      await putCheckpoints(store, job.id, Array.from({ length: perJob }, (_, idx) => ({ idx, values: { own: randomBytes(4096), shared } })));
      await transitionJob(store, job.id, "done", { result: i, resultText: String(i) });
    }
    console.log(`made ${jobs} jobs with ${jobs * perJob} checkpoints in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const sizeBefore = (await storeSize(store)).database;
    t = performance.now();
    const plan = await deleteJobs(store, { tag: "odd" });
    const deleteMs = performance.now() - t;
    t = performance.now();
    const gc = await collectGarbage(store, { graceMs: 0 });
    const gcMs = performance.now() - t;
    const sizeAfterGc = (await storeSize(store)).database;
    t = performance.now();
    await vacuumStore(store);
    const vacuumMs = performance.now() - t;
    const sizeAfterVacuum = (await storeSize(store)).database;
    t = performance.now();
    await vacuumStore(store, { full: true });
    const fullMs = performance.now() - t;
    const sizeAfterFull = (await storeSize(store)).database;
    console.log(`deleted ${plan.ids.length} jobs in ${(deleteMs / 1000).toFixed(2)} s (frees ${formatBytes(plan.bytes.total)}, values ${formatBytes(plan.bytes.values)})`);
    console.log(`gc: ${gc.blobs} values, ${gc.chunks} chunks (${formatBytes(gc.chunkBytes)}), ${gc.bundles} bundles, ${gc.snippets} snippets in ${(gcMs / 1000).toFixed(2)} s`);
    console.log(`database: ${formatBytes(sizeBefore)} before; ${formatBytes(sizeAfterGc)} after gc; ${formatBytes(sizeAfterVacuum)} after VACUUM (${(vacuumMs / 1000).toFixed(1)} s); ${formatBytes(sizeAfterFull)} after VACUUM FULL (${(fullMs / 1000).toFixed(1)} s)`);
  } finally {
    await store.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
