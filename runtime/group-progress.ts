// A sweep's progress (group.progress): its jobs' counts by status, as one line of text with a
// bar. Shown as a cell's result it is a live output: the line is replaced in place (its display
// id) as jobs end, until none is queued or running.
import { inspect } from "node:util";
import { groupCounts } from "../store";
import type { GroupCounts, Store } from "../store";
import { display } from "./display";
import type { DisplayHandle } from "./display";

const BAR_WIDTH = 20;
/** How often a live progress line looks at the store again. */
const LIVE_REFRESH_MS = 500;

export class GroupProgress {
  readonly total: number;
  readonly queued: number;
  readonly running: number;
  readonly done: number;
  readonly failed: number;
  readonly cancelled: number;
  readonly lost: number;

  /** @internal made by JobGroup (progress, wait, cancel). */
  constructor(readonly group: number, counts: GroupCounts, private readonly store?: Store) {
    this.total = counts.total;
    this.queued = counts.queued;
    this.running = counts.running;
    this.done = counts.done;
    this.failed = counts.failed;
    this.cancelled = counts.cancelled;
    this.lost = counts.lost;
  }

  /** Jobs not ended yet (queued or running). */
  get pending(): number {
    return this.queued + this.running;
  }

  /** Every job has ended. */
  get finished(): boolean {
    return this.pending === 0;
  }

  /** `group 3 [##########----------] 5/10 ended: 4 done, 1 failed, 2 running, 3 queued` */
  toString(): string {
    const ended = this.total - this.pending;
    const filled = this.total === 0 ? BAR_WIDTH : Math.round((ended / this.total) * BAR_WIDTH);
    const parts = (["done", "failed", "cancelled", "lost", "running", "queued"] as const).filter((s) => this[s] > 0).map((s) => `${this[s]} ${s}`);
    return `group ${this.group} [${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ${ended}/${this.total} ended${parts.length > 0 ? `: ${parts.join(", ")}` : ""}`;
  }

  /** @internal the MIME bundle of this line: text, and HTML with a progress bar. */
  bundle(): Record<string, string> {
    const ended = this.total - this.pending;
    const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    return {
      "text/plain": this.toString(),
      "text/html": `<div class="nbjob-group-progress"><progress max="${this.total}" value="${ended}"></progress> <code>${esc(this.toString())}</code></div>`,
    };
  }

  /**
   * As a cell's result: shows the line and keeps it current (looks at the store every 500 ms,
   * replaces the output only when a count changed) until every job has ended.
   */
  [Symbol.for("nbjob.mimeBundle")](): null {
    const handle = display(this.bundle());
    if (this.store && !this.finished) followProgress(this.store, this, handle);
    return null;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export async function readProgress(store: Store, groupId: number): Promise<GroupProgress> {
  return new GroupProgress(groupId, await groupCounts(store, groupId), store);
}

function followProgress(store: Store, shown: GroupProgress, handle: DisplayHandle): void {
  let last = shown.toString();
  const tick = () => {
    readProgress(store, shown.group).then(
      (now) => {
        const text = now.toString();
        if (text !== last) handle.update(now.bundle());
        last = text;
        if (!now.finished) schedule();
      },
      // The store is away for a moment: try again (the line stays as it was meanwhile).
      () => schedule(),
    );
  };
  const schedule = () => setTimeout(tick, LIVE_REFRESH_MS).unref();
  schedule();
}
