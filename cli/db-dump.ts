// `nbjob db dump FILE` and `nbjob db restore FILE` (store/dump.ts): every job, its logs,
// checkpoints, results and analyses, and the code and values they use, to a file and back.
// db.ts parses the arguments and opens the store (this file imports nothing from it: no cycle).
import { statSync } from "node:fs";
import type { Db } from "../store";
import { formatBytes } from "../store/cleanup";
import { dumpStore, restoreStore } from "../store/dump";

export async function dumpOrRestore(action: "dump" | "restore", file: string, store: Db): Promise<number> {
  const started = performance.now();
  const took = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
  if (action === "dump") {
    const { rows, tables } = await dumpStore(store, file);
    console.log(`dumped ${rows} rows of ${tables} tables to ${file} (${formatBytes(statSync(file).size)}) in ${took()}`);
  } else {
    const { rows, jobs } = await restoreStore(store, file);
    console.log(`restored ${rows} rows (${jobs} job${jobs === 1 ? "" : "s"}) from ${file} in ${took()}`);
    // Signatures travel with the bundles, the key does not (it is never stored): say what workers need.
    if (jobs > 0) console.log(`its bundles are signed with the cluster key they were made with: workers that rerun or resume them need that key (the old NBJOB_HOME's cluster.key, or NBJOB_CLUSTER_KEY); or re-sign one with this one: nbjob rerun JOB --sign`);
  }
  return 0;
}
