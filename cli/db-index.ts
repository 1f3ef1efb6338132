// `nbjob db index FIELD | --list | --drop FIELD`: indexes on the number at a params, metrics or
// result field (store/field-index.ts), for queries that range over it or order by it. db.ts hands
// over the store flags and opener (this file imports nothing from it: no cycle).
import { oneLineUsageError, parseCommandArgs, UsageError } from "./args";
import type { Store } from "../store";
import { createFieldIndex, dropFieldIndex, formatBytes, INDEXABLE_FIELDS_HELP, JobQueryError, listFieldIndexes } from "../store";

export const INDEX_USAGE = `usage: nbjob db index FIELD | --list | --drop FIELD

  FIELD          ${INDEXABLE_FIELDS_HELP}: index the number at that field, so
                 that "nbjob jobs --where 'params.lr < 0.0002'", "--order metrics.loss" and
                 db.jobs({ params: { lr: { lt: 0.0002 } }, orderBy: "-metrics.loss" }) read the index
                 instead of every job. Built concurrently: jobs keep running meanwhile. Only numbers
                 are indexed (text, "NaN", arrays are not, as ranges ignore them). An index on a
                 metric makes each metrics update of a running job write the job row's indexes too.
  --list         the indexes made this way: field, size, how often queries used them
  --drop FIELD   remove the index on FIELD`;

/** A bad field as the user typed it: one line naming it and the fields that can be indexed. */
function fieldProblem(err: unknown): never {
  if (err instanceof JobQueryError) throw new UsageError(`nbjob db index: ${err.message}`);
  throw err;
}

export async function indexCommand(
  argv: string[],
  storeFlags: Record<string, { type: "string" }>,
  withStore: <T>(flags: { "database-url"?: string; home?: string }, body: (store: Store) => Promise<T>) => Promise<T>,
): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { ...storeFlags, list: { type: "boolean" }, drop: { type: "string" } },
  }, INDEX_USAGE);
  const v = values as { list?: boolean; drop?: string; "database-url"?: string; home?: string };
  const given = [v.list ? "--list" : null, v.drop !== undefined ? "--drop" : null, positionals.length ? "FIELD" : null].filter(Boolean);
  if (given.length > 1) throw oneLineUsageError("db", `give one of FIELD, --list or --drop FIELD, not ${given.join(" and ")}`);
  if (positionals.length > 1) throw oneLineUsageError("db", `nbjob db index takes one FIELD, got "${positionals.join(" ")}"`);
  if (v.drop !== undefined) {
    const field = v.drop;
    return withStore(v, async (store) => {
      const { field: name, dropped } = await dropFieldIndex(store, field).catch(fieldProblem);
      console.log(dropped ? `dropped the index on ${name}` : `there is no index on ${name} ("nbjob db index --list" shows them)`);
      return 0;
    });
  }
  if (positionals.length === 1) {
    const field = positionals[0];
    return withStore(v, async (store) => {
      const started = performance.now();
      const { field: name, index, created } = await createFieldIndex(store, field).catch(fieldProblem);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(created
        ? `indexed ${name} (nbjob.${index.name}, ${formatBytes(index.bytes)}, built in ${seconds} s): ranges on it and orders by it read the index`
        : `${name} is already indexed (nbjob.${index.name}, ${formatBytes(index.bytes)})`);
      return 0;
    });
  }
  return withStore(v, async (store) => {
    const indexes = await listFieldIndexes(store);
    if (indexes.length === 0) {
      console.log(`no field indexes ("nbjob db index params.lr" makes one)`);
      return 0;
    }
    const rows = indexes.map((index) => [index.field ?? "(unknown: build cut short)", formatBytes(index.bytes), String(index.scans), `nbjob.${index.name}${index.valid ? "" : " (not usable: being built, or failed; --drop it)"}`]);
    const table = [["FIELD", "SIZE", "SCANS", "INDEX"], ...rows];
    const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
    for (const row of table) console.log(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join("  "));
    return 0;
  });
}
