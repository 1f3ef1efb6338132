// Metrics logged before a job is stopped, inside a worker with a real JobRunner and job thread (no
// store; test/metrics.test.ts has the same through a cluster and PostgreSQL): the job's thread is
// terminated (cancel, timeoutMs, the job ending its own thread), and every value it logged reaches
// the listener before the job's outcome: batches it had sent, and the values still staged in
// shared memory (worker/metric-stage.ts), including array values, a value too long for the stage,
// and more names than the stage's name area holds.
import assert from "node:assert/strict";
import { test } from "node:test";
import { JobRunner } from "../worker/job-runner";
import type { JobListener } from "../worker/job-runner";
import type { MetricBatch } from "../worker/job-thread";
import { pointsOf } from "../worker/metrics-writer";
import { STAGE_ARRAY_NUMBERS, STAGE_NAME_BYTES } from "../worker/metric-stage";
import type { MetricPoint } from "../store/metrics";

interface Watched {
  listener: JobListener;
  /** Settles with the outcome, and the points received before it. */
  outcome: Promise<{ kind: string; detail: string; points: MetricPoint[]; batches: number }>;
  /** Resolves at the job's first output (it writes one line as it starts spinning). */
  spinning: Promise<void>;
}

function watch(): Watched {
  const points: MetricPoint[] = [];
  let batches = 0;
  let settle!: (o: { kind: string; detail: string; points: MetricPoint[]; batches: number }) => void;
  let spun!: () => void;
  const spinning = new Promise<void>((resolve) => (spun = resolve));
  const outcome = new Promise<{ kind: string; detail: string; points: MetricPoint[]; batches: number }>((resolve) => (settle = resolve));
  const end = (kind: string, detail: string) => settle({ kind, detail, points, batches });
  const listener: JobListener = {
    started: () => {},
    stream: () => spun(),
    // Acknowledged as stored a little later, as a store would.
    metrics: (batch: MetricBatch) => {
      batches++;
      points.push(...pointsOf(batch));
      return new Promise<void>((resolve) => setTimeout(resolve, 5));
    },
    done: ({ resultText }) => end("done", resultText),
    // The traceback's first line is the error itself (JobError leaves it out, so it is said once).
    failed: ({ ename, evalue, traceback }) => end("failed", `${ename}: ${evalue}${traceback[0] === `${ename}: ${evalue}` ? "" : ` (traceback starts ${JSON.stringify(traceback[0])})`}`),
    cancelled: (reason) => end("cancelled", reason),
  };
  return { listener, outcome, spinning };
}

/** Points in arrival order: seq 0, 1, 2… with no gap and no repeat. */
function assertConsecutive(points: MetricPoint[]): void {
  points.forEach((p, i) => assert.equal(p.seq, i, `point ${i} has seq ${p.seq}`));
}

test("a job cancelled in a synchronous loop right after logging: the values it never sent (staged in shared memory) reach the listener before cancelled", async () => {
  const runner = new JobRunner({ log: () => {} });
  try {
    const job = watch();
    runner.submit(1, {
      source: `function spin() {
  jobtracker.log({ loss: 0.5 });
  jobtracker.log({ w: [1, NaN, 3] }, 7);
  jobtracker.log({ loss: 0.25 }, 3);
  console.log("spinning");
  while (true) {}
}`,
      entries: ["spin()"],
    }, job.listener);
    await job.spinning;
    // Well past the 200 ms after which a running job sends by time: a synchronous loop never does.
    await new Promise((resolve) => setTimeout(resolve, 400));
    runner.cancel(1, "enough");
    const { kind, detail, points, batches } = await job.outcome;
    assert.deepEqual([kind, detail], ["cancelled", "enough"]);
    assert.equal(batches, 1, "the three values came from the stage, in one batch");
    assertConsecutive(points);
    assert.deepEqual(points.map((p) => [p.name, p.step, p.value, p.backwards]), [
      ["loss", 0, 0.5, false],
      ["w", 7, [1, NaN, 3], false],
      ["loss", 3, 0.25, false],
    ]);

    // The next job runs on the new thread, with a stage of its own.
    const next = watch();
    runner.submit(2, { source: "function one() { jobtracker.log({ x: 1 }); return 1; }", entries: ["one()"] }, next.listener);
    const after = await next.outcome;
    assert.equal(after.kind, "done");
    assert.deepEqual(after.points.map((p) => [p.seq, p.name, p.value]), [[0, "x", 1]]);
  } finally {
    await runner.close();
  }
});

test("a job stopped at its timeoutMs keeps every value: full batches sent, an array too long for the stage, more names than its name area holds, and the staged rest", async () => {
  const runner = new JobRunner({ log: () => {} });
  try {
    const job = watch();
    const names = Math.ceil(STAGE_NAME_BYTES / 200) + 20;
    const long = STAGE_ARRAY_NUMBERS + 5;
    runner.submit(1, {
      source: `function busy(n: number, names: number, long: number) {
  for (let k = 0; k < n; k++) jobtracker.log({ k, half: k / 2 });
  const big = new Float64Array(long);
  big[long - 1] = 42;
  jobtracker.log({ big });
  // Names of 200 characters: more than the stage's name area holds in one batch.
  for (let i = 0; i < names; i++) jobtracker.log({ [String(i).padStart(200, "n")]: i }, 0);
  jobtracker.log({ last: 1 });
  console.log("spinning");
  while (true) {}
}`,
      entries: [`busy(20000, ${names}, ${long})`],
    }, job.listener, { timeoutMs: 1_500 });
    const { kind, detail, points } = await job.outcome;
    assert.equal(kind, "failed");
    assert.match(detail, /^TimeoutError: job 1 ran past its time limit of 1\.5 s/);
    assertConsecutive(points);
    assert.equal(points.length, 40_000 + 1 + names + 1);
    for (let k = 0; k < 20_000; k++) {
      const [a, b] = [points[2 * k], points[2 * k + 1]];
      assert.ok(a.name === "k" && a.step === k && a.value === k && b.name === "half" && b.value === k / 2, `step ${k}: ${JSON.stringify([a, b])}`);
    }
    const big = points[40_000];
    assert.equal(big.name, "big");
    assert.equal((big.value as number[]).length, long);
    assert.equal((big.value as number[])[long - 1], 42);
    for (let i = 0; i < names; i++) {
      const p = points[40_001 + i];
      assert.deepEqual([p.name, p.value], [String(i).padStart(200, "n"), i]);
    }
    assert.deepEqual([points[points.length - 1].name, points[points.length - 1].step], ["last", 1]);
  } finally {
    await runner.close();
  }
});

test("a job that ends its own thread (process.exit) after logging: its staged values still reach the listener", async () => {
  const runner = new JobRunner({ log: () => {} });
  try {
    const job = watch();
    runner.submit(1, { source: "function quit() { jobtracker.log({ a: 1 }); jobtracker.log({ a: 2 }); process.exit(3); }", entries: ["quit()"] }, job.listener);
    const { kind, detail, points } = await job.outcome;
    assert.equal(kind, "failed");
    assert.match(detail, /^WorkerThreadError: the job thread exited with code 3 \(did the job call process\.exit or run out of memory\?\)$/);
    assert.deepEqual(points.map((p) => [p.seq, p.name, p.value]), [[0, "a", 1], [1, "a", 2]]);
  } finally {
    await runner.close();
  }
});
