// The batch of logged metric values still in the job thread, kept in memory shared with the
// worker's main thread. A job is stopped (cancel, timeoutMs, interrupt) by terminating its thread:
// the only way to stop a synchronous loop, and one that gives the thread no chance to send what it
// has buffered. Batches already posted reach the main thread anyway (Node delivers a terminated
// thread's posted messages before its `exit` event); the batch not yet posted lives here, so the
// main thread reads it once the thread is gone and nothing logged is lost. Both threads decode a
// batch with the same function (readStagedBatch), so the path taken after a stop is the one every
// batch takes. The job thread makes the stage at the job's first value and posts it to the main
// thread before writing to it (a posted message arrives even if the thread is stopped right
// after): a job that logs nothing costs no 1.3 MB of shared memory.
//
// Why shared memory rather than asking the thread to flush before terminating it: a thread in a
// synchronous loop answers no message, and one that logged a value and then computes for minutes
// without logging again would keep that value to itself however long the main thread waited.

/** Metric values per batch sent to the main thread. */
export const METRIC_BATCH_POINTS = 8_192;
/** Bytes for the names a staged batch uses (each as 2 bytes of length + UTF-8); a batch whose names do not fit is sent first. */
export const STAGE_NAME_BYTES = 64 * 1024;
/** Numbers of array values a staged batch holds; a longer array goes in a batch of its own. */
export const STAGE_ARRAY_NUMBERS = 128 * 1024;

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

/** flags[i] bits. */
export const STAGE_BACKWARDS = 1;
export const STAGE_ARRAY = 2;

/** Int32 header slots. */
const COUNT = 0;
const NAME_BYTES_USED = 1;
const ARRAY_NUMBERS_USED = 2;
const NAME_COUNT = 3;
const HEADER_INTS = 4;

/**
 * Views on one job's stage. `count` (header[0], written by the job thread's MetricPipe) is
 * written last for each value, so a thread stopped
 * in the middle of a log() leaves that value out rather than half in. For an array value,
 * `values[i]` holds its length and its numbers follow the previous arrays' in `arrays`.
 */
export class MetricStage {
  readonly header: Int32Array;
  /** [0]: the seq of the staged batch's first value. */
  readonly firstSeq: Float64Array;
  readonly nameIds: Int32Array;
  readonly steps: Float64Array;
  readonly values: Float64Array;
  readonly flags: Uint8Array;
  readonly arrays: Float64Array;
  readonly names: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    const n = METRIC_BATCH_POINTS;
    // Float64 columns first (8-byte aligned), then the Int32 ones, then the bytes.
    let at = 0;
    const take = (bytes: number) => {
      const start = at;
      at += bytes;
      return start;
    };
    this.firstSeq = new Float64Array(buffer, take(8), 1);
    this.steps = new Float64Array(buffer, take(8 * n), n);
    this.values = new Float64Array(buffer, take(8 * n), n);
    this.arrays = new Float64Array(buffer, take(8 * STAGE_ARRAY_NUMBERS), STAGE_ARRAY_NUMBERS);
    this.header = new Int32Array(buffer, take(4 * HEADER_INTS), HEADER_INTS);
    this.nameIds = new Int32Array(buffer, take(4 * n), n);
    this.flags = new Uint8Array(buffer, take(n), n);
    this.names = new Uint8Array(buffer, take(STAGE_NAME_BYTES), STAGE_NAME_BYTES);
  }

  /** A new, empty stage whose first value gets `firstSeq`. */
  static create(firstSeq = 0): MetricStage {
    const stage = new MetricStage(new SharedArrayBuffer(MetricStage.bytes()));
    stage.firstSeq[0] = firstSeq;
    return stage;
  }

  static bytes(): number {
    const n = METRIC_BATCH_POINTS;
    return 8 + 16 * n + 8 * STAGE_ARRAY_NUMBERS + 4 * HEADER_INTS + 5 * n + STAGE_NAME_BYTES;
  }

  get count(): number {
    return this.header[COUNT];
  }

  /** Adds a name to the batch's table and returns its id, or -1 when the name area is full. */
  addName(name: string): number {
    const bytes = Buffer.byteLength(name, "utf8");
    const used = this.header[NAME_BYTES_USED];
    if (used + 2 + bytes > STAGE_NAME_BYTES) return -1;
    this.names[used] = bytes & 0xff;
    this.names[used + 1] = bytes >> 8;
    Buffer.from(this.buffer, this.names.byteOffset + used + 2, bytes).write(name, "utf8");
    this.header[NAME_BYTES_USED] = used + 2 + bytes;
    return this.header[NAME_COUNT]++;
  }

  /** Empties the stage; the next value gets `firstSeq`. */
  reset(firstSeq: number): void {
    this.firstSeq[0] = firstSeq;
    this.header[NAME_BYTES_USED] = 0;
    this.header[NAME_COUNT] = 0;
    this.header[ARRAY_NUMBERS_USED] = 0;
    this.header[COUNT] = 0;
  }

  setArrayNumbersUsed(used: number): void {
    this.header[ARRAY_NUMBERS_USED] = used;
  }
}

/**
 * The staged batch as a message (every column copied out of the shared memory, so it can be
 * transferred and the stage reused), or undefined when nothing is staged.
 */
export function readStagedBatch(stage: MetricStage): MetricBatch | undefined {
  const count = stage.count;
  if (count === 0) return undefined;
  const names: string[] = [];
  const nameBytes = stage.header[NAME_BYTES_USED];
  for (let at = 0; at < nameBytes;) {
    const length = stage.names[at] | (stage.names[at + 1] << 8);
    names.push(Buffer.from(stage.buffer, stage.names.byteOffset + at + 2, length).toString("utf8"));
    at += 2 + length;
  }
  const values = stage.values.slice(0, count);
  const arrays: Array<[number, number[]]> = [];
  const backwards: number[] = [];
  let arrayAt = 0;
  for (let i = 0; i < count; i++) {
    const flags = stage.flags[i];
    if (flags === 0) continue;
    if (flags & STAGE_BACKWARDS) backwards.push(i);
    if (flags & STAGE_ARRAY) {
      const length = values[i];
      arrays.push([i, Array.from(stage.arrays.subarray(arrayAt, arrayAt + length))]);
      arrayAt += length;
      values[i] = NaN;
    }
  }
  return {
    firstSeq: stage.firstSeq[0], count, names,
    nameIds: stage.nameIds.slice(0, count), steps: stage.steps.slice(0, count), values,
    arrays, backwards,
  };
}
