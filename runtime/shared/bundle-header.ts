// The JSON lines in a bundle's header (`// files: {...}`, `// packages: {...}`): written and read
// the same way for each, so the bundle text (and its hash) stays one format.

/** `// KEY: JSON` on one line (JSON escapes every line break but U+2028/U+2029, escaped here). */
export function jsonHeaderLine(key: string, value: unknown): string {
  return `// ${key}: ${JSON.stringify(value).replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029")}`;
}

/** The object a header line's JSON holds, or undefined when it is not valid JSON or not an object. */
export function parseHeaderObject(json: string): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  return parsed as Record<string, unknown>;
}
