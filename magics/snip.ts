// `%%snip NAME`: run the rest of the cell, and once it succeeded record it in collector NAME.
import type { CellMagicInvocation, MagicEffect } from "./registry";
import { registerCellMagic } from "./registry";
import { recordSnippet } from "../runtime/snippets";
import { COLLECTOR_EXPRESSION, requireCollector } from "./collectors";
import { syntaxError, usageError } from "./errors";
import { parseSource, syntaxErrors } from "../runtime/bundle-analysis";

function snip({ args, line, ctx, code, source }: CellMagicInvocation): MagicEffect {
  if (args === "") throw usageError(`%%snip needs the name of a SnippetCollector to record the cell in, e.g. %%snip sc (line ${line + 1})`, line);
  if (!COLLECTOR_EXPRESSION.test(args)) {
    throw usageError(`%%snip takes one collector name, e.g. %%snip sc; got "${args}" (line ${line + 1})`, line);
  }
  // Checked before the cell runs, so a typo does not run the code and then fail to record it.
  const collector = requireCollector(args, ctx, `%%snip on line ${line + 1}`, line);
  const syntax = syntaxErrors(parseSource(code, "cell.ts"));
  if (syntax.length > 0) throw syntaxError(syntax[0]);
  const cellId = ctx.cellId;
  return {
    code,
    onSuccess() {
      recordSnippet(collector, { source, kind: "cell", ...(cellId !== undefined ? { cellId } : {}) });
    },
  };
}

registerCellMagic("snip", snip);
