// The store functions a worker's analysis uses per request, against the real PostgreSQL: several
// checkpoints read in one statement (small values inline, a value of several chunks still whole),
// several rows written in one statement (a row stored already is kept), and a group of
// checkpoints locked at once (another worker wanting one of them waits until the group is
// released; the locks are those of withAnalysisLock); and the worker's cache of checkpoint values
// (read once, then from memory, the least recently used leaving first).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  CHUNK_SIZE, createAnalysis, createJob, getAnalysisRows, openStore, putAnalysisRows, putBundle, putCheckpoint, readCheckpoint, readCheckpoints,
  withAnalysisLock, withAnalysisLocks,
} from "../store";
import type { Store } from "../store";
import { TestDatabases } from "./pg-admin";
import { CheckpointCache } from "../worker/checkpoint-cache";

const databases = new TestDatabases("analysis_store");
let store: Store;
let jobId: number;

before(async () => {
  store = openStore({ url: await databases.fresh("main"), maxConnections: 4 });
  const source = "let step = 0;\nstep;\n";
  const hash = await putBundle(store, { source, snippets: [{ kind: "variable", names: ["step"], source: "let step = 0;" }], params: {}, entries: ["step"] });
  jobId = (await createJob(store, { bundleHash: hash })).id;
});

after(async () => {
  await store?.close();
  await databases.dropAll();
});

describe("analysis store functions", () => {
  test("readCheckpoints gives what readCheckpoint gives, for several checkpoints at once", async () => {
    const big = randomBytes(CHUNK_SIZE + 10);
    await putCheckpoint(store, jobId, 0, { step: Buffer.from("0"), weights: randomBytes(3000) });
    await putCheckpoint(store, jobId, 1, { step: Buffer.from("1"), weights: big, empty: Buffer.alloc(0) });
    await putCheckpoint(store, jobId, 2, {});
    const read = await readCheckpoints(store, jobId, [2, 0, 1]);
    assert.deepEqual([...read.keys()].sort(), [0, 1, 2]);
    for (const idx of [0, 1, 2]) assert.deepEqual(read.get(idx), await readCheckpoint(store, jobId, idx), `checkpoint ${idx}`);
    assert.ok(read.get(1)!.weights.equals(big), "a value of two chunks comes back whole");
    assert.equal(read.get(1)!.empty.length, 0);
    assert.deepEqual(read.get(2), {});
    await assert.rejects(readCheckpoints(store, jobId, [0, 7]), /job \d+ has no checkpoint 7/);
  });

  test("putAnalysisRows writes several rows in one statement and keeps a row stored already", async () => {
    const analysis = await createAnalysis(store, jobId, [
      { name: "f", source: "function f() { return { a: 1 }; }" },
      { name: "g", source: "function g() { return { b: 2 }; }" },
    ]);
    const [f, g] = analysis.function_hashes;
    assert.equal(await putAnalysisRows(store, [{ functionHash: f, jobId, checkpointIdx: 0, value: [["a", 1]], workerId: "w1" }]), 1);
    const written = await putAnalysisRows(store, [
      { functionHash: f, jobId, checkpointIdx: 0, value: [["a", 99]], workerId: "w2" },
      { functionHash: g, jobId, checkpointIdx: 0, error: { name: "RangeError", message: "bad", traceback: ["RangeError: bad", "    at g (g:1:1)"] }, workerId: "w2" },
      { functionHash: f, jobId, checkpointIdx: 1, value: [["text", "a\u0000b"]], workerId: null },
    ]);
    assert.equal(written, 2, "the row stored already is not written again");
    const rows = await getAnalysisRows(store, jobId, [f, g]);
    assert.deepEqual(rows.map((r) => [r.checkpoint_idx, r.function_hash === f ? "f" : "g", r.value, r.error?.name ?? null, r.worker_id]), [
      [0, "f", [["a", 1]], null, "w1"],
      [0, "g", null, "RangeError", "w2"],
      // jsonb cannot hold a NUL: the row records why, as putAnalysisRow does.
      [1, "f", null, "TypeError", null],
    ]);
    assert.equal(await putAnalysisRows(store, []), 0);
  });

  test("withAnalysisLocks holds the checkpoints' locks until its callback ends", async () => {
    const events: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const group = withAnalysisLocks(store, jobId, [5, 3, 4], async (client) => {
      const { rows } = await client.query<{ n: number }>("SELECT 1 AS n");
      assert.equal(rows[0].n, 1, "the callback gets the connection holding the locks");
      locked();
      await held;
      events.push("group released");
    });
    await isLocked;
    // Another worker wanting checkpoint 4 waits for the group; checkpoint 6 is free.
    const other = withAnalysisLock(store, jobId, 4, async () => void events.push("4 locked by the other"));
    await withAnalysisLock(store, jobId, 6, async () => void events.push("6 locked by the other"));
    release();
    await Promise.all([group, other]);
    assert.deepEqual(events, ["6 locked by the other", "group released", "4 locked by the other"]);
    // Released for good: each can be taken again, and a callback's error comes through after the release.
    await assert.rejects(withAnalysisLocks(store, jobId, [3, 4, 5], async () => {
      throw new Error("from the callback");
    }), /from the callback/);
    await withAnalysisLocks(store, jobId, [3, 4, 5], async () => void events.push("taken again"));
    assert.equal(events[events.length - 1], "taken again");
  });

  test("a worker's checkpoint cache gives the stored values, then keeps them in memory up to its size", async () => {
    const values = (idx: number) => ({ step: Buffer.from(String(idx)), weights: randomBytes(1000) });
    const stored = new Map([10, 11, 12, 13, 14, 15].map((idx) => [idx, values(idx)]));
    for (const [idx, v] of stored) await putCheckpoint(store, jobId, idx, v);
    const cache = new CheckpointCache(5000);
    const first = await cache.read(store, jobId, [10, 11]);
    assert.deepEqual(first.get(10), stored.get(10));
    assert.deepEqual(first.get(11), stored.get(11));
    // Gone from the store, checkpoint 10 still comes from memory: the cache did not ask the store.
    await store.query("DELETE FROM nbjob.checkpoints WHERE job_id = $1 AND idx = 10", [jobId]);
    await assert.rejects(readCheckpoints(store, jobId, [10]), /has no checkpoint 10/);
    const again = await cache.read(store, jobId, [11, 10, 12]);
    assert.deepEqual([...again.keys()], [11, 10, 12]);
    assert.deepEqual(again.get(10), stored.get(10));
    assert.deepEqual(again.get(12), stored.get(12));
    // 5000 bytes hold four of these checkpoints: reading three more pushes out the least recently used (11, 10).
    await cache.read(store, jobId, [13, 14, 15]);
    await assert.rejects(cache.read(store, jobId, [10]), /has no checkpoint 10/, "checkpoint 10 left the cache, so the store is asked");
    assert.deepEqual((await cache.read(store, jobId, [11])).get(11), stored.get(11), "checkpoint 11 is read from the store again");
  });
});
