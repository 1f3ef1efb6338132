// What may name a metric: checked in the job as it logs (runtime/shared/jobtracker.ts) and again
// by the store. A file of its own, free of imports, so the job thread loads nothing more for it.

/** Most characters a metric name may have (it is also a column of listings and a key of queries). */
export const METRIC_NAME_MAX = 200;

/** Why `name` cannot name a metric, or undefined when it can. */
export function metricNameProblem(name: unknown): string | undefined {
  if (typeof name !== "string") return `a metric name must be a string, got ${typeof name}`;
  if (name === "") return "a metric name cannot be empty";
  if (name.length > METRIC_NAME_MAX) return `a metric name may have at most ${METRIC_NAME_MAX} characters, got ${name.length}`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return `a metric name cannot contain control characters such as NUL or newline, got ${JSON.stringify(name)}`;
  if (/[\ud800-\udfff]/.test(name.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ""))) return `a metric name cannot contain a lone surrogate, got ${JSON.stringify(name)}`;
  return undefined;
}
