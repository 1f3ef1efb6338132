// Reads the source maps that TypeScript's transpiler writes, to turn a position in a cell's
// generated JavaScript back into a position in the TypeScript the user typed.

export interface Position {
  /** 0-based line. */
  line: number;
  /** 0-based column (UTF-16 units). */
  column: number;
}

interface Segment {
  generatedColumn: number;
  sourceLine: number;
  sourceColumn: number;
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUE = new Map([...BASE64].map((char, index) => [char, index]));

function decodeVlq(text: string): number[] {
  const values: number[] = [];
  let value = 0;
  let shift = 0;
  for (const char of text) {
    const digit = BASE64_VALUE.get(char);
    if (digit === undefined) throw new Error(`invalid base64 digit ${JSON.stringify(char)} in a source map`);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      values.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return values;
}

/** A decoded single-source map: for each generated line, its segments sorted by column. */
export class SourceMapLookup {
  private readonly lines: Segment[][];

  constructor(mappings: string) {
    this.lines = [];
    let sourceLine = 0;
    let sourceColumn = 0;
    for (const lineText of mappings.split(";")) {
      const segments: Segment[] = [];
      let generatedColumn = 0;
      for (const segmentText of lineText.split(",")) {
        if (segmentText === "") continue;
        const fields = decodeVlq(segmentText);
        generatedColumn += fields[0] ?? 0;
        if (fields.length >= 4) {
          sourceLine += fields[2] ?? 0;
          sourceColumn += fields[3] ?? 0;
          segments.push({ generatedColumn, sourceLine, sourceColumn });
        }
      }
      this.lines.push(segments);
    }
  }

  static fromJson(json: string): SourceMapLookup {
    const parsed = JSON.parse(json) as { mappings?: unknown };
    if (typeof parsed.mappings !== "string") throw new Error("a source map without mappings");
    return new SourceMapLookup(parsed.mappings);
  }

  /** The source position of the closest mapped segment at or before `generated`. */
  originalPosition(generated: Position): Position | undefined {
    const segments = this.lines[generated.line];
    if (segments && segments.length > 0) {
      let best: Segment | undefined;
      for (const segment of segments) {
        if (segment.generatedColumn <= generated.column) best = segment;
        else break;
      }
      const chosen = best ?? segments[0]!;
      return { line: chosen.sourceLine, column: chosen.sourceColumn + Math.max(0, generated.column - chosen.generatedColumn) * (best ? 1 : 0) };
    }
    // A line with no mapping (emitted helper code): the nearest mapped line above it.
    for (let line = Math.min(generated.line, this.lines.length) - 1; line >= 0; line--) {
      const above = this.lines[line];
      if (above && above.length > 0) return { line: above[0]!.sourceLine, column: above[0]!.sourceColumn };
    }
    return undefined;
  }
}
