// nbjob's own declarations for cells (the types of display, DBWrapper, jobtracker...), as one
// file. The runtime's entry reaches some 60 declaration files (the runtime's and the store's); a
// cell's program pays for each file at every cell (reuse checks, a new checker walking it), and
// the more memory a check touches the slower it runs after the kernel sat idle. So each module
// becomes an ambient module of one combined file, `declare module "nbjob:runtime/job" { ... }`,
// its relative imports renamed to match, and "nbjob" itself re-exports the entry: one file, bound
// once, holding the same declarations.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/** The compiled package (dist/), whose runtime declarations are combined. */
const PACKAGE_DIST = join(__dirname, "..", "..");

/** Prefix of the combined modules' names: never a relative or on-disk name, so only the combined file declares them. */
export const RUNTIME_MODULE_PREFIX = "nbjob:";

/** The module that declares the runtime's exports (the runtime entry's declarations). */
export const RUNTIME_TYPES_MODULE = `${RUNTIME_MODULE_PREFIX}runtime/index`;

/** The combined file's name: inside dist/, so its imports of other packages (pg, Node's) resolve as the originals' did. */
export const RUNTIME_TYPES_FILE = join(PACKAGE_DIST, "runtime", "__nbjob_combined__.d.ts");

let combined: string | undefined;

/** The text of the combined file (for RUNTIME_TYPES_FILE), else undefined. */
export function runtimeTypesText(fileName: string): string | undefined {
  if (fileName !== RUNTIME_TYPES_FILE) return undefined;
  return (combined ??= combine(join(PACKAGE_DIST, "runtime", "index.d.ts"), "nbjob"));
}

// A module specifier in a declaration file: `from "./x"` (import, export) and `import("./x")` (types).
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*)(["'])(\.{1,2}\/[^"']*)\2/g;
// Inside an ambient module every declaration is ambient already: `declare` there is an error.
const DECLARE = /^(export )?declare (?!global\b|module\b)/gm;

/**
 * Every declaration file `entry` reaches through relative imports, each as an ambient module
 * named after its path in dist/; `alias` (the package's name) re-exports the entry's.
 */
function combine(entry: string, alias: string): string {
  const modules: string[] = [];
  const seen = new Set<string>();
  const nameOf = (file: string) => RUNTIME_MODULE_PREFIX + relative(PACKAGE_DIST, file).replace(/\\/g, "/").replace(/\.d\.ts$/, "");
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, "utf8").replace(/\n\/\/# sourceMappingURL=.*$/, "");
    const body = text.replace(SPECIFIER, (whole, lead: string, quote: string, specifier: string) => {
      const target = declarationFile(resolve(dirname(file), specifier));
      if (!target) return whole; // left as it is: unresolved, as it would be for the original file
      visit(target);
      return `${lead}${quote}${nameOf(target)}${quote}`;
    });
    modules.push(`declare module "${nameOf(file)}" {\n${body.replace(DECLARE, "$1")}\n}`);
  };
  visit(entry);
  return [`declare module "${alias}" {\n  export * from "${nameOf(entry)}";\n}`, ...modules].join("\n");
}

/** The declaration file a relative specifier means (`./job` → job.d.ts, `../store` → store/index.d.ts). */
function declarationFile(path: string): string | undefined {
  const bare = path.replace(/\.js$/, "");
  for (const candidate of [`${bare}.d.ts`, join(bare, "index.d.ts")]) {
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}
