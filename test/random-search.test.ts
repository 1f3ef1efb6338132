// Random search's draws as a pure function (issue 19 point 4): within the ranges, the same seed
// gives the same values, another seed other values, a larger count extends rather than redraws,
// and a bad spec is refused naming the field. No store or workers: test/job-groups.test.ts runs
// a random-search sweep on real workers.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkSample, describeSample, sampleParams } from "../runtime/random-search";

const SPEC = {
  lr: { logUniform: [1e-4, 1e-1] },
  momentum: { uniform: [0.5, 0.99] },
  steps: { int: [10, 20] },
  layers: [1, 2, 3],
  opt: ["sgd", { name: "adam", beta: 0.9 }],
};

describe("random search draws", () => {
  test("each value is within its range or among its choices, and every choice and integer turns up", () => {
    const draws = sampleParams(checkSample(SPEC, 2000, 7));
    assert.equal(draws.length, 2000);
    const steps = new Set<number>();
    const layers = new Set<number>();
    let lowDecade = 0;
    for (const d of draws) {
      assert.deepEqual(Object.keys(d), ["layers", "lr", "momentum", "opt", "steps"]);
      const lr = d.lr as number;
      assert.ok(lr >= 1e-4 && lr <= 1e-1, `lr ${lr}`);
      if (lr < 1e-3) lowDecade++;
      const m = d.momentum as number;
      assert.ok(m >= 0.5 && m < 0.99, `momentum ${m}`);
      assert.ok(Number.isInteger(d.steps) && (d.steps as number) >= 10 && (d.steps as number) <= 20, `steps ${d.steps}`);
      steps.add(d.steps as number);
      assert.ok([1, 2, 3].includes(d.layers as number));
      layers.add(d.layers as number);
      assert.ok(d.opt === "sgd" || JSON.stringify(d.opt) === '{"name":"adam","beta":0.9}');
    }
    // Both ends of the inclusive integer range, every choice.
    assert.deepEqual([...steps].sort((a, b) => a - b), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    assert.deepEqual([...layers].sort(), [1, 2, 3]);
    // Log-uniform: each of the three decades holds about a third (a uniform draw would put 0.9% in the lowest).
    assert.ok(lowDecade > 2000 / 3 - 120 && lowDecade < 2000 / 3 + 120, `lowest decade ${lowDecade}`);
  });

  test("the same seed gives the same values; another seed other values; a larger count extends", () => {
    const a = sampleParams(checkSample(SPEC, 12, 7));
    const b = sampleParams(checkSample(structuredClone(SPEC), 12, 7));
    assert.deepEqual(a, b);
    // The order the spec's keys were written in does not matter (the group's jsonb does not keep it).
    const { opt, layers, ...rest } = SPEC;
    assert.deepEqual(sampleParams(checkSample({ opt, ...rest, layers }, 12, 7)), a);
    const other = sampleParams(checkSample(SPEC, 12, 8));
    assert.notDeepEqual(other, a);
    // Not one lr in common (doubles drawn from 53 random bits).
    assert.equal(other.filter((d) => a.some((e) => e.lr === d.lr)).length, 0);
    assert.deepEqual(sampleParams(checkSample(SPEC, 20, 7)).slice(0, 12), a);
    // Large and negative seeds are seeds too (both halves of the integer count).
    const big = sampleParams(checkSample(SPEC, 3, 2 ** 40 + 7));
    const negative = sampleParams(checkSample(SPEC, 3, -7));
    assert.notDeepEqual(big, a.slice(0, 3));
    assert.notDeepEqual(negative, a.slice(0, 3));
    assert.deepEqual(sampleParams(checkSample(SPEC, 3, -7)), negative);
    // No seed: one is chosen and kept, so the draws can be made again.
    const chosen = checkSample(SPEC, 5, undefined);
    assert.ok(Number.isSafeInteger(chosen.seed));
    assert.deepEqual(sampleParams(chosen), sampleParams(checkSample(SPEC, 5, chosen.seed)));
  });

  test("the settings are a copy, and describe themselves in one line", () => {
    const layers = [1, 2, 3];
    const settings = checkSample({ lr: { logUniform: [1e-4, 1e-1] }, layers }, 20, 7);
    layers.push(99);
    assert.deepEqual(settings, { spec: { layers: [1, 2, 3], lr: { logUniform: [1e-4, 1e-1] } }, count: 20, seed: 7 });
    assert.equal(describeSample(settings), "layers in [1,2,3], lr ~ logUniform(0.0001, 0.1); 20 draws, seed 7");
  });

  test("bad specs, counts and seeds are TypeErrors naming the field", () => {
    const refused = (spec: unknown, count: unknown, seed: unknown, message: RegExp) =>
      assert.throws(() => checkSample(spec, count, seed), (err: Error) => err instanceof TypeError && message.test(err.message), `${JSON.stringify(spec)} ${String(count)} ${String(seed)}`);
    refused({ lr: { uniform: [0.1, 0.1] } }, 5, 1, /^sample\.lr\.uniform is an empty range \[0\.1, 0\.1\]: a must be less than b/);
    refused({ lr: { logUniform: [0.1, 0.01] } }, 5, 1, /^sample\.lr\.logUniform is an empty range/);
    refused({ lr: { logUniform: [0, 0.1] } }, 5, 1, /^sample\.lr\.logUniform must be \[a, b\] with 0 < a/);
    refused({ lr: { logUniform: [-1, 0.1] } }, 5, 1, /^sample\.lr\.logUniform must be \[a, b\] with 0 < a/);
    refused({ n: { int: [3, 1] } }, 5, 1, /^sample\.n\.int is an empty range \[3, 1\]/);
    refused({ n: { int: [1, 2.5] } }, 5, 1, /^sample\.n\.int must be \[a, b\], two integers/);
    refused({ lr: { uniform: [0, Infinity] } }, 5, 1, /^sample\.lr\.uniform must be \[a, b\], two finite numbers/);
    refused({ lr: { uniform: [0] } }, 5, 1, /^sample\.lr\.uniform must be \[a, b\]/);
    refused({ lr: { normal: [0, 1] } }, 5, 1, /^sample\.lr must be \{ uniform: \[a, b\] \}, \{ logUniform: \[a, b\] \}, \{ int: \[a, b\] \} or a non-empty array/);
    refused({ lr: { uniform: [0, 1], int: [0, 1] } }, 5, 1, /^sample\.lr must be /);
    refused({ lr: 0.1 }, 5, 1, /^sample\.lr must be /);
    refused({ layers: [] }, 5, 1, /^sample\.layers is an empty array/);
    refused({ layers: [1, () => 2] }, 5, 1, /^sample\.layers\[1\] was set to a function/);
    refused({}, 5, 1, /^sample must name parameters/);
    refused([1, 2], 5, 1, /^sample must name parameters/);
    for (const count of [0, -3, 2.5, NaN, "20"]) refused({ layers: [1] }, count, 1, /^count must be a positive integer/);
    refused({ layers: [1] }, undefined, 1, /^count is required with sample/);
    for (const seed of [1.5, NaN, "7", 2 ** 60]) refused({ layers: [1] }, 5, seed, /^seed must be an integer/);
  });
});
