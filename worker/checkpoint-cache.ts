// Checkpoint values the analysis runner read lately, kept in the worker's memory by job and
// checkpoint. A stored checkpoint's values never change, and analyses run again and again over the
// same checkpoints (a function edited, then run over the job again), so the next run takes them
// from here instead of reading them from PostgreSQL again: less work for the worker's main thread
// and the store, which share the machine's cores with the analysis threads.
import { readCheckpoints } from "../store";
import type { Db } from "../store";

type Values = Record<string, Uint8Array>;

export class CheckpointCache {
  /** By `job:checkpoint`, least recently used first. */
  private readonly entries = new Map<string, { values: Values; bytes: number }>();
  private bytes = 0;

  /** `maxBytes`: what the cache holds at most; a checkpoint larger than a quarter of it is not kept. */
  constructor(private readonly maxBytes: number) {}

  /** The values of these checkpoints of the job, by index: from memory where they are, the rest in one read. */
  async read(store: Db, jobId: number, idxs: readonly number[]): Promise<Map<number, Values>> {
    const out = new Map<number, Values>();
    const missing: number[] = [];
    for (const idx of idxs) {
      const key = `${jobId}:${idx}`;
      const hit = this.entries.get(key);
      if (hit) {
        this.entries.delete(key);
        this.entries.set(key, hit);
        out.set(idx, hit.values);
      } else {
        missing.push(idx);
      }
    }
    if (missing.length === 0) return out;
    for (const [idx, values] of await readCheckpoints(store, jobId, missing)) {
      out.set(idx, values);
      this.keep(`${jobId}:${idx}`, values);
    }
    return out;
  }

  private keep(key: string, values: Values): void {
    const bytes = Object.values(values).reduce((n, v) => n + v.byteLength, 0);
    if (bytes > this.maxBytes / 4 || this.entries.has(key)) return;
    this.entries.set(key, { values, bytes });
    this.bytes += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= entry.bytes;
    }
  }
}
