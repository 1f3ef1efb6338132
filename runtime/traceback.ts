// A worker's traceback in the user's own code: frames at `bundle.ts:LINE:COL` get the snippet or
// entry and the line within it (`[snippet norm, line 2]`). One module for every place that shows
// a failed job (the notebook's JobError, `nbjob show`), so they show the same frames.
import { assembleBundle, layoutBundle, locateBundleLine } from "./bundle";
import type { BundlePart, BundleSnippet, ParamValues } from "./bundle";
import { sha256 } from "./bundle-analysis";
import { packagesOfSource } from "./shared/bundle-packages";

/** What a stored bundle gives to recover its layout (the store's `getBundle` row fits). */
export interface StoredBundleLayout {
  hash: string;
  params: unknown;
  entries: string[];
  /** In program order (the store keeps `position`). */
  snippets: readonly { hash: string; names: string[]; kind: string; source: string }[];
  /** Its local modules (their hashes are part of the bundle's text). */
  files: readonly { path: string; hash: string; content: string }[];
  /** Its text, when the caller has it: its `// packages:` line is laid out again too. */
  source?: string;
}

/**
 * The line ranges of a stored bundle's snippets and entries, or undefined when its text cannot be
 * rebuilt exactly (a bundle laid out by an older nbjob: its tracebacks stay as the worker wrote them).
 */
export function storedBundleParts(stored: StoredBundleLayout): BundlePart[] | undefined {
  const snippets: BundleSnippet[] = stored.snippets.map((s) => ({ hash: s.hash, names: [...s.names], kind: s.kind as BundleSnippet["kind"], source: s.source }));
  const params = stored.params as ParamValues;
  const files = stored.files.map((f) => ({ path: f.path, hash: f.hash, text: f.content }));
  // The store keeps the snippets in program order, so laying them out again gives the same text
  // without parsing anything (no compiler to load for `nbjob show`).
  const packages = packagesOfSource(stored.source ?? "");
  const laid = layoutBundle(snippets, params, stored.entries, files, packages);
  if (sha256(laid.source) === stored.hash) return laid.parts;
  try {
    const rebuilt = assembleBundle(snippets, stored.entries, params, { typeCheck: false, files, packages });
    if (rebuilt.hash === stored.hash) return rebuilt.parts;
  } catch {
    // An old layout: no parts.
  }
  return undefined;
}

/** `bundle.ts:14:9` in a worker's traceback, followed by where that is in the user's code. */
export function mapTraceback(traceback: readonly string[], parts: readonly BundlePart[] | undefined): string[] {
  // Frames of Node's own machinery on the worker say nothing about the user's code.
  const own = traceback.filter((line) => !/^\s+at .*\(node:[\w/]+:\d+:\d+\)$/.test(line));
  if (!parts) return own;
  return own.map((line) =>
    line.replace(/bundle\.ts:(\d+):(\d+)/g, (whole, lineText: string) => {
      const located = locateBundleLine({ parts: [...parts] }, Number(lineText));
      const label = located?.part.label.replace(/ \((function|class|variable|interface|type|enum|namespace|import|cell)\)$/, "");
      return located ? `${whole} [${label}, line ${located.line}]` : whole;
    }),
  );
}
