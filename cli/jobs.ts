// The read side of the CLI: `nbjob jobs | show | logs | diff | log | history`, one function per
// command, each reading the store through its public API.
import type { Command } from "./args";
import { parseCommandArgs, UsageError } from "./args";
import { STORE_FLAGS, STORE_FLAGS_USAGE, withCliStore } from "./db";
import {
  requireJob, getBundle, signStoredBundle, getEnvironment, readLogs, diffJobs, jobLog, declarationHistory, isJobStatus, JOB_STATUSES,
  StoreError, createJob, transitionJob, IllegalTransitionError, notifyJobQueued, cancelJob, CANCEL_SETTLE_MS,
} from "../store";
import type { DbJob, DbJobQueried, DbLog, FieldRef, JobCondition, JobQuery, Json } from "../store";
import { compileJobQuery, countJobs, fieldRef, JobQueryError, parseWhere, queryJobs, WhereSyntaxError } from "../store";
import { getJob } from "../store";
import { formatBytes, jobSizes } from "../store/cleanup";
import { formatLastMetrics, lastMetricsOf, ROW_METRICS } from "../store/metrics";

// ---------------------------------------------------------------- formatting helpers

function formatTime(date: Date | null): string {
  return date ? date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "-";
}

function formatDuration(job: Pick<DbJob, "started_at" | "finished_at">): string {
  if (!job.started_at) return "-";
  const ms = (job.finished_at ?? new Date()).getTime() - job.started_at.getTime();
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function table(header: string[], rows: string[][]): string {
  // reduce, not Math.max(...rows): --limit can ask for more rows than a call takes arguments.
  const widths = header.map((h, i) => rows.reduce((w, row) => Math.max(w, row[i].length), h.length));
  const line = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function indent(text: string, prefix = "  "): string {
  return text.split("\n").map((line) => (line ? prefix + line : line)).join("\n");
}

function jobTitle(job: Pick<DbJob, "id" | "name">): string {
  return `job ${job.id}${job.name ? `  ${job.name}` : ""}`;
}

/** JOB arguments are job ids: positive integers. */
function parseJobId(text: string | undefined, what = "JOB"): number {
  if (text === undefined) throw new UsageError(`missing ${what}: give a job id (see "nbjob jobs")`);
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`${what} must be a job id (a positive integer, see "nbjob jobs"), got "${text}"`);
  }
  return Number(text);
}

function parseLimit(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`--limit must be a positive integer, got "${text}"`);
  return Number(text);
}

function exactlyPositionals(positionals: string[], count: number, usage: string): void {
  // One line, as parseCommandArgs's errors: the whole usage here buried what was wrong.
  if (positionals.length > count) throw new UsageError(`unexpected argument "${positionals[count]}" (${usage.split("\n", 1)[0]})`);
}

// ---------------------------------------------------------------- nbjob jobs

const JOBS_USAGE = `usage: nbjob jobs [--status S] [--tag T] [--name N] [--where EXPR] [--order FIELD] [--limit N] [--size]

  --status S     only jobs with this status (${JOB_STATUSES.join(", ")})
  --tag T        only jobs with this tag
  --name N       only jobs with this name
  --where EXPR   only jobs for which EXPR holds: comparisons joined by and / or, with parentheses,
                 e.g. --where "params.lr < 0.01 and metrics.loss < 0.1"
                 fields: params.NAME (params.model.layers for nested values), metrics.NAME (the
                   last logged value; NAME is the metric's whole name, dots and slashes included:
                   metrics.layer0.grad_norm, metrics.val/loss; quote one with blanks or
                   = ! < > ( ) , in it: metrics."val loss"), result, result.NAME, status, name,
                   tag, group, created, id
                 comparisons: = != < <= > >= (< and > compare numbers, and dates for created),
                   FIELD in (1, 2), FIELD exists
                 values: numbers, "quoted text", true, false, null
  --order FIELD  sort by a field, smallest first; -FIELD for largest first (default -created:
                 newest first), e.g. --order metrics.loss
  --limit N      how many jobs to list (default 50; a last line on stderr says when more match)
  --size         add a SIZE column: bytes of the job's checkpoint values, logs and result

The params., metrics. and result fields named in --where and --order get a column each;
METRICS shows the last values of up to ${ROW_METRICS} other metrics (nbjob show JOB lists them all).
${STORE_FLAGS_USAGE}`;

/** The params/metrics/result fields an expression names, in order, once each (shown as columns). */
function namedFields(condition: JobCondition | undefined, out: FieldRef[] = []): FieldRef[] {
  if (!condition) return out;
  if ("and" in condition || "or" in condition) {
    for (const part of "and" in condition ? condition.and : condition.or) namedFields(part, out);
  } else if ("path" in condition.field) out.push(condition.field);
  return out;
}

function fieldLabel(field: FieldRef & { path: string[] }): string {
  return [field.kind, ...field.path].join(".");
}

function fieldText(row: DbJobQueried, field: FieldRef & { path: string[] }): string {
  let value: Json | undefined = field.kind === "params" ? row.params : field.kind === "metrics" ? row.last_metrics : row.result_json ?? undefined;
  for (const key of field.path) value = value !== null && typeof value === "object" && !Array.isArray(value) ? value[key] : undefined;
  return value === undefined ? "-" : typeof value === "string" ? value : JSON.stringify(value);
}

/** `--order -metrics.loss`: parseArgs takes a value that starts with a dash for a flag; this one is a field. */
function joinOrderValue(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--order" && i + 1 < argv.length && /^-[A-Za-z_$]/.test(argv[i + 1])) out.push(`--order=${argv[++i]}`);
    else out.push(argv[i]);
  }
  return out;
}

export async function cmdJobs(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: joinOrderValue(argv), allowPositionals: true, strict: true,
    options: {
      ...STORE_FLAGS, status: { type: "string" }, tag: { type: "string" }, name: { type: "string" }, limit: { type: "string" }, size: { type: "boolean" },
      where: { type: "string" }, order: { type: "string" },
    },
  }, JOBS_USAGE);
  exactlyPositionals(positionals, 0, JOBS_USAGE);
  if (values.status !== undefined && !isJobStatus(values.status)) {
    throw new UsageError(`--status must be one of ${JOB_STATUSES.join(", ")}, got "${values.status}"`);
  }
  const limit = parseLimit(values.limit, 50);
  const conditions: JobCondition[] = [];
  if (values.status !== undefined) conditions.push({ field: { kind: "status" }, op: "eq", value: values.status });
  if (values.tag !== undefined) conditions.push({ field: { kind: "tag" }, op: "eq", value: values.tag });
  if (values.name !== undefined) conditions.push({ field: { kind: "name" }, op: "eq", value: values.name });
  let where: JobCondition | undefined;
  if (values.where !== undefined) {
    try {
      where = parseWhere(values.where);
    } catch (err) {
      if (err instanceof WhereSyntaxError) throw new UsageError(`nbjob jobs --where: ${err.message}`);
      throw err;
    }
    conditions.push(where);
  }
  const shown = namedFields(where);
  if (values.order !== undefined) {
    try {
      const ordered = fieldRef(values.order.replace(/^-/, ""));
      if ("path" in ordered) shown.push(ordered);
    } catch (err) {
      throw new UsageError(`nbjob jobs --order: ${(err as Error).message}`);
    }
  }
  const columns = [...new Map(shown.map((field) => [fieldLabel(field as FieldRef & { path: string[] }), field as FieldRef & { path: string[] }])).entries()];
  const query: JobQuery = { where: { and: conditions }, orderBy: values.order, limit };
  try {
    compileJobQuery(query);
  } catch (err) {
    if (err instanceof JobQueryError) throw new UsageError(`nbjob jobs${values.where !== undefined ? " --where" : ""}: ${err.message}`);
    throw err;
  }
  const sizes = new Map<number, number>();
  let matching = 0;
  const jobs = await withCliStore(values, async (store) => {
    const listed = await queryJobs(store, query);
    if (values.size && listed.length > 0) for (const size of await jobSizes(store, { ids: listed.map((job) => job.id) })) sizes.set(size.id, size.total);
    // A full page may have cut the list: count what matched, to say so.
    matching = listed.length === limit ? await countJobs(store, query) : listed.length;
    return listed;
  });
  if (jobs.length === 0) {
    const filtered = conditions.length > 0;
    console.log(filtered ? "no jobs match" : "no jobs yet");
    return 0;
  }
  // The METRICS column holds the last values of the metrics that have no column of their own.
  const ownColumns = new Set(columns.filter(([, field]) => field.kind === "metrics" && field.path.length === 1).map(([, field]) => field.path[0]));
  const metrics = jobs.map((job) => formatLastMetrics(Object.fromEntries(Object.entries(lastMetricsOf(job)).filter(([name]) => !ownColumns.has(name))), 4, { count: ROW_METRICS, see: `nbjob show ${job.id}` }));
  // Only when some job logged metrics; last, since a job may log many and the last column is not padded.
  const withMetrics = metrics.some((text) => text !== "");
  const rows = jobs.map((job, i) => [
    String(job.id), job.status, job.name ?? "", job.tags.join(","), formatTime(job.queued_at), formatDuration(job), job.worker_id ?? "",
    ...columns.map(([, field]) => fieldText(job, field)),
    ...(values.size ? [formatBytes(sizes.get(job.id) ?? 0)] : []),
    ...(withMetrics ? [metrics[i]] : []),
  ]);
  console.log(table(
    ["ID", "STATUS", "NAME", "TAGS", "QUEUED", "TIME", "WORKER", ...columns.map(([label]) => label.toUpperCase()), ...(values.size ? ["SIZE"] : []), ...(withMetrics ? ["METRICS"] : [])],
    rows,
  ));
  // On stderr, like the other notes: stdout stays the table alone for scripts.
  if (matching > jobs.length) console.error(`${jobs.length} of ${matching} jobs shown; --limit N for more`);
  return 0;
}

// ---------------------------------------------------------------- nbjob show

const SHOW_USAGE = `usage: nbjob show JOB

Shows one job: status, times, worker, parameters, result or error, and its whole source.
${STORE_FLAGS_USAGE}`;

function formatJson(value: Json): string {
  return JSON.stringify(value, null, 2) ?? "undefined";
}

export async function cmdShow(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args: argv, allowPositionals: true, strict: true, options: STORE_FLAGS }, SHOW_USAGE);
  exactlyPositionals(positionals, 1, SHOW_USAGE);
  const id = parseJobId(positionals[0]);
  const text = await withCliStore(values, async (store) => {
    const job = await requireJob(store, id);
    const bundle = await getBundle(store, job.bundle_hash);
    const environment = job.environment_hash ? await getEnvironment(store, job.environment_hash) : undefined;
    const out: string[] = [jobTitle(job)];
    const field = (label: string, value: string) => out.push(`${label.padEnd(12)}${value}`);
    field("status", job.status);
    if (job.tags.length) field("tags", job.tags.join(", "));
    field("queued", formatTime(job.queued_at));
    if (job.started_at) field("started", formatTime(job.started_at));
    if (job.finished_at) field("finished", `${formatTime(job.finished_at)}${job.started_at ? ` (took ${formatDuration(job)})` : ""}`);
    if (job.worker_id || job.host) field("worker", `${job.worker_id ?? "?"}${job.host ? ` on ${job.host}` : ""}${job.pid ? ` (pid ${job.pid})` : ""}`);
    if (job.target_worker) field("for worker", job.target_worker);
    if (job.group_id !== null) field("group", String(job.group_id));
    if (job.timeout_ms !== null) field("time limit", `${job.timeout_ms} ms (timeoutMs)`);
    // The parent may have been deleted (nbjob rm): the number stays, marked.
    const parent = async (id: number) => `job ${id}${(await getJob(store, id)) ? "" : " (deleted)"}`;
    if (job.rerun_of !== null) field("rerun of", await parent(job.rerun_of));
    if (job.resumed_from !== null) field("resumed", `from ${await parent(job.resumed_from)}${job.resumed_from_checkpoint !== null ? ` at checkpoint ${job.resumed_from_checkpoint}` : ""}`);
    if (environment) {
      field("environment", `node ${environment.node_version}, nbjob ${environment.nbjob_version}${environment.lockfile_hash ? `, lock files ${environment.lockfile_hash.slice(0, 12)}` : ""}${job.host ? `, on ${job.host}` : ""}`);
      const packages = Object.entries(environment.packages).sort(([a], [b]) => (a < b ? -1 : 1));
      field("packages", packages.length ? packages.map(([name, version]) => `${name}@${version}`).join(", ") : "(imports none)");
      const origins = [...new Set(Object.values(environment.package_sources ?? {}))];
      if (origins.length > 0) field("from", origins.join("; "));
    }
    if (job.note) field("note", job.note.replace(/\n/g, `\n${" ".repeat(12)}`));
    const metrics = formatLastMetrics(lastMetricsOf(job), 6);
    if (metrics) field("metrics", `${metrics} (last values; nbjob metrics ${job.id})`);
    field("bundle", job.bundle_hash);
    if (bundle) {
      const names = Object.keys(bundle.params).sort();
      out.push("", "parameters");
      out.push(names.length ? names.map((name) => `  ${name} = ${JSON.stringify(bundle.params[name])}`).join("\n") : "  (none)");
      out.push("", "entries", ...bundle.entries.map((entry) => `  ${entry}`));
      if (bundle.files.length > 0) {
        out.push("", "local modules");
        for (const file of bundle.files) out.push(`  ${file.path}  ${file.hash.slice(0, 12)}  ${file.content.split("\n").length} lines`);
      }
    }
    if (job.status === "done") {
      out.push("", "result", indent(job.result_text ?? formatJson(job.result)));
    }
    if (job.error_name || job.error_message) {
      const header = `${job.error_name ?? "Error"}: ${job.error_message ?? ""}`;
      // Frames mapped to the snippet and line as the notebook's JobError shows them; tracebacks
      // usually repeat "Name: message" on their first line: show it once.
      // Loaded only here: the bundle layout code is not needed by any other read command.
      const { mapTraceback, storedBundleParts } = require("../runtime/traceback") as typeof import("../runtime/traceback");
      const frames = mapTraceback(job.error_traceback ?? [], bundle ? storedBundleParts(bundle) : undefined);
      const traceback = frames.filter((line, i) => !(i === 0 && line === header));
      out.push("", "error", `  ${header}`);
      if (traceback.length) out.push(indent(traceback.join("\n")));
    }
    out.push("", "source");
    out.push(bundle ? indent(bundle.source.replace(/\n+$/, "")) : `  (bundle ${job.bundle_hash} is missing from the store)`);
    return out.join("\n");
  });
  console.log(text);
  return 0;
}

// ---------------------------------------------------------------- nbjob logs

const LOGS_USAGE = `usage: nbjob logs JOB [--follow] [--timestamps] [--stream stdout|stderr]

Prints what the job printed: its stdout lines to stdout, its stderr lines to stderr.
  --follow, -f     keep printing new lines until the job has finished
  --timestamps     start each line with the time it was printed
  --stream S       only stdout or only stderr
${STORE_FLAGS_USAGE}`;

export async function cmdLogs(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { ...STORE_FLAGS, timestamps: { type: "boolean" }, stream: { type: "string" }, follow: { type: "boolean", short: "f" } },
  }, LOGS_USAGE);
  exactlyPositionals(positionals, 1, LOGS_USAGE);
  const id = parseJobId(positionals[0]);
  if (values.stream !== undefined && values.stream !== "stdout" && values.stream !== "stderr") {
    throw new UsageError(`--stream must be stdout or stderr, got "${values.stream}"`);
  }
  let printed = 0;
  const print = (lines: DbLog[]) => {
    for (const line of lines) {
      if (values.stream !== undefined && line.stream !== values.stream) continue;
      const text = values.timestamps ? `${line.at.toISOString()} ${line.line}` : line.line;
      (line.stream === "stderr" ? process.stderr : process.stdout).write(text + "\n");
      printed++;
    }
  };
  const finalStatus = await withCliStore(values, async (store) => {
    let job = await requireJob(store, id);
    let afterId = 0;
    for (;;) {
      // Read the status before the lines: lines written before it finished are then all seen.
      const finished = job.status !== "queued" && job.status !== "running";
      const lines = await readLogs(store, id, { afterId });
      print(lines);
      if (lines.length) afterId = lines[lines.length - 1].id;
      if (!values.follow || finished) return finished ? job.status : undefined;
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await requireJob(store, id);
    }
  });
  if (printed === 0) {
    // A job that has ended will print nothing more: "yet" only while it may still.
    const on = values.stream ? ` on ${values.stream}` : "";
    console.error(finalStatus === undefined ? `job ${id} has printed nothing${on} yet` : `job ${id} (${finalStatus}) printed nothing${on}`);
  }
  return 0;
}

// ---------------------------------------------------------------- nbjob diff

const DIFF_USAGE = `usage: nbjob diff JOB_A JOB_B

The unified diff of two jobs' code (their snippets in order), parameters and entries.
${STORE_FLAGS_USAGE}`;

export async function cmdDiff(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args: argv, allowPositionals: true, strict: true, options: STORE_FLAGS }, DIFF_USAGE);
  exactlyPositionals(positionals, 2, DIFF_USAGE);
  const a = parseJobId(positionals[0], "JOB_A");
  const b = parseJobId(positionals[1], "JOB_B");
  const patch = await withCliStore(values, (store) => diffJobs(store, a, b));
  process.stdout.write(patch === "" ? `jobs ${a} and ${b} have the same code and parameters\n` : patch);
  return 0;
}

// ---------------------------------------------------------------- nbjob log

const LOG_USAGE = `usage: nbjob log [--name DECL] [--limit N]

Jobs, newest first, with the declarations and local modules (./lib/other.ts) added, changed or
removed since the previous job of the same notebook (the notebook that created it; for jobs
without one, of the same collectors).
  --name DECL   only the jobs where the declaration (or local module) DECL changed
  --limit N     how many jobs to show (default 20)
${STORE_FLAGS_USAGE}`;

export async function cmdLog(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { ...STORE_FLAGS, name: { type: "string" }, limit: { type: "string" } },
  }, LOG_USAGE);
  exactlyPositionals(positionals, 0, LOG_USAGE);
  const limit = parseLimit(values.limit, 20);
  const entries = await withCliStore(values, (store) => jobLog(store, { name: values.name, limit }));
  if (entries.length === 0) {
    // A name matching nothing is most likely misspelled: an error, as in "nbjob history".
    if (values.name !== undefined) throw new StoreError(`no job used a declaration named "${values.name}"; names are case-sensitive ("nbjob log" shows the declarations of recent jobs)`);
    console.log("no jobs yet");
    return 0;
  }
  const out: string[] = [];
  for (const entry of entries) {
    const job = entry.job;
    out.push(`${jobTitle(job)}  [${job.status}]  ${formatTime(job.queued_at)}`);
    // Which job it is compared with: the previous one of its own notebook (or collectors), not
    // whichever job another notebook made just before it.
    const compared = entry.previousId === null ? "its first job" : entry.changes.length ? `compared with job ${entry.previousId}` : `same code as job ${entry.previousId}`;
    out.push(`    ${entry.lineage}: ${compared}`);
    for (const change of entry.changes) {
      const hashes = change.change === "changed" ? `${change.from!.slice(0, 8)} -> ${change.to!.slice(0, 8)}` : (change.to ?? change.from)!.slice(0, 8);
      out.push(`    ${change.change.padEnd(8)} ${change.name}  ${hashes}`);
    }
  }
  console.log(out.join("\n"));
  return 0;
}

// ---------------------------------------------------------------- nbjob history

const HISTORY_USAGE = `usage: nbjob history DECL

Every distinct version of the declaration DECL (a function, class, variable, type ... name),
oldest first, with the jobs that used it and its source. DECL may also be a local module the
jobs imported, by its path from the notebook's folder: "nbjob history ./lib/other.ts".
${STORE_FLAGS_USAGE}`;

/** "1-3, 5, 8-9" */
function idRanges(ids: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
    parts.push(j > i ? `${ids[i]}-${ids[j]}` : String(ids[i]));
    i = j;
  }
  return parts.join(", ");
}

export async function cmdHistory(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args: argv, allowPositionals: true, strict: true, options: STORE_FLAGS }, HISTORY_USAGE);
  exactlyPositionals(positionals, 1, HISTORY_USAGE);
  const name = positionals[0];
  if (!name) throw new UsageError(`missing DECL: give the name of a declaration, e.g. "nbjob history train"`);
  const [versions, changes] = await withCliStore(values, (store) => Promise.all([declarationHistory(store, name), jobLog(store, { name, limit: 20 })]));
  if (versions.length === 0) throw new StoreError(`no stored code declares "${name}"; names are case-sensitive ("nbjob log" shows the declarations of recent jobs)`);
  const out: string[] = [`${name}: ${versions.length} version${versions.length === 1 ? "" : "s"}`];
  versions.forEach((version, i) => {
    const used = version.jobIds.length ? `used by job${version.jobIds.length === 1 ? "" : "s"} ${idRanges(version.jobIds)}` : "used by no job";
    out.push("", `version ${i + 1}  ${version.snippet.hash.slice(0, 12)}  ${version.snippet.kind}  ${used}`);
    out.push(indent(version.snippet.source.replace(/\n+$/, "")));
  });
  // Per job, where NAME changed since the previous job of its lineage (the newest 20; "nbjob log --name" pages).
  if (changes.length) {
    const versionOf = new Map(versions.map((version, i) => [version.snippet.hash, `version ${i + 1}`]));
    out.push("", "changed in (newest first)");
    for (const { job, previousId, lineage, changes: [change] } of changes) {
      const before = previousId === null ? ` (first job of ${lineage})` : ` since job ${previousId} (${lineage})`;
      const what = change.change === "changed" ? `${versionOf.get(change.from!)} -> ${versionOf.get(change.to!)}`
        : change.change === "added" ? `${versionOf.get(change.to!)} appeared` : "removed";
      out.push(`  job ${job.id}  ${what}${before}`);
    }
  }
  console.log(out.join("\n"));
  return 0;
}

// ---------------------------------------------------------------- the Command objects the dispatcher loads

export const jobsCommand: Command = { summary: "list jobs, newest first", usage: JOBS_USAGE, run: cmdJobs };
export const showCommand: Command = { summary: "one job: status, times, parameters, result or error, source", usage: SHOW_USAGE, run: cmdShow };
export const logsCommand: Command = { summary: "what a job printed (stdout and stderr)", usage: LOGS_USAGE, run: cmdLogs };
export const diffCommand: Command = { summary: "unified diff of two jobs' code and parameters", usage: DIFF_USAGE, run: cmdDiff };
export const logCommand: Command = { summary: "jobs with what changed in their code since the previous job of their notebook", usage: LOG_USAGE, run: cmdLog };
export const historyCommand: Command = { summary: "every version of one declaration and the jobs that used it", usage: HISTORY_USAGE, run: cmdHistory };

// ---------------------------------------------------------------- nbjob cancel

const CANCEL_USAGE = `usage: nbjob cancel JOB

Cancels a queued or running job: a queued job never starts, a running one is stopped by its
worker. A job that has already ended keeps its status (exit code 1).
${STORE_FLAGS_USAGE}`;

export async function cmdCancel(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args: argv, allowPositionals: true, strict: true, options: STORE_FLAGS }, CANCEL_USAGE);
  exactlyPositionals(positionals, 1, CANCEL_USAGE);
  const id = parseJobId(positionals[0]);
  const outcome = await withCliStore(values, (store) => cancelJob(store, id, "cancelled with nbjob cancel", { settleMs: CANCEL_SETTLE_MS }));
  if (!outcome.cancelled) {
    console.error(`job ${id} is already ${outcome.was}; nothing to cancel`);
    return 1;
  }
  const settled = outcome.settled === undefined ? "" : outcome.settled
    ? "; its worker stopped it and stored its last output"
    : `; its worker has not confirmed the stop within ${CANCEL_SETTLE_MS / 1000} s (nbjob show ${id} tells more later)`;
  console.log(`job ${id} cancelled (it was ${outcome.was})${settled}`);
  return 0;
}

// ---------------------------------------------------------------- nbjob rerun

const RERUN_USAGE = `usage: nbjob rerun JOB [--sign] [--wait] [--timeout SECONDS]

Queues a new job running JOB's stored bundle again (same code, parameters and entries), for any
idle worker; prints the new job's id. The new job records that it is a rerun of JOB.
  --sign             first sign the bundle with this cluster key (NBJOB_CLUSTER_KEY, else
                     $NBJOB_HOME/cluster.key): for a bundle stored before nbjob signed bundles,
                     or made with another key, whose code you trust (docs/SECURITY.md). A bundle
                     whose source no longer matches its hash is refused.
  --wait             wait until the new job ends and print its result (exit 1 if it did not succeed)
  --timeout SECONDS  with --wait: give up waiting after this long (the job goes on)
${STORE_FLAGS_USAGE}`;

export async function cmdRerun(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { ...STORE_FLAGS, wait: { type: "boolean" }, timeout: { type: "string" }, sign: { type: "boolean" } },
  }, RERUN_USAGE);
  exactlyPositionals(positionals, 1, RERUN_USAGE);
  const id = parseJobId(positionals[0]);
  let timeoutMs = Infinity;
  if (values.timeout !== undefined) {
    if (!values.wait) throw new UsageError(`--timeout only applies with --wait`);
    if (!/^\d+(\.\d+)?$/.test(values.timeout) || Number(values.timeout) <= 0) throw new UsageError(`--timeout must be a positive number of seconds, got "${values.timeout}"`);
    timeoutMs = Number(values.timeout) * 1000;
  }
  return withCliStore(values, async (store) => {
    const original = await requireJob(store, id);
    const created = await store.transaction(async (tx) => {
      // The bundle row is what the worker runs; without it the rerun could only fail.
      if (!(await getBundle(tx, original.bundle_hash))) {
        throw new StoreError(`job ${id}'s bundle ${original.bundle_hash.slice(0, 12)} is not in the store (deleted?), so job ${id} cannot be rerun; no job was created`);
      }
      if (values.sign) {
        const signed = await signStoredBundle(tx, original.bundle_hash);
        console.error(`bundle ${original.bundle_hash} ${signed.changed ? "signed" : "was already signed"} with the cluster key from ${signed.keyFrom}`);
      }
      const row = await createJob(tx, { bundleHash: original.bundle_hash, name: original.name, tags: original.tags, rerunOf: id, notebook: original.notebook });
      // Delivered when the transaction commits, so no worker looks before the row exists.
      await notifyJobQueued(tx, null);
      return row;
    });
    console.log(values.wait ? `job ${created.id} (rerun of job ${id}) queued; waiting for it` : `job ${created.id}`);
    if (!values.wait) return 0;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await requireJob(store, created.id);
      if (job.status === "done") {
        console.log(job.result_text ?? formatJson(job.result));
        return 0;
      }
      if (job.status === "failed" || job.status === "cancelled" || job.status === "lost") {
        console.error(`job ${job.id} ${job.status}${job.error_name || job.error_message ? `: ${job.error_name ?? "Error"}: ${job.error_message ?? ""}` : ""}`);
        return 1;
      }
      if (Date.now() >= deadline) {
        console.error(`job ${job.id} is still ${job.status} after ${values.timeout} s; it goes on ("nbjob show ${job.id}" later)`);
        return 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });
}

export const cancelCommand: Command = { summary: "cancel a queued or running job", usage: CANCEL_USAGE, run: cmdCancel };
export const rerunCommand: Command = { summary: "run a job's stored bundle again as a new job", usage: RERUN_USAGE, run: cmdRerun };
