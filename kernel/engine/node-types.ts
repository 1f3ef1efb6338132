// Node's types for cells (@types/node, a dependency of nbjob, so any notebook folder has them),
// as one file. @types/node is 63 files; a cell's program pays for each file at every cell
// (reuse checks, a package.json lookup for each file under node_modules, merging its globals
// into each new checker), so its 58 global scripts are combined into one, bound once. The 5
// files that are modules stay files of their own, referenced from the combined one.
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/** The folder of @types/node, or undefined when it is not installed. */
const NODE_TYPES_DIR = (() => {
  try {
    return dirname(require.resolve("@types/node/package.json"));
  } catch {
    return undefined;
  }
})();

/** The combined file's name: in @types/node's folder, so its imports resolve as the originals' do. */
export const NODE_TYPES_FILE = NODE_TYPES_DIR && join(NODE_TYPES_DIR, "__nbjob_combined__.d.ts");

let combined: string | undefined;

/** The text of the combined file (for NODE_TYPES_FILE), else undefined. */
export function nodeTypesText(fileName: string): string | undefined {
  if (fileName !== NODE_TYPES_FILE || !NODE_TYPES_DIR) return undefined;
  return (combined ??= combine(NODE_TYPES_DIR));
}

const REFERENCE = /^\/\/\/\s*<reference\s+(path|lib)="([^"]+)"\s*\/>[^\n]*$/gm;
// @types/node's modules have `import`/`export` at the start of a line; its scripts only inside
// indented `declare module` blocks.
const MODULE = /^(?:import|export)\s/m;

/**
 * Every script index.d.ts references, each after those it references (the compiler's order),
 * without their reference lines; references to modules and libs stay, at the top.
 */
function combine(dir: string): string {
  const references = new Set<string>();
  const scripts: string[] = [];
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    if (MODULE.test(text)) {
      references.add(`/// <reference path="${relative(dir, file)}" />`);
      return;
    }
    for (const [, kind, target] of text.matchAll(REFERENCE)) {
      if (kind === "path") visit(resolve(dirname(file), target!));
      else references.add(`/// <reference lib="${target}" />`);
    }
    scripts.push(text.replace(REFERENCE, ""));
  };
  visit(join(dir, "index.d.ts"));
  return [...references, ...scripts].join("\n");
}
