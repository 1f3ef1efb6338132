// The checkpoint path inside a worker, with a real JobRunner and job thread (no store): snapshots
// are acknowledged as the listener stores them, checkpoint() blocks when too many are unstored,
// flush() waits for them, a job ends only after they are stored, a failed store fails the job,
// a blocked job can still be cancelled, and runs without a storing listener (ad hoc) never block.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openStore } from "../store";
import { CheckpointWriter } from "../worker/checkpoint-writer";
import { JobRunner } from "../worker/job-runner";
import type { JobListener } from "../worker/job-runner";
import { PENDING_CHECKPOINTS } from "../worker/job-thread";
import { decodeValue } from "../runtime/shared/value-codec";

type Outcome = { kind: "done"; resultText: string } | { kind: "failed"; ename: string; evalue: string } | { kind: "cancelled"; reason: string };

function listen(checkpoint?: JobListener["checkpoint"]): { listener: JobListener; outcome: Promise<Outcome>; output: () => string } {
  let text = "";
  let settle!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((resolve) => (settle = resolve));
  const listener: JobListener = {
    started: () => {},
    stream: (_name, chunk) => (text += chunk),
    checkpoint,
    done: ({ resultText }) => settle({ kind: "done", resultText }),
    failed: ({ ename, evalue }) => settle({ kind: "failed", ename, evalue }),
    cancelled: (reason) => settle({ kind: "cancelled", reason }),
  };
  return { listener, outcome, output: () => text };
}

const LOOP = `let i = 0;
jobtracker.registerCheckpointer("i");
function loop(n: number) {
  for (let k = 0; k < n; k++) { i = k; jobtracker.checkpoint(); }
  return i;
}`;

test("snapshots are acknowledged as stored; checkpoint() waits when too many are unstored; done only after all are stored", async () => {
  const runner = new JobRunner({ log: () => {} });
  try {
    let outstanding = 0;
    let most = 0;
    const stored: number[] = [];
    // The store acknowledges nothing until the job has run ahead to the limit (or 10 s passed,
    // and the check below fails): on a busy machine a store that is merely slow can keep up with
    // the job's thread, and the limit would never be reached.
    let openGate = () => {};
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const giveUp = setTimeout(() => openGate(), 10_000);
    const { listener, outcome } = listen((index, values) => {
      outstanding++;
      most = Math.max(most, outstanding);
      if (outstanding >= PENDING_CHECKPOINTS - 1) openGate();
      // Then a slow store: 1 ms per snapshot.
      return gate.then(() => new Promise<void>((resolve) => setTimeout(() => {
        stored.push(decodeValue(values.i, () => undefined) as number);
        assert.equal(index, stored.length - 1);
        outstanding--;
        resolve();
      }, 1)));
    });
    const n = PENDING_CHECKPOINTS + 500;
    runner.submit(1, { source: LOOP, entries: [`loop(${n})`] }, listener);
    const result = await outcome;
    clearTimeout(giveUp);
    assert.deepEqual(result, { kind: "done", resultText: String(n - 1) });
    assert.equal(stored.length, n, "every snapshot was stored before done");
    assert.deepEqual(stored.slice(0, 3), [0, 1, 2]);
    assert.ok(most <= PENDING_CHECKPOINTS, `at most ${PENDING_CHECKPOINTS} unstored at once; saw ${most}`);
    assert.ok(most >= PENDING_CHECKPOINTS - 1, `the loop ran ahead of the store until the limit (saw ${most})`);
  } finally {
    await runner.close();
  }
});

test("flush() resolves once every snapshot so far is stored", async () => {
  const runner = new JobRunner({ log: () => {} });
  try {
    let stored = 0;
    // One at a time, 100 ms each (as the recorder's writer stores them).
    let chain = Promise.resolve();
    const { listener, outcome } = listen(() => (chain = chain.then(() => new Promise<void>((resolve) => setTimeout(() => {
      stored++;
      resolve();
    }, 100)))));
    runner.submit(1, {
      source: `${LOOP}\nasync function flushed() { loop(3); const t = Date.now(); await jobtracker.flush(); return Date.now() - t; }`,
      entries: ["flushed()"],
    }, listener);
    const result = await outcome;
    assert.equal(result.kind, "done");
    assert.ok(Number((result as { resultText: string }).resultText) >= 250, `flush waited ${(result as { resultText: string }).resultText} ms for 3 stores of 100 ms`);
    assert.equal(stored, 3);
  } finally {
    await runner.close();
  }
});

test("a checkpoint that cannot be stored fails the job with the reason; a blocked job can be cancelled", async () => {
  const runner = new JobRunner({ log: () => {} });
  try {
    const failing = listen((index) => (index === 5 ? Promise.reject(new Error("checkpoint 5 of job 1 could not be stored: the disk is full")) : undefined));
    runner.submit(1, { source: LOOP, entries: ["loop(1e9)"] }, failing.listener);
    assert.deepEqual(await failing.outcome, { kind: "failed", ename: "CheckpointError", evalue: "checkpoint 5 of job 1 could not be stored: the disk is full" });

    // Nothing is ever stored: the loop blocks in checkpoint() at the limit, and cancel still stops it.
    const stuck = listen(() => new Promise<void>(() => {}));
    runner.submit(2, { source: LOOP, entries: ["loop(1e9)"] }, stuck.listener);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    runner.cancel(2, "enough");
    assert.deepEqual(await stuck.outcome, { kind: "cancelled", reason: "enough" });

    // The next job runs on a fresh thread.
    const next = listen();
    runner.submit(3, { source: "1 + 1" }, next.listener);
    assert.deepEqual(await next.outcome, { kind: "done", resultText: "2" });
  } finally {
    await runner.close();
  }
});

test("without a storing listener (an ad hoc run) snapshots are acknowledged and dropped, so the loop never blocks", async () => {
  const runner = new JobRunner({ log: () => {} });
  try {
    const { listener, outcome } = listen();
    runner.submit("adhoc", { source: LOOP, entries: [`loop(${PENDING_CHECKPOINTS * 3})`] }, listener);
    assert.deepEqual(await outcome, { kind: "done", resultText: String(PENDING_CHECKPOINTS * 3 - 1) });
  } finally {
    await runner.close();
  }
});

test("a store that stays unreachable: the write is retried, then fails naming the checkpoint and the cause", async () => {
  const store = openStore({ url: "postgres://postgres@127.0.0.1:1/nbjob_nowhere", maxConnections: 1, migrate: false });
  const logged: string[] = [];
  const writer = new CheckpointWriter(store, 7, { log: (line) => logged.push(line), retryForMs: 1_500 });
  const started = Date.now();
  const first = writer.write(0, { x: new Uint8Array([1]) });
  const second = writer.write(1, { x: new Uint8Array([2]) });
  await assert.rejects(first, /checkpoint 0 of job 7 could not be stored \(tried for \d+ s\): .*connection refused/);
  await assert.rejects(second, /checkpoint 0 of job 7 could not be stored/);
  assert.ok(Date.now() - started >= 1_400, "it kept trying");
  assert.match(logged.join("\n"), /job 7: storing checkpoint 0 failed .*; retrying/);
  await assert.rejects(writer.write(2, { x: new Uint8Array([3]) }), /checkpoint 0 of job 7 could not be stored/, "no holes: later checkpoints fail too");
  await store.close();
});
