// A job's result as JSON, for queries (`result < 3`, `result.acc > 0.9`; jobs.result_json). The
// result is stored as v8 bytes, which SQL cannot read, so the worker decodes them once more and
// keeps the JSON form when the value is JSON data: numbers, text, booleans, null, arrays and
// plain objects (a class instance counts by its own fields). Anything else (Map, Date, typed
// arrays, undefined, cycles, text PostgreSQL cannot hold) has no JSON form: undefined.
import { deserialize } from "node:v8";
import { isUnstorableText } from "../store";
import type { Json } from "../store";

/** Results bigger than this are not decoded again (they are rarely what one queries by). */
const MAX_BYTES = 1 << 20;
const MAX_DEPTH = 64;

/** NaN and the infinities as text, as last_metrics keeps them (JSON has no such numbers). */
function jsonNumber(n: number): Json {
  return Number.isFinite(n) ? n : String(n);
}

function toJson(value: unknown, depth: number, seen: Set<object>): Json | undefined {
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "number") return jsonNumber(value);
  if (typeof value === "string") return isUnstorableText(value) ? undefined : value;
  if (typeof value !== "object" || depth > MAX_DEPTH || seen.has(value)) return undefined;
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      const items: Json[] = [];
      for (const item of value) {
        const json = toJson(item, depth + 1, seen);
        if (json === undefined) return undefined;
        items.push(json);
      }
      return items;
    }
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return undefined;
    const out: { [key: string]: Json } = {};
    for (const [key, item] of Object.entries(value)) {
      const json = toJson(item, depth + 1, seen);
      if (json === undefined || isUnstorableText(key)) return undefined;
      out[key] = json;
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** The result's JSON form, or undefined when it has none (or is over 1 MiB as bytes). */
export function resultAsJson(bytes: Buffer): Json | undefined {
  if (bytes.length > MAX_BYTES) return undefined;
  try {
    return toJson(deserialize(bytes), 0, new Set());
  } catch {
    return undefined;
  }
}
