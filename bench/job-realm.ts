// Benchmark of CPU-bound job code: the same loops run as plain Node functions (the baseline), as a
// job on a real job thread (JobRunner, globals bound lexically before the program runs: as consts
// where the program never assigns them), as a job whose built-ins are all lets (as before
// 2026-12-07; a program that mentions eval still gets them so), and in a job context without any
// binding (how jobs ran before that: every read of Math, Float64Array… goes through the context's
// interceptor). Each loop times itself (best of 3), so compiling and
// starting the job are not counted. Prints milliseconds and ratios against plain Node; asserts nothing.
//   npx tsc -p tsconfig.json && node dist/bench/job-realm.js
import { deserialize } from "node:v8";
import * as vm from "node:vm";
import { JobContext } from "../worker/job-context";
import { JobRunner } from "../worker/job-runner";

/** The loops, as one source that runs unchanged in Node and as a job; each returns [ms, checksum]. */
const LOOPS = `
function sqrtSum() {
  const t0 = performance.now();
  let s = 0;
  for (let i = 0; i < 2e7; i++) s += Math.sqrt(i);
  return [performance.now() - t0, s];
}
// Several Math calls per step: V8 inlines them only when it knows Math is the built-in.
function mathCalls() {
  const t0 = performance.now();
  let s = 0;
  for (let r = 0; r < 500; r++) for (let j = 0; j < 4096; j++) s += Math.sqrt(Math.abs(Math.sin(j) * r));
  return [performance.now() - t0, Math.round(s)];
}
// Logistic regression by SGD over a Float64Array dataset: the shape of a small training loop.
function sgd() {
  const n = 4000, d = 16, epochs = 40;
  const x = new Float64Array(n * d), y = new Float64Array(n), w = new Float64Array(d);
  let seed = 1;
  const rand = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  for (let i = 0; i < n * d; i++) x[i] = rand() - 0.5;
  for (let i = 0; i < n; i++) y[i] = x[i * d] + x[i * d + 1] > 0 ? 1 : 0;
  const t0 = performance.now();
  for (let e = 0; e < epochs; e++) {
    for (let i = 0; i < n; i++) {
      let z = 0;
      for (let j = 0; j < d; j++) z += w[j] * x[i * d + j];
      const g = 1 / (1 + Math.exp(-z)) - y[i];
      for (let j = 0; j < d; j++) w[j] -= 0.05 * g * x[i * d + j];
    }
  }
  return [performance.now() - t0, Math.round(w[0] * 1e6)];
}
function best(fn) {
  let ms = Infinity, check;
  for (let round = 0; round < 3; round++) { const [t, c] = fn(); ms = Math.min(ms, t); check = c; }
  return [ms, check];
}
`;
const CALL = "[best(sqrtSum), best(mathCalls), best(sgd)]";
type Figures = Array<[number, number]>;

function plain(): Figures {
  return new Function(`${LOOPS}\nreturn ${CALL};`)() as Figures;
}

/** A job context as jobs had before: nothing bound, every global read goes through the interceptor. */
function unbound(): Figures {
  const job = new JobContext();
  try {
    job.begin({}, { write: () => {}, checkpoint: () => {} });
    return vm.runInContext(`${LOOPS}\n${CALL}`, job.context) as Figures;
  } finally {
    job.dispose();
  }
}

/** `allLets`: the program mentions eval, so every built-in it sees is bound as a let. */
async function onJobThread(allLets = false): Promise<Figures> {
  const runner = new JobRunner({ log: () => {} });
  try {
    return await new Promise<Figures>((resolve, reject) => {
      runner.submit("bench-job-realm", { source: `// @ts-nocheck\n${LOOPS}${allLets ? "\nconst mentionsEval = typeof eval;\n" : ""}`, entries: [CALL] }, {
        started: () => {},
        stream: () => {},
        done: ({ result }) => resolve(deserialize(result) as Figures),
        failed: ({ ename, evalue }) => reject(new Error(`${ename}: ${evalue}`)),
        cancelled: (reason) => reject(new Error(reason)),
      });
    });
  } finally {
    await runner.close();
  }
}

async function main(): Promise<void> {
  const base = plain();
  const job = await onJobThread();
  const lets = await onJobThread(true);
  const before = unbound();
  const names = ["Math.sqrt sum, 2e7 iterations", "sqrt(abs(sin)) over 500 x 4096", "logistic-regression SGD, Float64Array 4000x16, 40 epochs"];
  for (let i = 0; i < names.length; i++) {
    if ([job, lets, before].some((figures) => figures[i][1] !== base[i][1])) throw new Error(`${names[i]}: the checksums differ (${base[i][1]}, ${job[i][1]}, ${lets[i][1]}, ${before[i][1]})`);
    const ms = (n: number) => `${n.toFixed(1)} ms`;
    console.log(`${names[i]}:`);
    console.log(`  plain Node            ${ms(base[i][0])}`);
    console.log(`  job (globals bound)   ${ms(job[i][0])}   ${(job[i][0] / base[i][0]).toFixed(2)}x plain`);
    console.log(`  job, built-ins lets   ${ms(lets[i][0])}   ${(lets[i][0] / base[i][0]).toFixed(2)}x plain`);
    console.log(`  job context unbound   ${ms(before[i][0])}   ${(before[i][0] / base[i][0]).toFixed(2)}x plain`);
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exitCode = 1;
});
