// The job thread: one long-lived worker_threads thread per worker kernel that runs jobs one at a
// time, each in a fresh vm context. It holds no sockets, so the kernel's main thread can answer
// heartbeats during a synchronous job and can terminate this thread to cancel one.
import { inspect } from "node:util";
import { setFlagsFromString } from "node:v8";
import * as vm from "node:vm";
import { parentPort } from "node:worker_threads";
import type { ParamValues } from "../runtime/params";
import { serializeOrExplain } from "../runtime/shared/clone-check";
import { preloadLocalEsm } from "../runtime/esm-preload";
import { JobContext } from "./job-context";
import type { StreamName } from "./job-context";
import type { MetricSlot } from "../runtime/shared/jobtracker";
import type { JobId } from "../runtime/shared/protocol";
import { ENTRY_HOOK, PROGRAM_FILE } from "./program";
import { METRIC_BATCH_POINTS, MetricStage, readStagedBatch, STAGE_ARRAY, STAGE_ARRAY_NUMBERS, STAGE_BACKWARDS } from "./metric-stage";
import type { MetricBatch } from "./metric-stage";
import type { MetricsResumePoint } from "../store/metrics";

export type { MetricBatch } from "./metric-stage";

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
  /** CompiledProgram.assignedNames: the built-ins bound for the program stay reassignable only where it assigns them. */
  assignedNames?: string[];
  /**
   * Shared with the main thread: [0] how many of this run's checkpoints are stored (the main
   * thread adds and notifies), [1] 1 once storing failed for good, [2] 1 while the job must wait
   * at its next output or checkpoint (the store is unreachable too long, or far behind), [3] how
   * many of this run's metric batches are stored (job-runner.ts ACK_SLOTS).
   */
  acks: SharedArrayBuffer;
  /**
   * A resumed job: the checkpoint restored after the program's top level ran, before its entries,
   * and where its metrics go on (set before the program runs, so its top level logs after them).
   */
  restore?: { index: number; values: Record<string, Uint8Array>; metrics?: MetricsResumePoint };
  /** Where the job's local modules are laid out (its require resolves from there); absent: none. */
  moduleDir?: string;
  /** The local modules' paths relative to moduleDir (the bundle's `// files:` line). */
  modulePaths?: string[];
}

/** Metric batches not yet stored before log() waits (about 16 MiB of values). */
export const PENDING_METRIC_BATCHES = 64;
/** A batch is sent at least this often (ms) while values come in, so a live plot sees a running loop. */
export const METRIC_SEND_MS = 200;

/** Snapshots not yet stored may hold this many bytes (or this many snapshots) before checkpoint() waits. */
export const PENDING_CHECKPOINT_BYTES = 256 * 1024 * 1024;
export const PENDING_CHECKPOINTS = 1_000;

/**
 * Where the job's metrics stood when a checkpoint was taken: how many values its series had (the
 * seq the next gets) and the step a log() without one would get. A resume goes on from there.
 */
export interface MetricsPosition {
  seq: number;
  step: number;
}

/** Job thread → main thread. */
export type JobThreadEvent =
  | { type: "stream"; jobId: JobId; name: StreamName; text: string }
  | { type: "checkpoint"; jobId: JobId; index: number; values: Record<string, Uint8Array>; metrics: MetricsPosition }
  | { type: "metrics"; jobId: JobId; batch: MetricBatch }
  /**
   * The job's metric stage (metric-stage.ts), sent when the job logs its first value and before
   * any value is written to it: the values logged and not yet sent, which the main thread reads
   * once this thread is gone. A job that logs nothing has none.
   */
  | { type: "metric_stage"; jobId: JobId; buffer: SharedArrayBuffer }
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
  // A resumed job's values go on from where its checkpoint's series ended.
  const metrics = new MetricPipe(command.restore?.metrics?.seq ?? 0, acks, {
    stage: (buffer) => post({ type: "metric_stage", jobId, buffer }),
    batch: (batch, transfer) => post({ type: "metrics", jobId, batch }, transfer),
  }, () => pipe.waitWhileHeld());
  // Each checkpoint records where the metrics stood, so a resume from it continues the series.
  const metricsPosition = (): MetricsPosition => ({ seq: metrics.position, step: job.jobtracker.metricsNextStep });
  const pipe = new CheckpointPipe(acks, (index, values, transfer) => post({ type: "checkpoint", jobId, index, values, metrics: metricsPosition() }, transfer));
  job.begin(command.params, {
    write: (name, text) => {
      pipe.waitWhileHeld();
      post({ type: "stream", jobId, name, text });
    },
    checkpoint: (index, values) => {
      // The values logged before the checkpoint go first: the recorder stores a checkpoint only
      // after them, so a resume from a stored checkpoint finds its series up to there complete.
      metrics.send();
      pipe.send(index, values);
    },
    metric: metrics.add,
    flush: async () => {
      metrics.send();
      await Promise.all([pipe.flush(), metrics.flush()]);
    },
  }, command.moduleDir);
  if (command.restore?.metrics) job.jobtracker.continueMetrics(command.restore.metrics.nextStep, command.restore.metrics.lastSteps);
  try {
    const entries: Array<() => unknown> = [];
    job.define(ENTRY_HOOK, (entry: () => unknown) => entries.push(entry));
    if (command.declaredNames) job.bindGlobals(command.declaredNames, command.assignedNames);
    // Local ES modules that import TypeScript are imported first (require() of them could not).
    const preloading = command.moduleDir !== undefined && command.modulePaths ? preloadLocalEsm(command.moduleDir, command.modulePaths) : undefined;
    if (preloading) await Promise.race([preloading, failure]);
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
 * The job's side of metric storage: `jobtracker.log` values are written to the job's stage (column
 * buffers shared with the main thread, metric-stage.ts: a few stores per value, no message), sent
 * to the main thread a batch at a time (full, or every METRIC_SEND_MS while values come in, also
 * from inside a synchronous loop), and the job is held only when PENDING_METRIC_BATCHES batches
 * are waiting to be stored. A job stopped by terminating this thread loses nothing: the main
 * thread reads what is still staged once the thread is gone.
 */
class MetricPipe {
  private nextSeq: number;
  private sent = 0;
  /** Values staged (mirrors the stage's count, which the main thread reads after a stop). */
  private count = 0;
  private arrayUsed = 0;
  /** Counts the batches: a metric's id in the stage's name table holds for the batch it was added in (MetricSlot.sinkBatch). */
  private batch = 0;
  private startedAt = 0;
  private timer?: NodeJS.Timeout;
  private clockEvery = 1;
  private untilClockCheck = 1;
  private lastClockCheck = 0;
  /**
   * Made at the first value (openStage): a stage is 1.3 MB of shared memory, and most jobs log
   * nothing. Until then the columns are empty; the first value always adds its name first.
   */
  private stage?: MetricStage;
  private nameIdColumn: Int32Array = new Int32Array(0);
  private stepColumn: Float64Array = new Float64Array(0);
  private valueColumn: Float64Array = new Float64Array(0);
  private flagColumn: Uint8Array = new Uint8Array(0);
  /** The stage's count (header[0]), as a one-slot view: log() is hot. */
  private countCell: Int32Array = new Int32Array(0);

  /** `firstSeq`: the seq of the job's first value (a resumed job's series goes on). */
  constructor(
    firstSeq: number,
    private readonly acks: Int32Array,
    private readonly post: { stage: (buffer: SharedArrayBuffer) => void; batch: (batch: MetricBatch, transfer: ArrayBuffer[]) => void },
    private readonly waitWhileHeld: () => void,
  ) {
    this.nextSeq = firstSeq;
  }

  /** The job's stage, handed to the main thread before anything is written to it. */
  private openStage(): MetricStage {
    const stage = MetricStage.create(this.nextSeq);
    this.post.stage(stage.buffer);
    this.stage = stage;
    this.nameIdColumn = stage.nameIds;
    this.stepColumn = stage.steps;
    this.valueColumn = stage.values;
    this.flagColumn = stage.flags;
    this.countCell = stage.header.subarray(0, 1);
    return stage;
  }

  /** How many values the job has logged in its series (the seq the next one gets): recorded with each checkpoint. */
  get position(): number {
    return this.nextSeq;
  }

  // An arrow property: handed to the tracker as its sink without a wrapper. Kept small (arrays,
  // new names and a new batch go through methods of their own) so V8 inlines it into log().
  readonly add = (slot: MetricSlot, step: number, value: number | number[], backwards: boolean): void => {
    if (typeof value !== "number") {
      this.addArray(slot, step, value, backwards);
      return;
    }
    const id = slot.sinkBatch === this.batch ? slot.sinkId : this.addName(slot);
    const at = this.count;
    if (at === 0) this.startBatch();
    this.nameIdColumn[at] = id;
    this.stepColumn[at] = step;
    this.valueColumn[at] = value;
    this.flagColumn[at] = backwards ? STAGE_BACKWARDS : 0;
    this.commit(at + 1);
  };

  /** An array value: its numbers follow the staged arrays' (a batch of its own when too long for the stage). */
  private addArray(slot: MetricSlot, step: number, value: number[], backwards: boolean): void {
    if (this.arrayUsed + value.length > STAGE_ARRAY_NUMBERS) {
      this.send();
      if (value.length > STAGE_ARRAY_NUMBERS) {
        this.sendAlone(slot.name, step, value, backwards);
        return;
      }
    }
    const id = slot.sinkBatch === this.batch ? slot.sinkId : this.addName(slot);
    const at = this.count;
    if (at === 0) this.startBatch();
    this.nameIdColumn[at] = id;
    this.stepColumn[at] = step;
    // addName above made the stage if there was none.
    this.stage!.arrays.set(value, this.arrayUsed);
    this.arrayUsed += value.length;
    this.stage!.setArrayNumbersUsed(this.arrayUsed);
    this.valueColumn[at] = value.length;
    this.flagColumn[at] = STAGE_ARRAY | (backwards ? STAGE_BACKWARDS : 0);
    this.commit(at + 1);
  }

  private startBatch(): void {
    this.startedAt = Date.now();
    // For a job that logs now and then and awaits in between; a synchronous loop sends by time (checkClock).
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.trySend();
    }, METRIC_SEND_MS);
  }

  /**
   * The value just written counts from now on: the stage's count is written after its columns.
   * The thread is stopped only at V8's interrupt checks, and the main thread reads the stage only
   * after the thread has exited (which makes every store before it visible), so a value stopped
   * half-written is left out, never read half.
   */
  private commit(count: number): void {
    this.count = count;
    this.countCell[0] = count;
    this.nextSeq++;
    if (count === METRIC_BATCH_POINTS) this.send();
    else if (--this.untilClockCheck === 0) this.checkClock();
  }

  /** A metric new to this batch: its name into the stage's table (sending the batch first when the table is full). */
  private addName(slot: MetricSlot): number {
    const stage = this.stage ?? this.openStage();
    let id = stage.addName(slot.name);
    if (id < 0) {
      this.send();
      id = stage.addName(slot.name);
    }
    slot.sinkBatch = this.batch;
    slot.sinkId = id;
    return id;
  }

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

  /** Sends what is staged (waits first while the store is too far behind); throws once storing failed for good. */
  send(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.count === 0 || !this.stage) return;
    const batch = readStagedBatch(this.stage)!;
    this.postBatch(batch);
    // Emptied only once posted: a thread stopped in between leaves the batch both posted and
    // staged, and the main thread skips a staged batch it has received (job-runner.ts).
    this.stage.reset(this.nextSeq);
    this.count = 0;
    this.arrayUsed = 0;
    this.batch++;
  }

  /** An array too long for the stage: posted at once in a batch of its own (after the staged ones). */
  private sendAlone(name: string, step: number, value: number[], backwards: boolean): void {
    this.postBatch({
      firstSeq: this.nextSeq, count: 1, names: [name],
      nameIds: new Int32Array([0]), steps: new Float64Array([step]), values: new Float64Array([NaN]),
      arrays: [[0, value]], backwards: backwards ? [0] : [],
    });
    this.nextSeq++;
    this.stage?.reset(this.nextSeq);
  }

  private postBatch(batch: MetricBatch): void {
    this.waitWhileHeld();
    while (this.sent - Atomics.load(this.acks, 3) >= PENDING_METRIC_BATCHES) {
      this.checkFailed();
      Atomics.wait(this.acks, 3, Atomics.load(this.acks, 3), 250);
    }
    this.checkFailed();
    this.post.batch(batch, [batch.nameIds.buffer as ArrayBuffer, batch.steps.buffer as ArrayBuffer, batch.values.buffer as ArrayBuffer]);
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
