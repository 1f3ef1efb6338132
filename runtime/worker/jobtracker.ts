// `jobtracker` inside a job: registers the variables to checkpoint and takes consistent snapshots.
// Snapshots are serialized here, synchronously, so a checkpoint inside a synchronous loop captures
// the values of that moment; storing them happens elsewhere (the worker's main thread).
import { serializeOrExplain } from "./clone-check";

export interface CheckpointAccessors {
  get?: () => unknown;
  set?: (value: unknown) => void;
}

/** Reads (and writes) a top-level variable of the job by name; throws ReferenceError if there is none. */
export type VariableAccess = (name: string) => Required<CheckpointAccessors>;

/** Receives each snapshot: index and the serialized value of every registered variable. */
export type CheckpointSink = (index: number, values: Record<string, Uint8Array>) => void;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

export class WorkerJobTracker {
  private readonly checkpointers = new Map<string, Required<CheckpointAccessors>>();
  private nextIndex = 0;

  constructor(private readonly access: VariableAccess, private readonly sink: CheckpointSink) {}

  /** Registers a variable by name (a top-level `let`, `const` or `var` of the job), or custom accessors. */
  registerCheckpointer(name: string, accessors: CheckpointAccessors = {}): void {
    if (typeof name !== "string" || !IDENTIFIER.test(name)) {
      throw new TypeError(`jobtracker.registerCheckpointer(name): name must be the name of a top-level variable, e.g. "iteration"; got ${typeof name === "string" ? JSON.stringify(name) : typeof name}`);
    }
    if (accessors.get !== undefined && typeof accessors.get !== "function") throw new TypeError(`jobtracker.registerCheckpointer("${name}", { get }): get must be a function returning the value to capture`);
    if (accessors.set !== undefined && typeof accessors.set !== "function") throw new TypeError(`jobtracker.registerCheckpointer("${name}", { set }): set must be a function taking the restored value`);
    let byName: Required<CheckpointAccessors> | undefined;
    if (!accessors.get || !accessors.set) {
      try {
        byName = this.access(name);
      } catch (err) {
        throw new ReferenceError(`jobtracker.registerCheckpointer("${name}"): the job has no top-level variable ${name}; declare it with let, const or var at the top level of a snippet, or pass { get, set }`, { cause: err });
      }
    }
    this.checkpointers.set(name, { get: accessors.get ?? byName!.get, set: accessors.set ?? byName!.set });
  }

  /** Captures every registered value and returns the checkpoint's index (0, 1, 2, ...). */
  checkpoint(): number {
    const values: Record<string, Uint8Array> = {};
    for (const [name, { get }] of this.checkpointers) {
      values[name] = serializeOrExplain(get(), name, `jobtracker.checkpoint() cannot capture the variable ${name}`);
    }
    const index = this.nextIndex++;
    this.sink(index, values);
    return index;
  }

  /** Resolves once every snapshot taken so far is stored. Snapshots leave this thread as they are taken. */
  async flush(): Promise<void> {}

  /** Names registered so far, in order. */
  get registered(): string[] {
    return [...this.checkpointers.keys()];
  }
}
