// `jobtracker` in the notebook: the same object a job gets on its worker, checking the same
// things (the name is a top-level variable of the notebook, a name is registered once, a value
// can be captured; log's names and values), so mistakes show while the snippet is written; it
// stores nothing. Indexes count 0, 1, 2… per kernel session.
import * as vm from "node:vm";
import { WorkerJobTracker } from "./shared/jobtracker";
import type { CheckpointAccessors } from "./shared/jobtracker";

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** A top-level variable of the notebook by name (cells run as scripts in this realm). */
function notebookVariable(name: string): Required<CheckpointAccessors> {
  if (!IDENTIFIER.test(name)) throw new ReferenceError(`${name} is not an identifier`);
  const get = vm.runInThisContext(`(() => ${name})`, { filename: "nbjob-jobtracker" }) as () => unknown;
  try {
    get();
  } catch (err) {
    // Declared but not yet initialised (registered before its `let` ran) is fine, as on a worker.
    if (!/before initialization/.test(String((err as Error).message))) throw err;
  }
  const set = vm.runInThisContext(`((value) => { ${name} = value; })`, { filename: "nbjob-jobtracker" }) as (value: unknown) => void;
  return { get, set };
}

/** The notebook's jobtracker: checks registrations and captures, keeps nothing. */
export const jobtracker: Pick<WorkerJobTracker, "registerCheckpointer" | "checkpoint" | "flush" | "registered" | "log"> = new WorkerJobTracker(notebookVariable, () => {
  // In the notebook a checkpoint is only a check that the values can be captured.
});
