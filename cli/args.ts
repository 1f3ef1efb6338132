// What every command module shares: the Command shape, the one-line UsageError, and argument
// parsing with the house rules. The commands import this, never the dispatcher (index.ts),
// which only bin/nbjob.js loads.
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A command module: what `--help` prints and the function that runs it (returns the exit code). */
export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

/** An error whose message is the whole story for the user: printed as one line, no stack. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** parseArgs with the house rules: unknown flags and missing values become one clear UsageError. */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T, usage: string): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    // One line: what was wrong, and the synopsis; `--help` has the details.
    const synopsis = usage.split("\n", 1)[0];
    const command = /^usage: (nbjob \S+)/.exec(synopsis)?.[1] ?? "nbjob <command>";
    throw new UsageError(`${(err as Error).message} (${synopsis}; "${command} --help" explains each option)`);
  }
}

/**
 * `nbjob GROUP` without its action, or with one it does not know: one line naming the choices
 * and where the details are (printing the whole usage here buried the one thing that was wrong).
 */
export function actionError(group: string, choices: readonly string[], given?: string): UsageError {
  const list = choices.length > 1 ? `${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}` : choices[0];
  const what = given === undefined ? `nbjob ${group} needs an action: ${list}` : `unknown action "${given}"; expected ${list}`;
  return new UsageError(`${what} ("nbjob ${group} --help" explains each)`);
}

/** A one-line error that ends by pointing at `nbjob COMMAND --help` instead of repeating the usage. */
export function oneLineUsageError(command: string, message: string): UsageError {
  return new UsageError(`${message} ("nbjob ${command} --help" explains the options)`);
}

/** Addresses that mean "every interface": fine to bind, useless to connect to from another host. */
export const WILDCARD_ADDRESSES: ReadonlySet<string> = new Set(["0.0.0.0", "::", "[::]", "*"]);
