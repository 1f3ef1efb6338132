// `%nbjob SUBCOMMAND args`: notebook-side commands. `snippets` lists the collectors; other
// subcommands (e.g. `restore`) register themselves with registerNbjobCommand.
import { inspect } from "node:util";
import type { MagicContext } from "./types";
import type { MagicEffect, MagicInvocation } from "./registry";
import { registerLineMagic } from "./registry";
import { SnippetCollector } from "../runtime/snippets";
import { lookUp } from "./collectors";
import { usageError } from "./errors";

export type NbjobCommand = (args: string, invocation: MagicInvocation) => Promise<MagicEffect | void> | MagicEffect | void;

const commands = new Map<string, NbjobCommand>();

/** Adds `%nbjob NAME ...`. */
export function registerNbjobCommand(name: string, command: NbjobCommand): void {
  commands.set(name, command);
}

/** The notebook's collectors, by the global names they are bound to. */
export function notebookCollectors(ctx: MagicContext): { name: string; collector: SnippetCollector }[] {
  const out: { name: string; collector: SnippetCollector }[] = [];
  for (const [name, record] of ctx.engine.declarations()) {
    if (record.kind !== "variable") continue;
    const found = lookUp(name, ctx);
    if (found.found && SnippetCollector.isCollector(found.value)) out.push({ name, collector: found.value });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

registerNbjobCommand("snippets", (_args, { ctx }) => {
  const found = notebookCollectors(ctx);
  const text = found.length === 0
    ? "No SnippetCollector in this notebook yet: const sc = new SnippetCollector()"
    : found.map(({ name, collector }) => `${name}: ${inspect(collector)}`).join("\n");
  ctx.sink.display({ "text/plain": text }, {}, {}, false);
});

registerLineMagic("nbjob", async (invocation) => {
  const [sub = "", ...rest] = invocation.args.split(/\s+/).filter((w) => w !== "");
  const command = commands.get(sub);
  if (!command) {
    const known = [...commands.keys()].sort().join(", ");
    throw usageError(`%nbjob ${sub === "" ? "needs a subcommand" : `has no subcommand "${sub}"`} (line ${invocation.line + 1}); known: ${known}`, invocation.line);
  }
  return command(rest.join(" "), invocation);
});
