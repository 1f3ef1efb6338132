// DBWrapper: the notebook's handle on the store. Creates jobs (bundle built and type-checked,
// optionally reviewed, stored, then dispatched), sweeps, and reattaches to or lists stored jobs.
import { inspect } from "node:util";
import {
  checkStorableJson, checkStorableText, createJob as storeCreateJob, createJobGroup, getJob, getJobGroup, listGroupJobs, isJobStatus, JOB_STATUSES, listWorkers,
  compileJobQuery, createFieldIndex, JobQueryError, mapConditions, queryJobs, resultConditions, notifyJobQueued, openStore, putBundle, requireJob, signBundle, transitionJob,
} from "../store";
import type { BundleInput, Condition, DbJob, DbJobQueried, JobQuery, JobStatus, Json, Store, StoreLocation, ValueCondition } from "../store";
import { lastMetricsOf } from "../store/metrics";
import { collectGarbage, deleteJobs, parseDuration, tagProblem } from "../store/cleanup";
import type { DeletionPlan } from "../store/cleanup";
import { enqueueJobs } from "../store/queue";
import { buildBundle, jobParams, withParams } from "./bundle";
import { jsonType } from "./bundle-check";
import { checkSameKind, describeJson, memberPath, toJsonValue } from "./params";
import { checkSample, describeSample, sampleParams } from "./random-search";
import type { SampleSettings, SampleSpec } from "./random-search";
import type { JsonValue } from "./params";
import type { Bundle, ParamValues } from "./bundle";
import { isView } from "./client";
import { currentCellSink, notebookPath } from "./notebook";
import type { View } from "./client";
import { jobsChanged, setDefaultStore } from "./dashboard";
import { createAnalyzer } from "./analyzer";
import type { AnalysisFunctionValue, AnalysisRowOf, Analyzer, AnalyzerOptions } from "./analyzer";
import { FINAL_STATUSES, Job, JobGroup, loadProgram } from "./job";
import { frontendCanAnswer, reviewBundle } from "./review";
import { SnippetCollector } from "./snippets";

/** What db.deleteJobs deletes: ids, or jobs matching all the given conditions. */
export interface DeleteJobsOptions {
  ids?: number[];
  tag?: string;
  status?: JobStatus;
  /** Queued longer ago than this: "30d", "12h", or milliseconds. */
  olderThan?: string | number;
  dryRun?: boolean;
  /** Collect the values nothing refers to afterwards (default true). */
  collect?: boolean;
}

/** DeleteJobsOptions' keys: any other is refused, since a filter condition silently dropped deletes more. */
const DELETE_JOBS_KEYS = ["ids", "tag", "status", "olderThan", "dryRun", "collect"] as const satisfies ReadonlyArray<keyof DeleteJobsOptions>;

/**
 * F, with every key that Options lacks typed `never`. Excess-property checks cover only object
 * literals, and every key of DeleteJobsOptions is optional, so a variable such as
 * `{ status: "failed", name: "x" }` type-checked as a filter on status alone.
 */
export type OnlyKeysOf<Options, F> = F & { [K in Exclude<keyof F, keyof Options>]: never };

/** Options of createJob (the last argument, after the collectors). */
export interface CreateJobOptions {
  /** The notebook's ParamLogger (or plain parameter values). */
  params?: object;
  /** Values that replace parameters for this job only; each must name an existing parameter. */
  overrides?: Record<string, unknown>;
  name?: string;
  /** Each one word, without spaces or commas (as `nbjob tag JOB +T` takes them). */
  tags?: string[];
  /** Show the job for review before it is submitted (default: when the frontend can answer input()). */
  review?: boolean;
  /**
   * Stop the job this many ms after it starts (a synchronous loop too): it fails with
   * TimeoutError, keeps its checkpoints and can be resumed. For createJobs: per job of the sweep.
   */
  timeoutMs?: number;
}

/**
 * Options of createJobs: createJob's, plus what to sweep: a grid of values, a random search
 * (`sample`, `count`, `seed`), or both (each grid combination with the same `count` draws).
 */
export interface CreateJobsOptions extends CreateJobOptions {
  /** Parameter name -> the values to try; one job per combination. */
  grid?: Record<string, unknown[]>;
  /** Parameter name -> how to draw its value: { uniform: [a, b] }, { logUniform: [a, b] }, { int: [a, b] }, or an array to choose from. */
  sample?: SampleSpec;
  /** How many jobs to draw from `sample` (per grid combination when there is a grid too). */
  count?: number;
  /** The random search's seed: the same seed draws the same values. Default: a random one, stored with the group. */
  seed?: number;
}

/** Collectors, optionally followed by the options object. */
export type CollectorsAndOptions<O> = SnippetCollector[] | [...SnippetCollector[], O];

/**
 * A condition on one field of db.jobs: a plain value (equality) or an object of operators that
 * must all hold, e.g. `{ gte: 0.001, lt: 0.01 }`.
 *  - `eq`, `ne`, `in: [...]`: JSON equality (1 equals 1.0, text equals text); `ne` also matches
 *    jobs that do not have the field.
 *  - `lt`, `lte`, `gt`, `gte`: numbers only; a job whose field is missing, text or "NaN" does
 *    not match.
 *  - `exists: true | false`: the field is there (a JSON null counts) or not.
 */
export type FieldCondition = ValueCondition;

export interface JobsFilter {
  status?: JobStatus;
  tag?: string;
  name?: string;
  /** A sweep: its group id (or the group itself). */
  group?: number | { id: number };
  /** Created (queued) at or after / before this moment: a Date or text such as "2026-12-01". */
  createdAfter?: Date | string;
  createdBefore?: Date | string;
  /**
   * Conditions on parameter values, all of which must hold: `{ lr: { lt: 0.01 }, optimizer: "adam" }`.
   * A dot goes into a nested object: `{ "model.layers": 2 }` is params.model.layers.
   */
  params?: Record<string, FieldCondition>;
  /**
   * Conditions on each metric's last logged value (jobtracker.log): `{ loss: { lt: 0.1 } }`. The
   * key is the metric's whole name (metrics are flat): `{ "layer0.grad_norm": { lt: 2 } }`.
   */
  metrics?: Record<string, FieldCondition>;
  /**
   * A condition on the result (of jobs that are done and returned JSON data): `{ gt: 3 }` on the
   * whole result, or `{ acc: { gt: 0.9 } }` on its fields.
   */
  result?: FieldCondition | Record<string, FieldCondition>;
  /**
   * "-created" (newest first, the default), "created", "metrics.loss" (smallest first),
   * "-metrics.loss", "params.lr", "result", "result.acc", "id", "name", "status", "group"
   * ("metrics.layer0.grad_norm": all after "metrics." is the metric's name). On params, metrics and
   * result, numbers come first, then text, then other values, then jobs without the field.
   * Ranges on a field and orders by it read every job unless the field is indexed
   * (db.createIndex("metrics.loss"), or `nbjob db index metrics.loss`).
   */
  orderBy?: string;
  /** Default 50. */
  limit?: number;
  /** Skip this many matching jobs first (paging), default 0. */
  offset?: number;
}

const JOBS_FILTER_KEYS = ["status", "tag", "name", "group", "createdAfter", "createdBefore", "params", "metrics", "result", "orderBy", "limit", "offset"];

/** A job as listed by db.jobs(). */
export interface JobSummary {
  id: number;
  name: string | null;
  tags: string[];
  status: JobStatus;
  worker: string | null;
  queued_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  /** The result as it prints, when done. */
  result: string | null;
  /** `ename: evalue` when it failed, was cancelled or lost. */
  error: string | null;
  /** The job's parameter values. */
  params: Record<string, Json>;
  /** The last value of each metric it logged (jobtracker.log): `{ loss: 0.12, acc: 0.9 }`; NaN and Infinity as such. */
  metrics: { [name: string]: number | number[] };
  /** The sweep it belongs to, if any. */
  group: number | null;
}

const JOB_OPTION_KEYS = ["params", "overrides", "name", "tags", "review", "timeoutMs"];
const SWEEP_OPTION_KEYS = [...JOB_OPTION_KEYS, "grid", "sample", "count", "seed"];

function splitArguments<O extends object>(what: string, rest: readonly unknown[]): { collectors: SnippetCollector[]; options: Partial<O> } {
  const collectors: SnippetCollector[] = [];
  let options: Partial<O> = {};
  rest.forEach((arg, i) => {
    if (SnippetCollector.isCollector(arg)) {
      collectors.push(arg);
      return;
    }
    const isLast = i === rest.length - 1;
    if (isLast && typeof arg === "object" && arg !== null && !Array.isArray(arg)) {
      const known = what.startsWith("createJobs") ? SWEEP_OPTION_KEYS : JOB_OPTION_KEYS;
      const unknown = Object.keys(arg).filter((k) => !known.includes(k));
      if (unknown.length > 0) throw new TypeError(`${what}: unknown option${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}; the options are ${known.join(", ")}`);
      options = arg as Partial<O>;
      return;
    }
    throw new TypeError(`${what}: argument ${i + 3} is ${arg === null ? "null" : typeof arg}; after the view and the entries come SnippetCollectors, then optionally the options object ({ params, overrides, name, tags, review, timeoutMs })`);
  });
  if (collectors.length === 0) throw new TypeError(`${what}: pass at least one SnippetCollector after the entries, e.g. db.createJob(view, ["norm(origin)"], sc)`);
  return { collectors, options };
}

function checkCommonOptions(what: string, options: Partial<CreateJobOptions>): void {
  if (options.name !== undefined && typeof options.name !== "string") throw new TypeError(`${what}: name must be a string; got ${typeof options.name}`);
  if (options.tags !== undefined && (!Array.isArray(options.tags) || !options.tags.every((t) => typeof t === "string" && t !== ""))) {
    throw new TypeError(`${what}: tags must be an array of non-empty strings, e.g. ["geometry"]`);
  }
  options.tags?.forEach((tag, i) => {
    const problem = tagProblem(tag);
    if (problem !== undefined) throw new TypeError(`${what}: tags[${i}]: ${problem}`);
  });
  if (options.review !== undefined && typeof options.review !== "boolean") throw new TypeError(`${what}: review must be true or false`);
  // Node timers take at most 2^31 - 1 ms (a longer delay fires at once), and so does the column.
  const t = options.timeoutMs;
  if (t !== undefined && (typeof t !== "number" || !Number.isFinite(t) || t <= 0 || t > MAX_TIMEOUT_MS)) {
    throw new TypeError(`${what}: timeoutMs must be a positive, finite number of milliseconds (at most ${MAX_TIMEOUT_MS}, about 24.8 days); got ${inspect(t)}`);
  }
  // Text PostgreSQL cannot store (NUL) is refused here, naming the option, rather than by the server.
  checkStorableText(`${what}: name`, options.name);
  options.tags?.forEach((tag, i) => checkStorableText(`${what}: tags[${i}]`, tag));
  checkStorableJson(`${what}: params`, jobParams(options.params, options.overrides));
  // jobParams has checked the names and that the values are JSON data; now their kinds.
  const logged = jobParams(options.params, undefined);
  for (const [key, value] of Object.entries(options.overrides ?? {})) checkSameKind(toJsonValue(value, `overrides.${key}`), logged[key], memberPath("overrides", key), key);
}

/**
 * A sweep's values of another kind than the notebook's parameter are refused before the review
 * (as overrides are). A range draws numbers, so it sweeps only a number (or a null placeholder).
 */
function checkSweepKinds(logged: ParamValues, grid: Record<string, JsonValue[]>, sample: SampleSettings | null): void {
  for (const [key, values] of Object.entries(grid)) values.forEach((value, i) => checkSameKind(value, logged[key], `${memberPath("grid", key)}[${i}]`, key));
  for (const [key, dist] of Object.entries(sample?.spec ?? {})) {
    if (Array.isArray(dist)) dist.forEach((value, i) => checkSameKind(value, logged[key], `${memberPath("sample", key)}[${i}]`, key));
    else if (logged[key] !== null && typeof logged[key] !== "number") {
      const range = Object.keys(dist)[0];
      throw new TypeError(`${memberPath("sample", key)}.${range} draws numbers but ${memberPath("params", key)} is ${describeJson(logged[key])}; draw from a list of values instead, e.g. { sample: { ${key}: [...] } }, or change ${memberPath("params", key)} in the notebook`);
    }
  }
}

/** The longest delay a Node timer takes (and what jobs.timeout_ms, an integer, holds). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Whole milliseconds as stored (a fraction is rounded up, so the limit is never shorter). */
function timeoutOf(options: Partial<CreateJobOptions>): number | null {
  return options.timeoutMs === undefined ? null : Math.ceil(options.timeoutMs);
}

function checkViewArgument(what: string, view: unknown): asserts view is View {
  if (!isView(view)) {
    throw new TypeError(`${what}: the first argument must be a view: rc.view(0) or rc.loadBalanced() from const rc = await Client.connect(); got ${inspect(view, { depth: 0 })}`);
  }
}

/** A view as the notebook names it: `rc.view(0) (worker w1)` or `rc.loadBalanced() (…)`. */
function describeView(view: View): string {
  return view.kind === "direct" ? `rc.view(${view.index}) (worker ${view.workerId})` : "rc.loadBalanced() (any idle worker)";
}

function summarize(row: DbJobQueried): JobSummary {
  return {
    id: row.id, name: row.name, tags: row.tags, status: row.status, worker: row.worker_id ?? row.target_worker,
    queued_at: row.queued_at, started_at: row.started_at, finished_at: row.finished_at,
    result: row.result_text, error: row.error_name ? `${row.error_name}: ${row.error_message ?? ""}` : null,
    params: row.params, metrics: lastMetricsOf(row), group: row.group_id,
  };
}

/** db.jobs' filter as the store's condition tree; every mistake a TypeError naming the option. */
function jobQuery(filter: JobsFilter): JobQuery {
  if (filter === null || typeof filter !== "object" || Array.isArray(filter)) throw new TypeError(`db.jobs(filter): filter is an object such as { params: { lr: { lt: 0.01 } } }; got ${inspect(filter)}`);
  const unknown = Object.keys(filter).filter((k) => !JOBS_FILTER_KEYS.includes(k));
  if (unknown.length > 0) throw new TypeError(`db.jobs: unknown option${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}; the options are ${JOBS_FILTER_KEYS.join(", ")}`);
  if (filter.status !== undefined && !isJobStatus(filter.status)) {
    throw new TypeError(`db.jobs({ status }): status must be one of ${JOB_STATUSES.join(", ")}; got ${inspect(filter.status)}`);
  }
  const conditions: Condition[] = [];
  const column = (kind: "status" | "name" | "tag" | "group" | "created", op: Condition["op"], value: Condition["value"]) => conditions.push({ field: { kind }, op, value });
  if (filter.status !== undefined) column("status", "eq", filter.status);
  if (filter.tag !== undefined) column("tag", "eq", filter.tag);
  if (filter.name !== undefined) column("name", "eq", filter.name);
  if (filter.group !== undefined) column("group", "eq", typeof filter.group === "object" && filter.group !== null ? filter.group.id : filter.group);
  if (filter.createdAfter !== undefined) column("created", "gte", filter.createdAfter);
  if (filter.createdBefore !== undefined) column("created", "lt", filter.createdBefore);
  try {
    if (filter.params !== undefined) conditions.push(...mapConditions("params", filter.params));
    if (filter.metrics !== undefined) conditions.push(...mapConditions("metrics", filter.metrics));
    if (filter.result !== undefined) conditions.push(...resultConditions(filter.result));
    const query: JobQuery = { where: { and: conditions }, orderBy: filter.orderBy, limit: filter.limit, offset: filter.offset };
    compileJobQuery(query); // every value and field checked here, so the error names db.jobs
    return query;
  } catch (err) {
    if (err instanceof JobQueryError) throw new TypeError(`db.jobs: ${err.message}`);
    throw err;
  }
}

/**
 * What a sweep sweeps, checked before anything else (and before the review), every problem named
 * as the user wrote it (`grid.lr[1]`, `sample.lr`, `count`, `seed`). A grid, a random search, or
 * both: then each grid combination runs with the same draws (the grid's parameter is compared on
 * equal terms), so the sweep has (grid combinations) x count jobs. A parameter is in one or the other.
 */
function checkSweep(options: Partial<CreateJobsOptions>): { grid: Record<string, JsonValue[]>; sample: SampleSettings | null } {
  const { grid, sample } = options;
  if (grid === undefined && sample === undefined) {
    if (options.count !== undefined || options.seed !== undefined) throw new TypeError("createJobs: count and seed go with sample, e.g. { sample: { lr: { logUniform: [1e-4, 1e-1] } }, count: 20, seed: 7 }");
    throw new TypeError("createJobs: say what to sweep: options.grid (the values to try, e.g. { grid: { lr: [0.1, 0.01] } }) or options.sample (a random search, e.g. { sample: { lr: { logUniform: [1e-4, 1e-1] } }, count: 20, seed: 7 })");
  }
  const checkedGrid: Record<string, JsonValue[]> = {};
  if (grid !== undefined) {
    if (typeof grid !== "object" || grid === null || Array.isArray(grid) || Object.keys(grid).length === 0) {
      throw new TypeError("createJobs: options.grid must name parameters and the values to try, e.g. { grid: { lr: [0.1, 0.01], steps: [100, 200] } }");
    }
    for (const [key, values] of Object.entries(grid)) {
      if (!Array.isArray(values) || values.length === 0) throw new TypeError(`grid.${key} must be a non-empty array of values to try; got ${inspect(values, { depth: 0 })}`);
      // Checked here, before the review, and named as the user wrote them (grid.lr[1]).
      checkedGrid[key] = values.map((value, i) => toJsonValue(value, `grid.${key}[${i}]`));
    }
    checkStorableJson("createJobs: grid", checkedGrid);
  }
  if (sample === undefined) {
    if (options.count !== undefined || options.seed !== undefined) throw new TypeError("createJobs: count and seed go with sample (a random search); a grid runs every combination once");
    return { grid: checkedGrid, sample: null };
  }
  const settings = checkSample(sample, options.count, options.seed);
  const both = Object.keys(settings.spec).filter((key) => key in checkedGrid);
  if (both.length > 0) throw new TypeError(`sample.${both[0]} is also in grid: a parameter is either tried at each grid value or drawn, not both`);
  checkStorableJson("createJobs: sample", settings.spec);
  return { grid: checkedGrid, sample: settings };
}

/** Every combination of the grid's values, in key order (the last key varies fastest). */
function gridCombinations(grid: Record<string, unknown[]>): Record<string, unknown>[] {
  let combos: Record<string, unknown>[] = [{}];
  for (const [key, values] of Object.entries(grid)) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [key]: v })));
  return combos;
}

/** A bundle as the store keeps it: its snippets with the label of the collector each came from. */
function storedBundle(bundle: Bundle, collectors: SnippetCollector[]): BundleInput {
  const collectorOf = new Map<string, string | null>();
  for (const collector of collectors) for (const s of collector.snippets) if (!collectorOf.has(s.hash)) collectorOf.set(s.hash, collector.label ?? null);
  return {
    source: bundle.source,
    snippets: bundle.snippets.map((s) => ({ kind: s.kind, names: [...s.names], source: s.source, collector: collectorOf.get(s.hash) ?? null })),
    params: bundle.params as { [name: string]: Json },
    entries: bundle.entries,
    files: bundle.files.map((f) => ({ path: f.path, text: f.text })),
  };
}

/**
 * Says which local modules lie outside the notebook's folder (`../shared/x.ts`): they are stored
 * with the job and laid out at the same place relative to it on the worker, but they are easy to
 * miss (another project's file, say), and `nbjob export` leaves them for the user to copy.
 */
function noteFilesOutside(what: string, files: readonly { path: string }[]): void {
  const outside = files.map((f) => f.path).filter((path) => path.startsWith("../"));
  if (outside.length === 0) return;
  currentCellSink()?.stream("stderr", `${what}: note: ${outside.join(", ")} ${outside.length === 1 ? "is" : "are"} outside the notebook's folder (${process.cwd()}); stored with the job as ${outside.length === 1 ? "it is" : "they are"} now and laid out beside it on the worker (nbjob export leaves ${outside.length === 1 ? "it" : "them"} for you to copy)\n`);
}

export class DBWrapper {
  readonly store: Store;

  /** The store at `url` (a PostgreSQL URL); default NBJOB_DATABASE_URL, else the embedded server. */
  constructor(url?: string) {
    if (url !== undefined && typeof url !== "string") throw new TypeError(`new DBWrapper(url): url must be a PostgreSQL URL string such as "postgres://user@host/db"; got ${typeof url}`);
    this.store = openStore({ url, applicationName: "nbjob notebook", maxConnections: 4 });
    setDefaultStore(this.store);
  }

  /** Where the store is (password hidden). Connects (and starts the embedded server) if needed. */
  where(): Promise<StoreLocation> {
    return this.store.where();
  }

  /**
   * Creates a job: builds its bundle from the collectors' snippets, the parameters and the entry
   * expressions, type-checks it on its own (errors reject before anything is stored), lets the
   * user review it when the frontend can answer, stores it and sends it to the view.
   * `T` is the type of the result as you expect it (`db.createJob<number>(…)`), for `await job.result`.
   */
  async createJob<T = unknown>(view: View, entries: string[], ...collectorsAndOptions: CollectorsAndOptions<CreateJobOptions>): Promise<Job<T>> {
    checkViewArgument("createJob", view);
    const { collectors, options } = splitArguments<CreateJobOptions>("createJob", collectorsAndOptions);
    checkCommonOptions("createJob", options);
    let bundle = buildBundle(entries, collectors, { params: options.params, overrides: options.overrides, baseDir: process.cwd() });
    const review = options.review ?? frontendCanAnswer();
    if (review) {
      const reviewed = await reviewBundle(bundle, { baseDir: process.cwd() });
      if (!reviewed) throw new Error("the job was cancelled in review; nothing was stored or sent");
      bundle = reviewed;
    }
    await this.checkViewReachable(view);
    const job = await this.submit<T>(view, bundle, collectors, { name: options.name ?? null, tags: options.tags ?? [], timeoutMs: timeoutOf(options) });
    // The review ends with the user's answer: say what became of it, and the id to find it by.
    if (review) currentCellSink()?.stream("stdout", `job ${job.id} submitted to ${describeView(view)}\n`);
    noteFilesOutside("createJob", bundle.files);
    jobsChanged();
    return job;
  }

  /**
   * A sweep: one job per combination of `grid`'s values (each a parameter of `params`), all on
   * `view`. Every bundle is type-checked before any job is stored. `T` as in createJob.
   */
  async createJobs<T = unknown>(view: View, entries: string[], ...collectorsAndOptions: CollectorsAndOptions<CreateJobsOptions>): Promise<JobGroup<T>> {
    checkViewArgument("createJobs", view);
    const { collectors, options } = splitArguments<CreateJobsOptions>("createJobs", collectorsAndOptions);
    checkCommonOptions("createJobs", options);
    const { grid, sample } = checkSweep(options);
    const base = jobParams(options.params, options.overrides);
    const known = Object.keys(base);
    for (const key of [...Object.keys(grid).map((k) => `grid.${k}`), ...Object.keys(sample?.spec ?? {}).map((k) => `sample.${k}`)]) {
      const name = key.slice(key.indexOf(".") + 1);
      if (!(name in base)) {
        throw new Error(`${key} is not a parameter; the parameters are ${known.length === 0 ? "none (pass { params })" : known.join(", ")}. Set params.${name} in the notebook first, or fix the name`);
      }
    }
    checkSweepKinds(jobParams(options.params, undefined), grid, sample);
    // Without a grid, the one empty combination: every job is a draw.
    const draws = sample ? sampleParams(sample) : [{}];
    const combos = gridCombinations(grid).flatMap((combo) => draws.map((drawn) => ({ ...combo, ...drawn })));
    let common = buildBundle(entries, collectors, { params: options.params, overrides: options.overrides, baseDir: process.cwd() });
    const review = options.review ?? frontendCanAnswer();
    if (review) {
      const sweep = [
        ...Object.entries(grid).map(([k, v]) => `${k} in ${JSON.stringify(v)}`),
        ...(sample ? [`drawn: ${describeSample(sample)}`] : []),
      ].join(", ");
      const reviewed = await reviewBundle(common, { baseDir: process.cwd(), sweep: `Sweep: ${combos.length} jobs, ${sweep} (the sweep's values replace these parameters)` });
      if (!reviewed) throw new Error("the sweep was cancelled in review; nothing was stored or sent");
      common = reviewed;
    }
    // Every bundle is built (and type-checked) before anything is stored: one bad value stores nothing.
    // The check sees parameters only through their types, so each shape of values is checked once.
    const checkedShapes = new Set([jsonType(common.params)]);
    const bundles = combos.map((combo) => {
      const values = jobParams(common.params, combo, "grid");
      const shape = jsonType(values);
      const typeCheck = !checkedShapes.has(shape);
      checkedShapes.add(shape);
      // Only the params line differs from `common`: no need to order and lay out the snippets again.
      return withParams(common, values, { baseDir: process.cwd(), typeCheck });
    });
    await this.checkViewReachable(view);
    // The group, every bundle and every job in one transaction: one commit stores the sweep,
    // and a failure stores none of it.
    const targetWorker = view.kind === "direct" ? view.workerId : null;
    const { group, rows } = await this.store.transaction(async (tx) => {
      const group = await createJobGroup(tx, { name: options.name ?? null, grid: grid as { [name: string]: Json }, sample });
      const rows = await enqueueJobs(tx, bundles.map((bundle) => ({
        bundle: storedBundle(bundle, collectors), name: options.name ?? null, tags: options.tags ?? [], targetWorker, groupId: group.id, notebook: notebookPath() ?? null, timeoutMs: timeoutOf(options),
      })));
      return { group, rows };
    });
    const jobs = rows.map((row, i) => new Job<T>(this.store, row, { source: bundles[i].source, params: bundles[i].params, entries: bundles[i].entries, parts: bundles[i].parts, signature: signBundle(bundles[i]) }));
    if (view.kind === "loadBalanced") {
      jobs.forEach((job, i) => job.setRerun((again) => this.rerun(job, bundles[i].hash, again)));
      await this.announceQueued(jobs);
    } else {
      for (const [i, job] of jobs.entries()) await this.dispatch(view, job, bundles[i].hash);
    }
    if (review) currentCellSink()?.stream("stdout", `jobs ${jobs.map((j) => j.id).join(", ")} (sweep group ${group.id}) submitted to ${describeView(view)}\n`);
    noteFilesOutside("createJobs", common.files);
    jobsChanged();
    return new JobGroup<T>(group.id, jobs, grid, this.store, sample);
  }

  /** Reattaches to a stored sweep (from any notebook, at any time): its jobs in order, its grid; `T` as in createJob. */
  async group<T = unknown>(id: number): Promise<JobGroup<T>> {
    if (!Number.isSafeInteger(id) || id < 1) throw new TypeError(`db.group(id): id must be a group number such as 3; got ${inspect(id, { depth: 0 })}`);
    const group = await getJobGroup(this.store, id);
    if (!group) throw new Error(`db.group(${id}): there is no group ${id} in the store (a job's group is its job.record.group_id, or the group line of "nbjob show JOB")`);
    const rows = await listGroupJobs(this.store, id);
    const jobs = await Promise.all(rows.map((row) => this.attach<T>(row)));
    return new JobGroup<T>(group.id, jobs, group.grid as Record<string, unknown[]>, this.store, group.sample as unknown as SampleSettings | null);
  }

  /** Reattaches to a stored job (from any notebook, at any time); `T` as in createJob. */
  async job<T = unknown>(id: number): Promise<Job<T>> {
    if (!Number.isSafeInteger(id) || id < 1) throw new TypeError(`db.job(id): id must be a job number such as 3; got ${inspect(id, { depth: 0 })}`);
    return this.attach<T>(await requireJob(this.store, id));
  }

  /** A handle on a stored job's row (db.job, db.group). */
  private async attach<T>(row: DbJob): Promise<Job<T>> {
    const job = new Job<T>(this.store, row, await loadProgram(this.store, row.bundle_hash));
    if (FINAL_STATUSES.includes(row.status)) job.skipStoredOutput();
    job.setRerun((view) => this.rerun(job, row.bundle_hash, view));
    return job;
  }

  /**
   * Jobs matching every condition given, newest first (see JobsFilter), at most 50 unless `limit`
   * says otherwise (`offset` pages on):
   * `await db.jobs({ params: { lr: { lt: 0.01 } }, metrics: { loss: { lt: 0.1 } }, orderBy: "metrics.loss", limit: 10 })`.
   */
  async jobs(filter: JobsFilter = {}): Promise<JobSummary[]> {
    const rows = await queryJobs(this.store, jobQuery(filter));
    return rows.map(summarize);
  }

  /**
   * Indexes the number at a field (`"params.lr"`, `"metrics.loss"`, `"result"`, `"result.acc"`), so
   * db.jobs ranges on it and orders by it read the index instead of every job (worth it from some
   * ten thousand jobs on). Built concurrently: jobs keep running. Already indexed: nothing to do
   * (`created: false`). Same as `nbjob db index FIELD`, where `--list` and `--drop` are too.
   */
  async createIndex(field: string): Promise<{ field: string; index: string; created: boolean }> {
    try {
      const { field: name, index, created } = await createFieldIndex(this.store, field);
      return { field: name, index: `nbjob.${index.name}`, created };
    } catch (err) {
      if (err instanceof JobQueryError) throw new TypeError(`db.createIndex: ${err.message}`);
      throw err;
    }
  }

  /**
   * Deletes jobs by id (`{ ids: [3, 4] }`) or by filter (`{ tag, status, olderThan: "30d" }`): their
   * rows, logs, checkpoints, results and analysis rows, in one transaction, then the stored values
   * nothing else refers to (`collect: false` skips that). By id, a queued or running job or one
   * tagged "keep" is an error and nothing is deleted; by filter, those are left alone and listed
   * in `kept` / `active`. `dryRun: true` only says what would go and the bytes it frees.
   */
  async deleteJobs<F extends DeleteJobsOptions>(filter: OnlyKeysOf<DeleteJobsOptions, F>): Promise<DeletionPlan> {
    if (filter === null || typeof filter !== "object" || Array.isArray(filter)) throw new TypeError(`db.deleteJobs(filter): filter is an object such as { ids: [3] } or { tag: "draft", olderThan: "30d" }; got ${inspect(filter)}`);
    // Before anything is deleted: an ignored condition ({ name }, a misspelled { dryrun }) would delete more than asked.
    const unknown = Object.keys(filter).filter((k) => !(DELETE_JOBS_KEYS as readonly string[]).includes(k));
    if (unknown.length > 0) throw new TypeError(`db.deleteJobs: unknown option${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}; the options are ${DELETE_JOBS_KEYS.join(", ")} (to select by name, params or metrics: ids: (await db.jobs({ ... })).map((j) => j.id)); nothing was deleted`);
    const plan = await deleteJobs(this.store, {
      ids: filter.ids, tag: filter.tag, status: filter.status, dryRun: filter.dryRun,
      olderThanMs: filter.olderThan === undefined ? undefined : parseDuration(filter.olderThan),
    });
    if (!plan.dryRun && plan.ids.length > 0 && filter.collect !== false) await collectGarbage(this.store);
    return plan;
  }

  /**
   * Runs `fns` (functions declared in notebook cells) over every checkpoint of `job` on the view's
   * workers: for each checkpoint, in the job's program with its values restored. Rows are stored,
   * so asking again is a lookup. `await analyzer.result` for the rows, typed from the functions'
   * return types (AnalysisRowOf); see runtime/analyzer.ts.
   */
  // `const`: an array literal of functions is inferred as a tuple, so each function's fields are known in order.
  createAnalyzer<const Fns extends readonly AnalysisFunctionValue[]>(view: View, job: Job | number, fns: Fns, options: AnalyzerOptions = {}): Promise<Analyzer<AnalysisRowOf<Fns>>> {
    return createAnalyzer(this.store, view, job, fns, options) as Promise<Analyzer<object>> as Promise<Analyzer<AnalysisRowOf<Fns>>>;
  }

  /** Closes the store's connections (jobs go on). */
  async close(): Promise<void> {
    await this.store.close();
  }

  [inspect.custom](): string {
    return "DBWrapper (the nbjob store; await db.where() says where)";
  }

  private async checkViewReachable(view: View): Promise<void> {
    if (view.kind !== "direct") return;
    if (!(await view.worker.alive())) {
      throw new Error(`worker ${view.workerId} (rc.view(${view.index}), ${view.worker.where}) does not answer its heartbeat: it is gone. Start it again ("npx nbjob cluster start -n 2") and reconnect with Client.connect(), or use another view`);
    }
  }

  /** Stores the bundle and a queued job row, then dispatches it. */
  private async submit<T>(view: View, bundle: Bundle, collectors: SnippetCollector[], meta: { name: string | null; tags: string[]; groupId?: number; timeoutMs?: number | null }): Promise<Job<T>> {
    const targetWorker = view.kind === "direct" ? view.workerId : null;
    const row = await this.store.transaction(async (tx) => {
      await putBundle(tx, storedBundle(bundle, collectors));
      return storeCreateJob(tx, { bundleHash: bundle.hash, name: meta.name, tags: meta.tags, targetWorker, groupId: meta.groupId ?? null, notebook: notebookPath() ?? null, timeoutMs: meta.timeoutMs ?? null });
    });
    const job = new Job<T>(this.store, row, { source: bundle.source, params: bundle.params, entries: bundle.entries, parts: bundle.parts, signature: signBundle(bundle) });
    await this.dispatch(view, job, bundle.hash);
    return job;
  }

  /** Sends a stored queued job to its view: NOTIFY for load-balanced, the worker comm for a direct view. */
  private async dispatch<T>(view: View | null, job: Job<T>, bundleHash: string): Promise<void> {
    job.setRerun((again) => this.rerun(job, bundleHash, again));
    if (view === null || view.kind === "loadBalanced") {
      await this.announceQueued([job]);
      return;
    }
    job.followWorker(view.worker);
    try {
      // With its entries and signature as stored: the worker checks what it is sent as it checks what it claims.
      const bundle = { source: job.source, hash: bundleHash, params: job.params, entries: job.entries, signature: job.bundleSignature ?? undefined };
      await view.worker.run(job.id, bundle, (event) => job.handleWorkerEvent(event));
    } catch (err) {
      const now: DbJob | undefined = await getJob(this.store, job.id);
      // The worker took it from the queue a moment before the message came: it runs all the same.
      if (now && (now.status !== "queued" || now.worker_id !== null)) {
        job.followStore();
        return;
      }
      await transitionJob(this.store, job.id, "cancelled", { error: { name: "DispatchFailed", message: (err as Error).message } }).catch(() => undefined);
      throw new Error(`job ${job.id} could not be sent to worker ${view.workerId} and was cancelled: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Wakes idle workers for load-balanced jobs just stored; says so in the cell when no worker is there to take them. */
  private async announceQueued(jobs: readonly Job<unknown>[]): Promise<void> {
    await notifyJobQueued(this.store, null);
    const alive = await listWorkers(this.store, { aliveWithinMs: 15_000 }).catch(() => undefined);
    if (alive && alive.length === 0) {
      // Not an error: the jobs wait in the queue and run when a worker starts.
      const which = jobs.length === 1 ? `job ${jobs[0].id} is` : `jobs ${jobs[0].id}-${jobs[jobs.length - 1].id} are`;
      currentCellSink()?.stream("stderr", `${which} queued, but no worker has checked in with the store in the last 15 s; ${jobs.length === 1 ? "it runs" : "they run"} when one does (npx nbjob cluster start -n 2)\n`);
    }
  }

  /** A new job running the same stored bundle (same code, same parameters), on `view` or any idle worker. */
  private async rerun<T>(original: Job<T>, bundleHash: string, view: View | undefined): Promise<Job<T>> {
    if (view !== undefined) {
      checkViewArgument("job.rerun", view);
      await this.checkViewReachable(view);
    }
    const stored = await getJob(this.store, original.id);
    const row = await storeCreateJob(this.store, {
      bundleHash, name: original.name, tags: original.tags, rerunOf: original.id, targetWorker: view?.kind === "direct" ? view.workerId : null,
      notebook: stored?.notebook ?? notebookPath() ?? null, timeoutMs: stored?.timeout_ms ?? null,
    });
    const job = new Job<T>(this.store, row, await loadProgram(this.store, bundleHash));
    await this.dispatch(view ?? null, job, bundleHash);
    jobsChanged();
    return job;
  }
}

export { FINAL_STATUSES };
export type { ParamValues };
