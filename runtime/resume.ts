// job.resume(view?): a new job running the same stored bundle, its history starting with the old
// job's checkpoints (rows copied; the values are shared blobs, so no bytes move), and its
// worker restoring the last of them after the program's top level ran and before the entries
// (store-link.ts reads resumed_from_checkpoint when it claims the job).
//
// Metrics go on too: the new job's series starts with copies of the values the old job logged
// before that checkpoint was taken (same seq and steps; job.metrics() of the new job shows the
// whole series), and its log() without a step goes on from the checkpoint's step + 1. Values the
// old job logged after its last checkpoint stay with the old job only (the resumed run computes
// those steps again).
//
// Decisions: failed, cancelled and lost jobs resume; a queued or running job is an error (cancel
// it first or wait); a done job is an error too (nothing was left undone: job.rerun() runs it
// again). A job without checkpoints resumes from the start, and the cell says so.
import { inspect } from "node:util";
import { createJob, notifyJobQueued } from "../store";
import { copyCheckpoints, lastCheckpointIndex } from "../store/checkpoints";
import { copyMetricsUpTo } from "../store/metrics";
import type { Store } from "../store";
import { isView } from "./client";
import type { View } from "./client";
import { jobsChanged } from "./dashboard";
import { currentCellSink } from "./notebook";

export interface ResumedJobRow {
  id: number;
  /** The checkpoint restored before the entries run; undefined when the old job had none. */
  fromCheckpoint?: number;
}

/** Creates and queues the resumed job; the caller wraps the row in a Job. */
export async function resumeJob(store: Store, jobId: number, view: View | undefined): Promise<ResumedJobRow> {
  if (view !== undefined) {
    if (!isView(view)) {
      throw new TypeError(`job.resume(view): view must be rc.view(i) or rc.loadBalanced() from const rc = await Client.connect(), or nothing (any idle worker); got ${inspect(view, { depth: 0 })}`);
    }
    if (view.kind === "direct" && !(await view.worker.alive())) {
      throw new Error(`job.resume: worker ${view.workerId} (rc.view(${view.index})) does not answer its heartbeat; start it again or resume on another view`);
    }
  }
  const targetWorker = view?.kind === "direct" ? view.workerId : null;
  const created = await store.transaction(async (tx) => {
    // Locks the old row, so it cannot start running again while its history is copied.
    const { rows } = await tx.query<{ status: string; bundle_hash: string; name: string | null; tags: string[]; notebook: string | null; timeout_ms: number | null }>(
      "SELECT status, bundle_hash, name, tags, notebook, timeout_ms FROM nbjob.jobs WHERE id = $1 FOR UPDATE",
      [jobId],
    );
    const old = rows[0];
    if (!old) throw new Error(`job.resume: there is no job ${jobId} in the store`);
    if (old.status === "queued" || old.status === "running") {
      throw new Error(`job ${jobId} is still ${old.status}; cancel it first (await job.cancel()) or wait for it to end, then resume`);
    }
    if (old.status === "done") {
      throw new Error(`job ${jobId} is done; there is nothing to resume. To run it again use job.rerun()`);
    }
    const last = await lastCheckpointIndex(tx, jobId);
    const row = await createJob(tx, {
      bundleHash: old.bundle_hash, name: old.name, tags: old.tags, targetWorker, resumedFrom: jobId, resumedFromCheckpoint: last ?? null, notebook: old.notebook,
      // The resumed run keeps the old one's time limit (a fresh one, counted from its own start).
      timeoutMs: old.timeout_ms,
    });
    if (last !== undefined) {
      await copyCheckpoints(tx, jobId, row.id, last);
      await copyMetricsUpTo(tx, jobId, row.id, last);
    }
    return { id: row.id, fromCheckpoint: last };
  });
  await notifyJobQueued(store, targetWorker);
  jobsChanged();
  const sink = currentCellSink();
  if (created.fromCheckpoint === undefined) {
    sink?.stream("stderr", `job ${jobId} stored no checkpoint, so job ${created.id} runs it from the start\n`);
  }
  return created;
}
