// The hook between a running kernel and the notebook-facing runtime: which cell's outputs
// display() and input() reach, and where a cell-defined function's TypeScript source is kept.
import { basename, isAbsolute, join } from "node:path";
import type { CellSink, DeclarationRecord } from "./cell-types";

interface NotebookHook {
  sink?: CellSink;
  /** Work the running cell waits for before it ends (holdCell). */
  held?: Set<Promise<unknown>>;
  sourceOfFunction?: (fn: Function) => DeclarationRecord | undefined;
  /** The cell running now (set between startCell and its end). */
  cell?: RunningCell;
  /** Work to end before the kernel exits (onKernelShutdown). */
  shutdown?: Set<() => Promise<void>>;
  /** The text of a local module (absolute path) as the kernel loaded it, if it did. */
  loadedModuleText?: (file: string) => string | undefined;
}

// Kept on globalThis under a registered symbol so that two copies of this package in one
// process (the kernel's and a notebook folder's node_modules/nbjob) still share one hook.
const HOOK_KEY = Symbol.for("nbjob.notebook.hook");

function hook(): NotebookHook {
  const holder = globalThis as { [HOOK_KEY]?: NotebookHook };
  return (holder[HOOK_KEY] ??= {});
}

/** Set by the engine when a cell starts; outputs produced later (timers) still go to it. */
export function setCellSink(sink: CellSink | undefined): void {
  hook().sink = sink;
}

/** The sink of the cell that ran last, or undefined outside a notebook kernel. */
export function currentCellSink(): CellSink | undefined {
  return hook().sink;
}

/**
 * Keeps the running cell open until `work` settles (at most HOLD_LIMIT_MS), so outputs it makes
 * land in that cell even for a headless run that stops listening at the cell's end (the
 * dashboard's first table). Outside a notebook it does nothing.
 */
export function holdCell(work: Promise<unknown>): void {
  if (!inNotebook()) return;
  const held = (hook().held ??= new Set());
  const settled = work.then(() => undefined, () => undefined);
  held.add(settled);
  void settled.then(() => held.delete(settled));
}

const HOLD_LIMIT_MS = 10_000;

/** @internal the engine awaits this after a cell ran, before it reports the cell's end. */
export async function settleHeldWork(): Promise<void> {
  const held = hook().held;
  if (!held || held.size === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, HOLD_LIMIT_MS)));
  await Promise.race([Promise.all([...held]), limit]);
  clearTimeout(timer);
  held.clear();
}

/**
 * A cell while it runs: what should stop with it if the user interrupts it (an analyzer it
 * started). Work that outlives its cell on purpose (jobs) does not register.
 */
export class RunningCell {
  #listeners = new Set<() => void>();
  #ended = false;
  #interrupted = false;

  /**
   * Runs `listener` if this cell is interrupted, or at once if it was (work it started that
   * registers only after the interrupt, such as an analyzer whose store reads were under way,
   * stops too); for a cell that ended otherwise, never.
   */
  onInterrupt(listener: () => void): void {
    if (this.#interrupted) listener();
    else if (!this.#ended) this.#listeners.add(listener);
  }

  /** @internal the engine, when the cell's run ends (interrupted or not). */
  end(interrupted: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#interrupted = interrupted;
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    if (hook().cell === this) hook().cell = undefined;
    if (!interrupted) return;
    for (const listener of listeners) {
      try {
        listener();
      } catch {
        // One listener's failure must not keep the others from stopping their work.
      }
    }
  }
}

/** @internal the engine, as a cell starts running. */
export function startCell(): RunningCell {
  const cell = new RunningCell();
  hook().cell = cell;
  return cell;
}

/**
 * The cell running now, or undefined (outside a notebook kernel, or in code that runs after its
 * cell ended: a timer, a promise not awaited). Read it before the first await of an API call, so
 * work started from a cell is tied to that cell and not to whichever runs when the work begins.
 */
export function runningCell(): RunningCell | undefined {
  return hook().cell;
}

/**
 * Runs `end` when the kernel shuts down or restarts, before it exits: for work on other
 * processes that would otherwise go on for a notebook that is gone (analyses on the workers).
 */
export function onKernelShutdown(end: () => Promise<void>): void {
  (hook().shutdown ??= new Set()).add(end);
}

/** @internal the kernel, on shutdown_request: what registered, given at most `limitMs`. */
export async function endForShutdown(limitMs: number): Promise<void> {
  const ends = [...(hook().shutdown ?? [])].map((end) => end().catch(() => undefined));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(ends), new Promise<void>((resolve) => (timer = setTimeout(resolve, limitMs)))]);
  clearTimeout(timer);
}

/** True when this process is a notebook kernel that has started running cells. */
export function inNotebook(): boolean {
  return hook().sink !== undefined;
}

/** Set by the engine: maps a function or class object defined in a cell to its declaration. */
/** Set by the engine: the text of a local module as the kernel loaded it (its cells run that version). */
export function setLoadedModuleLookup(lookup: (file: string) => string | undefined): void {
  hook().loadedModuleText = lookup;
}

/** The text of the local module at `file` (an absolute path) as the kernel loaded it; undefined outside a kernel or if it did not. */
export function loadedModuleText(file: string): string | undefined {
  return hook().loadedModuleText?.(file);
}

export function setFunctionSourceLookup(lookup: (fn: Function) => DeclarationRecord | undefined): void {
  hook().sourceOfFunction = lookup;
}

/**
 * The TypeScript declaration a notebook cell gave `fn` (its latest definition), or undefined
 * when `fn` was not defined by a cell of this kernel.
 */
export function sourceOfFunction(fn: Function): DeclarationRecord | undefined {
  return hook().sourceOfFunction?.(fn);
}

// The directory the kernel started in: Jupyter starts a notebook's kernel in the notebook's own
// directory, and a cell may chdir later.
const startDirectory = process.cwd();

/**
 * The path of the notebook this kernel runs, when Jupyter said which (`JPY_SESSION_NAME`, set by
 * Jupyter Server for a session's kernel, and by `nbjob run`): recorded on the jobs it creates as
 * their lineage. Jupyter Server 2 gives the full path; 1.x gives it relative to its root, with
 * the kernel started in the notebook's directory, so the file name is joined to that directory.
 * Undefined outside such a kernel.
 */
export function notebookPath(): string | undefined {
  const session = process.env.JPY_SESSION_NAME?.trim();
  if (!session) return undefined;
  return isAbsolute(session) ? session : join(startDirectory, basename(session));
}
