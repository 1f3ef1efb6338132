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

/** Looks like a negative number: a value (a bad one, most likely), never one of our flags. */
const NEGATIVE_NUMBER = /^-\.?\d/;

/**
 * parseArgs with the house rules: unknown flags and missing values become one clear UsageError.
 * A negative number (`nbjob show -1`, `--limit -3`) is passed on as the positional or option
 * value it is, so that the command's own check names the bad value and what it accepts.
 */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T, usage: string): ReturnType<typeof parseArgs<T>> {
  const negatives: string[] = [];
  // parseArgs takes "-1" for an option: hide each behind a placeholder that is no option, then put it back.
  const args = config.args?.map((arg) => (NEGATIVE_NUMBER.test(arg) ? `\u0000${negatives.push(arg) - 1}` : arg));
  const restore = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(restore);
    const placeholder = typeof value === "string" ? /^\u0000(\d+)$/.exec(value) : null;
    return placeholder ? negatives[Number(placeholder[1])] : value;
  };
  try {
    const parsed = parseArgs({ ...config, args } as T);
    const values = parsed.values as Record<string, unknown>;
    for (const key of Object.keys(values)) values[key] = restore(values[key]);
    parsed.positionals.splice(0, parsed.positionals.length, ...(restore(parsed.positionals) as string[]));
    return parsed;
  } catch (err) {
    // One line: what was wrong, and the synopsis; `--help` has the details.
    const synopsis = usage.split("\n", 1)[0];
    const command = /^usage: (nbjob \S+)/.exec(synopsis)?.[1] ?? "nbjob <command>";
    const message = (err as Error).message.replace(/\u0000(\d+)/g, (_, i: string) => negatives[Number(i)]);
    throw new UsageError(`${message} (${synopsis}; "${command} --help" explains each option)`);
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
