// npm packages travel with a job as pins (issue 14 point 2): every package a snippet or a local
// module imports by name, plus the packages those depend on, with the exact version and integrity
// the notebook's project resolved. Read from the project's lock file (`package-lock.json`,
// `npm-shrinkwrap.json`, else npm's hidden `node_modules/.package-lock.json`), else from the
// installed `node_modules/*/package.json`. The project is the nearest folder above the notebook
// with a lock file or a node_modules. Dependencies are found as Node finds them: a package's own
// node_modules first, then those of the folders above it.
import { existsSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, resolve } from "node:path";
import { typescript } from "./bundle-ts";
import type { PackageSet, PinnedPackage } from "./shared/bundle-packages";

export { packagesLine, packagesOfSource } from "./shared/bundle-packages";
export type { PackageSet, PinnedPackage };

/** Provided by the worker itself, never pinned. */
const PROVIDED = new Set(["nbjob"]);

/** `lodash/fp` → `lodash`, `@scope/pkg/x` → `@scope/pkg`; undefined for relative paths, builtins and URLs. */
export function packageNameOf(specifier: string): string | undefined {
  if (specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("node:") || /^[a-z][a-z0-9+.-]*:/i.test(specifier)) return undefined;
  const parts = specifier.split("/");
  const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
  if (name === "" || builtinModules.includes(name)) return undefined;
  return name;
}

/** The package names a source imports or requires (type-only imports too: they name the package). */
export function packageImports(source: string): string[] {
  if (!/\b(?:import|require|export)\b/.test(source)) return [];
  const found = typescript().preProcessFile(source, true, true).importedFiles.map((f) => packageNameOf(f.fileName));
  return [...new Set(found.filter((n): n is string => n !== undefined && !PROVIDED.has(n) && !n.startsWith("@types/")))];
}

/** The notebook's project: the nearest folder from `baseDir` up with a lock file or a node_modules. */
export function projectRoot(baseDir: string): string | undefined {
  let dir = resolve(baseDir);
  for (;;) {
    if (["package-lock.json", "npm-shrinkwrap.json", "node_modules"].some((f) => existsSync(join(dir, f)))) return dir;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

interface Entry {
  version?: string;
  integrity?: string;
  resolved?: string;
  link?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

/** The lock file's `packages` (lockfileVersion 2 and 3), or undefined when the project has none. */
function lockPackages(root: string): Record<string, Entry> | undefined {
  for (const file of ["package-lock.json", "npm-shrinkwrap.json", join("node_modules", ".package-lock.json")]) {
    const lock = readJson(join(root, file)) as { packages?: Record<string, Entry> } | undefined;
    if (lock?.packages && typeof lock.packages === "object") return lock.packages;
  }
  return undefined;
}

/** A registry tarball URL, kept; file:, git and link entries cannot be installed elsewhere. */
function registryUrl(resolved: unknown): string | undefined {
  return typeof resolved === "string" && /^https?:\/\//.test(resolved) ? resolved : undefined;
}

/** A package that cannot be pinned: createJob refuses the bundle with this message. */
export class PackagePinError extends Error {
  override name = "PackagePinError";
}

/** The problem of a package the project does not have: it names it and the `npm install` to run. */
export class MissingPackageError extends PackagePinError {
  override name = "MissingPackageError";
  constructor(readonly packageName: string, readonly root: string | undefined, detail?: string, state = "does not have it installed") {
    super(`the job imports the npm package '${packageName}', but the notebook's project ${root ? `(${root}) ` : ""}${state}${detail ? ` (${detail})` : ""}: run \`npm install ${packageName}\` in ${root ?? "the notebook's folder"}, so its version is recorded with the job`);
  }
}

/**
 * The pins of the packages `sources` import and their dependency closure. {} when they import
 * none. Throws MissingPackageError for an imported package the project does not have.
 */
export function collectPackages(sources: readonly string[], baseDir: string): PackageSet {
  const names = [...new Set(sources.flatMap(packageImports))].sort();
  if (names.length === 0) return {};
  const root = projectRoot(baseDir);
  if (!root) throw new MissingPackageError(names[0], undefined);
  const lock = lockPackages(root);
  const entryAt = (place: string): Entry | undefined => {
    if (lock) return lock[place];
    const manifest = readJson(join(root, place, "package.json")) as (Entry & { _integrity?: string; _resolved?: string }) | undefined;
    if (!manifest || typeof manifest.version !== "string") return undefined;
    return { ...manifest, integrity: manifest._integrity, resolved: manifest._resolved };
  };
  /** Where `name` resolves from a package at `from` ("" for the project): its node_modules, then those above. */
  const find = (from: string, name: string): string | undefined => {
    let base = from;
    for (;;) {
      const place = `${base ? `${base}/` : ""}node_modules/${name}`;
      if (entryAt(place)) return place;
      if (base === "") return undefined;
      const cut = base.lastIndexOf("/node_modules/");
      base = cut < 0 ? "" : base.slice(0, cut);
    }
  };
  const set: PackageSet = {};
  const pending: { from: string; name: string; optional: boolean }[] = names.map((name) => ({ from: "", name, optional: false }));
  while (pending.length > 0) {
    const { from, name, optional } = pending.shift()!;
    const place = find(from, name);
    if (!place) {
      if (optional) continue;
      if (from === "") {
        // On disk but not in the lock file (copied in, or installed with --no-save): it runs in the
        // notebook, but no version is recorded that a worker could install.
        if (lock && existsSync(join(root, "node_modules", name, "package.json"))) {
          throw new MissingPackageError(name, root, undefined, `has it in node_modules but not in its package-lock.json (copied in, or installed with --no-save?), so no version is recorded`);
        }
        throw new MissingPackageError(name, root);
      }
      throw new MissingPackageError(name, root, `a dependency of ${from.slice(from.lastIndexOf("node_modules/") + 13)}`);
    }
    if (set[place]) continue;
    const entry = entryAt(place)!;
    if (entry.link || typeof entry.version !== "string" || (typeof entry.resolved === "string" && !registryUrl(entry.resolved))) {
      // A worker installs from the npm registry: a linked folder, a file: tarball or a git checkout cannot travel.
      throw new PackagePinError(`the job imports the npm package '${name}' (${place}), which the notebook's project has from ${entry.link ? "a linked folder" : typeof entry.resolved === "string" ? entry.resolved : "no recorded version"}; a worker installs packages from the npm registry only: install a published version (\`npm install ${name}@<version>\`) in ${root}`);
    }
    const pin: PinnedPackage = { version: entry.version };
    if (entry.integrity) pin.integrity = entry.integrity;
    const url = registryUrl(entry.resolved);
    if (url) pin.resolved = url;
    if (entry.dependencies && Object.keys(entry.dependencies).length > 0) pin.dependencies = { ...entry.dependencies };
    if (entry.optionalDependencies && Object.keys(entry.optionalDependencies).length > 0) pin.optionalDependencies = { ...entry.optionalDependencies };
    set[place] = pin;
    for (const dep of Object.keys(entry.dependencies ?? {})) pending.push({ from: place, name: dep, optional: false });
    for (const dep of Object.keys({ ...entry.optionalDependencies, ...entry.peerDependencies })) pending.push({ from: place, name: dep, optional: true });
  }
  return set;
}
