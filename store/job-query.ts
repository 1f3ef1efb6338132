// Finding jobs by what they were given and what they gave (issue 19 point 2): conditions on
// parameters (jobs.params, copied from the bundle), last metric values (jobs.last_metrics),
// the result (jobs.result_json), status, name, tag, group and creation time, an order and a
// page. db.jobs({ ... }) and `nbjob jobs --where` (where.ts) both build a JobCondition tree;
// compileJobQuery turns it into SQL in which every value AND every field name is a parameter
// ($1, $2, ...): a field's path goes as a text[] to `#>`, never into the SQL text. Which indexes
// serve which condition, and why, is explained in migrations/000013.sql.
//
// Semantics (documented for users in db.jobs' TSDoc):
//   eq, ne, in   JSON equality (1 = 1.0; "adam" = "adam"); ne and "not in" also match jobs
//                without the field (as MongoDB's $ne does)
//   lt lte gt gte  numbers only: a job whose field is not a number (missing, text, "NaN") does
//                not match; on `created`, dates
//   exists       true: the field is there (JSON null counts); false: it is not
//   a path       params.model.layers (db.jobs: params: { "model.layers": ... }): each dot goes one
//                level into a nested object; result.NAME the same. Metrics are flat: in
//                metrics.layer0.grad_norm (db.jobs: metrics: { "layer0.grad_norm": ... }) all of
//                it after "metrics." is one metric's name (any name jobtracker.log accepts)
import type { Db } from "./db";
import { StoreError } from "./errors";
import { sha256 } from "./hash";
import { LISTED_COLUMNS, isJobStatus } from "./jobs";
import type { DbJobListed } from "./jobs";
import { metricNameProblem } from "./metric-name";
import { checkStorableText } from "./text";
import type { Json } from "./types";
import { JOB_STATUSES } from "./types";

export type Operator = "eq" | "ne" | "lt" | "lte" | "gt" | "gte" | "in" | "exists";
export const OPERATORS: readonly Operator[] = ["eq", "ne", "lt", "lte", "gt", "gte", "in", "exists"];
export type ScalarValue = number | string | boolean | null;

/** Where a condition looks: a JSON column at a path, or one of the job's own columns. */
export type FieldRef =
  | { kind: "params" | "metrics" | "result"; path: string[] }
  | { kind: "status" | "name" | "tag" | "group" | "created" | "id" };

export interface Condition {
  field: FieldRef;
  op: Operator;
  /** in: a list; exists: a boolean; created: a Date or date text. */
  value: ScalarValue | ScalarValue[] | Date;
}
export type JobCondition = Condition | { and: JobCondition[] } | { or: JobCondition[] };

export interface JobQuery {
  where?: JobCondition;
  /** "created" (oldest first), "-created" (newest first, the default), "metrics.loss", "-params.lr", "result", "id", "name", "status". */
  orderBy?: string;
  /** Default 50. */
  limit?: number;
  offset?: number;
}

/** A listed job plus what queries are about. */
export type DbJobQueried = DbJobListed & { params: { [name: string]: Json }; last_metrics: { [name: string]: Json }; result_json: Json | null };

export const FIELDS_HELP = "params.NAME, metrics.NAME, result, result.NAME, status, name, tag, group, created or id";
const SEGMENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** A query's mistake: the message names the field or operator and what is allowed. */
export class JobQueryError extends StoreError {
  override name = "JobQueryError";
}

/**
 * `params.lr`, `metrics.loss`, `result.acc`, `status` ... as a FieldRef; an unknown field is an
 * error naming it. A metric's name is everything after "metrics." (metrics.layer0.grad_norm,
 * metrics.val/loss): metrics are flat, while params and result are nested objects.
 */
export function fieldRef(text: string): FieldRef {
  const [head, ...path] = text.split(".");
  if (head === "metrics" && path.length > 0) {
    const name = text.slice("metrics.".length);
    const problem = metricNameProblem(name);
    if (problem) throw new JobQueryError(`unknown field ${JSON.stringify(text)}: ${problem}`);
    return { kind: "metrics", path: [name] };
  }
  if (head === "params" || head === "metrics") {
    if (path.length === 0) throw new JobQueryError(`${head} needs a name: ${head}.NAME, e.g. ${head === "params" ? "params.lr" : "metrics.loss"}`);
    if (!path.every((segment) => SEGMENT.test(segment))) throw new JobQueryError(`unknown field ${JSON.stringify(text)}: names are letters, digits, _ and $`);
    return { kind: head, path };
  }
  if (head === "result") {
    if (!path.every((segment) => SEGMENT.test(segment))) throw new JobQueryError(`unknown field ${JSON.stringify(text)}: names are letters, digits, _ and $`);
    return { kind: "result", path };
  }
  if (path.length === 0 && ["status", "name", "tag", "group", "created", "id"].includes(head)) return { kind: head as "status" };
  throw new JobQueryError(`unknown field ${JSON.stringify(text)}; the fields are ${FIELDS_HELP}`);
}

function fieldName(field: FieldRef): string {
  return "path" in field ? [field.kind, ...field.path].join(".") : field.kind;
}

function describe(value: unknown): string {
  return value instanceof Date ? value.toISOString() : JSON.stringify(value) ?? String(value);
}

// ---------------------------------------------------------------- db.jobs' object form

/** An operator object ({ lt: 0.01, gte: 0.001 }) or a plain value (= eq). */
export type ValueCondition = ScalarValue | { eq?: ScalarValue; ne?: ScalarValue; lt?: number; lte?: number; gt?: number; gte?: number; in?: ScalarValue[]; exists?: boolean };

const isOperatorObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date) && Object.keys(value).length > 0 && Object.keys(value).every((k) => (OPERATORS as readonly string[]).includes(k));

/** The conditions of one field given as a plain value or an operator object (several operators: all must hold). */
export function fieldConditions(where: string, field: FieldRef, condition: unknown): Condition[] {
  if (condition === null || ["number", "string", "boolean"].includes(typeof condition)) return [{ field, op: "eq", value: condition as ScalarValue }];
  if (!isOperatorObject(condition)) {
    throw new JobQueryError(`${where}: expected a value or an object of operators (${OPERATORS.join(", ")}), e.g. { lt: 0.01 }; got ${describe(condition)}`);
  }
  return Object.entries(condition).map(([op, value]) => ({ field, op: op as Operator, value: value as ScalarValue }));
}

/**
 * `{ lr: { lt: 0.01 }, "model.layers": 2 }` under params or result (a dot goes into a nested
 * object); `{ "layer0.grad_norm": { lt: 2 } }` under metrics, where the key is the whole name.
 */
export function mapConditions(kind: "params" | "metrics" | "result", map: unknown): Condition[] {
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new JobQueryError(`${kind}: expected an object of conditions such as { ${kind === "metrics" ? "loss" : "lr"}: { lt: 0.01 } }; got ${describe(map)}`);
  }
  return Object.entries(map).flatMap(([name, condition]) => {
    checkStorableText(`${kind}.${name}`, name);
    if (kind === "metrics") {
      const problem = metricNameProblem(name);
      if (problem) throw new JobQueryError(`metrics: ${problem}`);
      return fieldConditions(`metrics.${name}`, { kind, path: [name] }, condition);
    }
    const path = name.split(".");
    if (path.some((segment) => segment === "")) throw new JobQueryError(`${kind}: the name ${JSON.stringify(name)} has an empty part; a dot separates nested names ("model.layers")`);
    return fieldConditions(`${kind}.${name}`, { kind, path }, condition);
  });
}

/** `result: { gt: 3 }` (the whole result) or `result: { acc: { gt: 0.9 } }` (its fields). */
export function resultConditions(condition: unknown): Condition[] {
  if (condition === null || typeof condition !== "object" || isOperatorObject(condition)) return fieldConditions("result", { kind: "result", path: [] }, condition);
  return mapConditions("result", condition);
}

// ---------------------------------------------------------------- SQL

/** Collects the query's parameters; `param(v)` is the placeholder that stands for v. */
class Params {
  readonly values: unknown[] = [];
  param(value: unknown, cast: string): string {
    this.values.push(value);
    return `$${this.values.length}::${cast}`;
  }
}

/** The jobs column a JSON field lives in. */
export const JSON_COLUMNS = { params: "params", metrics: "last_metrics", result: "result_json" } as const;

function jsonColumn(kind: "params" | "metrics" | "result"): string {
  return `j.${JSON_COLUMNS[kind]}`;
}

/**
 * The number at a JSON value as numeric, SQL NULL when it is not a JSON number (text, "NaN",
 * true, an array, an object, missing). `nbjob db index` indexes exactly this expression and the
 * queries below write it the same way (`value` is `(params #> '{lr}'::text[])` there, with the
 * path a parameter here, which PostgreSQL folds into a constant when it plans the statement), so
 * the planner matches them. numeric, not float8: exact as the jsonpath comparison is, and a huge
 * number cannot make the cast fail (an index expression that errors would refuse the row).
 */
export function numberAt(value: string): string {
  return `(CASE WHEN jsonb_typeof(${value}) = 'number' THEN (${value})::numeric END)`;
}

/** The name of the index on a field's number: from a hash of the field, so any valid field has one short, stable name. */
export function fieldIndexName(field: string): string {
  return `jobs_field_${sha256(field).slice(0, 16)}`;
}

/** The jsonb at the field's path (SQL NULL when absent); the path is a parameter. */
function jsonValue(field: { kind: "params" | "metrics" | "result"; path: string[] }, p: Params): string {
  return field.path.length === 0 ? jsonColumn(field.kind) : `(${jsonColumn(field.kind)} #> ${p.param(field.path, "text[]")})`;
}

const RANGE_SQL: Record<string, string> = { lt: "<", lte: "<=", gt: ">", gte: ">=" };

function checkScalar(name: string, op: Operator, value: unknown): asserts value is ScalarValue {
  if (!(value === null || typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value)))) {
    throw new JobQueryError(`${name} ${op}: expected a finite number, text, true, false or null; got ${describe(value)}`);
  }
  if (typeof value === "string") checkStorableText(`${name} ${op}`, value);
}

function jsonCondition(c: Condition & { field: { kind: "params" | "metrics" | "result"; path: string[] } }, p: Params, indexed: ReadonlySet<string>): string {
  const name = fieldName(c.field);
  // Placeholders are numbered as they are made: make the path's only where it is used.
  const v = () => jsonValue(c.field, p);
  switch (c.op) {
    case "eq":
    case "ne": {
      checkScalar(name, c.op, c.value);
      // A number on an indexed field: the index's expression, equal as numbers (as jsonb
      // equality compares them: 1 = 1.0), so the same jobs match and the planner reads the index.
      if (c.op === "eq" && typeof c.value === "number" && indexed.has(name)) return `(${numberAt(v())} = ${p.param(String(c.value), "numeric")})`;
      const json = JSON.stringify(c.value);
      // On params, equality is also asked as containment (params @> {"a": {"b": 2}}), which the
      // GIN index answers; the exact test after it keeps arrays ({"b": [2]}) out.
      const contained = c.field.kind === "params" && c.op === "eq"
        ? `j.params @> ${p.param(JSON.stringify(c.field.path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), c.value)), "jsonb")} AND `
        : "";
      return c.op === "eq" ? `(${contained}${v()} = ${p.param(json, "jsonb")})` : `(${v()} IS DISTINCT FROM ${p.param(json, "jsonb")})`;
    }
    case "in": {
      if (!Array.isArray(c.value) || c.value.length === 0) throw new JobQueryError(`${name} in: expected a non-empty list of values, e.g. [0.1, 0.01]; got ${describe(c.value)}`);
      c.value.forEach((item) => checkScalar(name, "in", item));
      if (indexed.has(name) && c.value.every((item) => typeof item === "number")) return `(${numberAt(v())} = ANY(${p.param(c.value.map(String), "numeric[]")}))`;
      return `(${v()} = ANY(${p.param(c.value.map((item) => JSON.stringify(item)), "jsonb[]")}))`;
    }
    case "exists":
      if (typeof c.value !== "boolean") throw new JobQueryError(`${name} exists: expected true or false; got ${describe(c.value)}`);
      return `(${v()} IS ${c.value ? "NOT " : ""}NULL)`;
    default: {
      if (typeof c.value !== "number" || !Number.isFinite(c.value)) {
        throw new JobQueryError(`${name} ${c.op}: expected a finite number (${c.op} compares numbers; use eq, ne or in for text); got ${describe(c.value)}`);
      }
      // An indexed field: the index's expression (NULL for anything but a number, so the same
      // jobs match as below), which the planner reads from the index. The number as numeric text.
      if (indexed.has(name)) return `(${numberAt(v())} ${RANGE_SQL[c.op]} ${p.param(String(c.value), "numeric")})`;
      // A jsonpath predicate in strict mode, silent: true only for a number that compares so; a
      // missing field, text ("NaN"), an array or an object gives unknown (NULL), so no match. The
      // field's path is quoted inside the jsonpath (a parameter, never SQL text) and the number is
      // the jsonpath variable $v. Measured at 100k rows (bench/queries.ts): about half the time of
      // CASE WHEN jsonb_typeof(v) = 'number' THEN v END < x (jsonb or numeric), and the planner
      // estimates it as an ordinary condition, so "newest first + LIMIT" walks the primary key.
      const path = `strict $${c.field.path.map((segment) => `.${JSON.stringify(segment)}`).join("")} ${RANGE_SQL[c.op]} $v`;
      return `jsonb_path_match(${jsonColumn(c.field.kind)}, ${p.param(path, "jsonpath")}, ${p.param(JSON.stringify({ v: c.value }), "jsonb")}, true)`;
    }
  }
}

function dateValue(name: string, op: string, value: unknown): Date {
  const date = value instanceof Date ? value : typeof value === "string" || typeof value === "number" ? new Date(value) : new Date(NaN);
  if (Number.isNaN(date.getTime())) throw new JobQueryError(`${name} ${op}: expected a date (a Date, or text such as "2026-12-01" or "2026-12-01T10:00:00Z"); got ${describe(value)}`);
  return date;
}

function columnCondition(c: Condition, p: Params): string {
  const kind = c.field.kind;
  const { op, value } = c;
  const values = (check: (v: unknown) => unknown): unknown[] => {
    if (op === "in") {
      if (!Array.isArray(value) || value.length === 0) throw new JobQueryError(`${kind} in: expected a non-empty list of values; got ${describe(value)}`);
      return value.map(check);
    }
    return [check(value)];
  };
  const allowed = (ops: Operator[]) => {
    if (!ops.includes(op)) throw new JobQueryError(`${kind} cannot be compared with ${op}; use ${ops.join(", ")}`);
  };
  const text = (what: string) => (v: unknown) => {
    if (typeof v !== "string") throw new JobQueryError(`${kind} ${op}: expected ${what} as text; got ${describe(v)}`);
    checkStorableText(`${kind} ${op}`, v);
    return v;
  };
  const integer = (v: unknown) => {
    if (typeof v !== "number" || !Number.isSafeInteger(v)) throw new JobQueryError(`${kind} ${op}: expected an integer; got ${describe(v)}`);
    return v;
  };
  const compare = (column: string, cast: string, check: (v: unknown) => unknown): string => {
    if (op === "exists") throw new JobQueryError(`${kind} exists: every job has a ${kind}; exists is for params, metrics and result fields`);
    const list = values(check);
    if (op === "in") return `(${column} = ANY(${p.param(list, `${cast}[]`)}))`;
    const sql = op === "eq" ? "=" : op === "ne" ? "IS DISTINCT FROM" : RANGE_SQL[op];
    return `(${column} ${sql} ${p.param(list[0], cast)})`;
  };
  switch (kind) {
    case "status":
      allowed(["eq", "ne", "in"]);
      return compare("j.status", "text", (v) => {
        if (typeof v !== "string" || !isJobStatus(v)) throw new JobQueryError(`status: expected one of ${JOB_STATUSES.join(", ")}; got ${describe(v)}`);
        return v;
      });
    case "name":
      allowed(["eq", "ne", "in"]);
      return compare("j.name", "text", text("a name"));
    case "tag": {
      allowed(["eq", "ne", "in"]);
      const tags = values(text("a tag"));
      if (op === "in") return `(j.tags && ${p.param(tags, "text[]")})`;
      return `(${op === "ne" ? "NOT " : ""}j.tags @> ARRAY[${p.param(tags[0], "text")}])`;
    }
    case "group":
      allowed(["eq", "ne", "in"]);
      return compare("j.group_id", "bigint", integer);
    case "id":
      allowed(["eq", "ne", "lt", "lte", "gt", "gte", "in"]);
      return compare("j.id", "bigint", integer);
    case "created":
      allowed(["eq", "lt", "lte", "gt", "gte"]);
      return compare("j.queued_at", "timestamptz", (v) => dateValue("created", op, v).toISOString());
    default:
      throw new JobQueryError(`unknown field ${kind}`);
  }
}

function conditionSql(condition: JobCondition, p: Params, indexed: ReadonlySet<string>): string {
  if ("and" in condition || "or" in condition) {
    const parts = "and" in condition ? condition.and : condition.or;
    if (parts.length === 0) return "and" in condition ? "TRUE" : "FALSE";
    return `(${parts.map((part) => conditionSql(part, p, indexed)).join("and" in condition ? " AND " : " OR ")})`;
  }
  if (!OPERATORS.includes(condition.op)) throw new JobQueryError(`${fieldName(condition.field)}: unknown operator ${JSON.stringify(condition.op)}; the operators are ${OPERATORS.join(", ")}`);
  return "path" in condition.field ? jsonCondition(condition as Parameters<typeof jsonCondition>[0], p, indexed) : columnCondition(condition, p);
}

/**
 * Which rows of an order by an indexed field one statement reads. The index (ascending, no
 * number = NULL = last) gives numbers in either direction, but "numbers first" descending is
 * DESC NULLS LAST, which no scan of it gives; so queryJobs reads the numbers, then if the page
 * is not full the other jobs, each statement served by the index (see queryJobs).
 */
export type OrderPart = "all" | "numbers" | "others";

/**
 * "-metrics.loss" as an ORDER BY: numbers first (either direction), then text, then other values,
 * then jobs without the field; ties newest first. `where`: the part's extra condition.
 */
function orderSql(orderBy: string, p: Params, indexed: ReadonlySet<string>, part: OrderPart): { order: string; where?: string } {
  const descending = orderBy.startsWith("-");
  const name = descending ? orderBy.slice(1) : orderBy;
  const direction = descending ? "DESC" : "ASC";
  const field = fieldRef(name);
  if ("path" in field) {
    const v = jsonValue(field, p);
    const others = `CASE WHEN ${v} IS NULL THEN 3 WHEN jsonb_typeof(${v}) = 'number' THEN 0 WHEN jsonb_typeof(${v}) = 'string' THEN 1 ELSE 2 END, ${v} ${direction}, j.id DESC`;
    if (!indexed.has(name)) return { order: others };
    // The same order with the index's expression first: equal numbers compare equal as jsonb
    // too, and every other value is NULL there, so the rest of the order is unchanged.
    const number = numberAt(v);
    if (part === "numbers") return { order: `${number} ${direction}, j.id DESC`, where: `${number} IS NOT NULL` };
    if (part === "others") return { order: others, where: `${number} IS NULL` };
    return { order: `${number} ${direction} NULLS LAST, ${others}` };
  }
  switch (field.kind) {
    // Ids are handed out in creation order: ordering by id is ordering by creation, and it walks
    // the primary key.
    case "created":
    case "id":
      return { order: `j.id ${direction}` };
    case "name":
      return { order: `j.name ${direction} NULLS LAST, j.id DESC` };
    case "status":
      return { order: `j.status ${direction}, j.id DESC` };
    case "group":
      return { order: `j.group_id ${direction} NULLS LAST, j.id DESC` };
    default:
      throw new JobQueryError(`cannot order by ${name}; order by created, id, name, status, group, params.NAME, metrics.NAME, result or result.NAME (a leading - for descending)`);
  }
}

const NO_INDEXES: ReadonlySet<string> = new Set();

function checkPage(query: JobQuery): { limit: number; offset: number } {
  const limit = query.limit ?? 50;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new JobQueryError(`limit must be a positive integer; got ${describe(limit)}`);
  const offset = query.offset ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new JobQueryError(`offset must be a non-negative integer; got ${describe(offset)}`);
  return { limit, offset };
}

function compileStatement(query: JobQuery, indexed: ReadonlySet<string>, part: OrderPart, select: "rows" | "count", page: { limit: number; offset: number }): { text: string; values: unknown[] } {
  const p = new Params();
  const condition = query.where ? conditionSql(query.where, p, indexed) : "TRUE";
  const { order, where: partCondition } = orderSql(query.orderBy ?? "-created", p, indexed, part);
  const where = partCondition ? `${condition} AND ${partCondition}` : condition;
  if (select === "count") return { text: `SELECT count(*)::bigint AS n FROM nbjob.jobs j WHERE ${where}`, values: p.values };
  const columns = LISTED_COLUMNS.split(",").map((c) => `j.${c.trim()}`).join(", ");
  return {
    text: `SELECT ${columns}, j.params, j.last_metrics, j.result_json FROM nbjob.jobs j WHERE ${where} ORDER BY ${order} LIMIT ${p.param(page.limit, "bigint")} OFFSET ${p.param(page.offset, "bigint")}`,
    values: p.values,
  };
}

/**
 * The SQL text and its parameters for a query; exported for the tests and the bench. `indexed`:
 * the fields with an index on their number (indexedFields), compared through it; `part`: for an
 * order by an indexed field, one of the statements queryJobs makes (see OrderPart).
 */
export function compileJobQuery(query: JobQuery, indexed: ReadonlySet<string> = NO_INDEXES, part: OrderPart = "all"): { text: string; values: unknown[] } {
  return compileStatement(query, indexed, part, "rows", checkPage(query));
}

/** Whether an index on a field's number could serve the query: a range on a JSON field, or an order by one. */
function mayUseFieldIndex(query: JobQuery): boolean {
  const hasRange = (condition: JobCondition): boolean =>
    "and" in condition ? condition.and.some(hasRange) : "or" in condition ? condition.or.some(hasRange) : "path" in condition.field && condition.op in RANGE_SQL;
  if (query.where && hasRange(query.where)) return true;
  const order = (query.orderBy ?? "").replace(/^-/, "");
  return /^(params|metrics|result)(\.|$)/.test(order);
}

/**
 * The fields with a usable index on their number (`nbjob db index`, field-index.ts): valid
 * indexes named jobs_field_<hash> whose comment is the field (the name checked against it, so
 * a stray comment changes nothing). One catalog lookup, made only when mayUseFieldIndex.
 */
export async function indexedFields(db: Db): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string; field: string }>(
    `SELECT c.relname AS name, d.description AS field
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
      WHERE i.indrelid = 'nbjob.jobs'::regclass AND i.indisvalid AND i.indisready AND c.relname LIKE 'jobs\\_field\\_%'`);
  return new Set(rows.filter((row) => fieldIndexName(row.field) === row.name).map((row) => row.field));
}

/** How many jobs match the query's conditions, whatever its limit and offset: to say what a page left out. */
export async function countJobs(db: Db, query: JobQuery = {}): Promise<number> {
  const counted: JobQuery = { where: query.where };
  const indexed = mayUseFieldIndex(counted) ? await indexedFields(db) : NO_INDEXES;
  const { text, values } = compileStatement(counted, indexed, "all", "count", checkPage({}));
  return Number((await db.query<{ n: string }>(text, values)).rows[0].n);
}

/** Jobs matching the query, in its order (default newest first). */
export async function queryJobs(db: Db, query: JobQuery = {}): Promise<DbJobQueried[]> {
  const page = checkPage(query);
  const indexed = mayUseFieldIndex(query) ? await indexedFields(db) : NO_INDEXES;
  const order = query.orderBy ?? "-created";
  if (!(order.startsWith("-") && indexed.has(order.slice(1)))) {
    const { text, values } = compileStatement(query, indexed, "all", "rows", page);
    return (await db.query<DbJobQueried>(text, values)).rows;
  }
  // Descending by an indexed field: the numbers (a backward scan of the index), then, if the
  // page is not full, the jobs without a number there (the index's NULLs), from where the
  // numbers ended. Two statements, not one snapshot: a job whose value changed from a number
  // in between could come twice, so the second part skips ids already listed.
  const read = async (part: OrderPart, partPage: typeof page) => {
    const { text, values } = compileStatement(query, indexed, part, "rows", partPage);
    return (await db.query<DbJobQueried>(text, values)).rows;
  };
  const numbers = await read("numbers", page);
  if (numbers.length === page.limit) return numbers;
  let numberCount = page.offset + numbers.length;
  if (numbers.length === 0 && page.offset > 0) {
    // The page starts past the numbers: how many there are says where among the others.
    const { text, values } = compileStatement(query, indexed, "numbers", "count", page);
    numberCount = (await db.query<{ n: number }>(text, values)).rows[0].n;
  }
  const listed = new Set(numbers.map((row) => row.id));
  const others = await read("others", { limit: page.limit - numbers.length, offset: Math.max(0, page.offset - numberCount) });
  return [...numbers, ...others.filter((row) => !listed.has(row.id))];
}
