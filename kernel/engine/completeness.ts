// is_complete_request: whether a console frontend should run the code or ask for more lines.
import { ts } from "./typescript";

// Diagnostics that mean "the text stopped too early" rather than "the text is wrong".
const UNFINISHED = new Set([
  1005, // 'x' expected (at the end: an open brace, parenthesis, bracket)
  1010, // '*/' expected
  1160, // Unterminated template literal
  1126, // Unexpected end of text
  1109, // Expression expected
]);

export function cellCompleteness(code: string): { status: "complete" | "incomplete" | "invalid"; indent?: string } {
  // Magic lines and `expr?` lines are not TypeScript; they are complete on their own.
  const typescript = code.split("\n").map((line) => (/^\s*%/.test(line) || /\?\s*$/.test(line) && !/\?\?\s*$/.test(line) ? "" : line)).join("\n");
  if (typescript.trim() === "") return { status: "complete" };
  const output = ts.transpileModule(typescript, { reportDiagnostics: true, compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } });
  const diagnostics = (output.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (diagnostics.length === 0) return { status: "complete" };
  const end = typescript.trimEnd().length;
  const unfinished = diagnostics.every((d) => UNFINISHED.has(d.code) && (d.start ?? 0) >= end);
  if (!unfinished && !diagnostics.some((d) => d.code === 1160 || d.code === 1010)) return { status: "invalid" };
  const lastLine = typescript.trimEnd().split("\n").pop() ?? "";
  const indent = /^\s*/.exec(lastLine)?.[0] ?? "";
  return { status: "incomplete", indent: /[{([]\s*$|=>\s*$/.test(lastLine) ? `${indent}  ` : indent };
}
