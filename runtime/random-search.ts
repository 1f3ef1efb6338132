// Random search (issue 19 point 4): a sweep's parameter values drawn from ranges and choices,
// reproducible from a seed. Pure: the same spec, count and seed give the same values, so a
// sweep's group stores only { spec, count, seed } and the draws can be made again from it.
// Parameters are drawn in sorted name order, not the order the spec was written in: jsonb does
// not keep key order, and the spec read back from the group must draw the same values.
//
// The generator is our own sfc32 (Chris Doty-Humphrey's "small fast counting" generator, from
// PractRand): a few lines, no dependency, 128 bits of state, passes PractRand far beyond the
// few thousand numbers a sweep draws. Math.random cannot be seeded.
import { inspect } from "node:util";
import { toJsonValue } from "./params";
import type { JsonValue } from "./params";

/**
 * How one parameter is drawn: a range [a, b], or a choice among the array's values. (Ranges are
 * typed number[] so that a spec kept in a variable type-checks; they are checked to be [a, b].)
 */
export type SampleDistribution =
  /** A number in [a, b), every value equally likely. */
  | { uniform: readonly number[] }
  /** A number from a to b whose logarithm is uniform (learning rates, weight decays); 0 < a. */
  | { logUniform: readonly number[] }
  /** An integer from a to b, both included. */
  | { int: readonly number[] }
  /** One of these values, each equally likely. */
  | readonly unknown[];

/** Parameter name -> how its value is drawn, for createJobs' `sample`. */
export type SampleSpec = Record<string, SampleDistribution>;

/** A random search as stored with its group: the spec, how many draws, the seed. */
export interface SampleSettings {
  spec: { [name: string]: { uniform: [number, number] } | { logUniform: [number, number] } | { int: [number, number] } | JsonValue[] };
  count: number;
  seed: number;
}

const KINDS = ["uniform", "logUniform", "int"] as const;
type RangeKind = (typeof KINDS)[number];

const SHAPES = "{ uniform: [a, b] }, { logUniform: [a, b] }, { int: [a, b] } or a non-empty array of values to choose from";

/**
 * Checks a spec, count and seed as the user wrote them and returns the settings to store (a
 * deep copy: later changes to the caller's arrays change nothing). Errors are TypeErrors naming
 * the field (`sample.lr`, `count`, `seed`). `seed` undefined: a random one is chosen (and stored).
 */
export function checkSample(spec: unknown, count: unknown, seed: unknown): SampleSettings {
  if (typeof spec !== "object" || spec === null || Array.isArray(spec) || Object.keys(spec).length === 0) {
    throw new TypeError(`sample must name parameters and how to draw each, e.g. { sample: { lr: { logUniform: [1e-4, 1e-1] }, layers: [1, 2, 3] }, count: 20, seed: 7 }; got ${inspect(spec, { depth: 0 })}`);
  }
  const checked: SampleSettings["spec"] = {};
  for (const key of Object.keys(spec).sort()) checked[key] = checkDistribution(`sample.${key}`, (spec as Record<string, unknown>)[key]);
  if (count === undefined) throw new TypeError("count is required with sample: how many jobs to draw, e.g. { sample: {...}, count: 20 }");
  if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 1) {
    throw new TypeError(`count must be a positive integer (how many jobs to draw); got ${inspect(count)}`);
  }
  if (seed !== undefined && (typeof seed !== "number" || !Number.isSafeInteger(seed))) {
    throw new TypeError(`seed must be an integer (e.g. 7; any safe integer, negative too); got ${inspect(seed)}`);
  }
  return { spec: checked, count, seed: seed === undefined ? randomSeed() : seed };
}

function checkDistribution(path: string, dist: unknown): SettingsValue {
  if (Array.isArray(dist)) {
    if (dist.length === 0) throw new TypeError(`${path} is an empty array: a choice needs at least one value to choose from`);
    return dist.map((value, i) => toJsonValue(value, `${path}[${i}]`));
  }
  const keys = typeof dist === "object" && dist !== null ? Object.keys(dist) : [];
  if (keys.length !== 1 || !(KINDS as readonly string[]).includes(keys[0])) {
    throw new TypeError(`${path} must be ${SHAPES}; got ${inspect(dist, { depth: 1, breakLength: Infinity })}`);
  }
  const kind = keys[0] as RangeKind;
  const range = (dist as Record<string, unknown>)[kind];
  if (!Array.isArray(range) || range.length !== 2 || !range.every((n) => typeof n === "number" && Number.isFinite(n))) {
    throw new TypeError(`${path}.${kind} must be [a, b], two finite numbers; got ${inspect(range, { breakLength: Infinity })}`);
  }
  const [a, b] = range as [number, number];
  if (kind === "int" && !(Number.isSafeInteger(a) && Number.isSafeInteger(b))) {
    throw new TypeError(`${path}.int must be [a, b], two integers; got [${a}, ${b}]`);
  }
  if (!(a < b)) throw new TypeError(`${path}.${kind} is an empty range [${a}, ${b}]: a must be less than b (for one value, set the parameter itself)`);
  if (kind === "logUniform" && !(a > 0)) throw new TypeError(`${path}.logUniform must be [a, b] with 0 < a (a logarithm's range); got [${a}, ${b}]`);
  return { [kind]: [a, b] } as SettingsValue;
}

type SettingsValue = SampleSettings["spec"][string];

/** A seed for a sweep that gave none: 32 random bits, stored so the sweep can be drawn again. */
function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

/**
 * sfc32 seeded from a safe integer (its low and high 32 bits), as PractRand seeds it: the
 * first 12 outputs are dropped so that nearby seeds (7, 8) have drifted apart.
 */
function sfc32(seed: number): () => number {
  let a = 0;
  let b = seed >>> 0;
  let c = Math.floor(seed / 2 ** 32) >>> 0;
  let d = 1;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

/** A float in [0, 1) with all 53 bits of a double filled (two 32-bit outputs). */
function unitFloat(next: () => number): number {
  return ((next() >>> 5) * 2 ** 26 + (next() >>> 6)) / 2 ** 53;
}

/** The spec's parameters in the order they are drawn (and shown): sorted by name. */
export function sampleKeys(settings: SampleSettings): string[] {
  return Object.keys(settings.spec).sort();
}

/**
 * The `count` draws of a random search: for each job in turn, one value per parameter in
 * sampleKeys' order. The same settings give the same values; a larger count gives the same first
 * values followed by more (the sweep is extended, not redrawn).
 */
export function sampleParams(settings: SampleSettings): Record<string, JsonValue>[] {
  const next = sfc32(settings.seed);
  const keys = sampleKeys(settings);
  const draws: Record<string, JsonValue>[] = [];
  for (let i = 0; i < settings.count; i++) {
    const values: Record<string, JsonValue> = {};
    for (const key of keys) values[key] = draw(settings.spec[key], next);
    draws.push(values);
  }
  return draws;
}

function draw(dist: SettingsValue, next: () => number): JsonValue {
  const u = unitFloat(next);
  if (Array.isArray(dist)) return dist[Math.floor(u * dist.length)];
  if ("uniform" in dist) {
    const [a, b] = dist.uniform;
    // a + (b - a) * u can round up to b when b - a is far larger than a; keep the range half-open.
    const x = a + (b - a) * u;
    return x < b ? x : a;
  }
  if ("logUniform" in dist) {
    const [a, b] = dist.logUniform;
    const x = Math.exp(Math.log(a) + (Math.log(b) - Math.log(a)) * u);
    // exp(log(a)) need not be a exactly: clamp to the range the user wrote.
    return Math.min(Math.max(x, a), b);
  }
  const [a, b] = dist.int;
  return a + Math.floor(u * (b - a + 1));
}

/** The spec as one line: `layers in [1,2,3], lr ~ logUniform(0.0001, 0.1); 20 draws, seed 7`. */
export function describeSample(settings: SampleSettings): string {
  const parts = sampleKeys(settings).map((key) => {
    const dist = settings.spec[key];
    if (Array.isArray(dist)) return `${key} in ${JSON.stringify(dist)}`;
    const [kind, [a, b]] = Object.entries(dist)[0] as [RangeKind, [number, number]];
    return `${key} ~ ${kind}(${a}, ${b})`;
  });
  return `${parts.join(", ")}; ${settings.count} draw${settings.count === 1 ? "" : "s"}, seed ${settings.seed}`;
}
