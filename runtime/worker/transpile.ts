// TypeScript → JavaScript for jobs. Workers only transpile (the notebook type-checked the bundle),
// and this module loads the TypeScript compiler, so only the short-lived compiler thread imports it.
import { ts } from "ts-morph";
import { assembleProgram, describeProgramLine, PROGRAM_FILE } from "./program";

export interface CompiledProgram {
  /** CommonJS JavaScript, run as a script so top-level declarations stay reachable by name. */
  js: string;
  /** The source map's "mappings" field (generated JavaScript → assembled TypeScript). */
  mappings: string;
  entryLines: number[];
  sourceLines: number;
}

/** A syntax error in the bundle, located in the bundle's own numbering. */
export class BundleSyntaxError extends Error {
  override name = "SyntaxError";
}

export function transpileProgram(source: string, entries: readonly string[]): CompiledProgram {
  const program = assembleProgram(source, entries);
  const output = ts.transpileModule(program.typescript, {
    fileName: PROGRAM_FILE.replace(/\.js$/, ".ts"),
    reportDiagnostics: true,
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      sourceMap: true,
      inlineSources: false,
    },
  });
  const first = output.diagnostics?.find((d) => d.category === ts.DiagnosticCategory.Error);
  if (first) {
    const message = ts.flattenDiagnosticMessageText(first.messageText, "\n");
    let where = "";
    if (first.start !== undefined) {
      const position = ts.getLineAndCharacterOfPosition(ts.createSourceFile("x.ts", program.typescript, ts.ScriptTarget.ES2022), first.start);
      const place = describeProgramLine(program, position.line + 1);
      where = `${place.file}:${place.line}:${position.character + 1}: `;
    }
    throw new BundleSyntaxError(`${where}${message}`);
  }
  const map = JSON.parse(output.sourceMapText ?? "{}") as { mappings?: string };
  return {
    js: output.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n"),
    mappings: map.mappings ?? "",
    entryLines: program.entryLines,
    sourceLines: program.sourceLines,
  };
}
