// The dashboard's JSON: what each page reads, and the actions. Reads go through the store's own
// functions (those `nbjob show|logs|diff` use, and store/job-browse.ts, which cuts long values in
// SQL); actions do what `nbjob cancel|rerun|tag|rm|gc` and `job.resume()` do.
import type { DbLog, JobPreview, JobStatus, ParamCondition, Store } from "../../store";
import {
  analysisPoints, browseJobs, bundleCode, createJob, diffJobs, getBundle, getEnvironment, getJobGroup, IllegalTransitionError, isJobStatus, jobForPage,
  jobOutcomeText, jobsDerivedFrom, JOB_STATUSES, listCheckpoints, cancelJob, CANCEL_SETTLE_MS, notifyJobQueued, PARAM_OPERATORS, paramPreviews, paramValueText,
  readLogs, readLogTail, readMetrics, checkStorableText, requireJob, setJobNote, setJobTags, storedParamsBytes, transitionJob, BROWSE_SORTS, StoreError, UnknownJobError,
} from "../../store";
import type { BrowseJobsFilter, BrowseSort } from "../../store";
import { createTwoFilesPatch } from "diff";
import { declarationHistory } from "../../store";
import { vegaLiteSpec } from "../../runtime/analyzer-plot";
import type { PlotSeries } from "../../runtime/analyzer-plot";
import { mapTraceback, storedBundleParts } from "../../runtime/traceback";
import { resumeJob } from "../../runtime/resume";
import { ActiveJobError, collectAndVacuum, collectGarbage, deleteJobs, formatBytes, KeptJobError, parseDuration } from "../../store/cleanup";
import type { DeleteJobsFilter } from "../../store/cleanup";
import { storeSpace } from "../db-size";
import { deletionLines, gcLine, graceLine } from "../rm";

/** A request the caller got wrong: answered 400 (404 for an unknown job) with this message. */
export class BadRequest extends Error {
  constructor(message: string, readonly status = 400) {
    super(message);
  }
}

/** A log line longer than this is cut in the page (the whole log stays in `nbjob logs`). */
const LOG_LINE_CHARS = 2_000;
/** Parameters stored above this size are not read whole to map a traceback (the frames stay as the worker wrote them). */
const MAP_TRACEBACK_MAX_PARAMS = 1024 * 1024;

export function parseId(text: string, what = "job"): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < 1) throw new BadRequest(`${what} id "${text}": expected a positive whole number`);
  return Number(text);
}

function wholeNumber(name: string, text: string | null, fallback: number, min: number, max: number): number {
  if (text === null || text === "") return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new BadRequest(`${name}=${text}: expected a whole number from ${min} to ${max}`);
  return n;
}

function date(name: string, text: string | null): Date | undefined {
  if (!text) return undefined;
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw new BadRequest(`${name}=${text}: expected a date such as 2026-12-06 or 2026-12-06T14:00`);
  return d;
}

/** `older=30d`: queued more than that long ago, as `nbjob rm --older-than 30d`. */
function olderThan(name: string, text: string | null): number | undefined {
  if (!text) return undefined;
  try {
    return parseDuration(text);
  } catch (err) {
    throw new BadRequest(`${name}=${text}: ${(err as Error).message}`);
  }
}

/** `lr<0.01`, `layers=2`, `opt!=adam`: a parameter, an operator and a value (a number compares as a number). */
export function parseParamCondition(text: string): ParamCondition {
  const match = /^\s*([^<>=!\s]+)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$/.exec(text);
  if (!match || match[3] === "") throw new BadRequest(`param=${text}: expected a condition such as lr<0.01 or opt=adam (operators ${PARAM_OPERATORS.join(" ")})`);
  const raw = match[3].replace(/^"(.*)"$/, "$1");
  const value = /^-?\d+(\.\d+)?(e-?\d+)?$/i.test(raw) ? Number(raw) : raw;
  return { name: match[1], op: match[2] as ParamCondition["op"], value };
}

/** The jobs list's query string as a store filter. */
export function browseFilter(query: URLSearchParams): BrowseJobsFilter {
  const statuses = (query.get("status") ?? "").split(",").filter(Boolean);
  for (const status of statuses) if (!isJobStatus(status)) throw new BadRequest(`status=${status}: expected one of ${JOB_STATUSES.join(", ")}`);
  const sort = query.get("sort") || "id";
  if (!(BROWSE_SORTS as readonly string[]).includes(sort)) throw new BadRequest(`sort=${sort}: expected one of ${BROWSE_SORTS.join(", ")}`);
  const order = query.get("order") || "desc";
  if (order !== "asc" && order !== "desc") throw new BadRequest(`order=${order}: expected asc or desc`);
  return {
    statuses: statuses as JobStatus[],
    tag: query.get("tag") || undefined,
    name: query.get("name") || undefined,
    worker: query.get("worker") || undefined,
    queuedFrom: date("from", query.get("from")),
    queuedBefore: date("to", query.get("to")),
    olderThanMs: olderThan("older", query.get("older")),
    params: query.getAll("param").filter((p) => p.trim() !== "").map(parseParamCondition),
    groupId: query.get("group") ? parseId(query.get("group")!, "group") : undefined,
    sort: sort as BrowseSort,
    descending: order === "desc",
    offset: wholeNumber("offset", query.get("offset"), 0, 0, 10_000_000),
    limit: wholeNumber("limit", query.get("limit"), 50, 1, 500),
  };
}

export async function listPage(store: Store, query: URLSearchParams): Promise<{ jobs: JobPreview[]; total: number; offset: number; limit: number; ms: number }> {
  const filter = browseFilter(query);
  const started = performance.now();
  const page = await browseJobs(store, filter);
  return { ...page, offset: filter.offset!, limit: filter.limit!, ms: Math.round((performance.now() - started) * 10) / 10 };
}

function cutLine(line: DbLog): { id: number; stream: string; at: Date; line: string } {
  return { id: line.id, stream: line.stream, at: line.at, line: line.line.length > LOG_LINE_CHARS ? `${line.line.slice(0, LOG_LINE_CHARS)}… (${line.line.length} characters)` : line.line };
}

/** The last lines (`before` pages back), or the lines after `after` (following). */
export async function logPage(store: Store, jobId: number, query: URLSearchParams): Promise<{ lines: ReturnType<typeof cutLine>[]; total: number }> {
  const limit = wholeNumber("limit", query.get("limit"), 1_000, 1, 5_000);
  const after = query.get("after");
  if (after !== null) {
    const lines = await readLogs(store, jobId, { afterId: wholeNumber("after", after, 0, 0, Number.MAX_SAFE_INTEGER), limit });
    return { lines: lines.map(cutLine), total: -1 };
  }
  const before = query.get("before");
  const tail = await readLogTail(store, jobId, { beforeId: before === null ? undefined : wholeNumber("before", before, 0, 0, Number.MAX_SAFE_INTEGER), limit });
  return { lines: tail.lines.map(cutLine), total: tail.total };
}

/** Numbers in what an analysis function returned: a number, [field, value] pairs, or an object's numeric fields. */
function numericFields(value: unknown): Array<[string | undefined, number]> {
  if (typeof value === "number" && Number.isFinite(value)) return [[undefined, value]];
  if (Array.isArray(value) && value.every((pair) => Array.isArray(pair) && pair.length === 2 && typeof pair[0] === "string")) {
    return (value as Array<[string, unknown]>).filter(([, v]) => typeof v === "number" && Number.isFinite(v)).map(([k, v]) => [k, v as number]);
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value).filter(([, v]) => typeof v === "number" && Number.isFinite(v)).map(([k, v]) => [k, v as number]);
  }
  return [];
}

/** Most points drawn per job and metric: a longer series is thinned evenly, its last point kept. */
const METRIC_POINTS = 2_000;

/**
 * Each metric the jobs logged (jobtracker.log), as one Vega-Lite chart per metric with a line per
 * job (the spec plotMetrics draws), and each job's last values. Only finite numbers are drawn.
 */
async function metricsCharts(store: Store, jobIds: number[]): Promise<Array<{ name: string; spec: object; last: Array<number | string | null> }>> {
  const read = await Promise.all(jobIds.map((id) => readMetrics(store, id)));
  const names = [...new Set(read.flatMap((r) => Object.keys(r.series)))].sort();
  return names.map((name) => {
    const series: PlotSeries[] = [];
    const last: Array<number | string | null> = [];
    read.forEach(({ series: all }, i) => {
      const s = all[name];
      const lastValue = s?.values.at(-1);
      last.push(lastValue === undefined ? null : Array.isArray(lastValue) ? `[${lastValue.length} values]` : Number.isFinite(lastValue) ? lastValue : String(lastValue));
      if (!s) return;
      const points = s.steps.map((x, k) => ({ x, y: s.values[k] })).filter((p): p is { x: number; y: number } => typeof p.y === "number" && Number.isFinite(p.y));
      const every = Math.ceil(points.length / METRIC_POINTS);
      const thinned = every <= 1 ? points : points.filter((_, k) => k % every === 0 || k === points.length - 1);
      if (thinned.length > 0) series.push({ name: `job ${jobIds[i]}`, points: thinned });
    });
    return { name, spec: vegaLiteSpec(series, "step", name, { title: `${name} by step`, width: 560, height: 220 }), last };
  });
}

/** The analyses' curves of some jobs as one Vega-Lite chart (the spec analyzer.plot makes), or null when there are none. */
async function analysisChart(store: Store, jobIds: number[], title: string): Promise<object | null> {
  const points = await analysisPoints(store, jobIds);
  const series = new Map<string, PlotSeries>();
  for (const point of points) {
    for (const [field, y] of numericFields(point.value)) {
      const name = `${jobIds.length > 1 ? `job ${point.job_id} ` : ""}${point.function_name}${field ? `.${field}` : ""}`;
      let s = series.get(name);
      if (!s) series.set(name, (s = { name, points: [] }));
      s.points.push({ x: point.checkpoint_idx, y });
    }
  }
  if (series.size === 0) return null;
  return vegaLiteSpec([...series.values()], "checkpoint", "value", { title, width: 560, height: 260 });
}

export async function jobPage(store: Store, jobId: number): Promise<object> {
  const job = await jobForPage(store, jobId);
  const [params, code, checkpoints, environment, derived, chart, metrics] = await Promise.all([
    paramPreviews(store, job.bundle_hash),
    bundleCode(store, job.bundle_hash),
    listCheckpoints(store, jobId),
    job.environment_hash ? getEnvironment(store, job.environment_hash) : undefined,
    jobsDerivedFrom(store, jobId),
    analysisChart(store, [jobId], `analyses of job ${jobId}`),
    metricsCharts(store, [jobId]),
  ]);
  let traceback = job.error_traceback ?? [];
  if (traceback.length > 0 && (await storedParamsBytes(store, job.bundle_hash)) <= MAP_TRACEBACK_MAX_PARAMS) {
    const bundle = await getBundle(store, job.bundle_hash);
    traceback = mapTraceback(traceback, bundle ? storedBundleParts(bundle) : undefined);
  }
  return {
    job: { ...job, error_traceback: traceback },
    params,
    code,
    checkpoints: checkpoints.slice(-500).map((c) => ({ idx: c.idx, created_at: c.created_at, names: Object.keys(c.values), bytes: Object.values(c.sizes).reduce((a, b) => a + b, 0) })),
    checkpointCount: checkpoints.length,
    environment: environment ?? null,
    derived,
    chart,
    metrics,
  };
}

/** One whole value on request: a parameter (`params?name=lr`), the printed result, or the error with its traceback. */
export async function wholeValue(store: Store, jobId: number, what: string, query: URLSearchParams): Promise<string> {
  if (what === "result" || what === "error") {
    const text = await jobOutcomeText(store, jobId, what);
    if (text === undefined) throw new BadRequest(`job ${jobId} has no ${what}`, 404);
    return text;
  }
  if (what === "params") {
    const name = query.get("name");
    if (!name) throw new BadRequest("name=…: which parameter?");
    const text = await paramValueText(store, await requireJobBundle(store, jobId), name);
    if (text === undefined) throw new BadRequest(`job ${jobId} has no parameter ${JSON.stringify(name)}`, 404);
    return text;
  }
  throw new BadRequest(`there is no value "${what}"; ask for result, error or params?name=NAME`, 404);
}

export async function comparePage(store: Store, query: URLSearchParams): Promise<object> {
  const ids = [...new Set((query.get("ids") ?? "").split(",").filter(Boolean).map((t) => parseId(t)))];
  if (ids.length < 2 || ids.length > 20) throw new BadRequest(`ids=${query.get("ids") ?? ""}: compare takes 2 to 20 job ids, e.g. ids=3,4,5`);
  const jobs = await Promise.all(ids.map((id) => jobForPage(store, id, 500)));
  const params = await Promise.all(jobs.map((job) => paramPreviews(store, job.bundle_hash, 200)));
  const names = [...new Set(params.flatMap((list) => list.map((p) => p.name)))].sort();
  const table = names.map((name) => {
    const values = params.map((list) => list.find((p) => p.name === name)?.preview ?? null);
    return { name, values, differs: new Set(values).size > 1 };
  });
  // Each job's code against the first one's: the unified diff `nbjob diff` prints.
  const diffs = await Promise.all(ids.slice(1).map(async (id) => {
    const diff = await diffJobs(store, ids[0], id);
    return { from: ids[0], to: id, diff: diff.length > 200_000 ? `${diff.slice(0, 200_000)}\n… (cut; nbjob diff ${ids[0]} ${id} shows it whole)` : diff };
  }));
  return {
    jobs: jobs.map((job) => ({ id: job.id, name: job.name, status: job.status, tags: job.tags, result: job.result_text, error: job.error_name ? `${job.error_name}: ${job.error_message ?? ""}` : null })),
    params: table,
    diffs,
    chart: await analysisChart(store, ids, `analyses of jobs ${ids.join(", ")}`),
    metrics: await metricsCharts(store, ids),
  };
}

export async function groupPage(store: Store, groupId: number): Promise<object> {
  const group = await getJobGroup(store, groupId);
  if (!group) throw new BadRequest(`there is no sweep (group) ${groupId}`, 404);
  const { jobs, total } = await browseJobs(store, { groupId, sort: "id", descending: false, limit: 1_000 });
  const params = new Map<number, Record<string, string>>();
  await Promise.all(jobs.map(async (job) => {
    const row = await requireJobBundle(store, job.id);
    params.set(job.id, Object.fromEntries((await paramPreviews(store, row, 200)).map((p) => [p.name, p.preview])));
  }));
  return { group, total, jobs: jobs.map((job) => ({ ...job, params: params.get(job.id) ?? {} })) };
}

async function requireJobBundle(store: Store, jobId: number): Promise<string> {
  const { rows } = await store.query<{ bundle_hash: string }>("SELECT bundle_hash FROM nbjob.jobs WHERE id = $1", [jobId]);
  if (!rows[0]) throw new UnknownJobError(jobId);
  return rows[0].bundle_hash;
}

/** Every stored version of a declaration (or `./local/module.ts`), the jobs that used each, and each one's diff from the one before. */
export async function historyPage(store: Store, query: URLSearchParams): Promise<object> {
  const name = query.get("name");
  if (!name) throw new BadRequest("name=…: which declaration? (a function, class or variable name, or ./path/to/module.ts)");
  const versions = await declarationHistory(store, name);
  const cutText = (text: string) => (text.length > 20_000 ? `${text.slice(0, 20_000)}\n… (cut)` : text);
  return {
    name,
    versions: versions.map((version, i) => ({
      hash: version.snippet.hash,
      kind: version.snippet.kind,
      created_at: version.snippet.created_at,
      source: cutText(version.snippet.source),
      jobIds: version.jobIds.slice(0, 200),
      jobCount: version.jobIds.length,
      diff: i === 0 ? null : cutText(createTwoFilesPatch(`version ${i}`, `version ${i + 1}`, versions[i - 1].snippet.source, version.snippet.source)),
    })),
  };
}

// ---------------------------------------------------------------- actions

function stringList(value: unknown, what: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw new BadRequest(`${what} must be a list of strings`);
  return value;
}

/** Deletes the selected jobs, as `nbjob rm JOB...`: all or none; a queued, running or keep-tagged one is named. */
export async function deleteSelected(store: Store, body: Record<string, unknown>): Promise<object> {
  const ids = body.ids;
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1_000 || !ids.every((id) => Number.isSafeInteger(id) && (id as number) > 0)) {
    throw new BadRequest("ids must be a list of 1 to 1,000 job ids, e.g. { \"ids\": [3, 4] }");
  }
  let plan;
  try {
    plan = await deleteJobs(store, { ids: ids as number[] });
  } catch (err) {
    if (err instanceof ActiveJobError || err instanceof KeptJobError) throw new BadRequest(`${err.message}; nothing was deleted`, 409);
    throw err;
  }
  collectGarbage(store, {}).catch(() => undefined);
  return { deleted: plan.ids, bytes: plan.bytes.total };
}

/** The jobs list's filters that also select jobs to delete: `nbjob rm --status S --tag T --older-than AGE`. */
const DELETE_FILTERS = ["status", "tag", "older"];
/** The list's other filters: they narrow the list, but deleting by filter does not take them. */
const LIST_ONLY_FILTERS = ["name", "worker", "from", "to", "param", "group"];

/** The jobs list's filters (its query's names and values) as the filter `nbjob rm` and db.deleteJobs take. */
export function deletionFilter(filter: unknown): DeleteJobsFilter {
  if (typeof filter !== "object" || filter === null || Array.isArray(filter)) {
    throw new BadRequest(`filter must be an object of the jobs list's filters, e.g. { "tag": "old", "status": "failed", "older": "30d" }`);
  }
  // An empty field is a filter the list's form left blank.
  const given = Object.entries(filter).filter(([, v]) => v !== "" && v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0));
  for (const [key, value] of given) {
    if (LIST_ONLY_FILTERS.includes(key)) {
      throw new BadRequest(`filter field "${key}" cannot select jobs to delete: deleting by filter takes status, tag and older (as nbjob rm --status, --tag, --older-than); clear the ${key} filter, or select the jobs in the list and delete those`);
    }
    if (!DELETE_FILTERS.includes(key)) throw new BadRequest(`filter field "${key}" is not supported; deleting by filter takes status, tag and older, e.g. { "tag": "old", "older": "30d" }`);
    if (typeof value !== "string") throw new BadRequest(`filter field "${key}" must be a string, got ${JSON.stringify(value)}`);
  }
  const fields = Object.fromEntries(given) as Record<string, string>;
  if (given.length === 0) throw new BadRequest("the filter is empty: say which jobs to delete by status, tag or older (deleting every job takes a filter)");
  if (fields.status !== undefined && !isJobStatus(fields.status)) throw new BadRequest(`filter field "status" is "${fields.status}": expected one status of ${JOB_STATUSES.join(", ")}`);
  try {
    checkStorableText("the tag", fields.tag);
  } catch (err) {
    throw new BadRequest(`filter field "tag": ${(err as Error).message}`);
  }
  return { tag: fields.tag, status: fields.status as JobStatus | undefined, olderThanMs: olderThan("filter field older", fields.older ?? null) };
}

/** Ids sent back in an answer (the report lines name the first 20, with the count). */
const ANSWER_IDS = 1_000;

/**
 * Deletes the jobs the list's filters match, as `nbjob rm --tag T --status S --older-than AGE`:
 * with dryRun only what would go (jobs, bytes, the ones left because tagged keep or still queued
 * or running); else the deletion, then gc + VACUUM as `nbjob rm` runs. `lines` are rm's lines.
 */
export async function deleteMatching(store: Store, body: Record<string, unknown>): Promise<object> {
  if (typeof body.dryRun !== "boolean") throw new BadRequest(`dryRun must be true (say what would be deleted) or false (delete), e.g. { "filter": { "tag": "old" }, "dryRun": true }`);
  const filter = deletionFilter(body.filter);
  const plan = await deleteJobs(store, { ...filter, dryRun: body.dryRun });
  const gc = !plan.dryRun && plan.ids.length > 0 ? await collectAndVacuum(store) : undefined;
  return {
    dryRun: plan.dryRun,
    counts: { jobs: plan.ids.length, kept: plan.kept.length, active: plan.active.length },
    ids: plan.ids.slice(0, ANSWER_IDS),
    kept: plan.kept.slice(0, ANSWER_IDS),
    active: plan.active.slice(0, ANSWER_IDS),
    bytes: plan.bytes,
    gc: gc ?? null,
    lines: [...deletionLines(plan, true), ...(gc ? [gcLine(gc), graceLine(gc)].filter((line) => line !== undefined) : [])],
  };
}

/** The store page: what `nbjob db status` says about space (size on disk, largest tables, biggest jobs). */
export async function storePage(store: Store): Promise<object> {
  const [space, where] = await Promise.all([storeSpace(store), store.where()]);
  // Sizes go with their text as `nbjob db status` prints it, so the page and the CLI agree.
  const sized = (bytes: number) => ({ bytes, text: formatBytes(bytes) });
  return {
    database: where.url,
    size: sized(space.database),
    tables: space.tables.map((t) => ({ table: t.table, ...sized(t.bytes) })),
    biggest: space.biggest.map((job) => ({ id: job.id, name: job.name, status: job.status, total: sized(job.total), checkpoints: sized(job.checkpoints), logs: sized(job.logs), results: sized(job.results) })),
  };
}

/** `nbjob gc` with the default grace period: collects what nothing refers to, then VACUUM. */
export async function runGc(store: Store, body: Record<string, unknown>): Promise<object> {
  const unknown = Object.keys(body).filter((key) => key !== "grace" && key !== "full");
  if (unknown.length > 0) throw new BadRequest(`gc takes {grace?: "10m", full?: true} (as nbjob gc --grace AGE --full); got ${unknown.join(", ")}`);
  const { grace, full } = body;
  if (full !== undefined && typeof full !== "boolean") throw new BadRequest(`gc: full must be true or false, got ${JSON.stringify(full)}`);
  let graceMs: number | undefined;
  if (grace !== undefined) {
    if (typeof grace !== "string") throw new BadRequest(`gc: grace must be an age such as "10m", "2h" or "0s", got ${JSON.stringify(grace)}`);
    try {
      graceMs = parseDuration(grace);
    } catch (err) {
      throw new BadRequest(`gc: grace: ${(err as Error).message}`);
    }
  }
  const report = await collectAndVacuum(store, { graceMs, full: full === true });
  return { ...report, line: gcLine(report) };
}

/** Runs one action; returns what the page shows. */
export async function runAction(store: Store, jobId: number, action: string, body: Record<string, unknown>): Promise<object> {
  switch (action) {
    case "cancel": {
      const outcome = await cancelJob(store, jobId, "cancelled from the dashboard", { settleMs: CANCEL_SETTLE_MS });
      if (!outcome.cancelled) throw new BadRequest(`job ${jobId} is already ${outcome.was}; nothing to cancel`, 409);
      return { cancelled: jobId, was: outcome.was, settled: outcome.settled };
    }
    case "rerun": {
      const original = await requireJob(store, jobId);
      const created = await store.transaction(async (tx) => {
        // The bundle row is what the worker runs (its size is 0 only when there is no row).
        if ((await storedParamsBytes(tx, original.bundle_hash)) === 0) {
          throw new BadRequest(`job ${jobId}'s bundle is not in the store (deleted?), so it cannot be rerun`, 409);
        }
        const row = await createJob(tx, { bundleHash: original.bundle_hash, name: original.name, tags: original.tags, rerunOf: jobId, notebook: original.notebook, timeoutMs: original.timeout_ms });
        await notifyJobQueued(tx, null);
        return row;
      });
      return { created: Number(created.id) };
    }
    case "resume": {
      try {
        const created = await resumeJob(store, jobId, undefined);
        return { created: created.id, fromCheckpoint: created.fromCheckpoint ?? null };
      } catch (err) {
        if (err instanceof StoreError) throw err;
        throw new BadRequest((err as Error).message, 409);
      }
    }
    case "tags": {
      try {
        return { tags: await setJobTags(store, jobId, stringList(body.add, "add"), stringList(body.remove, "remove")) };
      } catch (err) {
        if (err instanceof StoreError && !(err instanceof UnknownJobError)) throw new BadRequest(err.message);
        throw err;
      }
    }
    case "note": {
      if (body.note !== null && typeof body.note !== "string") throw new BadRequest("note must be a string (or null to clear it)");
      try {
        await setJobNote(store, jobId, body.note);
      } catch (err) {
        if (err instanceof StoreError && !(err instanceof UnknownJobError)) throw new BadRequest(err.message);
        throw err;
      }
      return { note: body.note || null };
    }
    case "delete": {
      // As `nbjob rm JOB`: a queued or running job, or one tagged keep, is refused with the reason.
      let plan;
      try {
        plan = await deleteJobs(store, { ids: [jobId] });
      } catch (err) {
        if (err instanceof ActiveJobError || err instanceof KeptJobError) throw new BadRequest(err.message, 409);
        throw err;
      }
      // The values only this job used go with the next collection; the page need not wait for it.
      collectGarbage(store, {}).catch(() => undefined);
      return { deleted: jobId, bytes: plan.bytes.total };
    }
    default:
      throw new BadRequest(`there is no action "${action}"; actions are cancel, rerun, resume, tags, note, delete`, 404);
  }
}
