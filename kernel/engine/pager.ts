// `expr?` on a line of its own asks for the pager (type and docs of `expr`) instead of code.

export interface PagerRequest {
  expression: string;
  /** Offset in the cell of the expression's last character (where to ask the type checker). */
  position: number;
  /** The cell with the `?` line turned into the bare expression, for the type checker. */
  codeForInfo: string;
}

// A name, a property path, calls and indexing: `x`, `sc.snippets`, `db.jobs()`, `a[0].b`.
const PAGER_LINE = /^(\s*)([A-Za-z_$][\w$]*(?:\??\.[A-Za-z_$][\w$]*|\[[^\]\n]*\]|\([^()\n]*\))*)\s*\?\s*$/;

/** The cell without its `expr?` lines (blanked, so line numbers stay) and what they asked for. */
export function extractPagerLines(code: string): { code: string; pages: PagerRequest[] } {
  const lines = code.split("\n");
  const pages: PagerRequest[] = [];
  let offset = 0;
  lines.forEach((line, index) => {
    const match = PAGER_LINE.exec(line);
    if (match) {
      const [, indent = "", expression = ""] = match;
      const replaced = [...lines];
      replaced[index] = indent + expression;
      // The type checker describes the last name of the expression (`jobs` in `db.jobs()`).
      const lastName = [...expression.matchAll(/[A-Za-z_$][\w$]*/g)].pop();
      const within = lastName ? lastName.index + lastName[0].length - 1 : expression.length - 1;
      pages.push({ expression, position: offset + indent.length + within, codeForInfo: replaced.join("\n") });
      lines[index] = "";
    }
    offset += line.length + 1;
  });
  return { code: pages.length > 0 ? lines.join("\n") : code, pages };
}
