// The job thread: one long-lived worker_threads thread per worker kernel that runs jobs one at a
// time, each in a fresh vm context. It holds no sockets, so the kernel's main thread can answer
// heartbeats during a synchronous job and can terminate this thread to cancel one.
import { inspect } from "node:util";
import { setFlagsFromString } from "node:v8";
import * as vm from "node:vm";
import { parentPort } from "node:worker_threads";
import type { ParamValues } from "../runtime/params";
import { serializeOrExplain } from "../runtime/shared/clone-check";
import { JobContext } from "./job-context";
import type { StreamName } from "./job-context";
import type { JobId } from "../runtime/shared/protocol";
import { ENTRY_HOOK, PROGRAM_FILE } from "./program";

/** Main thread → job thread. */
export interface RunCommand {
  type: "run";
  jobId: JobId;
  key: string;
  js: string;
  params: ParamValues;
  hasEntries: boolean;
  /**
   * The names the program declares in the global scope (CompiledProgram.declaredNames); the
   * context binds every other global lexically before the program runs. Without it (a sender that
   * does not know them) globals stay unbound: correct, but slow to look up.
   */
  declaredNames?: string[];
  /**
   * Shared with the main thread: [0] how many of this run's checkpoints are stored (the main
   * thread adds and notifies), [1] 1 once storing failed for good, [2] 1 while the job must wait
   * at its next output or checkpoint (the store is unreachable too long, or far behind), [3] how
   * many of this run's metric batches are stored (job-runner.ts ACK_SLOTS).
   */
  acks: SharedArrayBuffer;
  /** A resumed job: the checkpoint restored after the program's top level ran, before its entries. */
  restore?: { index: number; values: Record<string, Uint8Array> };
  /** Where the job's local modules are laid out (its require resolves from there); absent: none. */
  moduleDir?: string;
}

/** Metric values per batch sent to the main thread, and batches not yet stored before log() waits (about 16 MiB of values). */
export const METRIC_BATCH_POINTS = 8_192;
export const PENDING_METRIC_BATCHES = 64;
/** A batch is sent at least this often (ms) while values come in, so a live plot sees a running loop. */
export const METRIC_SEND_MS = 200;

/**
 * Logged values on their way to the main thread, in columns (cheap to send: the number columns
 * move, they are not copied). `names` is this batch's table of metric names; `nameIds[i]` points
 * into it. An array value is in `arrays` (its slot in `values` is NaN).
 */
export interface MetricBatch {
  firstSeq: number;
  count: number;
  names: string[];
  nameIds: Int32Array;
  steps: Float64Array;
  values: Float64Array;
  arrays: Array<[number, number[]]>;
  /** Positions whose step went backwards. */
  backwards: number[];
}

/** Snapshots not yet stored may hold this many bytes (or this many snapshots) before checkpoint() waits. */
export const PENDING_CHECKPOINT_BYTES = 256 * 1024 * 1024;
export const PENDING_CHECKPOINTS = 1_000;

/** Job thread → main thread. */
export type JobThreadEvent =
  | { type: "stream"; jobId: JobId; name: StreamName; text: string }
  | { type: "checkpoint"; jobId: JobId; index: number; values: Record<string, Uint8Array> }
  | { type: "metrics"; jobId: JobId; batch: MetricBatch }
  | { type: "done"; jobId: JobId; resultText: string; result: Uint8Array }
  | { type: "failed"; jobId: JobId; ename: string; evalue: string; stack: string };

const RESULT_TEXT_LIMIT = 20_000;
const SCRIPT_CACHE_SIZE = 64;

const scripts = new Map<string, vm.Script>();
let spare: JobContext | undefined;
/** Rejects the running job when something it started throws outside of its own call chain. */
let failCurrent: ((err: unknown) => void) | undefined;
let currentContext: JobContext | undefined;

function scriptFor(key: string, js: string): vm.Script {
  let script = scripts.get(key);
  if (!script) {
    script = new vm.Script(js, { filename: PROGRAM_FILE });
    scripts.set(key, script);
    if (scripts.size > SCRIPT_CACHE_SIZE) scripts.delete(scripts.keys().next().value as string);
  }
  return script;
}

// Each job leaves a whole context behind for the garbage collector; a worker that has gone quiet
// collects at once, so its memory comes back down instead of waiting for the next burst of jobs.
setFlagsFromString("--expose-gc");
const collectGarbage = vm.runInNewContext("gc") as () => void;
const IDLE_COLLECT_MS = 1_000;
let idleTimer: NodeJS.Timeout | undefined;

function scheduleIdleCollection(): void {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (!currentContext) collectGarbage();
  }, IDLE_COLLECT_MS);
  idleTimer.unref();
}

function takeContext(): JobContext {
  const context = spare ?? new JobContext();
  spare = undefined;
  return context;
}

/** The value's display text, like the notebook's execute_result, kept short enough to send. */
function previewText(value: unknown): string {
  const text = inspect(value, { colors: false, depth: 6, maxArrayLength: 100, maxStringLength: 10_000, breakLength: 100 });
  return text.length > RESULT_TEXT_LIMIT ? `${text.slice(0, RESULT_TEXT_LIMIT)}… (${text.length - RESULT_TEXT_LIMIT} more characters)` : text;
}

function describeThrown(err: unknown): { ename: string; evalue: string; stack: string } {
  if (typeof err === "object" && err !== null && typeof (err as Error).message === "string") {
    const e = err as Error;
    const ename = typeof e.name === "string" && e.name ? e.name : "Error";
    return { ename, evalue: e.message, stack: typeof e.stack === "string" ? e.stack : `${ename}: ${e.message}` };
  }
  const evalue = `Uncaught ${inspect(err, { colors: false })}`;
  return { ename: "Error", evalue, stack: `Error: ${evalue}` };
}

/**
 * A job's `import` of an ES module (an ESM-only package, a `.mjs` file) runs as require(), which
 * loads ES modules from Node 20.19 and 22.12 on; an older worker's error says what to do.
 */
function explainRequireEsm(err: unknown): unknown {
  if ((err as { code?: unknown } | null)?.code !== "ERR_REQUIRE_ESM" || !(err instanceof Error)) return err;
  err.message += ` (this worker runs Node ${process.version}, which cannot require() ES modules: run the worker on Node 20.19 or newer, or 22.12 or newer)`;
  return err;
}

async function runJob(command: RunCommand, post: (event: JobThreadEvent, transfer?: ArrayBuffer[]) => void): Promise<void> {
  const { jobId } = command;
  clearTimeout(idleTimer);
  const job = takeContext();
  currentContext = job;
  const failure = new Promise<never>((_, reject) => (failCurrent = reject));
  failure.catch(() => undefined);
  const acks = new Int32Array(command.acks);
  const pipe = new CheckpointPipe(acks, (index, values, transfer) => post({ type: "checkpoint", jobId, index, values }, transfer));
  const metrics = new MetricPipe(acks, (batch, transfer) => post({ type: "metrics", jobId, batch }, transfer), () => pipe.waitWhileHeld());
  job.begin(command.params, {
    write: (name, text) => {
      pipe.waitWhileHeld();
      post({ type: "stream", jobId, name, text });
    },
    checkpoint: (index, values) => pipe.send(index, values),
    metric: metrics.add,
    flush: async () => {
      metrics.send();
      await Promise.all([pipe.flush(), metrics.flush()]);
    },
  }, command.moduleDir);
  try {
    const entries: Array<() => unknown> = [];
    job.define(ENTRY_HOOK, (entry: () => unknown) => entries.push(entry));
    if (command.declaredNames) job.bindGlobals(command.declaredNames);
    let value: unknown = scriptFor(command.key, command.js).runInContext(job.context, { displayErrors: false });
    if (command.restore) job.jobtracker.restore(command.restore.index, command.restore.values, job.classLookup());
    if (command.hasEntries) {
      if (entries.length === 0) throw new Error("the job's program ended before its entries were reached");
      for (const entry of entries) value = await Promise.race([entry(), failure]);
    } else {
      value = await Promise.race([value, failure]);
    }
    const result = serializeOrExplain(value, "result", "the job's result cannot be sent back");
    // The values logged last go before the outcome: the job is done only once they are stored.
    metrics.send();
    post({ type: "done", jobId, resultText: previewText(value), result });
  } catch (err) {
    try {
      metrics.send();
    } catch {
      // Storing metrics failed for good: the job's failure says so already, or will.
    }
    post({ type: "failed", jobId, ...describeThrown(explainRequireEsm(err)) });
  } finally {
    metrics.close();
    failCurrent = undefined;
    currentContext = undefined;
    job.dispose();
    // Making a context takes about a millisecond; do it now, before the next job is waiting.
    setImmediate(() => (spare ??= new JobContext()));
    scheduleIdleCollection();
  }
}

// Atomics.waitAsync is in Node 20, not yet in the TypeScript lib this project targets.
const waitAsync = (Atomics as unknown as { waitAsync(array: Int32Array, index: number, value: number, timeoutMs: number): { value: string | Promise<string> } }).waitAsync;

/**
 * The job's side of checkpoint storage: hands each snapshot to the main thread (moving its
 * bytes, not copying them) and, when the store is too far behind, blocks the job until it catches
 * up, so a fast synchronous loop cannot fill the worker's memory.
 */
class CheckpointPipe {
  private sent = 0;
  /** Sizes of the snapshots sent and not known stored yet, oldest first. */
  private readonly pending: number[] = [];
  private pendingBytes = 0;

  constructor(private readonly acks: Int32Array, private readonly post: (index: number, values: Record<string, Uint8Array>, transfer: ArrayBuffer[]) => void) {}

  send(index: number, values: Record<string, Uint8Array>): void {
    const bytes = Object.values(values).reduce((sum, v) => sum + v.byteLength, 0);
    this.waitWhileHeld();
    this.settle();
    // A snapshot bigger than the limit alone still goes: it waits only for the ones before it.
    while (this.pending.length > 0 && (this.pendingBytes + bytes > PENDING_CHECKPOINT_BYTES || this.pending.length >= PENDING_CHECKPOINTS)) {
      this.checkFailed();
      Atomics.wait(this.acks, 0, Atomics.load(this.acks, 0), 250);
      this.settle();
    }
    this.checkFailed();
    // Buffers that own their whole memory move to the main thread instead of being copied.
    const transfer: ArrayBuffer[] = [];
    for (const v of Object.values(values)) {
      if (v.byteOffset === 0 && v.buffer.byteLength === v.byteLength && v.buffer instanceof ArrayBuffer && !transfer.includes(v.buffer)) transfer.push(v.buffer);
    }
    this.post(index, values, transfer);
    this.sent++;
    this.pending.push(bytes);
    this.pendingBytes += bytes;
  }

  async flush(): Promise<void> {
    for (;;) {
      this.checkFailed();
      const stored = Atomics.load(this.acks, 0);
      if (stored >= this.sent) return;
      await waitAsync(this.acks, 0, stored, 250).value;
    }
  }

  /** Blocks the job while the main thread says so (RunCommand.acks[2]); a cancel still ends it. */
  waitWhileHeld(): void {
    while (Atomics.load(this.acks, 2) !== 0) Atomics.wait(this.acks, 2, 1, 250);
  }

  private settle(): void {
    const stored = Atomics.load(this.acks, 0);
    while (this.sent - this.pending.length < stored) this.pendingBytes -= this.pending.shift()!;
  }

  private checkFailed(): void {
    if (Atomics.load(this.acks, 1) !== 0) throw new Error("jobtracker: a checkpoint or metrics could not be stored, so the job stops (the worker's log and the job's error say why)");
  }
}

/**
 * The job's side of metric storage: `jobtracker.log` values are appended to column buffers (a
 * few stores per value, no message), sent to the main thread a batch at a time (full, or every
 * METRIC_SEND_MS while values come in, also from inside a synchronous loop), and the job is held
 * only when PENDING_METRIC_BATCHES batches are waiting to be stored.
 */
class MetricPipe {
  private nextSeq = 0;
  private sent = 0;
  private batch = MetricPipe.emptyBatch(0);
  private nameIds = new Map<string, number>();
  private startedAt = 0;
  private timer?: NodeJS.Timeout;
  private clockEvery = 1;
  private untilClockCheck = 1;
  private lastClockCheck = 0;

  constructor(
    private readonly acks: Int32Array,
    private readonly post: (batch: MetricBatch, transfer: ArrayBuffer[]) => void,
    private readonly waitWhileHeld: () => void,
  ) {}

  private static emptyBatch(firstSeq: number): MetricBatch {
    return {
      firstSeq, count: 0, names: [],
      nameIds: new Int32Array(METRIC_BATCH_POINTS), steps: new Float64Array(METRIC_BATCH_POINTS), values: new Float64Array(METRIC_BATCH_POINTS),
      arrays: [], backwards: [],
    };
  }

  // An arrow property: handed to the tracker as its sink without a wrapper.
  readonly add = (name: string, step: number, value: number | number[], backwards: boolean): void => {
    const batch = this.batch;
    const at = batch.count;
    if (at === 0) {
      this.startedAt = Date.now();
      // For a job that logs now and then and awaits in between; a synchronous loop sends by time below.
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.trySend();
      }, METRIC_SEND_MS);
    }
    let id = this.nameIds.get(name);
    if (id === undefined) {
      id = batch.names.push(name) - 1;
      this.nameIds.set(name, id);
    }
    batch.nameIds[at] = id;
    batch.steps[at] = step;
    if (typeof value === "number") batch.values[at] = value;
    else {
      batch.values[at] = NaN;
      batch.arrays.push([at, value]);
    }
    if (backwards) batch.backwards.push(at);
    batch.count = at + 1;
    this.nextSeq++;
    if (batch.count === METRIC_BATCH_POINTS) this.send();
    else if (--this.untilClockCheck === 0) this.checkClock();
  };

  /**
   * Sends the batch once it is METRIC_SEND_MS old. Reading the clock costs as much as a whole
   * log() call on a busy machine (about 200 ns), so it is read every `clockEvery` calls, adapted
   * to read it about every 5-20 ms of the job's time: a fast loop rarely, a loop that logs once a
   * second at every call.
   */
  private checkClock(): void {
    const now = Date.now();
    const since = now - this.lastClockCheck;
    this.lastClockCheck = now;
    if (since < 5 && this.clockEvery < 1024) this.clockEvery *= 2;
    else if (since > 20 && this.clockEvery > 1) this.clockEvery >>= 1;
    this.untilClockCheck = this.clockEvery;
    if (now - this.startedAt >= METRIC_SEND_MS) this.send();
  }

  /** Sends what is buffered (waits first while the store is too far behind); throws once storing failed for good. */
  send(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.batch;
    if (batch.count === 0) return;
    this.waitWhileHeld();
    while (this.sent - Atomics.load(this.acks, 3) >= PENDING_METRIC_BATCHES) {
      this.checkFailed();
      Atomics.wait(this.acks, 3, Atomics.load(this.acks, 3), 250);
    }
    this.checkFailed();
    this.batch = MetricPipe.emptyBatch(this.nextSeq);
    this.nameIds = new Map();
    this.post(batch, [batch.nameIds.buffer as ArrayBuffer, batch.steps.buffer as ArrayBuffer, batch.values.buffer as ArrayBuffer]);
    this.sent++;
  }

  /** Resolves once every batch sent so far is stored. */
  async flush(): Promise<void> {
    for (;;) {
      this.checkFailed();
      const stored = Atomics.load(this.acks, 3);
      if (stored >= this.sent) return;
      await waitAsync(this.acks, 3, stored, 250).value;
    }
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** From the timer: a failure there has no caller to tell; the job hears of it at its next log or checkpoint. */
  private trySend(): void {
    try {
      this.send();
    } catch {
      // Told again, to the job, by the next send.
    }
  }

  private checkFailed(): void {
    if (Atomics.load(this.acks, 1) !== 0) throw new Error("jobtracker: a checkpoint or metrics could not be stored, so the job stops (the worker's log and the job's error say why)");
  }
}

if (parentPort) {
  const port = parentPort;
  const post = (event: JobThreadEvent, transfer?: ArrayBuffer[]) => port.postMessage(event, transfer);
  // Job code may write to process.stdout directly; that belongs to the job's output too.
  for (const name of ["stdout", "stderr"] as const) {
    const stream = process[name];
    stream.write = ((chunk: unknown) => {
      const text = typeof chunk === "string" ? chunk : Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? Buffer.from(chunk).toString("utf8") : String(chunk);
      currentContext?.write(name, text);
      return true;
    }) as typeof stream.write;
  }
  // An error thrown from a job's timer or a rejected promise nobody awaited fails that job
  // instead of ending the thread.
  process.on("uncaughtException", (err) => failCurrent?.(err));
  process.on("unhandledRejection", (reason) => failCurrent?.(reason));
  // One job at a time: the main thread sends the next run only after this one's done/failed.
  port.on("message", (command: RunCommand) => {
    if (command.type === "run") void runJob(command, post);
  });
  spare = new JobContext();
}
