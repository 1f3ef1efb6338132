// `nbjob rm`, `nbjob gc`, `nbjob tag`: deleting jobs, collecting the stored values, bundles and
// snippets nothing refers to any more, and the tags (`+keep`) that protect jobs from `rm` by filter.
import type { Command } from "./args";
import { parseCommandArgs, UsageError } from "./args";
import { STORE_FLAGS, STORE_FLAGS_USAGE, withCliStore } from "./db";
import { isJobStatus, JOB_STATUSES, listJobsByIds, StoreError } from "../store";
import type { JobStatus } from "../store";
import { collectAndVacuum, deleteJobs, formatBytes, KEEP_TAG, parseDuration, setJobTags } from "../store/cleanup";
import type { DeletionPlan, GcReport } from "../store/cleanup";

function jobIds(positionals: string[]): number[] {
  return positionals.map((text) => {
    if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) throw new UsageError(`JOB must be a job id (a positive integer, see "nbjob jobs"), got "${text}"`);
    return Number(text);
  });
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function listIds(ids: number[]): string {
  return ids.length <= 20 ? ids.join(", ") : `${ids.slice(0, 20).join(", ")}, … (${ids.length - 20} more)`;
}

/** What a collection did, in one line (`nbjob gc`, `rm`, and the dashboard's gc). */
export function gcLine({ result, before, after, full }: GcReport): string {
  return `${result.thinned ? `retention thinned ${plural(result.thinned, "checkpoint")}; ` : ""}collected ${plural(result.blobs, "value")} (${plural(result.chunks, "chunk")}, ${formatBytes(result.chunkBytes)}), ${plural(result.bundles, "bundle")}, ${plural(result.snippets, "snippet")}${result.files ? `, ${plural(result.files, "local module")}` : ""}${result.environments ? `, ${plural(result.environments, "environment")}` : ""} in ${(result.ms / 1000).toFixed(1)} s; database ${formatBytes(before)} -> ${formatBytes(after)}${full ? " (VACUUM FULL)" : ""}`;
}

/**
 * The values a collection left because they are younger than its grace period, and how to collect
 * them now; undefined when there are none. Without it, deleting jobs that ran minutes ago looked
 * like it freed nothing.
 */
export function graceLine({ result: { young } }: GcReport): string | undefined {
  if (young.values === 0) return undefined;
  // As --grace takes it.
  const grace = young.graceMs % 60_000 === 0 ? `${young.graceMs / 60_000}m` : `${Math.round(young.graceMs / 1000)}s`;
  return `kept ${plural(young.values, "value")} (${formatBytes(young.bytes)}) that nothing refers to but ${young.values === 1 ? "is" : "are"} younger than gc's grace period of ${grace} (a running job writes a value before referring to it); "nbjob gc --grace 0s" collects them now`;
}

/** What `nbjob rm` prints about a deletion (or a dry run); the dashboard shows the same lines. */
export function deletionLines(plan: DeletionPlan, filtered: boolean): string[] {
  const { bytes } = plan;
  const freed = `${formatBytes(bytes.total)} (values ${formatBytes(bytes.values)}, logs ${formatBytes(bytes.logs)}, results ${formatBytes(bytes.results)}, analyses ${formatBytes(bytes.analyses)})`;
  const lines: string[] = [];
  const left = plan.kept.length + plan.active.length;
  if (plan.ids.length === 0) lines.push(!filtered ? "nothing to delete" : left ? "no jobs to delete: every job that matches is left (below)" : "no jobs match");
  else lines.push(`${plan.dryRun ? "would delete" : "deleted"} ${plural(plan.ids.length, "job")}: ${listIds(plan.ids)}; frees ${freed}`);
  if (plan.kept.length) lines.push(`left ${plural(plan.kept.length, "job")} tagged ${KEEP_TAG}: ${listIds(plan.kept)}`);
  if (plan.active.length) lines.push(`left ${plural(plan.active.length, "job")} still queued or running: ${listIds(plan.active)} (cancel first: nbjob cancel JOB)`);
  return lines;
}

// ---------------------------------------------------------------- nbjob rm

const RM_USAGE = `usage: nbjob rm JOB... | --tag T | --status S | --older-than AGE [--dry-run] [--no-gc]

Deletes jobs: their rows, logs, checkpoints, results and analysis rows, in one transaction, then
collects the stored values, bundles and snippets nothing refers to any more (as "nbjob gc").
Jobs rerun or resumed from a deleted job stay ("nbjob show" says the parent was deleted).

  JOB...            these jobs; each must exist, have ended (cancel a queued or running job
                    first: nbjob cancel JOB) and not be tagged keep (nbjob tag JOB -keep), else
                    nothing is deleted
  --tag T           jobs with this tag      } given together, a job must match all of them;
  --status S        jobs with this status   } jobs tagged "keep" and jobs still queued or
  --older-than AGE  queued before AGE ago   } running are left alone and listed
                    (AGE: 30d, 12h, 90m, 2w)
  --dry-run         say which jobs would go and how many bytes that frees; delete nothing
  --no-gc           do not collect afterwards
${STORE_FLAGS_USAGE}`;

/**
 * The one value of a filter option. parseArgs keeps only the last of a repeated option, and for a
 * deletion that silently drops a condition (`--tag a --tag b` would delete every job tagged b).
 */
function once(option: string, given: string[] | undefined): string | undefined {
  if (given !== undefined && given.length > 1) {
    throw new UsageError(`--${option} may be given once (got ${given.map((v) => `"${v}"`).join(", ")}); to delete several sets of jobs, run nbjob rm once for each`);
  }
  return given?.[0];
}

async function cmdRm(argv: string[]): Promise<number> {
  const { values: parsed, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      ...STORE_FLAGS, tag: { type: "string", multiple: true }, status: { type: "string", multiple: true }, "older-than": { type: "string", multiple: true },
      "dry-run": { type: "boolean" }, "no-gc": { type: "boolean" },
    },
  }, RM_USAGE);
  const values = { ...parsed, tag: once("tag", parsed.tag), status: once("status", parsed.status), "older-than": once("older-than", parsed["older-than"]) };
  const ids = jobIds(positionals);
  const filtered = values.tag !== undefined || values.status !== undefined || values["older-than"] !== undefined;
  if (ids.length > 0 && filtered) throw new UsageError(`give either job ids or a filter (--tag, --status, --older-than), not both`);
  if (ids.length === 0 && !filtered) throw new UsageError(`say which jobs to delete: job ids, --tag T, --status S or --older-than AGE (${RM_USAGE.split("\n", 1)[0]})`);
  if (values.status !== undefined && !isJobStatus(values.status)) throw new UsageError(`--status must be one of ${JOB_STATUSES.join(", ")}, got "${values.status}"`);
  let olderThanMs: number | undefined;
  if (values["older-than"] !== undefined) {
    try {
      olderThanMs = parseDuration(values["older-than"]);
    } catch (err) {
      throw new UsageError(`--older-than: ${(err as StoreError).message}`);
    }
  }
  const dryRun = values["dry-run"] === true;
  return withCliStore(values, async (store) => {
    const plan = await deleteJobs(store, { ids, tag: values.tag, status: values.status as JobStatus | undefined, olderThanMs, dryRun });
    for (const line of deletionLines(plan, filtered)) console.log(line);
    if (!dryRun && plan.ids.length > 0 && !values["no-gc"]) {
      const report = await collectAndVacuum(store);
      for (const line of [gcLine(report), graceLine(report)]) if (line !== undefined) console.log(line);
    }
    return 0;
  });
}

// ---------------------------------------------------------------- nbjob gc

const GC_USAGE = `usage: nbjob gc [--grace AGE] [--full]

Removes stored values (and their chunks), bundles and snippets that no job, checkpoint or
analysis refers to any more, then VACUUMs nbjob's tables. Safe while jobs run and checkpoint.

  --grace AGE   leave rows younger than AGE (default 10m): a value being written by a running
                job is committed in pieces before it is referred to
  --full        VACUUM FULL: gives all freed space back to the operating system, but locks each
                table while it is rewritten (running jobs' checkpoints wait) and needs room for
                the copy. Without it, freed space is reused by new rows and only empty pages at
                the end of a table file go back to the OS.
${STORE_FLAGS_USAGE}`;

async function cmdGc(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { ...STORE_FLAGS, grace: { type: "string" }, full: { type: "boolean" } },
  }, GC_USAGE);
  if (positionals.length > 0) throw new UsageError(`nbjob gc takes no arguments, got "${positionals[0]}"`);
  let graceMs: number | undefined;
  if (values.grace !== undefined) {
    try {
      graceMs = parseDuration(values.grace);
    } catch (err) {
      throw new UsageError(`--grace: ${(err as StoreError).message}`);
    }
  }
  return withCliStore(values, async (store) => {
    const report = await collectAndVacuum(store, { graceMs, full: values.full === true });
    for (const line of [gcLine(report), graceLine(report)]) if (line !== undefined) console.log(line);
    return 0;
  });
}

// ---------------------------------------------------------------- nbjob tag

const TAG_USAGE = `usage: nbjob tag JOB +TAG|-TAG...

Adds (+TAG) and removes (-TAG) tags of a job and prints its tags; a tag to remove that the job
does not have is named on stderr. The tag "keep" protects a job from "nbjob rm" by filter
(--tag, --status, --older-than); "nbjob rm JOB" of a kept job is refused until the tag is removed.
${STORE_FLAGS_USAGE}`;

async function cmdTag(argv: string[]): Promise<number> {
  // "-keep" looks like an option to parseArgs: take the tag arguments out first.
  const changes = argv.filter((arg, i) => i > 0 && /^[+-][^-]/.test(arg) && !/^-[a-z]$/.test(arg));
  const rest = argv.filter((arg, i) => !(i > 0 && changes.includes(arg)));
  const { values, positionals } = parseCommandArgs({ args: rest, allowPositionals: true, strict: true, options: STORE_FLAGS }, TAG_USAGE);
  if (positionals.length !== 1) throw new UsageError(`nbjob tag takes one JOB, then +TAG or -TAG (${TAG_USAGE.split("\n", 1)[0]})`);
  const [id] = jobIds(positionals);
  if (changes.length === 0) throw new UsageError(`say what to change: +TAG adds a tag, -TAG removes it (e.g. nbjob tag ${id} +${KEEP_TAG})`);
  const add = changes.filter((c) => c.startsWith("+")).map((c) => c.slice(1));
  const remove = changes.filter((c) => c.startsWith("-")).map((c) => c.slice(1));
  return withCliStore(values, async (store) => {
    const before = (await listJobsByIds(store, [id]))[0]?.tags ?? [];
    const tags = await setJobTags(store, id, add, remove);
    // Removing a tag the job does not have changes nothing: most likely a misspelled tag.
    for (const tag of remove.filter((t) => !before.includes(t) && !add.includes(t))) console.error(`job ${id} has no tag "${tag}": nothing removed`);
    console.log(`job ${id} tags: ${tags.length ? tags.join(", ") : "(none)"}`);
    return 0;
  });
}

export const rmCommand: Command = { summary: "delete jobs (by id, tag, status or age), then collect what they used", usage: RM_USAGE, run: cmdRm };
export const gcCommand: Command = { summary: "remove stored values, bundles and snippets nothing refers to", usage: GC_USAGE, run: cmdGc };
export const tagCommand: Command = { summary: "add or remove a job's tags (+keep protects it from rm by filter)", usage: TAG_USAGE, run: cmdTag };
