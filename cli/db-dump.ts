// `nbjob db dump FILE` and `nbjob db restore FILE` (store/dump.ts): every job, its logs,
// checkpoints, results and analyses, and the code and values they use, to a file and back.
import { UsageError } from "./args";
import { withCliStore } from "./db";
import { formatBytes } from "../store/cleanup";
import { dumpStore, restoreStore } from "../store/dump";
import { statSync } from "node:fs";

export async function runDumpOrRestore(action: "dump" | "restore", positionals: string[], flags: { "database-url"?: string; home?: string }): Promise<number> {
  if (positionals.length !== 2) throw new UsageError(`nbjob db ${action} takes one FILE, e.g. nbjob db ${action} nbjob-backup.jsonl`);
  const file = positionals[1];
  return withCliStore(flags, async (store) => {
    const started = performance.now();
    if (action === "dump") {
      const { rows, tables } = await dumpStore(store, file);
      console.log(`dumped ${rows} rows of ${tables} tables to ${file} (${formatBytes(statSync(file).size)}) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } else {
      const { rows, jobs } = await restoreStore(store, file);
      console.log(`restored ${rows} rows (${jobs} jobs) from ${file} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    return 0;
  });
}
