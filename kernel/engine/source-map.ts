// Reads the source maps that TypeScript's transpiler writes, to turn a position in a cell's
// generated JavaScript back into a position in the TypeScript the user typed. Decoding is
// node:module's SourceMap; this adds how a position between mapped segments is placed.
import { SourceMap, type SourceMapPayload } from "node:module";

export interface Position {
  /** 0-based line. */
  line: number;
  /** 0-based column (UTF-16 units). */
  column: number;
}

/** A decoded single-source map. */
export class SourceMapLookup {
  private readonly map: SourceMap;

  constructor(mappings: string) {
    this.map = new SourceMap({ version: 3, file: "", sources: ["cell.ts"], sourceRoot: "", sourcesContent: [], names: [], mappings });
  }

  static fromJson(json: string): SourceMapLookup {
    const parsed = JSON.parse(json) as Partial<SourceMapPayload>;
    if (typeof parsed.mappings !== "string") throw new Error("a source map without mappings");
    return new SourceMapLookup(parsed.mappings);
  }

  /**
   * The source position of the closest mapped segment at or before `generated`, moved by the
   * distance from that segment when it is on the same line; on a line with no mapping of its
   * own (emitted helper code), the position of the closest mapped segment above it.
   */
  originalPosition(generated: Position): Position | undefined {
    const entry = this.map.findEntry(generated.line, generated.column) as Partial<{
      generatedLine: number; generatedColumn: number; originalLine: number; originalColumn: number;
    }>;
    if (entry.originalLine === undefined || entry.originalColumn === undefined || entry.generatedLine === undefined) return undefined;
    const sameLine = entry.generatedLine === generated.line;
    const offset = sameLine ? Math.max(0, generated.column - (entry.generatedColumn ?? 0)) : 0;
    return { line: entry.originalLine, column: entry.originalColumn + offset };
  }
}
