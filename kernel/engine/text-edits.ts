// Non-overlapping edits of a cell's text that never add or remove line breaks, so every line
// keeps its number, and a column in the edited text can be traced back to the cell's column.

interface Edit {
  start: number;
  end: number;
  text: string;
}

export class TextEdits {
  private readonly edits: Edit[] = [];

  constructor(private readonly original: string) {}

  /** Replaces [start, end) with `text`; line breaks of the replaced range are kept at its end. */
  replace(start: number, end: number, text: string): void {
    const removedBreaks = this.original.slice(start, end).split("\n").length - 1;
    const kept = text.split("\n").length - 1;
    if (kept > removedBreaks) throw new Error("an edit of a cell may not add lines");
    this.edits.push({ start, end, text: text + "\n".repeat(removedBreaks - kept) });
  }

  insert(at: number, text: string): void {
    this.replace(at, at, text);
  }

  /** Blanks [start, end) with spaces, keeping line breaks where they were. */
  blank(start: number, end: number): void {
    this.edits.push({ start, end, text: this.original.slice(start, end).replace(/[^\n]/g, " ") });
  }

  apply(): EditedText {
    const sorted = [...this.edits].sort((a, b) => a.start - b.start || a.end - b.end);
    let text = "";
    let cursor = 0;
    for (const edit of sorted) {
      if (edit.start < cursor) throw new Error("overlapping edits of a cell");
      text += this.original.slice(cursor, edit.start) + edit.text;
      cursor = edit.end;
    }
    text += this.original.slice(cursor);
    return new EditedText(this.original, text, sorted);
  }
}

export class EditedText {
  private readonly editedLineStarts: number[];
  private readonly originalLineStarts: number[];

  constructor(readonly original: string, readonly text: string, private readonly edits: readonly Edit[]) {
    this.editedLineStarts = lineStarts(text);
    this.originalLineStarts = lineStarts(original);
  }

  /** Maps a 0-based (line, column) of the edited text to the cell's own (line, column). */
  toOriginal(line: number, column: number): { line: number; column: number } {
    const editedOffset = (this.editedLineStarts[line] ?? this.text.length) + column;
    let delta = 0;
    let originalOffset = editedOffset;
    for (const edit of this.edits) {
      const editedStart = edit.start + delta;
      if (editedOffset < editedStart) break;
      const editedEnd = editedStart + edit.text.length;
      if (editedOffset < editedEnd) {
        originalOffset = edit.start;
        delta = Number.NaN;
        break;
      }
      delta += edit.text.length - (edit.end - edit.start);
    }
    if (!Number.isNaN(delta)) originalOffset = editedOffset - delta;
    const originalLine = Math.min(line, this.originalLineStarts.length - 1);
    const lineStart = this.originalLineStarts[originalLine] ?? 0;
    return { line: originalLine, column: Math.max(0, originalOffset - lineStart) };
  }
}

export function lineStarts(text: string): number[] {
  const starts = [0];
  for (let index = text.indexOf("\n"); index !== -1; index = text.indexOf("\n", index + 1)) starts.push(index + 1);
  return starts;
}
