// The magics layer's front door: turns a user's cell into the TypeScript the engine runs.
import type { MagicContext, PreparedCell } from "./types";
import type { MagicEffect } from "./registry";
import { cellMagic, cellMagicNames, lineMagic, lineMagicNames } from "./registry";
import { blankRange, lineStarts, linesStartingInCode } from "./text";
import { usageError } from "./errors";
import { blankCollectorDecorators, deleteRanges, extractCollectorDecorators } from "./decorators";
import { tidySource } from "../runtime/bundle-analysis";
import "./snip";
import "./nbjob";
import "./restore";

export type { MagicContext, PreparedCell } from "./types";
export { CellError } from "./types";
export type { CellMagicHandler, CellMagicInvocation, LineMagicHandler, MagicEffect, MagicInvocation } from "./registry";
export { registerCellMagic, registerLineMagic } from "./registry";
export { registerNbjobCommand } from "./nbjob";
export type { NbjobCommand } from "./nbjob";

const CELL_MAGIC_LINE = /^([ \t]*)%%([A-Za-z_][\w-]*)?(.*)$/;
const LINE_MAGIC_LINE = /^([ \t]*)%([A-Za-z_][\w-]*)(.*)$/;

interface FoundMagic {
  name: string;
  args: string;
  line: number;
  start: number;
  end: number;
}

/**
 * Prepares one cell: `%%name args` on the first line routes the cell to that cell magic,
 * `%name args` lines run their line magic now, and every removed line becomes spaces so the
 * engine's line:col are the cell's own. Throws `CellError` for an unknown magic.
 */
export async function prepareCell(code: string, ctx: MagicContext): Promise<PreparedCell> {
  const starts = lineStarts(code);
  const lines = code.split("\n");
  const inCode = linesStartingInCode(code);
  let text = code;
  let cell: FoundMagic | undefined;
  const lineMagics: FoundMagic[] = [];

  const firstLine = lines.findIndex((l) => l.trim() !== "");
  for (let i = 0; i < lines.length; i++) {
    if (!inCode[i]) continue;
    const lineText = lines[i].replace(/\r$/, "");
    const start = starts[i];
    const end = start + lineText.length;
    const cellMatch = CELL_MAGIC_LINE.exec(lineText);
    if (cellMatch) {
      if (i !== firstLine) {
        throw usageError(`%%${cellMatch[2] ?? ""} is a cell magic and must be the first line of the cell (found on line ${i + 1}); move it to the top or split the cell`, i);
      }
      if (cellMatch[2] === undefined) {
        throw usageError(`"%%" on line ${i + 1} has no magic name; write e.g. %%snip sc`, i);
      }
      cell = { name: cellMatch[2], args: cellMatch[3].trim(), line: i, start, end };
      continue;
    }
    const lineMatch = LINE_MAGIC_LINE.exec(lineText);
    if (lineMatch) lineMagics.push({ name: lineMatch[2], args: lineMatch[3].trim(), line: i, start, end });
  }

  // Check every name before running anything, so a typo never half-runs a cell.
  if (cell && !cellMagic(cell.name)) {
    throw usageError(`unknown cell magic %%${cell.name} (line ${cell.line + 1}); known cell magics: ${listOrNone(cellMagicNames(), "%%")}`, cell.line);
  }
  for (const m of lineMagics) {
    if (!lineMagic(m.name)) {
      throw usageError(`unknown line magic %${m.name} (line ${m.line + 1}); known line magics: ${listOrNone(lineMagicNames(), "%")}`, m.line);
    }
  }

  const magicLines = [...(cell ? [cell] : []), ...lineMagics];
  for (const m of magicLines) text = blankRange(text, m.start, m.end);

  // Collector decorators are checked now (before anything runs) and recorded on success.
  const decorators = extractCollectorDecorators(text, ctx);
  text = decorators.code;
  // The user's code as they read it, without magic lines and decorators: what %%snip records.
  const lineRemovals = magicLines.map((m): [number, number] => [m.start, Math.min(code.length, m.end + 1)]);
  const source = tidySource(deleteRanges(code, [...lineRemovals, ...decorators.removals]));

  const effects: MagicEffect[] = [{ onSuccess: () => decorators.record() }];
  for (const m of lineMagics) {
    const effect = await lineMagic(m.name)!({ name: m.name, args: m.args, line: m.line, ctx });
    if (effect) effects.push(effect);
  }
  if (cell) {
    const effect = await cellMagic(cell.name)!({ name: cell.name, args: cell.args, line: cell.line, ctx, code: text, source });
    if (effect) {
      if (effect.code !== undefined) text = effect.code;
      effects.push(effect);
    }
  }

  return {
    code: text,
    async onSuccess() {
      for (const effect of effects) if (effect.onSuccess) await effect.onSuccess();
    },
  };
}

function listOrNone(names: string[], prefix: string): string {
  return names.length === 0 ? "none" : names.map((n) => prefix + n).join(", ");
}

/**
 * The cell as TypeScript for completion, inspection and is_complete: magic lines and
 * decorators on non-class declarations blanked (same offsets), nothing evaluated or run.
 */
export function codeForAnalysis(code: string): string {
  const starts = lineStarts(code);
  const inCode = linesStartingInCode(code);
  let text = code;
  code.split("\n").forEach((line, i) => {
    if (inCode[i] && /^[ \t]*%/.test(line)) text = blankRange(text, starts[i], starts[i] + line.replace(/\r$/, "").length);
  });
  return blankCollectorDecorators(text);
}
