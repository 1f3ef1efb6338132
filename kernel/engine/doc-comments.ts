// Documentation comments for inspection (shift-tab, `x?`). The checker parses files without
// their JSDoc (JSDocParsingMode.ParseNone: the libs and @types/node are 2.7 MB of declarations,
// mostly comments, and parsing those took ~0.3 s of the kernel's start-up), so the
// language service has no documentation to give; it is read from the declaration's own leading
// `/** ... */` comment, only when someone asks.
import { ts } from "./typescript";

/** The documentation comment before the declaration named at `position` in `file`, without its comment marks ("" when none). */
export function docCommentAt(file: ts.SourceFile, position: number): string {
  const path = pathTo(file, position);
  const name = path.at(-1);
  let declaration = path.at(-2);
  if (!name || !declaration || !ts.isIdentifier(name) && !ts.isPrivateIdentifier(name) && !ts.isStringLiteral(name)) return "";
  // `declare const x: T;`: the comment is before the statement, two levels above the declaration.
  const statement = path.at(-4);
  if (ts.isVariableDeclaration(declaration) && statement && ts.isVariableStatement(statement)) declaration = statement;
  const comment = (ts.getLeadingCommentRanges(file.text, declaration.pos) ?? []).filter((range) => file.text.startsWith("/**", range.pos)).at(-1);
  return comment ? commentText(file.text.slice(comment.pos, comment.end)) : "";
}

/** The nodes from the file down to the innermost one whose text holds `position` (parents kept here: files need not have them set). */
function pathTo(file: ts.SourceFile, position: number): ts.Node[] {
  const path: ts.Node[] = [];
  const visit = (node: ts.Node): void => {
    if (node.getStart(file) <= position && position < node.end) {
      path.push(node);
      ts.forEachChild(node, visit);
    }
  };
  ts.forEachChild(file, visit);
  return path;
}

/** `/** Text.\n * @param x ... *\/` as "Text.\n@param x ...". */
function commentText(comment: string): string {
  return comment.slice(3, -2).split("\n").map((line) => line.replace(/^\s*\*? ?/, "").trimEnd()).join("\n").trim();
}
