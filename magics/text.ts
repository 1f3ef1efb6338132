// Text helpers for rewriting a cell without moving anything: removed text becomes spaces.

/** Replaces [start, end) with spaces, keeping newlines so every line:col stays the same. */
export function blankRange(text: string, start: number, end: number): string {
  const blanked = text.slice(start, end).replace(/[^\r\n]/g, " ");
  return text.slice(0, start) + blanked + text.slice(end);
}

/** Offsets at which each line starts. */
export function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") starts.push(i + 1);
  return starts;
}

/** 1-based line and column of an offset, for messages. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  const column = offset - (before.lastIndexOf("\n") + 1) + 1;
  return { line, column };
}

/**
 * For each line, whether it starts in ordinary code (not inside a block comment, string or
 * template literal). A line inside a template literal may legitimately start with `%`, and must
 * not be taken for a line magic. This is a small lexer, not a parser: good enough for line starts.
 */
export function linesStartingInCode(text: string): boolean[] {
  const result: boolean[] = [true];
  type Mode = "code" | "block" | "line" | "single" | "double" | "template";
  let mode: Mode = "code";
  // Brace depth at which each open `${` of a template returns to the template.
  const templateBraces: number[] = [];
  let braces = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const next = text[i + 1];
    if (c === "\n") {
      if (mode === "line" || mode === "single" || mode === "double") mode = "code";
      result.push(mode === "code");
      continue;
    }
    switch (mode) {
      case "code":
        if (c === "/" && next === "*") { mode = "block"; i++; }
        else if (c === "/" && next === "/") mode = "line";
        else if (c === "'") mode = "single";
        else if (c === '"') mode = "double";
        else if (c === "`") mode = "template";
        else if (c === "{") braces++;
        else if (c === "}") {
          if (templateBraces.length > 0 && templateBraces[templateBraces.length - 1] === braces) {
            templateBraces.pop();
            mode = "template";
          } else braces--;
        }
        break;
      case "block":
        if (c === "*" && next === "/") { mode = "code"; i++; }
        break;
      case "single":
      case "double":
        if (c === "\\") i++;
        else if ((c === "'" && mode === "single") || (c === '"' && mode === "double")) mode = "code";
        break;
      case "template":
        if (c === "\\") i++;
        else if (c === "`") mode = "code";
        else if (c === "$" && next === "{") { templateBraces.push(braces); mode = "code"; i++; }
        break;
      case "line":
        break;
    }
  }
  return result;
}
