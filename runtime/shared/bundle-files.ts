// A bundle's `// files:` line (its third, after the params line; only when it has local
// modules): the notebook writes it (runtime/bundle.ts), the worker reads which files to lay out
// (worker/module-layout.ts). Nothing heavy is imported here: the worker's main thread loads it.
import { jsonHeaderLine, parseHeaderObject } from "./bundle-header";

/** The bundle's `// files:` line: path → sha256, sorted by path (JSON escapes every line break). */
export function filesLine(files: readonly { path: string; hash: string }[]): string {
  const manifest = Object.fromEntries(files.map((f) => [f.path, f.hash]));
  return jsonHeaderLine("files", manifest);
}

/** The files a bundle's source names (its third line, after the params line), path → sha256; {} when none. */
export function filesOfSource(source: string): Record<string, string> {
  const match = /^\/\/ nbjob bundle: [^\n]*\n\/\/ params: [^\n]*\n\/\/ files: ([^\n]*)\n/.exec(source);
  const parsed = match ? parseHeaderObject(match[1]) : undefined;
  if (!parsed) return {};
  const out: Record<string, string> = {};
  for (const [path, hash] of Object.entries(parsed)) if (typeof hash === "string") out[path] = hash;
  return out;
}
