// `nbjob run -f FILE`: reads a papermill-style parameters file (a YAML or JSON mapping of
// name -> value). YAML goes through the `yaml` package (a well-kept parser, rather than our own);
// JSON through JSON.parse, so a .json file means exactly what JSON says.
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { UsageError } from "./args";

export interface FileParameter {
  name: string;
  value: unknown;
}

export const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** "line 3, column 5" of a 0-based offset, as JSON.parse's messages only give the offset on Node 20. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split("\n");
  return `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

function parseJson(path: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const offset = /position (\d+)/.exec(message);
    const where = offset ? lineColumn(text, Number(offset[1])) : undefined;
    throw new UsageError(`-f ${path}: not valid JSON${where ? ` at ${where}` : ""} (${message}); fix the file or use a .yaml file`);
  }
}

function parseYamlText(path: string, text: string): unknown {
  try {
    // uniqueKeys (the default) makes a repeated name an error instead of a silent last-wins.
    return parseYaml(text);
  } catch (err) {
    if (!(err instanceof YAMLParseError)) throw err;
    const at = err.linePos?.[0];
    const headline = err.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    throw new UsageError(`-f ${path}: not valid YAML${at ? ` at line ${at.line}, column ${at.col}` : ""} (${headline}); fix the file`);
  }
}

/** YAML can produce values JSON has no form for (.inf, !!binary, ...): they cannot become code. */
function checkJsonValue(path: string, where: string, value: unknown): void {
  if (value === null || typeof value === "string" || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (Number.isFinite(value)) return;
    throw new UsageError(`-f ${path}: ${where} is ${value}, which JSON cannot hold; use a finite number or a string`);
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => checkJsonValue(path, `${where}[${i}]`, item));
    return;
  }
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [key, item] of Object.entries(value)) checkJsonValue(path, `${where}.${key}`, item);
    return;
  }
  const kind = typeof value === "object" ? (value as object).constructor?.name ?? "object" : typeof value;
  throw new UsageError(`-f ${path}: ${where} is a ${kind}, not a JSON value; use numbers, strings, booleans, null, lists and mappings`);
}

/**
 * The parameters in FILE, in file order. The format is chosen by extension (.json, .yaml, .yml),
 * else by content: a file starting with "{" is JSON, anything else YAML.
 */
export function readParametersFile(path: string): FileParameter[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`-f ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); pass the path of a .yaml or .json parameters file`);
  }
  const ext = extname(path).toLowerCase();
  const isJson = ext === ".json" || (ext !== ".yaml" && ext !== ".yml" && text.trimStart().startsWith("{"));
  const data = isJson ? parseJson(path, text) : parseYamlText(path, text);
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    const got = data === null || data === undefined ? "nothing" : Array.isArray(data) ? "a list" : `a ${typeof data}`;
    throw new UsageError(`-f ${path}: expected a mapping of parameter names to values at the top level, got ${got}; write e.g. ${isJson ? '{"lr": 0.01}' : "lr: 0.01"}`);
  }
  return Object.entries(data).map(([name, value]) => {
    if (!IDENTIFIER.test(name)) throw new UsageError(`-f ${path}: "${name}" is not a valid TypeScript identifier; use letters, digits, _ and $`);
    checkJsonValue(path, name, value);
    return { name, value };
  });
}
