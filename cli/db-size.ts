// What `nbjob db status` adds about space: the database's size, the largest of nbjob's tables and
// the biggest jobs (bytes of their checkpoint values, logs and results). The dashboard's store
// page shows the same figures (storeSpace).
import type { Db, JobSize } from "../store";
import { formatBytes, jobSizes, storeSize } from "../store/cleanup";

/** How many of the biggest jobs are listed. */
const BIGGEST = 10;

export interface StoreSpace {
  /** The database's size on disk. */
  database: number;
  /** nbjob's tables (with TOAST and indexes), largest first. */
  tables: Array<{ table: string; bytes: number }>;
  /** The biggest jobs that hold any bytes, biggest first. */
  biggest: JobSize[];
}

export async function storeSpace(store: Db): Promise<StoreSpace> {
  const size = await storeSize(store);
  const biggest = (await jobSizes(store, { limit: BIGGEST })).filter((job) => job.total > 0);
  return { ...size, biggest };
}

export async function storeSizeReport(store: Db): Promise<string> {
  const { database, tables, biggest } = await storeSpace(store);
  const out = [`size:      ${formatBytes(database)} on disk; ${tables.slice(0, 4).map((t) => `${t.table} ${formatBytes(t.bytes)}`).join(", ")}`];
  if (biggest.length > 0) {
    out.push(`biggest jobs (checkpoint values count for every job that has them; "nbjob rm --dry-run" says what deleting frees):`);
    const rows = biggest.map((job) => [`  job ${job.id}${job.name ? ` ${job.name}` : ""}`, job.status, formatBytes(job.total), `checkpoints ${formatBytes(job.checkpoints)}, logs ${formatBytes(job.logs)}, results ${formatBytes(job.results)}`]);
    const widths = [0, 1, 2].map((i) => Math.max(...rows.map((row) => row[i].length)));
    for (const row of rows) out.push(`${row[0].padEnd(widths[0])}  ${row[1].padEnd(widths[1])}  ${row[2].padStart(widths[2])}  (${row[3]})`);
  }
  return out.join("\n");
}
