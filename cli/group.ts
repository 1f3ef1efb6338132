// `nbjob group ID`: a sweep at a glance: its grid or random search, its jobs' counts by status
// (the same line as group.progress in a notebook) and each job with its parameters and result or
// error.
import type { Command } from "./args";
import { parseCommandArgs, UsageError } from "./args";
import { STORE_FLAGS, STORE_FLAGS_USAGE, withCliStore } from "./db";
import { formatLastMetrics, getJobGroup, groupCounts, lastMetricsOf, listGroupJobs } from "../store";
import { ROW_METRICS } from "../store/metrics";
import { GroupProgress } from "../runtime/group-progress";
import { describeSample, sampleKeys } from "../runtime/random-search";
import type { SampleSettings } from "../runtime/random-search";

const USAGE = `usage: nbjob group GROUP

Shows a sweep (db.createJobs): its grid or random search (sample), how many of its jobs are in each status, and every job
with its parameters and its result or error. GROUP is the sweep's group id (the "group" line
of "nbjob show JOB").
${STORE_FLAGS_USAGE}`;

/** Longest result or error text shown in the table; "nbjob show JOB" has the whole of it. */
const CELL_MAX = 60;

function clip(text: string): string {
  const line = text.split("\n")[0];
  return line.length > CELL_MAX || line !== text ? `${line.slice(0, CELL_MAX - 1)}…` : line;
}

export async function cmdGroup(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args: argv, allowPositionals: true, strict: true, options: STORE_FLAGS }, USAGE);
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? `missing GROUP: give a group id (see "nbjob group --help")` : `unexpected argument "${positionals[1]}" (nbjob group takes one GROUP)`);
  const text = positionals[0];
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`GROUP must be a group id (a positive integer, see the group line of "nbjob show JOB"), got "${text}"`);
  }
  const id = Number(text);
  const out = await withCliStore(values, async (store) => {
    const group = await getJobGroup(store, id);
    if (!group) throw new UsageError(`there is no group ${id} in the store`);
    const [counts, jobs] = await Promise.all([groupCounts(store, id), listGroupJobs(store, id)]);
    const gridKeys = Object.keys(group.grid);
    const sample = group.sample as SampleSettings | null;
    const keys = [...gridKeys, ...(sample ? sampleKeys(sample) : [])];
    const lines = [`group ${id}${group.name ? `  ${group.name}` : ""}`];
    if (gridKeys.length > 0 || !sample) lines.push(`grid        ${gridKeys.map((k) => `${k}: ${JSON.stringify(group.grid[k])}`).join(", ") || "(none)"}`);
    if (sample) lines.push(`sample      ${describeSample(sample)}${gridKeys.length > 0 ? " (for each grid combination)" : ""}`);
    lines.push(`progress    ${new GroupProgress(id, counts).toString().replace(/^group \d+ /, "")}`);
    lines.push("");
    const header = ["job", "status", ...keys, "result / error", "metrics"];
    const rows = jobs.map((job) => [
      String(job.id), job.status, ...keys.map((k) => JSON.stringify(job.params[k])),
      clip(job.status === "done" ? job.result_text ?? "" : job.error_name ? `${job.error_name}: ${job.error_message ?? ""}` : ""),
      formatLastMetrics(lastMetricsOf(job), 4, { count: ROW_METRICS, see: `nbjob show ${job.id}` }),
    ]);
    // reduce, not Math.max(...rows): a group can have more jobs than a call takes arguments.
    const widths = header.map((h, i) => rows.reduce((w, r) => Math.max(w, r[i].length), h.length));
    const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
    lines.push(line(header), ...rows.map(line));
    return lines.join("\n");
  });
  console.log(out);
  return 0;
}

export const groupCommand: Command = { summary: "a sweep: its grid, counts by status, and its jobs", usage: USAGE, run: cmdGroup };
