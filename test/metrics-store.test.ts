// Metric points through the store and back, byte for byte: putMetrics writes each batch's columns
// as PostgreSQL array literals it builds itself (store/metrics.ts), so names that need quoting in
// such a literal (quotes, backslashes, commas, braces, spaces, the word NULL) and numbers at the
// edges of a double (NaN, ±Infinity, -0, the smallest subnormal, 17 significant digits) must come
// back exactly as logged, in order, with their steps and backwards flags.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createJob, openStore, putBundle, putMetrics, readMetrics } from "../store";
import type { MetricPoint, Store } from "../store";
import { TestDatabases } from "./pg-admin";
import { metricsTable } from "../cli/metrics";
import { chartBundle } from "../runtime/analyzer-plot";

const databases = new TestDatabases("metrics_store");
let store: Store;

before(async () => {
  store = openStore({ url: await databases.fresh("points") });
});

after(async () => {
  await store.close();
  await databases.dropAll();
});

test("names needing quotes and numbers at a double's edges come back exactly, in order", async () => {
  const hash = await putBundle(store, { source: "const m = 1;", snippets: [], params: {}, entries: [] });
  const job = await createJob(store, { bundleHash: hash });
  const names = ['say "hi"', "back\\slash", "a,b", "{braces}", "with space", "NULL", "ünï/cødé", "x"];
  const numbers = [NaN, Infinity, -Infinity, -0, 5e-324, 0.1 + 0.2, 1.7976931348623157e308, -123456789.12345679];
  const points: MetricPoint[] = [];
  names.forEach((name, i) => {
    points.push({ seq: points.length, name, step: i, value: numbers[i], backwards: false });
    points.push({ seq: points.length, name, step: 0, value: [numbers[i], 1, -0], backwards: i > 0 });
  });
  await putMetrics(store, job.id, points);

  const { series, lastSeq } = await readMetrics(store, job.id);
  assert.equal(lastSeq, points.length - 1);
  assert.deepEqual(Object.keys(series).sort(), [...names].sort());
  names.forEach((name, i) => {
    const s = series[name];
    assert.deepEqual(s.steps, [i, 0], name);
    // Object.is: -0 stays -0 and NaN is NaN.
    assert.ok(Object.is(s.values[0], numbers[i]), `${name}: ${String(s.values[0])} !== ${String(numbers[i])}`);
    const array = s.values[1] as number[];
    assert.equal(array.length, 3, name);
    assert.ok(Object.is(array[0], numbers[i]) && array[1] === 1 && Object.is(array[2], -0), `${name}: [${array.map(String).join(", ")}]`);
    assert.deepEqual(s.backwards, i > 0 ? [1] : [], name);
  });
});

test("300,000 values: nbjob metrics' table and the chart draw them (no argument list of 300,000)", () => {
  const count = 300_000;
  const steps = Array.from({ length: count }, (_, i) => i);
  const values = steps.map((i) => 1 / (i + 1));
  const table = metricsTable({ loss: { steps, values, backwards: [] } });
  assert.match(table.split("\n")[0], /^loss \(300000 values\)$/);
  assert.equal(table.split("\n").at(-1), "  299999  0.00000333333");

  const bundle = chartBundle([{ name: "loss", points: steps.map((x, i) => ({ x, y: values[i] })) }], "step", "loss", { title: "loss by step" });
  assert.match(bundle["text/plain"] as string, /loss: 300000 points, from 1 to 3\.3e-6 \(min 3\.3e-6, max 1\)/);
  assert.match(bundle["image/svg+xml"] as string, /text-anchor="middle">2\.0e5<\/text>/);
});
