// Reads the source map TypeScript's transpiler writes, so stack frames in the compiled program
// can name the TypeScript line and column the user wrote.

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const DIGIT = new Map([...BASE64].map((c, i) => [c, i]));

/** One mapped position: generated column → original 0-based line and column. */
interface Segment {
  column: number;
  sourceLine: number;
  sourceColumn: number;
}

export class LineMap {
  private readonly lines: Segment[][];

  /** `mappings` is the source map's "mappings" field (base64 VLQ, version 3). */
  constructor(mappings: string) {
    this.lines = [];
    let sourceLine = 0;
    let sourceColumn = 0;
    for (const lineText of mappings.split(";")) {
      const segments: Segment[] = [];
      let column = 0;
      for (const segmentText of lineText.split(",")) {
        if (segmentText === "") continue;
        const fields = decodeVlq(segmentText);
        column += fields[0];
        if (fields.length >= 4) {
          sourceLine += fields[2];
          sourceColumn += fields[3];
          segments.push({ column, sourceLine, sourceColumn });
        }
      }
      this.lines.push(segments);
    }
  }

  /** The original 1-based line and column of a 1-based generated position, if mapped. */
  lookup(line: number, column: number): { line: number; column: number } | undefined {
    const segments = this.lines[line - 1];
    if (!segments || segments.length === 0) return undefined;
    let best = segments[0];
    for (const segment of segments) {
      if (segment.column > column - 1) break;
      best = segment;
    }
    // Past the segment's start within the same original line, the offset carries over.
    const offset = Math.max(0, column - 1 - best.column);
    return { line: best.sourceLine + 1, column: best.sourceColumn + offset + 1 };
  }
}

function decodeVlq(text: string): number[] {
  const values: number[] = [];
  let value = 0;
  let shift = 0;
  for (const char of text) {
    const digit = DIGIT.get(char);
    if (digit === undefined) throw new Error(`source map has an invalid character "${char}"`);
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
