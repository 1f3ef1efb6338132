// Review before submit: shows what a job will run (snippets with sizes, entries, parameters) and
// takes edits through input() until the user submits or cancels; every edit is re-checked.
import type { CellSink } from "./cell-types";
import { assembleBundle, BundleError } from "./bundle";
import type { Bundle, BundleSnippet, ParamValues } from "./bundle";
import { display } from "./display";
import { input } from "./input";
import { currentCellSink } from "./notebook";
import { toJsonValue } from "./params";

/** Whether the cell running now may ask its frontend for input (false in headless runs). */
export function frontendCanAnswer(): boolean {
  const sink = currentCellSink() as (CellSink & { readonly allowStdin?: boolean }) | undefined;
  return sink?.allowStdin === true;
}

/** Answers that are no command before the review gives up (as a cancel): far more than a person's typos. */
const MAX_UNKNOWN_ANSWERS = 20;

const HELP = [
  "Enter or submit    submit the job",
  "cancel             do not create the job",
  "set NAME=VALUE     change a parameter (VALUE is JSON, else a string)",
  "drop NAME          leave out the snippet that declares NAME (or drop #N by position)",
  "show               show the full code of the job",
  "list               show this review again, as it is now",
].join("\n");

function describeSnippet(s: BundleSnippet, i: number): string {
  const lines = s.source.split("\n").length;
  const what = s.names.length > 0 ? s.names.join(", ") : "(statements)";
  return `  #${i + 1} ${s.kind.padEnd(9)} ${what}  (${lines} line${lines === 1 ? "" : "s"}, ${s.source.length} chars)`;
}

function problemLines(problems: BundleError): string[] {
  return ["This version does not type-check (fix it or cancel):", ...problems.message.split("\n").map((l) => `  ${l}`)];
}

function summary(snippets: readonly BundleSnippet[], entries: readonly string[], params: ParamValues, problems: BundleError | undefined, sweep: string | undefined): string {
  const lines = ["Job review", "", `Snippets (${snippets.length}):`, ...snippets.map(describeSnippet), "", "Entries (the last one's value is the result):", ...entries.map((e, i) => `  ${i + 1}. ${e}`), ""];
  const names = Object.keys(params);
  lines.push(names.length === 0 ? "Parameters: none" : "Parameters:", ...names.map((n) => `  ${n} = ${JSON.stringify(params[n])}`));
  if (problems) lines.push("", ...problemLines(problems));
  if (sweep) lines.push("", sweep);
  lines.push("", HELP);
  return lines.join("\n");
}

/** The snippets left, in one line: `#1 double, #2 pause`. */
function snippetList(snippets: readonly BundleSnippet[]): string {
  return snippets.length === 0 ? "none" : snippets.map((s, i) => `#${i + 1} ${s.names.join(", ") || "(statements)"}`).join(", ");
}

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Asks the user about `bundle` until they submit (resolves with the bundle, edited and checked)
 * or cancel (resolves undefined). The whole review is shown once; each answer then shows only
 * what it changed, so the cell does not repeat the block after every command (`list` shows it
 * again on request).
 */
export async function reviewBundle(bundle: Bundle, options: { baseDir?: string; ask?: (prompt: string) => Promise<string>; sweep?: string } = {}): Promise<Bundle | undefined> {
  const ask = options.ask ?? ((prompt: string) => input(prompt));
  const say = (text: string) => display({ "text/plain": text });
  let snippets = [...bundle.snippets];
  let params: ParamValues = { ...bundle.params };
  let checked: Bundle | BundleError = bundle;
  const problems = () => (checked instanceof BundleError ? checked : undefined);
  /** Checks the edited job again; returns what changed in whether it type-checks ("" when nothing did). */
  const recheck = (): string => {
    const before = problems()?.message;
    try {
      checked = assembleBundle(snippets, bundle.entries, params, { baseDir: options.baseDir });
    } catch (err) {
      if (!(err instanceof BundleError)) throw err;
      checked = err;
    }
    const after = problems();
    if (!after) return before === undefined ? "" : "\nIt type-checks again.";
    if (after.message === before) return "\nIt still does not type-check (fix it or cancel).";
    return `\n${problemLines(after).join("\n")}`;
  };
  const showAll = () => say(summary(snippets, bundle.entries, params, problems(), options.sweep));
  showAll();
  let unknownAnswers = 0;
  for (;;) {
    const raw = await ask("review> ");
    // jupyter_client answers "\x04" when its own stdin is at its end (a script run from cron or
    // CI): nobody will answer, so the review ends as a cancel instead of asking forever.
    if (raw.includes("\x04")) {
      say("Not submitted: the frontend's input ended (end of file); the job was not created.");
      return undefined;
    }
    const answer = raw.trim();
    const [command, ...restWords] = answer.split(/\s+/);
    const rest = answer.slice(command.length).trim();
    switch (command.toLowerCase()) {
      case "":
      case "submit":
      case "s":
      case "y":
        if (checked instanceof BundleError) {
          say("Not submitted: the job does not type-check; change it back or cancel.");
          continue;
        }
        return checked;
      case "cancel":
      case "c":
      case "q":
      case "n":
        return undefined;
      case "show":
        say(checked instanceof BundleError ? snippets.map((s) => s.source).join("\n\n") : checked.source);
        continue;
      case "list":
        showAll();
        continue;
      case "help":
      case "?":
        say(HELP);
        continue;
      case "drop": {
        const which = restWords[0] ?? "";
        const byPosition = /^#(\d+)$/.exec(which);
        const index = byPosition ? Number(byPosition[1]) - 1 : snippets.findIndex((s) => s.names.includes(which));
        if (index < 0 || index >= snippets.length) {
          say(`No snippet ${which ? `"${which}"` : "named"}: give a declared name or #N of ${snippetList(snippets)}.`);
          continue;
        }
        const dropped = `Dropped snippet #${index + 1} (${snippets[index].names.join(", ") || "statements"}).`;
        snippets = snippets.filter((_, i) => i !== index);
        say(`${dropped} Snippets now: ${snippetList(snippets)}.${recheck()}`);
        continue;
      }
      case "set": {
        const match = /^([A-Za-z_$][\w$]*)\s*=\s*([\s\S]*)$/.exec(rest);
        if (!match) {
          say("Write set NAME=VALUE, e.g. set x=7");
          continue;
        }
        const [, name, valueText] = match;
        if (!(name in params)) {
          say(`${name} is not a parameter of this job; its parameters are ${Object.keys(params).join(", ") || "none"}.`);
          continue;
        }
        try {
          params = { ...params, [name]: toJsonValue(parseValue(valueText), `params.${name}`) };
        } catch (err) {
          say((err as Error).message);
          continue;
        }
        say(`Set ${name} = ${JSON.stringify(params[name])}.${recheck()}`);
        continue;
      }
      default:
        // Whatever answers without reading (a program, a stuck key) gets a few tries, not forever.
        if (++unknownAnswers >= MAX_UNKNOWN_ANSWERS) {
          say(`Not submitted: ${MAX_UNKNOWN_ANSWERS} answers were not commands (the last: ${JSON.stringify(answer)}); the job was not created.`);
          return undefined;
        }
        say(`Unknown answer ${JSON.stringify(answer)}. Answer submit (or Enter), cancel, set NAME=VALUE, drop NAME, show, list or help.`);
        continue;
    }
  }
}
