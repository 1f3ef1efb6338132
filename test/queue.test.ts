// The queue's batch paths on a real PostgreSQL: a sweep stored in one go (enqueueJobs) and the
// claim that brings the job's bundle along (claimNextJob with the worker's known bundles); and the
// worker's sweep-invariant source (a sweep's jobs compile to one program).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createJobGroup, getBundle, openStore } from "../store";
import type { BundleInput, Store } from "../store";
import { announceClaims, claimNextJob, enqueueJobs } from "../store/queue";
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
