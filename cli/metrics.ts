// `nbjob metrics JOB [NAME] [--csv]`: the values a job logged with jobtracker.log, in the order
// logged: a table of step and value per metric, or CSV (name,step,value,backwards) for other tools.
import type { Command } from "./args";
import { parseCommandArgs, UsageError } from "./args";
import { STORE_FLAGS, STORE_FLAGS_USAGE, withCliStore } from "./db";
import { formatMetricNumber, metricNameProblem, missingMetricText, readMetrics, requireJob } from "../store";
import type { MetricSeries } from "../store";

const USAGE = `usage: nbjob metrics JOB [NAME] [--csv]

Prints the metrics JOB logged (jobtracker.log in its code), each in the order logged: step and value.
A step smaller than the one before it is marked "(step went backwards)". NaN and Infinity are shown
as such; an array value as [a, b, …].

  NAME    only this metric
  --csv   CSV with a header line: name,step,value,backwards (an array value as one quoted
          field "[1,2,3]"; NaN, Infinity, -Infinity as those words)
${STORE_FLAGS_USAGE}`;

/** A value as text: numbers in full (CSV keeps every digit), NaN and ±Infinity as words, arrays bracketed. */
function valueText(value: number | number[]): string {
  return Array.isArray(value) ? `[${value.map(String).join(",")}]` : String(value);
}

function csvField(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function metricsCsv(series: { [name: string]: MetricSeries }): string {
  const lines = ["name,step,value,backwards"];
  for (const [name, s] of Object.entries(series)) {
    const backwards = new Set(s.backwards);
    s.steps.forEach((step, i) => lines.push([csvField(name), String(step), csvField(valueText(s.values[i])), backwards.has(i) ? "1" : "0"].join(",")));
  }
  return lines.join("\n");
}

export function metricsTable(series: { [name: string]: MetricSeries }): string {
  const out: string[] = [];
  for (const [name, s] of Object.entries(series)) {
    const backwards = new Set(s.backwards);
    out.push(`${name} (${s.steps.length} value${s.steps.length === 1 ? "" : "s"}${s.backwards.length ? `, ${s.backwards.length} with a step that went backwards` : ""})`);
    // A loop, not Math.max(...steps): a series can have more values than a call has room for arguments.
    const width = s.steps.reduce((w, step) => Math.max(w, String(step).length), 4);
    out.push(`  ${"step".padStart(width)}  value`);
    s.steps.forEach((step, i) => {
      const value = s.values[i];
      const text = Array.isArray(value) ? `[${value.map((v) => formatMetricNumber(v, 6)).join(", ")}]` : formatMetricNumber(value, 6);
      out.push(`  ${String(step).padStart(width)}  ${text}${backwards.has(i) ? "  (step went backwards)" : ""}`);
    });
    out.push("");
  }
  return out.join("\n").trimEnd();
}

export async function cmdMetrics(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args: argv, allowPositionals: true, strict: true, options: { ...STORE_FLAGS, csv: { type: "boolean" } } }, USAGE);
  if (positionals.length === 0) throw new UsageError(`missing JOB: give a job id (see "nbjob jobs")`);
  if (positionals.length > 2) throw new UsageError(`unexpected argument "${positionals[2]}" (nbjob metrics takes JOB and at most one NAME)`);
  const [jobText, name] = positionals;
  if (!/^\d+$/.test(jobText) || Number(jobText) < 1 || !Number.isSafeInteger(Number(jobText))) {
    throw new UsageError(`JOB must be a job id (a positive integer, see "nbjob jobs"), got "${jobText}"`);
  }
  if (name !== undefined) {
    const problem = metricNameProblem(name);
    if (problem) throw new UsageError(`NAME: ${problem}`);
  }
  const id = Number(jobText);
  const { series, status, known } = await withCliStore(values, async (store) => {
    const job = await requireJob(store, id);
    const { series } = await readMetrics(store, id, { name });
    return { series, status: job.status, known: Object.keys(job.last_metrics ?? {}).sort() };
  });
  if (values.csv) {
    console.log(metricsCsv(series));
    return 0;
  }
  if (Object.keys(series).length === 0) {
    const missing = name === undefined ? undefined : missingMetricText(id, name, known);
    if (missing) throw new UsageError(missing);
    console.log(`job ${id} (${status}) logged no metrics${status === "queued" || status === "running" ? " yet" : ""} (jobtracker.log in its code records them)`);
    return 0;
  }
  console.log(metricsTable(series));
  return 0;
}

export const metricsCommand: Command = { summary: "the metrics a job logged (jobtracker.log), by step; --csv", usage: USAGE, run: cmdMetrics };
