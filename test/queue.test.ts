// The queue's batch paths on a real PostgreSQL: a sweep stored in one go (enqueueJobs) and the
// claim that brings the job's bundle along (claimNextJob with the worker's known bundles); and the
// worker's sweep-invariant source (a sweep's jobs compile to one program).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createJobGroup, getBundle, openStore, transitionJob, unfinishedAmong } from "../store";
import type { BundleInput, Store } from "../store";
import { announceClaims, CLAIM_NEXT_JOB_SQL, claimNextJob, enqueueJobs } from "../store/queue";
import { Client as PgClient } from "pg";
import { sweepInvariantSource } from "../worker/store-link";
import { admin, databaseUrl } from "./pg-admin";

const name = `nbjob_queue_${process.pid}_${randomBytes(3).toString("hex")}`;
let store: Store;


before(async () => {
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  store = openStore({ url: databaseUrl(name), maxConnections: 4 });
  await store.ready();
});
after(async () => {
  await store.close();
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
});

const shared = { kind: "function", names: ["inc"], source: "function inc(x: number) {\n  return x + 1;\n}", collector: "math" };
function bundle(x: number, extra?: string): BundleInput {
  const snippets = extra ? [shared, { kind: "function", names: ["other"], source: extra, collector: null }] : [shared];
  return {
    source: `// nbjob bundle: ${snippets.length} snippets, 1 entry\n// params: ${JSON.stringify({ x })}\n\n${snippets.map((s) => s.source).join("\n\n")}\n\ninc(params.x);\n`,
    snippets, params: { x }, entries: ["inc(params.x)"],
  };
}
interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Actual Rows": number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Index Recheck"?: number;
  Plans?: PlanNode[];
}
class Rollback extends Error {}
const count = async (table: string) => (await store.query<{ n: number }>(`SELECT count(*)::int AS n FROM nbjob.${table}`)).rows[0].n;

describe("queue batches", () => {
  test("enqueueJobs stores a sweep's bundles and snippets once each and its jobs queued in input order", async () => {
    const group = await createJobGroup(store, { grid: { x: [1, 2, 3, 2] } });
    const items = [1, 2, 3, 2].map((x) => ({ bundle: bundle(x), name: "sweep", tags: ["t"], groupId: group.id }));
    items.push({ bundle: bundle(9, "function other() {\n  return 0;\n}"), name: "odd", tags: [], groupId: group.id });
    const rows = await store.transaction((tx) => enqueueJobs(tx, items));
    assert.equal(rows.length, 5);
    assert.deepEqual(rows.map((r) => Number(r.id)), [...rows.map((r) => Number(r.id))].sort((a, b) => a - b));
    assert.ok(rows.every((r) => r.status === "queued" && Number(r.group_id) === Number(group.id) && r.target_worker === null));
    assert.deepEqual(rows.map((r) => r.name), ["sweep", "sweep", "sweep", "sweep", "odd"]);
    assert.deepEqual(rows[0].tags, ["t"]);
    // x = 2 twice: one bundle; 4 bundles in all, 2 snippets.
    assert.equal(rows[1].bundle_hash, rows[3].bundle_hash);
    assert.equal(await count("bundles"), 4);
    assert.equal(await count("snippets"), 2);
    const stored = await getBundle(store, rows[4].bundle_hash);
    assert.deepEqual(stored!.params, { x: 9 });
    assert.deepEqual(stored!.entries, ["inc(params.x)"]);
    assert.deepEqual(stored!.snippets.map((s) => [s.position, s.names, s.collector]), [[0, ["inc"], "math"], [1, ["other"], null]]);
    // The same sweep again stores no new bundle or snippet, only jobs.
    await store.transaction((tx) => enqueueJobs(tx, items));
    assert.equal(await count("bundles"), 4);
    assert.equal(await count("bundle_snippets"), 5);
    assert.equal(await count("jobs"), 10);
  });

  test("a batch that fails stores nothing", async () => {
    const before = [await count("jobs"), await count("bundles")];
    await assert.rejects(store.transaction((tx) => enqueueJobs(tx, [{ bundle: bundle(100) }, { bundle: bundle(101), groupId: 987654 }])), /foreign key|group/);
    assert.deepEqual([await count("jobs"), await count("bundles")], before);
  });

  test("claimNextJob takes jobs oldest first, once each, with the bundle unless the worker has it", async () => {
    await store.query("UPDATE nbjob.jobs SET status = 'cancelled', finished_at = now() WHERE status = 'queued'");
    const rows = await store.transaction((tx) => enqueueJobs(tx, [5, 6, 5].map((x) => ({ bundle: bundle(x) }))));
    const worker = { workerId: "w1", host: "h", pid: 1 };
    const first = await claimNextJob(store, worker);
    assert.equal(Number(first!.id), Number(rows[0].id));
    assert.equal(first!.status, "running");
    assert.equal(first!.worker_id, "w1");
    assert.ok(first!.started_at);
    assert.match(first!.bundle_source!, /params: \{"x":5\}/);
    assert.deepEqual(first!.bundle_params, { x: 5 });
    assert.deepEqual(first!.bundle_entries, ["inc(params.x)"]);
    const second = await claimNextJob(store, worker, 0, [first!.bundle_hash]);
    assert.equal(Number(second!.id), Number(rows[1].id));
    assert.deepEqual(second!.bundle_params, { x: 6 }, "a bundle the worker does not have comes along");
    const third = await claimNextJob(store, worker, 0, [first!.bundle_hash]);
    assert.equal(Number(third!.id), Number(rows[2].id));
    assert.equal(third!.bundle_source, null, "a bundle the worker has is not sent again");
    assert.equal(third!.bundle_hash, first!.bundle_hash);
    assert.equal(await claimNextJob(store, worker), undefined);
    // The claim is stored like any other write (its commit only does not wait for the flush).
    const { rows: running } = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM nbjob.jobs WHERE status = 'running' AND worker_id = 'w1'");
    assert.equal(running[0].n, 3);
  });

  test("the claim takes the oldest of the jobs for any worker and the ones for this worker past their grace; other workers' stay queued", async () => {
    await store.query("UPDATE nbjob.jobs SET status = 'cancelled', finished_at = now() WHERE status = 'queued'");
    const rows = await store.transaction((tx) => enqueueJobs(tx, [
      { bundle: bundle(2001) }, { bundle: bundle(2002), targetWorker: "w2" }, { bundle: bundle(2003), targetWorker: "w1" }, { bundle: bundle(2004) },
    ]));
    const ids = rows.map((r) => Number(r.id));
    const w1 = { workerId: "w1", host: "h", pid: 1 };
    const claim = async (graceMs: number) => Number((await claimNextJob(store, w1, graceMs))?.id ?? 0);
    assert.equal(await claim(60_000), ids[0]);
    assert.equal(await claim(60_000), ids[3], "w1's own job waits for its grace (the comm may bring it)");
    assert.equal(await claim(0), ids[2]);
    assert.equal(await claim(0), 0, "w2's job is not w1's to take");
    const { rows: left } = await store.query<{ id: string; status: string }>("SELECT id, status FROM nbjob.jobs WHERE id = $1", [ids[1]]);
    assert.equal(left[0].status, "queued");
  });

  test("a claim reads no entry of the jobs claimed before it (migration 000019): its scans return one row, whatever came before", async () => {
    // A store of its own, in the state a sweep leaves: its jobs stored, then analysed (autovacuum
    // does so after a large insert, while they are all queued), then claimed without a VACUUM since.
    const own = `${name}_claims`;
    await admin((c) => c.query(`CREATE DATABASE ${own}`));
    const sweep = openStore({ url: databaseUrl(own), maxConnections: 2 });
    try {
      await sweep.ready();
      await sweep.transaction((tx) => enqueueJobs(tx, Array.from({ length: 310 }, (_, i) => ({ bundle: bundle(3000 + i), targetWorker: i % 31 === 0 ? "w1" : null }))));
      await sweep.query("ANALYZE nbjob.jobs");
      const w1 = { workerId: "w1", host: "h", pid: 1 };
      for (let i = 0; i < 300; i++) assert.ok(await claimNextJob(sweep, w1, 0));
      await sweep.transaction(async (tx) => {
        const { rows } = await tx.query<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${CLAIM_NEXT_JOB_SQL}`, ["w1", "h", 1, 0, []]);
        const scans: string[] = [];
        const visit = (node: PlanNode) => {
          if (node["Relation Name"] === "jobs" && /Scan/.test(node["Node Type"]) || node["Index Name"]?.startsWith("jobs_")) {
            const read = node["Actual Rows"] + (node["Rows Removed by Filter"] ?? 0) + (node["Rows Removed by Index Recheck"] ?? 0);
            scans.push(`${node["Node Type"]} ${node["Index Name"] ?? ""}: ${read}`);
            assert.ok(read <= 2, `the claim's ${node["Node Type"]} on ${node["Index Name"] ?? "jobs"} read ${read} rows after 300 claims:\n${JSON.stringify(rows[0]["QUERY PLAN"], null, 1)}`);
          }
          for (const child of node.Plans ?? []) visit(child);
        };
        visit(rows[0]["QUERY PLAN"][0].Plan);
        assert.ok(scans.length >= 2, `expected a scan for each kind of job, saw ${scans.join("; ")}`);
        // EXPLAIN ANALYZE ran the claim: undone with the transaction.
        throw new Rollback();
      }).catch((err) => {
        if (!(err instanceof Rollback)) throw err;
      });
    } finally {
      await sweep.close();
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${own} WITH (FORCE)`));
    }
  });

  test("a claim and a status change prepared before a migration changed the jobs table still run (no worker restart)", async () => {
    // One connection, so the statements run where they were prepared before the change.
    const one = openStore({ url: databaseUrl(name), maxConnections: 1 });
    const w1 = { workerId: "w1", host: "h", pid: 1 };
    try {
      await store.query("UPDATE nbjob.jobs SET status = 'cancelled', finished_at = now() WHERE status = 'queued'");
      for (const change of ["ADD COLUMN test_extra integer", "DROP COLUMN test_extra"]) {
        await store.transaction((tx) => enqueueJobs(tx, [{ bundle: bundle(4000) }, { bundle: bundle(4001) }]));
        const first = await claimNextJob(one, w1);
        assert.equal((await transitionJob(one, Number(first!.id), "done", { result: 1, claim: String(first!.claim) })).status, "done");
        // What a migration applied by another process meanwhile does.
        await store.query(`ALTER TABLE nbjob.jobs ${change}`);
        const second = await claimNextJob(one, w1);
        assert.ok(second, `the claim after ${change}`);
        const done = await transitionJob(one, Number(second.id), "done", { result: 2, claim: String(second.claim) });
        assert.equal(done.status, "done");
        assert.equal("test_extra" in done, change.startsWith("ADD"), "the row as the table has it now");
      }
    } finally {
      await one.close();
    }
  });

  test("unfinishedAmong counts the jobs still queued or running and names the lowest (what a sweep's waiter asks)", async () => {
    await store.query("UPDATE nbjob.jobs SET status = 'cancelled', finished_at = now() WHERE status = 'queued'");
    const rows = await store.transaction((tx) => enqueueJobs(tx, [5000, 5001, 5002, 5003].map((x) => ({ bundle: bundle(x) }))));
    const ids = rows.map((r) => Number(r.id));
    const w1 = { workerId: "w1", host: "h", pid: 1 };
    const first = await claimNextJob(store, w1);
    await transitionJob(store, Number(first!.id), "done", { result: 1, claim: String(first!.claim) });
    await claimNextJob(store, w1);
    await store.query("UPDATE nbjob.jobs SET status = 'cancelled', finished_at = now() WHERE id = $1", [ids[3]]);
    assert.deepEqual(await unfinishedAmong(store, ids), { count: 2, lowest: ids[1] });
    assert.deepEqual(await unfinishedAmong(store, [ids[0], ids[3]]), { count: 0, lowest: null });
    assert.deepEqual(await unfinishedAmong(store, []), { count: 0, lowest: null });
    await store.query("UPDATE nbjob.jobs SET status = 'cancelled', finished_at = now() WHERE status IN ('queued', 'running')");
  });

  test("two workers claiming at once never take the same job", async () => {
    await store.transaction((tx) => enqueueJobs(tx, Array.from({ length: 40 }, (_, i) => ({ bundle: bundle(1000 + i) }))));
    const take = async (workerId: string) => {
      const ids: number[] = [];
      for (let job = await claimNextJob(store, { workerId, host: "h", pid: 2 }); job; job = await claimNextJob(store, { workerId, host: "h", pid: 2 })) ids.push(Number(job.id));
      return ids;
    };
    const [a, b] = await Promise.all([take("wa"), take("wb")]);
    assert.equal(a.length + b.length, 40);
    assert.equal(new Set([...a, ...b]).size, 40);
  });

  test("a claim commits without notifying (migration 000018); announceClaims and every other write of the row do", async () => {
    const listener = new PgClient({ connectionString: databaseUrl(name) });
    await listener.connect();
    const heard: string[] = [];
    listener.on("notification", (message) => heard.push(message.payload ?? ""));
    const settle = () => new Promise((resolve) => setTimeout(resolve, 150));
    try {
      await listener.query("LISTEN nbjob_jobs_changed");
      const [row] = await store.transaction((tx) => enqueueJobs(tx, [{ bundle: bundle(77), name: "quiet", tags: [], groupId: null }]));
      await settle();
      assert.deepEqual(heard.splice(0), [String(row.id)], "the insert notifies");
      // Other jobs of this file may be queued before it: claim until this one is taken.
      for (let job = await claimNextJob(store, { workerId: "w", host: "h", pid: 1 }); job; job = await claimNextJob(store, { workerId: "w", host: "h", pid: 1 })) {
        if (Number(job.id) === Number(row.id)) break;
      }
      await settle();
      assert.deepEqual(heard.splice(0), [], "the claim does not");
      await announceClaims(store, [Number(row.id), 12345]);
      await settle();
      assert.deepEqual(heard.splice(0), [`${row.id},12345`]);
      // The setting the claim made was its own transaction's: the next write on the pool notifies.
      await store.query("UPDATE nbjob.jobs SET note = 'n' WHERE id = $1", [row.id]);
      await settle();
      assert.deepEqual(heard.splice(0), [String(row.id)]);
    } finally {
      await listener.end();
    }
  });

  test("the worker's source of a sweep's job is the same program for every parameter value, line for line", () => {
    const one = sweepInvariantSource(bundle(1).source);
    const two = sweepInvariantSource(bundle(2).source);
    assert.equal(one, two);
    assert.equal(one.split("\n").length, bundle(1).source.split("\n").length);
    assert.doesNotMatch(one, /"x":1/);
    // Anything not laid out as a bundle is left alone.
    assert.equal(sweepInvariantSource("// params: 1\nx;\n"), "// params: 1\nx;\n");
  });
});
