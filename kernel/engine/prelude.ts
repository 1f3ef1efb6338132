// What earlier cells declared, as declaration files for the next cell's type check: each name's
// declaration texts (from its cell's declaration emit), and the imports that persist.
//
// A program is rebuilt for every cell, and each declaration file that changed is parsed and
// bound again. So the declarations are kept in chunks of at most CHUNK_SIZE names, one file
// each: a cell changes only the newest chunk and the chunks holding the names it declares
// again, and a notebook with a thousand names re-parses a few dozen of them per cell rather
// than all of them.
import type { CellAnalysis } from "./cell-analysis";
import { ts } from "./typescript";

export const INTERNAL_PREFIX = "__nbjob";
const CHUNK_SIZE = 32;

interface PreludeImport {
  specifier: string;
  form: "default" | "namespace" | "named" | "require";
  imported?: string;
  typeOnly: boolean;
}

interface Chunk {
  id: number;
  declarations: Map<string, string[]>;
  /** The file's text, until the declarations change. */
  text?: string;
}

/** A declaration file of the prelude: its name relative to the notebook's folder, and its text. */
export interface PreludeFile {
  name: string;
  text: string;
}

export class Prelude {
  private readonly imports = new Map<string, PreludeImport>();
  private readonly chunks: Chunk[] = [];
  private readonly chunkOf = new Map<string, Chunk>();
  private nextChunkId = 0;

  /** Makes a cell's declarations (and imports) the latest entries for its names. */
  commit(analysis: CellAnalysis, declarations: Map<string, string[]>): void {
    for (const declared of analysis.names) {
      this.forget(declared.name);
      this.imports.delete(declared.name);
    }
    for (const cellImport of analysis.imports) this.addImport(cellImport.specifier, cellImport.statement);
    for (const [name, texts] of declarations) {
      if (this.imports.has(name)) continue;
      this.forget(name);
      const chunk = this.openChunk();
      chunk.declarations.set(name, texts);
      chunk.text = undefined;
      this.chunkOf.set(name, chunk);
    }
    // A chunk whose names were all declared again later is no longer a file.
    for (let index = this.chunks.length - 1; index >= 0; index--) {
      if (this.chunks[index]!.declarations.size === 0) this.chunks.splice(index, 1);
    }
  }

  /**
   * The prelude's files, in order: the module that re-exports every persisted import, the global
   * aliases of those imports, then the declaration chunks (the last one the newest).
   */
  files(): PreludeFile[] {
    return [
      { name: `${INTERNAL_PREFIX}_imports__.d.ts`, text: this.importsText() },
      { name: `${INTERNAL_PREFIX}_aliases__.d.ts`, text: this.aliasesText() },
      ...this.chunks.map((chunk) => ({ name: `${INTERNAL_PREFIX}_prelude_${chunk.id}__.d.ts`, text: chunkText(chunk) })),
    ];
  }

  private forget(name: string): void {
    const chunk = this.chunkOf.get(name);
    if (!chunk) return;
    chunk.declarations.delete(name);
    chunk.text = undefined;
    this.chunkOf.delete(name);
  }

  private openChunk(): Chunk {
    const last = this.chunks[this.chunks.length - 1];
    if (last && last.declarations.size < CHUNK_SIZE) return last;
    const chunk: Chunk = { id: this.nextChunkId++, declarations: new Map() };
    this.chunks.push(chunk);
    return chunk;
  }

  private addImport(specifier: string, statement: ts.ImportDeclaration | ts.ImportEqualsDeclaration): void {
    if (ts.isImportEqualsDeclaration(statement)) {
      this.imports.set(statement.name.text, { specifier, form: "require", typeOnly: statement.isTypeOnly });
      return;
    }
    const clause = statement.importClause;
    if (!clause) return;
    if (clause.name) this.imports.set(clause.name.text, { specifier, form: "default", typeOnly: clause.isTypeOnly });
    const named = clause.namedBindings;
    if (named && ts.isNamespaceImport(named)) {
      this.imports.set(named.name.text, { specifier, form: "namespace", typeOnly: clause.isTypeOnly });
    } else if (named) {
      for (const element of named.elements) {
        this.imports.set(element.name.text, {
          specifier,
          form: "named",
          imported: (element.propertyName ?? element.name).text,
          typeOnly: clause.isTypeOnly || element.isTypeOnly,
        });
      }
    }
  }

  /**
   * Every persisted import, re-exported under its notebook name. The aliases file refers to them
   * by qualified name (`import x = all.x`), which, unlike a bare name, keeps every meaning
   * (value, type, namespace) of what was imported.
   */
  private importsText(): string {
    const lines: string[] = [];
    let index = 0;
    for (const [name, entry] of this.imports) {
      const from = JSON.stringify(entry.specifier);
      const type = entry.typeOnly ? "type " : "";
      if (entry.form === "default") lines.push(`export ${type}{ default as ${name} } from ${from};`);
      else if (entry.form === "namespace") lines.push(`export ${type}* as ${name} from ${from};`);
      else if (entry.form === "named") lines.push(`export ${type}{ ${entry.imported} as ${name} } from ${from};`);
      else {
        const local = `${INTERNAL_PREFIX}_r${index++}`;
        lines.push(`import ${local} = require(${from});`, `export { ${local} as ${name} };`);
      }
    }
    return `${lines.join("\n")}\nexport {};\n`;
  }

  private aliasesText(): string {
    if (this.imports.size === 0) return "export {};\n";
    const aliases = [...this.imports.keys()].map((name) => `  export import ${name} = ${INTERNAL_PREFIX}_imports.${name};`);
    return `import * as ${INTERNAL_PREFIX}_imports from "./${INTERNAL_PREFIX}_imports__";\ndeclare global {\n${aliases.join("\n")}\n}\nexport {};\n`;
  }
}

function chunkText(chunk: Chunk): string {
  if (chunk.text !== undefined) return chunk.text;
  const declarations = [...chunk.declarations.values()].flat().map((text) => `  ${text.replace(/\n/g, "\n  ")}`);
  chunk.text = `declare global {\n${declarations.join("\n")}\n}\nexport {};\n`;
  return chunk.text;
}
