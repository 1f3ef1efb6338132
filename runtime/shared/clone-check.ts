// Serializing values that leave a job (its result, checkpointed variables) with v8.serialize, and
// when that fails, saying which part of the value could not be copied instead of V8's terse message.
import { serialize } from "node:v8";

const DATA_ONLY = "values that leave a job must be data structured clone can copy (primitives, arrays, plain objects, Map, Set, Date, RegExp, typed arrays, Error)";

/** v8.serialize(value), or a TypeError naming the first part of `value` that cannot be copied. */
export function serializeOrExplain(value: unknown, name: string, purpose: string): Buffer {
  try {
    return serialize(value);
  } catch (err) {
    const problem = findUncloneable(value, name, new Set());
    const what = problem ?? `${name} could not be copied (${(err as Error).message})`;
    throw new TypeError(`${purpose}: ${what}; ${DATA_ONLY}`, { cause: err });
  }
}

/** Describes the first uncloneable part found, e.g. `result.model.forward is a function (forward)`. */
export function findUncloneable(value: unknown, path: string, seen: Set<object>): string | undefined {
  if (typeof value === "function") {
    const name = (value as { name?: unknown }).name;
    const isClass = /^class[\s{]/.test(Function.prototype.toString.call(value));
    return `${path} is a ${isClass ? "class" : "function"}${typeof name === "string" && name ? ` (${name})` : ""}`;
  }
  if (typeof value === "symbol") return `${path} is a symbol (${String(value.description ?? "")})`;
  if (typeof value !== "object" || value === null) return undefined;
  if (seen.has(value)) return undefined;
  seen.add(value);
  const tag = Object.prototype.toString.call(value).slice(8, -1);
  if (["Promise", "WeakMap", "WeakSet", "WeakRef", "Generator", "AsyncGenerator"].includes(tag)) {
    return `${path} is a ${tag}${tag === "Promise" ? " (await it before returning)" : ""}`;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUncloneable(value[i], `${path}[${i}]`, seen);
      if (found) return found;
    }
    return undefined;
  }
  if (value instanceof Map || tag === "Map") {
    for (const [key, item] of value as Map<unknown, unknown>) {
      const found = findUncloneable(key, `${path} (a key)`, seen) ?? findUncloneable(item, `${path}.get(${describeKey(key)})`, seen);
      if (found) return found;
    }
    return undefined;
  }
  if (value instanceof Set || tag === "Set") {
    for (const item of value as Set<unknown>) {
      const found = findUncloneable(item, `${path} (an element)`, seen);
      if (found) return found;
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    const child = /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
    const found = findUncloneable((value as Record<string, unknown>)[key], child, seen);
    if (found) return found;
  }
  return undefined;
}

function describeKey(key: unknown): string {
  return typeof key === "string" ? JSON.stringify(key) : typeof key === "object" ? "…" : String(key);
}
