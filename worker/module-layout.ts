// The local modules of a bundle, laid out on the worker's disk (issue 14): the files its source's
// `// files:` line names (runtime/local-files.ts), read from the store by hash, checked against
// that hash and written under $NBJOB_HOME/cache/modules/<key>, where key is the sha256 of the
// path → hash list. The folder is written under a temporary name and renamed, so a job (or
// another worker on the same host) sees it complete or not at all, and every job with the same
// files (a sweep, a rerun) uses the same folder. The job's `require` resolves from the folder
// standing for the notebook's own (`jobDir`), so `./localmod` is found whatever the worker's cwd.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, posix, relative } from "node:path";

/** Reads stored file texts by hash. */
export type FileFetcher = (hashes: string[]) => Promise<Map<string, string>>;
/** TypeScript modules (path → text) as CommonJS (path → JavaScript): the worker's compiler thread. */
export type ModuleTranspiler = (modules: Record<string, string>) => Promise<Record<string, string>>;

/** Where the JavaScript of a laid-out .ts file is: `<key>/.nbjob-js/<its path under key>.js`. */
export const COMPILED_DIR = ".nbjob-js";

export class ModuleLayout {
  private readonly ready = new Map<string, string>();
  private readonly inFlight = new Map<string, Promise<string>>();

  /**
   * `transpile`: local .ts files are compiled once here, when laid out, so the job thread's
   * require reads JavaScript and never loads the compiler (without it, it compiles them itself).
   */
  constructor(private readonly root: string, private readonly fetch: FileFetcher, private readonly transpile?: ModuleTranspiler) {}

  /**
   * The job folder for `files` (path → sha256) when it is already laid out here, without waiting.
   * `root`: another folder to lay out under (a job's npm packages: their install folder, so
   * require finds its node_modules from every local module).
   */
  known(files: Record<string, string>, root = this.root): string | undefined {
    return this.ready.get(join(root, manifestKey(files)));
  }

  /** Lays the files out (once per set of files) and returns the folder the job's require resolves from. */
  jobDir(files: Record<string, string>, root = this.root): Promise<string> {
    const key = join(root, manifestKey(files));
    const done = this.ready.get(key);
    if (done) return Promise.resolve(done);
    let running = this.inFlight.get(key);
    if (!running) {
      running = this.layOut(key, files).then((dir) => {
        this.ready.set(key, dir);
        return dir;
      }).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, running);
    }
    return running;
  }

  private async layOut(target: string, files: Record<string, string>): Promise<string> {
    mkdirSync(dirname(target), { recursive: true });
    const paths = Object.keys(files).map((path) => posix.normalize(path));
    // Paths outside the notebook's folder (`../shared/x.ts`) keep their place relative to it:
    // the notebook's folder is as many `_` levels deep as the furthest one climbs.
    const depth = Math.max(0, ...paths.map((path) => /^(?:\.\.\/)*/.exec(path)![0].length / 3));
    const jobDir = (base: string) => join(base, ...Array<string>(depth).fill("_"));
    if (isDirectory(target)) return jobDir(target);
    const texts = await this.fetch([...new Set(Object.values(files))]);
    const temporary = `${target}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    const typescriptFiles: Record<string, string> = {};
    try {
      for (const [path, hash] of Object.entries(files)) {
        const text = texts.get(hash);
        if (text === undefined) throw new Error(`the local module ${path} (file ${hash.slice(0, 12)}) is not in the store; the job cannot run`);
        if (createHash("sha256").update(text).digest("hex") !== hash) throw new Error(`the stored local module ${path} does not match its hash ${hash.slice(0, 12)}; the store's copy is damaged`);
        const file = join(jobDir(temporary), posix.normalize(path));
        if (!file.startsWith(`${temporary}/`) || path.startsWith("/")) throw new Error(`the local module path ${JSON.stringify(path)} leaves the job's folder; refused`);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, text);
        if (/\.[cm]?ts$/.test(path)) typescriptFiles[relative(temporary, file)] = text;
      }
      if (this.transpile && Object.keys(typescriptFiles).length > 0) {
        // Best effort: a file left uncompiled is compiled by the job thread when required.
        const compiled = await this.transpile(typescriptFiles).catch(() => ({} as Record<string, string>));
        for (const [path, js] of Object.entries(compiled)) {
          const file = join(temporary, COMPILED_DIR, `${path}.js`);
          mkdirSync(dirname(file), { recursive: true });
          writeFileSync(file, js);
        }
      }
      mkdirSync(jobDir(temporary), { recursive: true });
      try {
        renameSync(temporary, target);
      } catch (err) {
        // Another job or worker laid the same files out first: theirs is the same.
        if (!isDirectory(target)) throw err;
      }
    } finally {
      rmSync(temporary, { recursive: true, force: true });
    }
    return jobDir(target);
  }
}

/** The folder name for a set of files: sha256 over the sorted path → hash pairs. */
export function manifestKey(files: Record<string, string>): string {
  const hash = createHash("sha256");
  for (const path of Object.keys(files).sort()) hash.update(`${path}\0${files[path]}\n`);
  return hash.digest("hex");
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
