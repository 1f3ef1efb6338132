// A bundle's `// packages:` line (issue 14 point 2; after the params line and the `// files:`
// line, only when the job imports npm packages): the exact version and integrity of every package
// the job needs (and their dependencies), as the notebook's project resolved them, keyed by their
// place in a lock file (`node_modules/a`, `node_modules/a/node_modules/b`). The notebook writes it
// (runtime/packages.ts); the worker installs that set once (worker/package-cache.ts). Being in the
// source, the bundle hash and signature cover it. Nothing heavy is imported here.
import { createHash } from "node:crypto";
import { jsonHeaderLine, parseHeaderObject } from "./bundle-header";

/** One package of the set, as a lock file's `packages` entry holds it. */
export interface PinnedPackage {
  version: string;
  /** `sha512-…` (npm checks the tarball against it); absent when the project did not record one. */
  integrity?: string;
  /** The tarball URL the project's lock file names (a registry URL only). */
  resolved?: string;
  /** Its dependencies' ranges as the lock file has them: npm ci keeps a nested package only when its parent names it. */
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Lock-file place (`node_modules/name`, nested ones too) → pin. */
export type PackageSet = Record<string, PinnedPackage>;

function canonical(set: PackageSet): PackageSet {
  const out: PackageSet = {};
  for (const place of Object.keys(set).sort()) {
    const { version, integrity, resolved, dependencies, optionalDependencies } = set[place];
    out[place] = { version, ...(integrity ? { integrity } : {}), ...(resolved ? { resolved } : {}), ...ranges("dependencies", dependencies), ...ranges("optionalDependencies", optionalDependencies) };
  }
  return out;
}

function ranges<K extends string>(key: K, deps: unknown): { [k in K]?: Record<string, string> } {
  if (typeof deps !== "object" || deps === null) return {};
  const entries = Object.entries(deps as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === "string").sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length > 0 ? ({ [key]: Object.fromEntries(entries) } as { [k in K]?: Record<string, string> }) : {};
}

/** The bundle's `// packages:` line, sorted by place (JSON escapes every line break). */
export function packagesLine(set: PackageSet): string {
  return jsonHeaderLine("packages", canonical(set));
}

/** The package set a bundle's source names; {} when none. */
export function packagesOfSource(source: string): PackageSet {
  const match = /^\/\/ nbjob bundle: [^\n]*\n\/\/ params: [^\n]*\n(?:\/\/ files: [^\n]*\n)?\/\/ packages: ([^\n]*)\n/.exec(source);
  const parsed = match ? parseHeaderObject(match[1]) : undefined;
  if (!parsed) return {};
  const out: PackageSet = {};
  for (const [place, pin] of Object.entries(parsed)) {
    if (!/^node_modules\//.test(place) || typeof pin !== "object" || pin === null) continue;
    const { version, integrity, resolved, dependencies, optionalDependencies } = pin as Record<string, unknown>;
    if (typeof version !== "string") continue;
    out[place] = { version, ...(typeof integrity === "string" ? { integrity } : {}), ...(typeof resolved === "string" ? { resolved } : {}), ...ranges("dependencies", dependencies), ...ranges("optionalDependencies", optionalDependencies) };
  }
  return out;
}

/** The package name at a lock-file place: `node_modules/a/node_modules/@s/b` → `@s/b`. */
export function nameAt(place: string): string {
  return place.slice(place.lastIndexOf("node_modules/") + "node_modules/".length);
}

/** The cache folder name of a set: sha256 of its canonical JSON. */
export function packageSetKey(set: PackageSet): string {
  return createHash("sha256").update(JSON.stringify(canonical(set))).digest("hex");
}
