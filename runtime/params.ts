// ParamLogger: the job's hyper-parameters, recorded in the notebook and read (only) inside a job.
import { inspect } from "node:util";

/** JSON data: what a parameter may hold. */
export type JsonValue = number | string | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type ParamValues = Record<string, JsonValue>;

const JSON_DATA = "parameters must be JSON data (number, string, boolean, null, arrays, plain objects)";

// Symbol.for so that a ParamLogger from another copy of this module is still recognised.
const PARAM_STATE = Symbol.for("nbjob.ParamLogger.state");

interface ParamState {
  /** Inside a job: values are fixed and a missing name is an error. */
  readOnly: boolean;
}

/** Describes a value that is not JSON data, for error messages ("a function", "an instance of Point"). */
function describeNonJson(value: unknown): string | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : `${value}, which JSON cannot hold`;
    case "undefined":
      return "undefined";
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    case "bigint":
      return "a bigint";
  }
  if (value === null || Array.isArray(value)) return undefined;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return undefined;
  const ctorName = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof ctorName === "string" && ctorName !== "" ? `an instance of ${ctorName}` : "an object that is not a plain object";
}

/**
 * Checks that `value` is JSON data and returns a deep copy of it (so later changes to the
 * caller's array or object do not silently change what was logged). `path` names the value in
 * errors, e.g. `params.lr` or `params.layers[2]`.
 */
export function toJsonValue(value: unknown, path: string, seen: Set<object> = new Set()): JsonValue {
  const problem = describeNonJson(value);
  if (problem !== undefined) throw new TypeError(`${path} was set to ${problem}; ${JSON_DATA}`);
  if (typeof value !== "object" || value === null) return value as JsonValue;
  if (seen.has(value)) throw new TypeError(`${path} refers back to itself (a cycle); ${JSON_DATA} without cycles`);
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((item, i) => toJsonValue(item, `${path}[${i}]`, seen));
    const copy: { [key: string]: JsonValue } = {};
    for (const [key, item] of Object.entries(value)) {
      copy[key] = toJsonValue(item, memberPath(path, key), seen);
    }
    return copy;
  } finally {
    seen.delete(value);
  }
}

/** `path.key`, or `path["odd key"]` when the key is not an identifier. */
export function memberPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

type JsonKind = "null" | "number" | "string" | "boolean" | "array" | "object";

function kindOf(value: JsonValue): JsonKind {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value as JsonKind;
}

/** A value for messages: `a string ("oops")`, `a number (0.1)`, `null`; long values cut short. */
export function describeJson(value: JsonValue): string {
  const kind = kindOf(value);
  if (kind === "null") return "null";
  const text = JSON.stringify(value);
  return `${kind === "array" || kind === "object" ? "an" : "a"} ${kind} (${text.length > 40 ? `${text.slice(0, 37)}...` : text})`;
}

/**
 * Why `value` cannot stand in for `logged` (both JSON data), or undefined when it can. The rule
 * follows how the bundle types params (runtime/bundle-check.ts jsonType: from the values): the
 * value must fit the logged value's type. null on either side is let through (a placeholder, or
 * "none"): the bundle's type-check then decides. An array item may be of any kind the logged
 * array holds (its type is a union of them); an empty logged array (unknown[]) takes anything.
 * Object keys on one side only are left to the type-check too.
 */
function kindProblem(value: JsonValue, logged: JsonValue, path: string, loggedPath: string): string | undefined {
  if (value === null || logged === null) return undefined;
  if (kindOf(value) !== kindOf(logged)) return `${path} is ${describeJson(value)} but ${loggedPath} is ${describeJson(logged)}`;
  if (Array.isArray(value) && Array.isArray(logged)) {
    const kinds = [...new Set(logged.filter((item) => item !== null).map(kindOf))];
    if (kinds.length === 0) return undefined;
    for (const [i, item] of value.entries()) {
      const itemPath = `${path}[${i}]`;
      let first: string | undefined;
      const fits = logged.some((l, j) => {
        if (l === null) return false;
        const problem = kindProblem(item, l, itemPath, `${loggedPath}[${j}]`);
        if (kindOf(item) === kindOf(l)) first ??= problem; // a nested difference says most
        return problem === undefined;
      });
      if (!fits) return first ?? `${itemPath} is ${describeJson(item)} but ${loggedPath} is an array of ${kinds.map((k) => `${k}s`).join(" and ")}`;
    }
    return undefined;
  }
  if (typeof value === "object" && !Array.isArray(value) && typeof logged === "object" && !Array.isArray(logged)) {
    for (const key of Object.keys(value)) {
      if (!(key in logged)) continue;
      const problem = kindProblem(value[key], logged[key], memberPath(path, key), memberPath(loggedPath, key));
      if (problem !== undefined) return problem;
    }
  }
  return undefined;
}

/**
 * Refuses an override, grid or sample value (`path`, as the user wrote it) of another JSON kind
 * than the notebook's parameter (`name`): the job's code is written for the notebook's value, and
 * the difference would otherwise surface as a type error inside a snippet, or not at all
 * (`params.steps + 1` with "5" gives "51").
 */
export function checkSameKind(value: JsonValue, logged: JsonValue, path: string, name: string): void {
  const problem = kindProblem(value, logged, path, memberPath("params", name));
  if (problem !== undefined) {
    throw new TypeError(`${problem}; pass a value of the kind the notebook set, or change ${memberPath("params", name)} in the notebook if it should hold such values`);
  }
}

/** The instance type: the parameters as properties. */
export type ParamLogger<T extends object = ParamValues> = T;

export interface ParamLoggerConstructor {
  /**
   * `new ParamLogger()` accepts any parameter name (`params.x = 5`); `new ParamLogger({ x: 5 })`
   * types the parameters from the initial values. Values must be JSON data.
   */
  // `any`, not JsonValue: `new Point(params.x, params.y)` must type-check on an untyped logger
  // (as in the tutorial); what is stored is still checked to be JSON data at run time.
  new (): ParamLogger<Record<string, any>>;
  new <T extends ParamValues>(initial: T): ParamLogger<T>;
  /** Inside a job: the job's values, read-only; reading a parameter the job was not given is an error. */
  forJob<T extends ParamValues>(values: T): ParamLogger<Readonly<T>>;
  /** The values set so far, as a JSON-ready copy (throws if a value was mutated into non-JSON). */
  values(logger: object): ParamValues;
  /** Whether `value` is a ParamLogger (also one made by another copy of nbjob). */
  isParamLogger(value: unknown): boolean;
  readonly prototype: object;
}

function stateOf(target: object): ParamState | undefined {
  return (target as { [PARAM_STATE]?: ParamState })[PARAM_STATE];
}

function createLogger(initial: unknown, readOnly: boolean, prototype: object): object {
  const target: Record<string | symbol, unknown> = Object.create(prototype) as Record<string | symbol, unknown>;
  Object.defineProperty(target, PARAM_STATE, { value: { readOnly } satisfies ParamState, enumerable: false });
  if (initial !== undefined) {
    if (typeof initial !== "object" || initial === null || Array.isArray(initial) || describeNonJson(initial) !== undefined) {
      throw new TypeError(`new ParamLogger(initial): initial must be a plain object of parameters, e.g. new ParamLogger({ lr: 0.1 }); got ${describeNonJson(initial) ?? (Array.isArray(initial) ? "an array" : typeof initial)}`);
    }
    for (const [key, value] of Object.entries(initial)) target[key] = toJsonValue(value, `params.${key}`);
  }
  return new Proxy(target, {
    set(obj, key, value) {
      if (typeof key === "symbol") return Reflect.set(obj, key, value);
      if (readOnly) throw new TypeError(`params.${key} cannot be set inside a job; parameters are fixed when the job is created (use overrides in createJob)`);
      obj[key] = toJsonValue(value, `params.${key}`);
      return true;
    },
    get(obj, key, receiver) {
      if (typeof key === "symbol" || !readOnly || key in obj) return Reflect.get(obj, key, receiver);
      if (key === "then" || key === "toJSON") return undefined; // probed by await and JSON.stringify
      const given = Object.keys(obj);
      throw new ReferenceError(`params.${key} was not given to this job; its parameters are ${given.length === 0 ? "none" : given.join(", ")}. Set params.${key} in the notebook before creating the job`);
    },
    deleteProperty(obj, key) {
      if (readOnly && typeof key === "string") throw new TypeError(`params.${key} cannot be deleted inside a job`);
      return Reflect.deleteProperty(obj, key);
    },
    defineProperty(obj, key, descriptor) {
      if (typeof key === "string") {
        if (readOnly) throw new TypeError(`params.${key} cannot be set inside a job`);
        if (!("value" in descriptor)) throw new TypeError(`params.${key} must be a plain value, not a getter or setter; ${JSON_DATA}`);
        return Reflect.defineProperty(obj, key, { ...descriptor, value: toJsonValue(descriptor.value, `params.${key}`) });
      }
      return Reflect.defineProperty(obj, key, descriptor);
    },
  });
}

// A function (not a class) so that the constructor can return the Proxy and keep `instanceof`.
function ParamLoggerImpl(this: unknown, initial?: unknown): object {
  if (!new.target) throw new TypeError("ParamLogger must be called with new: const params = new ParamLogger()");
  return createLogger(initial, false, ParamLoggerImpl.prototype as object);
}

Object.defineProperty(ParamLoggerImpl.prototype, inspect.custom, {
  value(this: object) {
    const values = Object.fromEntries(Object.entries(this));
    return `ParamLogger ${inspect(values, { colors: false, depth: 4 })}`;
  },
  enumerable: false,
});

const statics = {
  forJob(values: ParamValues): object {
    return createLogger(values, true, ParamLoggerImpl.prototype as object);
  },
  values(logger: object): ParamValues {
    if (stateOf(logger) === undefined) throw new TypeError("ParamLogger.values(logger): logger must be a ParamLogger (const params = new ParamLogger())");
    const out: ParamValues = {};
    for (const [key, value] of Object.entries(logger)) out[key] = toJsonValue(value, `params.${key}`);
    return out;
  },
  isParamLogger(value: unknown): boolean {
    return typeof value === "object" && value !== null && stateOf(value) !== undefined;
  },
};
Object.assign(ParamLoggerImpl, statics);

export const ParamLogger = ParamLoggerImpl as unknown as ParamLoggerConstructor;
