// is_complete_request without the TypeScript compiler: code is incomplete while a bracket, string
// or block comment is left open. Workers answer this for consoles attached to them; it is cheap
// on purpose, so a worker never loads the compiler just to answer it.

export type Completeness = { status: "complete" } | { status: "incomplete"; indent: string } | { status: "invalid" };

const CLOSERS: Record<string, string> = { "(": ")", "[": "]", "{": "}" };

export function isComplete(code: string): Completeness {
  const open: string[] = [];
  for (let i = 0; i < code.length; i++) {
    const c = code[i];
    if (c === "/" && code[i + 1] === "/") {
      const end = code.indexOf("\n", i);
      if (end < 0) break;
      i = end;
    } else if (c === "/" && code[i + 1] === "*") {
      const end = code.indexOf("*/", i + 2);
      if (end < 0) return { status: "incomplete", indent: "" };
      i = end + 1;
    } else if (c === '"' || c === "'" || c === "`") {
      const end = closingQuote(code, i);
      if (end < 0) return c === "`" ? { status: "incomplete", indent: "" } : { status: "invalid" };
      i = end;
    } else if (c in CLOSERS) {
      open.push(CLOSERS[c]);
    } else if (c === ")" || c === "]" || c === "}") {
      if (open.pop() !== c) return { status: "invalid" };
    }
  }
  return open.length > 0 ? { status: "incomplete", indent: "  ".repeat(open.length) } : { status: "complete" };
}

/** Index of the quote that closes the string opened at `start`, or -1. Template holes are skipped whole. */
function closingQuote(code: string, start: number): number {
  const quote = code[start];
  for (let i = start + 1; i < code.length; i++) {
    const c = code[i];
    if (c === "\\") i++;
    else if (c === quote) return i;
    else if (c === "\n" && quote !== "`") return -1;
    else if (quote === "`" && c === "$" && code[i + 1] === "{") {
      let depth = 1;
      for (i += 2; i < code.length && depth > 0; i++) {
        if (code[i] === "{") depth++;
        else if (code[i] === "}") depth--;
      }
      i--;
    }
  }
  return -1;
}
