// `node dist/bench/queries.js [JOBS]`: db.jobs with params + metrics conditions on a store of
// 100,000 jobs (fresh database on 127.0.0.1:5432, dropped after). Jobs and bundles are made by
// one INSERT ... SELECT generate_series each (the migration's trigger copies each bundle's params
// to its job row); last_metrics is written as the metrics code would. Each query is timed through
// DBWrapper.jobs (the user's path: compile, send, parse rows), median of 9 runs after 2 warm-ups,
// next to two references in the same process:
//   - baseline: db.jobs({}) — the plain newest-50 page (SELECT ... ORDER BY id DESC LIMIT 50)
//   - join:     the same condition read from nbjob.bundles.params through a join (what a query
//               costs without the params copy on the job row), and for the equality query the
//               same without the GIN index on params.
// Then the same queries again after `nbjob db index params.lr` and `metrics.loss` (createFieldIndex:
// the ranges and orders on them read those indexes), each checked to list the same jobs as
// without the indexes, and whether the plan uses an index (EXPLAIN).
import { Client } from "pg";
import { compileJobQuery, createFieldIndex, indexedFields, mapConditions, openStore } from "../store";
import type { JobQuery, Store } from "../store";
import { DBWrapper } from "../runtime/db-wrapper";
import type { JobsFilter } from "../runtime/db-wrapper";

const ADMIN_URL = process.env.NBJOB_TEST_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const RUNS = 9;

async function median(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 2; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(RUNS / 2)];
}

/** The filter's SQL with params read from the bundles through a join (no copy on the job row). */
function joinedQuery(query: JobQuery): { text: string; values: unknown[] } {
  const { text, values } = compileJobQuery(query);
  return { text: text.replace("FROM nbjob.jobs j", "FROM nbjob.jobs j JOIN nbjob.bundles b ON b.hash = j.bundle_hash").replace(/j\.params/g, "b.params"), values };
}

async function fill(store: Store, jobs: number): Promise<void> {
  // lr log-uniform in [1e-4, 1e-1], 4 layer counts, 3 optimizers; loss and acc uniform in [0, 1).
  await store.query(
    `INSERT INTO nbjob.bundles (hash, source, params, entries)
     SELECT encode(sha256(('bench ' || g)::bytea), 'hex'), '// bench job ' || g || E'\\n' || repeat(E'function train() { return 1; }\\n', 30),
       jsonb_build_object('lr', round((10 ^ (-4 + 3 * random()))::numeric, 6), 'layers', 1 + g % 4,
                          'optimizer', (ARRAY['adam', 'sgd', 'rmsprop'])[1 + g % 3], 'model', jsonb_build_object('width', 64 * (1 + g % 8))),
       ARRAY['train()']
     FROM generate_series(1, $1::int) g`, [jobs]);
  await store.query(
    `INSERT INTO nbjob.jobs (bundle_hash, status, queued_at, started_at, finished_at, worker_id, result_text, last_metrics)
     SELECT encode(sha256(('bench ' || g)::bytea), 'hex'), 'done', now() - ($1::int - g) * interval '1 minute',
       now() - ($1::int - g) * interval '1 minute', now() - ($1::int - g) * interval '1 minute' + interval '30 s', 'w', '0.5',
       jsonb_build_object('loss', round(random()::numeric, 5), 'acc', round(random()::numeric, 5))
     FROM generate_series(1, $1::int) g`, [jobs]);
  await store.query("VACUUM ANALYZE nbjob.jobs");
  await store.query("VACUUM ANALYZE nbjob.bundles");
}

/**
 * Median time of the row update a metrics flush makes (store/metrics.ts), over 200 of the newest
 * jobs; their metrics are put back after, so the queries still see the data they were timed on.
 */
async function timeMetricsUpdates(store: Store, jobs: number): Promise<number> {
  const saved = await store.query<{ id: number; last_metrics: unknown }>("SELECT id, last_metrics FROM nbjob.jobs WHERE id > $1", [jobs - 200]);
  const times: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    await store.query("UPDATE nbjob.jobs SET last_metrics = last_metrics || $2::jsonb WHERE id = $1", [jobs - i, JSON.stringify({ loss: Math.random(), acc: Math.random() })]);
    times.push(performance.now() - t);
  }
  await store.query("UPDATE nbjob.jobs j SET last_metrics = s.m FROM unnest($1::bigint[], $2::jsonb[]) AS s(id, m) WHERE j.id = s.id",
    [saved.rows.map((r) => r.id), saved.rows.map((r) => JSON.stringify(r.last_metrics))]);
  times.sort((a, b) => a - b);
  return times[100];
}

async function main(): Promise<void> {
  const jobs = Number(process.argv[2] ?? 100_000);
  const name = `nbjob_bench_queries_${process.pid}`;
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const store = openStore({ url: url.toString(), maxConnections: 2 });
  const db = new DBWrapper(url.toString());
  try {
    let t = performance.now();
    await fill(store, jobs);
    console.log(`made ${jobs} jobs (and bundles) in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const baseline = await median(() => db.jobs({}));
    console.log(`baseline db.jobs({}) (newest 50, no condition): ${baseline.toFixed(2)} ms`);
    // The floor for any condition no index can answer: reading every job row once.
    const scan = await median(() => store.query("SELECT count(*) FROM nbjob.jobs WHERE last_metrics IS NOT NULL AND params IS NOT NULL"));
    console.log(`reference: one pass over all ${jobs} job rows (count(*)): ${scan.toFixed(2)} ms`);
    const cases: [string, JobsFilter][] = [
      ["params.lr < 0.01 and metrics.loss < 0.1 (matches ~6.7%; newest 50)", { params: { lr: { lt: 0.01 } }, metrics: { loss: { lt: 0.1 } } }],
      ["params.lr < 0.0002 and metrics.loss < 0.01 (matches ~0.1%: reads every row)", { params: { lr: { lt: 0.0002 } }, metrics: { loss: { lt: 0.01 } } }],
      ["params.lr < 0.01 and metrics.loss < 0.1, orderBy metrics.loss, limit 10", { params: { lr: { lt: 0.01 } }, metrics: { loss: { lt: 0.1 } }, orderBy: "metrics.loss", limit: 10 }],
      ['params.optimizer = "sgd" and params.layers = 3 and metrics.loss < 0.01 (equality: GIN)', { params: { optimizer: "sgd", layers: 3 }, metrics: { loss: { lt: 0.01 } } }],
      ["params.lr < 0.01, orderBy -metrics.loss, limit 10", { params: { lr: { lt: 0.01 } }, orderBy: "-metrics.loss", limit: 10 }],
      ["orderBy params.lr (smallest 50)", { orderBy: "params.lr" }],
      ["params.lr < 0.0002, orderBy -params.lr (all 0.1% of the jobs, offset 100)", { params: { lr: { lt: 0.0002 } }, orderBy: "-params.lr", limit: 100, offset: 100 }],
    ];
    const toQuery = (filter: JobsFilter): JobQuery => ({
      where: { and: [...mapConditions("params", filter.params ?? {}), ...mapConditions("metrics", filter.metrics ?? {})] },
      orderBy: filter.orderBy, limit: filter.limit, offset: filter.offset,
    });
    const results: { label: string; ms: number; joinMs: number; rows: number; ids: number[] }[] = [];
    for (const [label, filter] of cases) {
      const ids = (await db.jobs(filter)).map((job) => job.id);
      const rows = ids.length;
      const ms = await median(() => db.jobs(filter));
      const joined = joinedQuery(toQuery(filter));
      const joinMs = await median(() => store.query(joined.text, joined.values));
      results.push({ label, ms, joinMs, rows, ids });
      console.log(`${label}: ${ms.toFixed(2)} ms (${rows} rows), ${(ms / baseline).toFixed(1)}x the baseline, ${(ms / scan).toFixed(1)}x one pass; params through a join: ${joinMs.toFixed(2)} ms (${(joinMs / ms).toFixed(1)}x)`);
    }
    const worstBefore = Math.max(...results.map((r) => r.ms));
    // The equality query without the GIN index (same plan otherwise).
    // (before the field indexes, which would serve its metrics.loss range), then the GIN index again.
    const [, eqFilter] = cases[3];
    await store.query("DROP INDEX nbjob.jobs_params_idx");
    const noGin = await median(() => db.jobs(eqFilter));
    console.log(`equality query without the GIN index on params: ${noGin.toFixed(2)} ms (${(noGin / results[3].ms).toFixed(1)}x the indexed time)`);
    await store.query("CREATE INDEX jobs_params_idx ON nbjob.jobs USING gin (params jsonb_path_ops)");

    // What an index on a metric costs the writer: the update each metrics flush makes (one job
    // row's last_metrics), 200 in a row over the newest jobs, without and then with the index.
    const metricsUpdates = () => timeMetricsUpdates(store, jobs);
    const updatesBefore = await metricsUpdates();

    // Indexes on the two fields the range and order cases use.
    for (const field of ["params.lr", "metrics.loss"]) {
      t = performance.now();
      const { index } = await createFieldIndex(store, field);
      console.log(`nbjob db index ${field}: ${((performance.now() - t) / 1000).toFixed(2)} s (${(index.bytes / 1048576).toFixed(1)} MiB, ANALYZE included)`);
    }
    const updatesAfter = await metricsUpdates();
    console.log(`a metrics flush's row update: ${updatesBefore.toFixed(3)} ms without an index on metrics.loss, ${updatesAfter.toFixed(3)} ms with it (median of 200; it can no longer be a HOT update)`);
    const lookup = await median(() => indexedFields(store));
    console.log(`finding the indexed fields (one catalog query per db.jobs with a range or a field order): ${lookup.toFixed(2)} ms`);
    const indexed = await indexedFields(store);
    const indexedMs: number[] = [];
    for (const [i, [label, filter]] of cases.entries()) {
      const ids = (await db.jobs(filter)).map((job) => job.id);
      const same = JSON.stringify(ids) === JSON.stringify(results[i].ids);
      const ms = await median(() => db.jobs(filter));
      indexedMs.push(ms);
      // Descending by an indexed field, queryJobs reads the numbers first: that statement's plan.
      const descending = filter.orderBy?.startsWith("-") && indexed.has(filter.orderBy.slice(1));
      const { text, values } = compileJobQuery(toQuery(filter), indexed, descending ? "numbers" : "all");
      const plan = JSON.stringify((await store.query(`EXPLAIN (FORMAT JSON) ${text}`, values)).rows);
      const usesIndex = /jobs_field_/.test(plan);
      console.log(`indexed: ${label}: ${ms.toFixed(2)} ms (${(results[i].ms / ms).toFixed(1)}x faster than unindexed), ${same ? "same jobs" : "DIFFERENT jobs"}, plan ${usesIndex ? "uses" : "does not use"} a field index${descending ? " (the numbers' statement)" : ""}`);
      if (!same) process.exitCode = 1;
    }
    const worstAfter = Math.max(...indexedMs);
    console.log(`slowest params+metrics query: ${worstBefore.toFixed(2)} ms without field indexes, ${worstAfter.toFixed(2)} ms with them (target under 50 ms: ${worstAfter < 50 ? "met" : "NOT met"} with them)`);

  } finally {
    await db.close();
    await store.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
