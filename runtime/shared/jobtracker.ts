// `jobtracker` inside a job: registers the variables to checkpoint and takes consistent snapshots.
// Snapshots are encoded here, synchronously, so a checkpoint inside a synchronous loop captures
// the values of that moment; storing them happens elsewhere (the worker's main thread), and the
// sink may block this thread while the store is too far behind (see job-thread.ts).
import { metricNameProblem } from "../../store/metric-name";
import { decodeValue, encodeValue } from "./value-codec";
import type { ClassLookup } from "./value-codec";

/**
 * Custom capture of a checkpointed value: `get` returns it, `set` takes it back on restore.
 * Generic so that `{ set: (v: number) => … }` type-checks; `set` gets what `get` returned.
 */
export interface CheckpointAccessors<T = unknown> {
  get?: () => T;
  set?: (value: T) => void;
}

/** Reads (and writes) a top-level variable of the job by name; throws ReferenceError if there is none. */
export type VariableAccess = (name: string) => Required<CheckpointAccessors>;

/** Receives each snapshot: index and the encoded value of every registered variable. */
export type CheckpointSink = (index: number, values: Record<string, Uint8Array>) => void;

/**
 * One metric a job logs: its name and last step (to flag a step going backwards), and room for
 * the sink's own per-metric data (the worker keeps the metric's id in the batch it is filling),
 * so that neither looks the name up in a map on every call.
 */
export interface MetricSlot {
  readonly name: string;
  /** The last step logged (-1: none yet). */
  last: number;
  /** The sink's: which of its batches `sinkId` is for (-1: none). */
  sinkBatch: number;
  sinkId: number;
}

/**
 * Receives each logged value: its metric, step, value (a number, or a copied array of numbers)
 * and whether the step is smaller than that metric's previous one. Called once per metric.
 */
export type MetricSink = (slot: MetricSlot, step: number, value: number | number[], backwards: boolean) => void;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

interface Registration extends Required<CheckpointAccessors> {
  /** The get the user passed (undefined: by name), to tell a second registration apart. */
  givenGet?: () => unknown;
}

export class WorkerJobTracker {
  private readonly checkpointers = new Map<string, Registration>();
  private nextIndex = 0;
  /**
   * Restored values that no registration or top-level variable took yet: a job may register a
   * checkpointer with { get, set } inside its entry, which runs after the restore. The value is
   * handed to that registration's set when it comes.
   */
  private readonly unclaimed = new Map<string, { index: number; value: unknown }>();

  /**
   * `flusher` resolves once every snapshot handed to `sink` so far is stored (none: nothing to
   * wait for, e.g. a tracker whose snapshots are dropped).
   */
  /** Each metric logged so far (its name passed the check), by name. */
  private readonly slots = new Map<string, MetricSlot>();
  /**
   * The names of recent calls by position, with their metrics: a loop logs the same names in the
   * same order each time, so a name is matched here by identity before any map lookup (log()
   * runs in every iteration of a training loop; its cost is measured in bench/metrics.ts).
   */
  private readonly recentNames: string[] = [];
  private readonly recentSlots: MetricSlot[] = [];
  /** Scratch for log(): the call's values, checked before any is recorded. */
  private callValues: Float64Array<ArrayBuffer> = new Float64Array(8);
  private readonly callArrays: Array<number[] | undefined> = [];
  /** The step a log() without one gets: one more than the last step logged. */
  private nextStep = 0;

  constructor(
    private readonly access: VariableAccess,
    private readonly sink: CheckpointSink,
    private readonly flusher?: () => Promise<void>,
    private readonly metricSink?: MetricSink,
  ) {}

  /**
   * Records numbers by step: `jobtracker.log({ loss, acc }, step?)`. A value is a number (NaN and
   * ±Infinity are kept as such) or an array of numbers (a typed array too). Without `step` it is
   * one more than the step of the previous call (0 at first). A step smaller than the metric's
   * previous one is kept, in the order logged, and flagged. Cheap enough for every iteration of a
   * synchronous loop: values are buffered and stored in batches while the job goes on.
   */
  log(metrics: { [name: string]: number | ArrayLike<number> }, step?: number): void {
    if (typeof metrics !== "object" || metrics === null || Array.isArray(metrics)) {
      throw new TypeError(`jobtracker.log(metrics, step?): metrics must be an object of numbers by name, e.g. { loss: 0.12, acc: 0.9 }; got ${metrics === null ? "null" : Array.isArray(metrics) ? "an array" : typeof metrics}`);
    }
    if (step === undefined) step = this.nextStep;
    else if (typeof step !== "number" || !Number.isSafeInteger(step) || step < 0) {
      throw new TypeError(`jobtracker.log(metrics, step): step must be a non-negative integer (or left out to count on from the last step); got ${typeof step === "number" ? step : typeof step}`);
    }
    // Checked before any is recorded: a bad call records nothing. for…in rather than
    // Object.keys: no array made per call, and V8 reads the values through its key cache.
    const names = this.recentNames;
    const slots = this.recentSlots;
    const arrays = this.callArrays;
    let count = 0;
    for (const name in metrics) {
      if (count === this.callValues.length) this.callValues = growFloat64(this.callValues);
      if (names[count] !== name) {
        slots[count] = this.slotFor(name);
        names[count] = name;
      }
      const value = metrics[name];
      if (typeof value === "number") {
        this.callValues[count] = value;
        arrays[count] = undefined;
      } else {
        arrays[count] = numberArray(name, value);
      }
      count++;
    }
    if (count === 0) throw new TypeError("jobtracker.log(metrics): metrics is empty; give at least one value, e.g. { loss: 0.12 }");
    const sink = this.metricSink;
    const values = this.callValues;
    for (let i = 0; i < count; i++) {
      const slot = slots[i];
      const backwards = step < slot.last;
      slot.last = step;
      if (sink !== undefined) sink(slot, step, arrays[i] ?? values[i], backwards);
    }
    this.nextStep = step + 1;
  }

  /** The metric of that name, made (after checking the name) the first time it is logged. */
  private slotFor(name: string): MetricSlot {
    let slot = this.slots.get(name);
    if (slot === undefined) {
      const problem = metricNameProblem(name);
      if (problem) throw new TypeError(`jobtracker.log(metrics): ${problem}; name metrics like "loss" or "val/acc"`);
      slot = { name, last: -1, sinkBatch: -1, sinkId: -1 };
      this.slots.set(name, slot);
    }
    return slot;
  }

  /** The step a log() without one gets next (recorded with each checkpoint, see continueMetrics). */
  get metricsNextStep(): number {
    return this.nextStep;
  }

  /**
   * A resumed job goes on with the metric series of the checkpoint it resumes from: a log()
   * without a step gets `nextStep` (the checkpoint's step + 1), and a step going backwards is
   * flagged against each metric's last step there (`lastSteps`, by name).
   */
  continueMetrics(nextStep: number, lastSteps: { [name: string]: number }): void {
    this.nextStep = nextStep;
    for (const [name, last] of Object.entries(lastSteps)) this.slotFor(name).last = last;
  }

  /** Registers a variable by name (a top-level `let`, `const` or `var` of the job), or custom accessors. */
  registerCheckpointer<T = unknown>(name: string, accessors: CheckpointAccessors<T> = {}): void {
    if (typeof name !== "string" || !IDENTIFIER.test(name)) {
      throw new TypeError(`jobtracker.registerCheckpointer(name): name must be the name of a top-level variable, e.g. "iteration"; got ${typeof name === "string" ? JSON.stringify(name) : typeof name}`);
    }
    if (typeof accessors !== "object" || accessors === null) throw new TypeError(`jobtracker.registerCheckpointer("${name}", accessors): accessors must be an object { get?, set? }`);
    if (accessors.get !== undefined && typeof accessors.get !== "function") throw new TypeError(`jobtracker.registerCheckpointer("${name}", { get }): get must be a function returning the value to capture`);
    if (accessors.set !== undefined && typeof accessors.set !== "function") throw new TypeError(`jobtracker.registerCheckpointer("${name}", { set }): set must be a function taking the restored value`);
    const earlier = this.checkpointers.get(name);
    if (earlier) {
      // Registering again the same way (a snippet run twice) is harmless; another getter is a conflict.
      if (earlier.givenGet === accessors.get) return;
      throw new Error(`jobtracker.registerCheckpointer("${name}"): ${name} is already registered ${earlier.givenGet ? "with another get function" : "by name"}; each name is registered once (pick another name for the second value)`);
    }
    let byName: Required<CheckpointAccessors> | undefined;
    if (!accessors.get || !accessors.set) {
      try {
        byName = this.access(name);
      } catch (err) {
        throw new ReferenceError(`jobtracker.registerCheckpointer("${name}"): the job has no top-level variable ${name}; declare it with let, const or var at the top level of a snippet, or pass { get, set }`, { cause: err });
      }
    }
    // Stored untyped: a restored value comes from the codec as whatever get() returned when it was captured.
    const given = accessors as CheckpointAccessors;
    const registration = { get: given.get ?? byName!.get, set: given.set ?? byName!.set, givenGet: given.get };
    this.checkpointers.set(name, registration);
    const restored = this.unclaimed.get(name);
    if (restored) {
      this.unclaimed.delete(name);
      assign(name, restored.index, registration, restored.value);
    }
  }

  /** Captures every registered value and returns the checkpoint's index (0, 1, 2, ...). */
  checkpoint(): number {
    if (this.checkpointers.size === 0) {
      throw new Error(`jobtracker.checkpoint(): no variable is registered; call jobtracker.registerCheckpointer("name") for each variable to capture first`);
    }
    const values: Record<string, Uint8Array> = {};
    for (const [name, { get }] of this.checkpointers) {
      values[name] = encodeValue(get(), name, `jobtracker.checkpoint() cannot capture the variable ${name}`);
    }
    const index = this.nextIndex;
    this.sink(index, values);
    this.nextIndex++;
    return index;
  }

  /** Resolves once every snapshot taken so far is stored. */
  async flush(): Promise<void> {
    await this.flusher?.();
  }

  /**
   * Sets the variables from checkpoint `index`'s values (resume, analysis): registered names
   * through their setter, other names by assigning the top-level variable of that name if there
   * is one, else through the setter of a registration that comes later (one made in the entry);
   * a registered name missing from `values` keeps its value. The next checkpoint() returns
   * index + 1.
   */
  restore(index: number, values: Record<string, Uint8Array>, classes: ClassLookup): void {
    if (!Number.isInteger(index) || index < 0) throw new TypeError(`jobtracker.restore(index): index must be a non-negative integer; got ${index}`);
    for (const [name, bytes] of Object.entries(values)) {
      let value: unknown;
      try {
        value = decodeValue(bytes, classes);
      } catch (err) {
        throw new TypeError(`cannot restore ${name} from checkpoint ${index}: ${(err as Error).message}`, { cause: err });
      }
      let accessors: Required<CheckpointAccessors> | undefined = this.checkpointers.get(name);
      if (!accessors && IDENTIFIER.test(name)) {
        try {
          accessors = this.access(name);
        } catch {
          this.unclaimed.set(name, { index, value }); // for a registration still to come
          continue;
        }
      }
      if (accessors) assign(name, index, accessors, value);
    }
    this.nextIndex = index + 1;
  }

  /** Names registered so far, in order. */
  get registered(): string[] {
    return [...this.checkpointers.keys()];
  }
}

function growFloat64(array: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> {
  const grown = new Float64Array(array.length * 2);
  grown.set(array);
  return grown;
}

/** A metric's array value as a plain array of numbers (a copy: the job may change its own array afterwards). */
function numberArray(name: string, value: unknown): number[] {
  // A typed array of bigints passes here and is refused by its first element below.
  const isArray = Array.isArray(value) || (ArrayBuffer.isView(value) && Object.prototype.toString.call(value) !== "[object DataView]");
  if (!isArray) {
    throw new TypeError(`jobtracker.log(metrics): metric ${name} must be a number or an array of numbers; got ${describe(value)}`);
  }
  const items = value as ArrayLike<unknown>;
  const copy = new Array<number>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (typeof item !== "number") throw new TypeError(`jobtracker.log(metrics): metric ${name}[${i}] must be a number; got ${describe(item)}`);
    copy[i] = item;
  }
  return copy;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === "object") return Object.prototype.toString.call(value).slice(8, -1).replace(/^Object$/, "an object");
  return typeof value;
}

/**
 * Sets a restored value. A `const` cannot be assigned, so a const array, typed array, Map, Set or
 * plain object is filled in place instead (the usual `const weights = new Float64Array(n)`).
 */
function assign(name: string, index: number, accessors: Required<CheckpointAccessors>, value: unknown): void {
  try {
    accessors.set(value);
    return;
  } catch (err) {
    // The error comes from the job's realm: not `instanceof Error` here.
    if (!/constant variable/.test(String((err as { message?: unknown } | null)?.message))) throw err;
    if (!fillInPlace(accessors.get(), value)) {
      throw new TypeError(`cannot restore ${name} from checkpoint ${index}: it is declared with const and its value cannot be refilled in place; declare it with let, or register it with { get, set }`, { cause: err });
    }
  }
}

function fillInPlace(target: unknown, value: unknown): boolean {
  if (typeof target !== "object" || target === null || typeof value !== "object" || value === null) return false;
  const tag = (v: object) => Object.prototype.toString.call(v).slice(8, -1);
  if (ArrayBuffer.isView(target) && ArrayBuffer.isView(value) && tag(target) === tag(value) && !(target instanceof DataView)) {
    const t = target as unknown as { length: number; set(source: ArrayLike<unknown>): void };
    if (t.length !== (value as unknown as { length: number }).length) return false;
    t.set(value as unknown as ArrayLike<unknown>);
    return true;
  }
  if (Array.isArray(target) && Array.isArray(value)) {
    target.length = value.length;
    for (let i = 0; i < value.length; i++) target[i] = (value as unknown[])[i];
    return true;
  }
  if (tag(target) === "Map" && tag(value) === "Map") {
    const map = target as Map<unknown, unknown>;
    map.clear();
    for (const [k, v] of value as Map<unknown, unknown>) map.set(k, v);
    return true;
  }
  if (tag(target) === "Set" && tag(value) === "Set") {
    const set = target as Set<unknown>;
    set.clear();
    for (const v of value as Set<unknown>) set.add(v);
    return true;
  }
  if (tag(target) === "Object" && Object.getPrototypeOf(target) === Object.getPrototypeOf(value)) {
    for (const key of Object.keys(target)) delete (target as Record<string, unknown>)[key];
    Object.assign(target, value);
    return true;
  }
  return false;
}
