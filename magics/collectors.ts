// Looking up a SnippetCollector named in a cell (`@sc`, `%%snip sc`) in the notebook's globals.
import type { MagicContext } from "./types";
import { SnippetCollector } from "../runtime/snippets";
import { usageError } from "./errors";

export type Lookup = { found: true; value: unknown } | { found: false; error: unknown };

/** Evaluates a collector expression (`sc`, `collectors.geometry`) without letting it throw. */
export function lookUp(expression: string, ctx: MagicContext): Lookup {
  try {
    return { found: true, value: ctx.engine.evaluate(expression) };
  } catch (error) {
    return { found: false, error };
  }
}

/** A short description of what a value is, for "X is a number, not a SnippetCollector". */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (typeof value === "function") return "a function";
  if (typeof value !== "object") return `a ${typeof value}`;
  if (Array.isArray(value)) return "an array";
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === "string" && name !== "" && name !== "Object" ? `a ${name}` : "an object";
}

/** Collector identifiers in magics are plain names or dotted paths, never calls. */
export const COLLECTOR_EXPRESSION = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/;

/**
 * The collector `expression` names, or a UsageError saying what it is instead.
 * `where` is a phrase placing the use, e.g. `%%snip on line 1` or `@sc at line 3, column 1`.
 */
export function requireCollector(expression: string, ctx: MagicContext, where: string, line: number): SnippetCollector {
  const result = lookUp(expression, ctx);
  if (!result.found) {
    const detail = result.error instanceof Error && result.error.name !== "ReferenceError" ? ` (${result.error.name}: ${result.error.message})` : "";
    throw usageError(`${where}: "${expression}" is not defined${detail}; create the collector first: const ${expression.split(".")[0]} = new SnippetCollector()`, line);
  }
  if (!SnippetCollector.isCollector(result.value)) {
    throw usageError(`${where}: "${expression}" is ${describeValue(result.value)}, not a SnippetCollector; name a collector made with new SnippetCollector()`, line);
  }
  return result.value;
}
