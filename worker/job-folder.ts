// The folder a job's `require` resolves from, made ready from its bundle's header lines: its npm
// packages installed (worker/package-cache.ts) and its local modules laid out
// (worker/module-layout.ts), under the packages' folder when it has both, so require finds their
// node_modules from the job and from every local module. Jobs and analyses of a job use the same
// folder, so an analysis imports what its job imported.
import { join } from "node:path";
import { filesOfSource } from "../runtime/shared/bundle-files";
import { packagesOfSource } from "../runtime/shared/bundle-packages";
import type { ModuleLayout } from "./module-layout";
import type { PackageCache } from "./package-cache";

export interface JobFolderMakers {
  /** Lays out local modules (needs the store); without it a bundle that has some fails, saying why. */
  modules?: ModuleLayout;
  /** Installs npm packages; without it a bundle that pins some fails, saying why. */
  packages?: PackageCache;
}

/** What a bundle needs besides its program, read once from its source. */
export interface JobNeeds {
  files: Record<string, string>;
  pins: ReturnType<typeof packagesOfSource>;
  hasFiles: boolean;
  hasPackages: boolean;
}

export function jobNeeds(source: string): JobNeeds {
  const files = filesOfSource(source);
  const pins = packagesOfSource(source);
  return { files, pins, hasFiles: Object.keys(files).length > 0, hasPackages: Object.keys(pins).length > 0 };
}

/**
 * The job's folder when it is ready on this worker already, without waiting: a string; `null`
 * when it must be made first (prepareJobFolder); undefined when the job needs none.
 */
export function knownJobFolder(needs: JobNeeds, makers: JobFolderMakers): string | undefined | null {
  if (!needs.hasFiles && !needs.hasPackages) return undefined;
  const packageDir = needs.hasPackages ? makers.packages?.known(needs.pins) : undefined;
  if (needs.hasPackages && packageDir === undefined) return null;
  if (!needs.hasFiles) return packageDir!;
  const dir = packageDir !== undefined ? makers.modules?.known(needs.files, join(packageDir, "modules")) : makers.modules?.known(needs.files);
  return dir ?? null;
}

/** Installs the packages and lays out the modules (each once per set) and returns the job's folder. */
export async function prepareJobFolder(needs: JobNeeds, makers: JobFolderMakers, output: (text: string) => void): Promise<string | undefined> {
  let packageDir: string | undefined;
  if (needs.hasPackages) {
    if (!makers.packages) throw new Error("the job pins npm packages and this worker has no package cache; start it as a worker kernel (nbjob worker)");
    packageDir = await makers.packages.dir(needs.pins, output);
  }
  if (!needs.hasFiles) return packageDir;
  if (!makers.modules) throw new Error(`the job imports local modules (${Object.keys(needs.files).join(", ")}) and this worker has no store to read them from; start it with a store (NBJOB_DATABASE_URL)`);
  return packageDir === undefined ? makers.modules.jobDir(needs.files) : makers.modules.jobDir(needs.files, join(packageDir, "modules"));
}
