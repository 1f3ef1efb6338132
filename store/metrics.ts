// Metrics by step: the rows `jobtracker.log` makes in a job (nbjob.metrics, migration 000012),
// written in batches by the worker, and each job's last value per metric (jobs.last_metrics),
// kept up to date in the same transaction as each batch.
import type { Db } from "./db";
import { StoreError } from "./errors";
import { ClaimLostError } from "./jobs";
import { FENCE_IDLE_LIMIT, FENCED_STATUSES } from "./logs";
import { metricNameProblem } from "./metric-name";
import type { Json } from "./types";

export { metricNameProblem, METRIC_NAME_MAX } from "./metric-name";

/** One logged value: its place in the job's arrival order, metric name, step and value. */
export interface MetricPoint {
  /** Arrival order within the job's run, 0, 1, 2… with no gaps. */
  seq: number;
  name: string;
  step: number;
  /** A number (NaN and ±Infinity included) or an array of numbers. */
  value: number | number[];
  /** The step is smaller than the previous step of the same metric. */
  backwards: boolean;
}

/** One metric's series, in arrival order. */
export interface MetricSeries {
  steps: number[];
  values: Array<number | number[]>;
  /** Positions (in steps/values) whose step went backwards; empty when none did. */
  backwards: number[];
}

/** How a value goes into jsonb: JSON has no NaN or Infinity, so those are the strings "NaN", "Infinity", "-Infinity". */
export function metricJson(value: number | number[]): Json {
  const one = (v: number): Json => (Number.isFinite(v) ? v : String(v));
  return Array.isArray(value) ? value.map(one) : one(value);
}

/** The inverse of metricJson (a value read from jobs.last_metrics). */
export function metricFromJson(value: Json): number | number[] {
  const one = (v: Json): number => (typeof v === "number" ? v : Number(v));
  return Array.isArray(value) ? value.map(one) : one(value);
}

/** A float8[] literal ({1,NaN,-Infinity}): node-postgres would write the same, but a value of an array column is spelled here once. */
function arrayLiteral(values: number[]): string {
  return `{${values.map(numberText).join(",")}}`;
}

/** A double as PostgreSQL reads it back exactly: JavaScript's shortest round-trip text, and -0 kept (String(-0) is "0"). */
function numberText(value: number): string {
  return Object.is(value, -0) ? "-0" : String(value);
}

/**
 * The columns of a batch of points as PostgreSQL array literals, written here rather than by
 * node-postgres: its per-element conversion and escaping took most of the worker's main thread
 * while a job logged (a batch is 8,192 points). Numbers are written as JavaScript prints them
 * (the shortest text that reads back to the same double; NaN and ±Infinity are spelled as
 * PostgreSQL reads them; -0 stays -0). A text element is double-quoted with `"` and `\` escaped.
 */
class ArrayLiterals {
  readonly #quoted = new Map<string, string>();
  readonly names: string[] = [];
  readonly steps: number[] = [];
  readonly scalars: string[] = [];
  readonly arrays: string[] = [];
  readonly backwards: string[] = [];

  /** Whether a point of that name was added already (its name was checked then). */
  hasName(name: string): boolean {
    return this.#quoted.has(name);
  }

  add(name: string, step: number, value: number | number[], backwards: boolean): void {
    let quoted = this.#quoted.get(name);
    if (quoted === undefined) {
      quoted = quoteElement(name);
      this.#quoted.set(name, quoted);
    }
    this.names.push(quoted);
    this.steps.push(step);
    if (Array.isArray(value)) {
      this.scalars.push("NULL");
      this.arrays.push(quoteElement(arrayLiteral(value)));
    } else {
      this.scalars.push(numberText(value));
      this.arrays.push("NULL");
    }
    this.backwards.push(backwards ? "t" : "f");
  }
}

function quoteElement(text: string): string {
  return `"${text.replace(/["\\]/g, "\\$&")}"`;
}

function literal(elements: ReadonlyArray<string | number>): string {
  return `{${elements.join(",")}}`;
}

/**
 * Stores points of one job's run in one transaction, and merges their last value per name into
 * jobs.last_metrics. Points are those of one run, consecutive in `seq`; a batch whose points are
 * stored already (a write retried after its answer was lost) replaces them, so writing again is
 * harmless; a batch starting at seq 0 (a new run of the job) replaces the job's metrics. With
 * `claim` (a worker writing for the run it claimed) they are stored only if the job is running
 * under that claim, or was cancelled while it ran under it; otherwise nothing is stored and
 * ClaimLostError is thrown (store/logs.ts FENCED_STATUSES says why cancelled too).
 */
export async function putMetrics(db: Db, jobId: number, points: readonly MetricPoint[], claim?: string): Promise<void> {
  if (points.length === 0) return;
  const firstSeq = points[0].seq;
  const last: { [name: string]: Json } = {};
  const columns = new ArrayLiterals();
  points.forEach((point, i) => {
    if (point.seq !== firstSeq + i) throw new StoreError(`metric points of job ${jobId} must be consecutive in arrival order; got seq ${point.seq} after ${firstSeq + i - 1}`);
    if (!columns.hasName(point.name)) {
      const problem = metricNameProblem(point.name);
      if (problem) throw new StoreError(problem);
    }
    if (!Number.isSafeInteger(point.step) || point.step < 0) throw new StoreError(`the step of metric ${point.name} must be a non-negative integer, got ${point.step}`);
    columns.add(point.name, point.step, point.value, point.backwards);
    last[point.name] = metricJson(point.value);
  });
  const which = `metrics ${firstSeq}..${firstSeq + points.length - 1}`;
  await db.transaction(async (tx) => {
    if (claim !== undefined) {
      // Checked first and held to the commit (logs.ts FENCE_CTE says why).
      const fence = await tx.query(`SELECT ${FENCE_IDLE_LIMIT} FROM nbjob.jobs WHERE id = $1 AND status IN ${FENCED_STATUSES} AND claim = $2::bigint FOR SHARE`, [jobId, claim]);
      if (fence.rowCount === 0) throw new ClaimLostError(jobId, claim, which);
    }
    await tx.query("DELETE FROM nbjob.metrics WHERE job_id = $1 AND seq >= $2", [jobId, firstSeq]);
    // WITH ORDINALITY numbers the rows as given: seq follows the order the job logged them.
    const inserted = await tx.query(
      `INSERT INTO nbjob.metrics (job_id, seq, name, step, value, value_array, step_backwards)
       SELECT $1, $2::bigint + p.i - 1, p.name, p.step, p.value, p.arr::float8[], p.back
         FROM unnest($3::text[], $4::bigint[], $5::float8[], $6::text[], $7::bool[]) WITH ORDINALITY AS p(name, step, value, arr, back, i)
        WHERE EXISTS (SELECT 1 FROM nbjob.jobs WHERE id = $1)`,
      [jobId, firstSeq, literal(columns.names), literal(columns.steps), literal(columns.scalars), literal(columns.arrays), literal(columns.backwards)],
    );
    if (inserted.rowCount === 0) throw new StoreError(`there is no job ${jobId} to store metrics for (was it deleted?)`);
    await tx.query(
      "UPDATE nbjob.jobs SET last_metrics = (CASE WHEN $2::bigint = 0 THEN '{}'::jsonb ELSE last_metrics END) || $3::jsonb WHERE id = $1",
      [jobId, firstSeq, JSON.stringify(last)],
    );
  });
}

/**
 * Where a resumed job's metrics go on (read by its worker as it starts, see continueMetrics in
 * runtime/shared/jobtracker.ts): the seq of its next value, the step a log() without one gets,
 * and each metric's last step so far (to flag a step going backwards across the resume).
 */
export interface MetricsResumePoint {
  seq: number;
  nextStep: number;
  lastSteps: { [name: string]: number };
}

/**
 * A resumed job's series starts with the old job's values up to the checkpoint it resumes from:
 * copies the rows the old job logged before checkpoint `idx` was taken (seq below its metric_seq)
 * into job `to`, with the same seq, and sets `to`'s last values from them. Called in the resume's
 * transaction. Returns how many rows were copied (0 for a checkpoint stored before migration
 * 000017, which did not record where the metrics stood: that resume starts its metrics afresh).
 */
export async function copyMetricsUpTo(db: Db, from: number, to: number, idx: number): Promise<number> {
  const copied = await db.query(
    `INSERT INTO nbjob.metrics (job_id, seq, name, step, value, value_array, step_backwards)
     SELECT $2, m.seq, m.name, m.step, m.value, m.value_array, m.step_backwards
       FROM nbjob.metrics m JOIN nbjob.checkpoints c ON c.job_id = m.job_id AND c.idx = $3
      WHERE m.job_id = $1 AND m.seq < c.metric_seq`,
    [from, to, idx],
  );
  if (!copied.rowCount) return 0;
  // to_jsonb writes NaN and ±Infinity as the strings metricJson uses.
  await db.query(
    `UPDATE nbjob.jobs SET last_metrics = (
       SELECT jsonb_object_agg(name, COALESCE(to_jsonb(value_array), to_jsonb(value)))
         FROM (SELECT DISTINCT ON (name) name, value, value_array FROM nbjob.metrics WHERE job_id = $1 ORDER BY name, seq DESC) AS last
     ) WHERE id = $1`,
    [to],
  );
  return copied.rowCount;
}

/**
 * Where a resumed job's metrics go on, from its copy of checkpoint `idx` (copyMetricsUpTo made its
 * rows); undefined when the checkpoint did not record it (stored before migration 000017).
 */
export async function metricsResumePoint(db: Db, jobId: number, idx: number): Promise<MetricsResumePoint | undefined> {
  const { rows } = await db.query<{ metric_seq: string | null; metric_step: string | null }>(
    "SELECT metric_seq, metric_step FROM nbjob.checkpoints WHERE job_id = $1 AND idx = $2",
    [jobId, idx],
  );
  const at = rows[0];
  if (!at || at.metric_seq === null || at.metric_step === null) return undefined;
  const seq = Number(at.metric_seq);
  const last = await db.query<{ name: string; step: string }>(
    "SELECT DISTINCT ON (name) name, step FROM nbjob.metrics WHERE job_id = $1 AND seq < $2 ORDER BY name, seq DESC",
    [jobId, seq],
  );
  return { seq, nextStep: Number(at.metric_step), lastSteps: Object.fromEntries(last.rows.map((r) => [r.name, Number(r.step)])) };
}

interface DbMetricRow {
  seq: number;
  name: string;
  step: number;
  value: number | null;
  value_array: number[] | null;
  step_backwards: boolean;
}

/**
 * A job's metrics, by name, each series in arrival order. `name`: that metric only. `afterSeq`:
 * only rows logged after that one (a live plot reading what is new); the answer's `lastSeq` is
 * the last row read (or `afterSeq` when none).
 */
export async function readMetrics(db: Db, jobId: number, options: { name?: string; afterSeq?: number } = {}): Promise<{ series: { [name: string]: MetricSeries }; lastSeq: number }> {
  const where = ["job_id = $1", "seq > $2"];
  const values: unknown[] = [jobId, options.afterSeq ?? -1];
  if (options.name !== undefined) {
    values.push(options.name);
    where.push("name = $3");
  }
  const { rows } = await db.query<DbMetricRow>(
    `SELECT seq, name, step, value, value_array, step_backwards FROM nbjob.metrics WHERE ${where.join(" AND ")} ORDER BY ${options.name === undefined ? "seq" : "name, seq"}`,
    values,
  );
  const series: { [name: string]: MetricSeries } = {};
  let lastSeq = options.afterSeq ?? -1;
  for (const row of rows) {
    const s = (series[row.name] ??= { steps: [], values: [], backwards: [] });
    if (row.step_backwards) s.backwards.push(s.steps.length);
    s.steps.push(Number(row.step));
    s.values.push(row.value_array ?? Number(row.value));
    lastSeq = Math.max(lastSeq, Number(row.seq));
  }
  return { series, lastSeq };
}

/** The last value of each metric of each job (jobs.last_metrics), for listings that read few columns. */
export function lastMetricsOf(row: { last_metrics?: Json | null }): { [name: string]: number | number[] } {
  const out: { [name: string]: number | number[] } = {};
  const stored = row.last_metrics;
  if (stored && typeof stored === "object" && !Array.isArray(stored)) {
    // Alphabetical: jsonb keeps its keys in its own order (shorter first), which reads as random.
    for (const name of Object.keys(stored).sort()) out[name] = metricFromJson(stored[name]);
  }
  return out;
}

/**
 * What to say when job `jobId` has no values of metric `name` but logged others (a misspelled
 * name, most likely): the names it did log. Undefined when it logged none, or logged `name`.
 * Shared by `nbjob metrics JOB NAME` and plotMetrics.
 */
export function missingMetricText(jobId: number, name: string, logged: readonly string[]): string | undefined {
  if (logged.length === 0 || logged.includes(name)) return undefined;
  return `job ${jobId} logged no metric "${name}"; it logged ${logged.join(", ")}`;
}

/**
 * The last metrics as short text, `loss=0.12 acc=0.9` (arrays as `[3 values]`), for tables.
 * `cap`: at most `count` of them, then `… (+N more; <see>)`, for a row of a listing: a job may
 * log hundreds of metrics, which made each row thousands of characters wide.
 */
export function formatLastMetrics(metrics: { [name: string]: number | number[] }, digits = 4, cap?: { count: number; see: string }): string {
  const entries = Object.entries(metrics);
  const shown = cap && entries.length > cap.count ? entries.slice(0, cap.count) : entries;
  const text = shown.map(([name, value]) => `${name}=${Array.isArray(value) ? `[${value.length} values]` : formatMetricNumber(value, digits)}`).join(" ");
  return shown.length < entries.length ? `${text} … (+${entries.length - shown.length} more; ${cap!.see})` : text;
}

/** How many metrics a row of `nbjob jobs` or `nbjob group` shows; `nbjob show JOB` shows them all. */
export const ROW_METRICS = 5;

/** A number shown briefly: 4 significant digits, NaN and Infinity as such. */
export function formatMetricNumber(value: number, digits = 4): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return String(value);
  return String(Number(value.toPrecision(digits)));
}
