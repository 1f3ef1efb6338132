// Runs an async cell whose body the compiler turned into a generator (each top-level `await`
// a `yield`), one synchronous stretch at a time, each inside a vm script run with
// breakOnSigint. An async function's continuation after an `await` runs as a microtask,
// outside any vm run, where SIGINT cannot stop a loop; a stretch run this way can be stopped.
import * as vm from "node:vm";

const STEP = Symbol.for("nbjob.step");

// Compiled once: each stretch of a cell is one run of this tiny script.
const stepScript = new vm.Script(`globalThis[Symbol.for("nbjob.step")]()`, { filename: "nbjob-step" });

// A cell awaiting settled promises in a loop never lets the event loop turn, so the kernel's
// SIGINT handler (which stops a pending await) would never run; after this long the next
// stretch waits for the event loop's next turn.
const EVENT_LOOP_TURN_MS = 50;

// Each vm run with breakOnSigint briefly leaves SIGINT to Node's default (ending the process)
// while it swaps the kernel's SIGINT handler for its watchdog and back. A cell awaiting in a
// tight loop would spend most of its time in those gaps, so after this many stretches in a row
// that resumed without the event loop turning, stretches run directly until the next turn
// (forced every EVENT_LOOP_TURN_MS, when the kernel's handler can act on SIGINT).
const GUARDED_QUICK_STRETCHES = 16;

export interface SteppedCell {
  /** Settles as the cell's async function would. */
  promise: Promise<unknown>;
  /** Stops the cell at its pending await: the rest of it does not run (its `finally` blocks do). */
  cancel(): void;
}

/** Runs `action` inside a vm script run, so SIGINT stops it (ERR_SCRIPT_EXECUTION_INTERRUPTED). */
function interruptibly<T>(action: () => T): T {
  let result: T | undefined;
  Object.defineProperty(globalThis, STEP, {
    value: () => {
      result = action();
    },
    configurable: true,
    writable: true,
    enumerable: false,
  });
  try {
    stepScript.runInThisContext({ breakOnSigint: true });
  } finally {
    delete (globalThis as Record<symbol, unknown>)[STEP];
  }
  return result as T;
}

export function stepThrough(body: Generator<unknown, unknown, unknown>): SteppedCell {
  let cancelled = false;
  let lastTurn = performance.now();
  let turned = true;
  let turnWatch = false;
  let quickStretches = 0;
  // Notes when the event loop turns (an immediate runs only after the microtasks ran out).
  const watchForTurn = (): void => {
    if (turnWatch) return;
    turnWatch = true;
    setImmediate(() => {
      turnWatch = false;
      turned = true;
      lastTurn = performance.now();
    });
  };
  const promise = new Promise<unknown>((resolve, reject) => {
    const step = (method: "next" | "throw", input: unknown): void => {
      if (cancelled) return;
      quickStretches = turned ? 0 : quickStretches + 1;
      turned = false;
      const stretch = () => (method === "next" ? body.next(input) : body.throw(input));
      let result: IteratorResult<unknown, unknown>;
      try {
        result = quickStretches < GUARDED_QUICK_STRETCHES ? interruptibly(stretch) : stretch();
      } catch (error) {
        reject(error);
        return;
      }
      if (result.done) {
        resolve(result.value);
        return;
      }
      watchForTurn();
      // As `await` does: a thenable is followed, anything else is the value itself.
      Promise.resolve(result.value).then(
        (value) => resume(() => step("next", value)),
        (error: unknown) => resume(() => step("throw", error)),
      );
    };
    const resume = (next: () => void): void => {
      if (performance.now() - lastTurn < EVENT_LOOP_TURN_MS) {
        next();
        return;
      }
      setImmediate(() => {
        turned = true;
        lastTurn = performance.now();
        next();
      });
    };
    // The first stretch runs now, as an async function's body starts synchronously.
    step("next", undefined);
  });
  return {
    promise,
    cancel: () => {
      if (cancelled) return;
      cancelled = true;
      try {
        interruptibly(() => body.return(undefined));
      } catch {
        // A cell stopped inside a stretch cannot be resumed, nor its finally blocks run; an error
        // from a finally block is not what the user asked about when they interrupted.
      }
    },
  };
}
