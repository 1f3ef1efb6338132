// A running job's stdout/stderr, stored one row per line, in the order printed. Lines are written
// in batches (at most every `intervalMs`); while the store is away they wait in memory and are
// written, still in order and each once, when it is back. Memory is bounded: past
// `maxPendingLines` / `maxPendingBytes` lines are dropped and a note in their place says how many.
// Lines holding characters PostgreSQL's text type cannot (NUL, lone surrogates) are stored
// escaped by appendLogs and read back as printed (store/text.ts). A line the store still refuses
// (not an outage: some other refused data) is replaced by a note naming the problem and showing
// the line as JSON. Nothing here throws: a job's output never fails the job or the worker.
import { appendLogs, ClaimLostError, pgCode } from "../store";
import type { Db, LogLine } from "../store";
import { retryWhileAway, StoreAvailability } from "./store-retry";

export interface JobLogWriterOptions {
  log: (line: string) => void;
  /** The worker's view of the store (shared by its writers). Default: one of its own. */
  availability?: StoreAvailability;
  /** Most time a printed line waits before it is written. Default 200 ms. */
  intervalMs?: number;
  /** Most lines per INSERT. Default 1 000. */
  batchLines?: number;
  /** Lines kept while the store is away or behind, before new ones are dropped. Defaults 100 000 lines, 32 MiB. */
  maxPendingLines?: number;
  maxPendingBytes?: number;
  /**
   * Told when the lines waiting pass half the bound (true) and when they are down to a quarter
   * again (false), so the job can be made to wait rather than have its lines dropped.
   */
  onBehind?: (behind: boolean) => void;
  /** The claim the job's run holds (fencing); lines are stored only while the job is running under it. */
  claim?: () => string | undefined;
  /** A batch was refused because the claim is gone: told once; every line after it is discarded. */
  onClaimLost?: (err: ClaimLostError) => void;
}

/** What a note about the output itself looks like in the job's log. */
export const NOTE_PREFIX = "[nbjob: ";

/** How much of a refused line its note shows. */
const REFUSED_PREVIEW = 2_000;

interface Pending extends LogLine {
  bytes: number;
}

export class JobLogWriter {
  private readonly pending: Pending[] = [];
  private pendingBytes = 0;
  private readonly partial = { stdout: "", stderr: "" };
  private dropped = { lines: 0, bytes: 0, why: "" };
  private behind = false;
  private timer?: NodeJS.Timeout;
  private draining?: Promise<void>;
  private readonly availability: StoreAvailability;
  private readonly maxLines: number;
  private readonly maxBytes: number;
  /** The job lost its claim: nothing more is stored for it. */
  private fenced?: ClaimLostError;

  constructor(private readonly db: Db, private readonly jobId: number, private readonly options: JobLogWriterOptions) {
    this.availability = options.availability ?? new StoreAvailability(options.log);
    this.maxLines = options.maxPendingLines ?? 100_000;
    this.maxBytes = options.maxPendingBytes ?? 32 * 1024 * 1024;
  }

  /** Adds printed text (may hold several lines or part of one). */
  write(stream: "stdout" | "stderr", text: string): void {
    const parts = (this.partial[stream] + text).split("\n");
    this.partial[stream] = parts.pop() ?? "";
    const at = new Date();
    for (const line of parts) this.add({ stream, line, at });
  }

  /** Adds a note of nbjob's own (`[nbjob: text]`, on stderr); notes are never dropped. */
  note(text: string): void {
    this.add({ stream: "stderr", line: `${NOTE_PREFIX}${text}]`, at: new Date() }, true);
  }

  /** Writes the unfinished last lines too, then everything; resolves once all is written (never rejects). */
  close(): Promise<void> {
    const at = new Date();
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partial[stream] !== "") this.add({ stream, line: this.partial[stream], at });
      this.partial[stream] = "";
    }
    this.noteDropped();
    return this.flush();
  }

  /** Resolves once every line added so far is written (or noted as refused). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.draining ??= this.drain().finally(() => (this.draining = undefined));
    // A line added as a drain was ending is written by the next one.
    return this.draining.then(() => (this.pending.length > 0 ? this.flush() : undefined));
  }

  private add(line: LogLine, always = false): void {
    if (this.fenced) return;
    const bytes = Buffer.byteLength(line.line);
    if (!always && (this.pending.length >= this.maxLines || this.pendingBytes + bytes > this.maxBytes)) {
      if (this.dropped.lines === 0) {
        this.dropped.why = this.availability.away ? "while the store was unreachable" : "while the store was behind";
        this.options.log(`job ${this.jobId}: more than ${this.maxLines} lines or ${megabytes(this.maxBytes)} of output wait for the store; dropping new lines until it catches up`);
      }
      this.dropped.lines++;
      this.dropped.bytes += bytes;
      return;
    }
    if (!always) this.noteDropped();
    this.pending.push({ ...line, bytes });
    this.pendingBytes += bytes;
    this.checkBehind();
    if (this.pending.length >= (this.options.batchLines ?? 1_000)) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.options.intervalMs ?? 200);
      this.timer.unref();
    }
  }

  /** The lines dropped since the last note get one, where they were. */
  private noteDropped(): void {
    if (this.dropped.lines === 0) return;
    const { lines, bytes, why } = this.dropped;
    this.dropped = { lines: 0, bytes: 0, why: "" };
    this.options.log(`job ${this.jobId}: dropped ${lines} lines of output ${why}`);
    this.note(`${lines} line${lines === 1 ? "" : "s"} (${megabytes(bytes)}) dropped ${why}`);
  }

  private checkBehind(): void {
    const fill = Math.max(this.pending.length / this.maxLines, this.pendingBytes / this.maxBytes);
    const behind = this.behind ? fill > 0.25 : fill > 0.5;
    if (behind === this.behind) return;
    this.behind = behind;
    this.options.onBehind?.(behind);
  }

  private async drain(): Promise<void> {
    const batchLines = this.options.batchLines ?? 1_000;
    while (this.pending.length > 0) {
      if (this.fenced) {
        this.pending.splice(0);
        this.pendingBytes = 0;
        this.checkBehind();
        return;
      }
      // Written lines leave the queue only once stored, so they count against the bound meanwhile.
      const batch = this.pending.slice(0, batchLines);
      await this.store(batch);
      this.pending.splice(0, batch.length);
      for (const line of batch) this.pendingBytes -= line.bytes;
      this.checkBehind();
    }
  }

  /** Stores `batch`; a batch the store refuses is split until the refused lines are found and noted. */
  private async store(batch: Pending[]): Promise<void> {
    try {
      await this.insert(batch);
      return;
    } catch (err) {
      if (err instanceof ClaimLostError) {
        // Not an outage and not bad data: the run this writer belongs to no longer owns the job.
        if (!this.fenced) {
          this.fenced = err;
          const discarded = this.pending.length;
          this.options.log(`job ${this.jobId}: ${err.message}; ${discarded} line${discarded === 1 ? "" : "s"} not stored, and none after`);
          this.options.onClaimLost?.(err);
        }
        return;
      }
      const refusedData = sqlState(err)?.startsWith("22") === true;
      if (refusedData && batch.length > 1) {
        const half = Math.ceil(batch.length / 2);
        await this.store(batch.slice(0, half));
        await this.store(batch.slice(half));
        return;
      }
      const message = (err as Error).message;
      const note = refusedData
        ? `the store refused this line (${message}): ${preview(batch[0].line)}`
        : `${batch.length} line${batch.length === 1 ? "" : "s"} could not be stored (${message})`;
      this.options.log(`job ${this.jobId}: ${note.replace(/: ".*$/s, "")}; a note takes ${batch.length === 1 ? "its" : "their"} place`);
      try {
        await this.insert([{ stream: "stderr", line: `${NOTE_PREFIX}${note}]`, at: batch[0].at, bytes: 0 }]);
      } catch (noteErr) {
        this.options.log(`job ${this.jobId}: the note could not be stored either (${(noteErr as Error).message}); ${batch.length} line${batch.length === 1 ? " is" : "s are"} missing from its log`);
      }
    }
  }

  /**
   * One INSERT, retried while the store is away. A connection lost during COMMIT leaves it
   * unknown whether the lines were stored; the transaction's id answers that before trying
   * again, so no line is written twice.
   */
  private async insert(batch: Pending[]): Promise<void> {
    let xid: string | undefined;
    await retryWhileAway(this.availability, async () => {
      if (xid !== undefined) {
        const status = await this.transactionStatus(xid);
        if (status === "committed") return;
        xid = undefined;
      }
      await this.db.transaction(async (tx) => {
        xid = (await tx.query<{ xid: string }>("SELECT pg_current_xact_id()::text AS xid")).rows[0].xid;
        await appendLogs(tx, this.jobId, batch.map(({ stream, line, at }) => ({ stream, line, at })), this.options.claim?.());
      });
    });
  }

  /** committed or aborted, once the server has finished with the transaction. */
  private async transactionStatus(xid: string): Promise<string | null> {
    for (let attempt = 0; ; attempt++) {
      const { rows } = await this.db.query<{ status: string | null }>("SELECT pg_xact_status($1::xid8) AS status", [xid]);
      // In progress: the server has not yet noticed that the connection which ran it is gone.
      if (rows[0].status !== "in progress") return rows[0].status;
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 2_000)));
    }
  }
}

function sqlState(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = pgCode(e);
    if (code) return code;
  }
  return undefined;
}

/** The line as JSON (every character visible, NUL as \u0000), cut to a readable length. */
function preview(line: string): string {
  const json = JSON.stringify(line.length > REFUSED_PREVIEW ? line.slice(0, REFUSED_PREVIEW) : line);
  return line.length > REFUSED_PREVIEW ? `${json}… (${line.length} characters)` : json;
}

function megabytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MB` : `${(bytes / 1024).toFixed(1)} kB`;
}
