// The npm packages of a bundle, installed on the worker's disk (issue 14 point 2): the set its
// `// packages:` line pins (runtime/shared/bundle-packages.ts) is installed once per host under
// $NBJOB_HOME/cache/packages/<set hash>/node_modules, by `npm ci` from a package.json and a
// package-lock.json written from the pins (npm checks every tarball against its integrity).
// The install goes to a temporary folder that is renamed when complete, so a job sees the set
// whole or not at all. One install for many jobs: jobs of this worker share one promise, and
// workers on one host take a lock folder (`<key>.lock`, made by an atomic mkdir) and the others
// wait for the folder to appear. npm has a time limit; a failure names the package, its version
// and npm's reason.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { PackageSet } from "../runtime/shared/bundle-packages";
import { nameAt, packageSetKey } from "../runtime/shared/bundle-packages";

/**
 * A complete install has this file (written before the rename): the sha256 of every file npm
 * wrote, so a later change to any of them (an edited or truncated file, one deleted or added) is
 * found when a worker process first uses the folder, and the set is installed again.
 */
const MARKER = ".nbjob-installed";
const DEFAULT_TIMEOUT_MS = 5 * 60_000;

export class PackageInstallError extends Error {
  override name = "PackageInstallError";
}

export interface PackageCacheOptions {
  /** npm's time limit per install (ms); default 5 minutes, or NBJOB_NPM_TIMEOUT_MS. */
  timeoutMs?: number;
  /** The npm command; default `npm` on the PATH. */
  npm?: string;
  log?: (line: string) => void;
}

export class PackageCache {
  /** Installs this process ran (a counter for tests and logs). */
  installs = 0;
  private readonly ready = new Map<string, string>();
  private readonly inFlight = new Map<string, Promise<string>>();
  private readonly timeoutMs: number;

  constructor(readonly root: string, private readonly options: PackageCacheOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? (Number(process.env.NBJOB_NPM_TIMEOUT_MS) || DEFAULT_TIMEOUT_MS);
  }

  /** The folder holding the set's node_modules when it is installed here already, without waiting. */
  known(set: PackageSet): string | undefined {
    const key = packageSetKey(set);
    const dir = this.ready.get(key);
    if (dir) return dir;
    const target = join(this.root, key);
    if (!complete(target, set)) return undefined;
    this.ready.set(key, target);
    return target;
  }

  /** Installs the set if missing (once for all jobs) and returns its folder; `output` gets npm's output. */
  dir(set: PackageSet, output: (text: string) => void): Promise<string> {
    const found = this.known(set);
    if (found) return Promise.resolve(found);
    const key = packageSetKey(set);
    let running = this.inFlight.get(key);
    if (!running) {
      running = this.installLocked(key, set, output).then((dir) => {
        this.ready.set(key, dir);
        return dir;
      }).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, running);
    } else output(`nbjob: waiting for the install of this job's npm packages that another job started\n`);
    return running;
  }

  private async installLocked(key: string, set: PackageSet, output: (text: string) => void): Promise<string> {
    const target = join(this.root, key);
    const lock = `${target}.lock`;
    mkdirSync(this.root, { recursive: true });
    const deadline = Date.now() + this.timeoutMs + 30_000;
    let told = false;
    for (;;) {
      if (complete(target, set)) return target;
      try {
        mkdirSync(lock);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      // Another worker installs this set: wait for its folder, or take over a lock it left behind.
      if (!told) output(`nbjob: another worker is installing this job's npm packages; waiting\n`);
      told = true;
      if (Date.now() > deadline || ageMs(lock) > this.timeoutMs + 30_000) rmSync(lock, { recursive: true, force: true });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    try {
      if (complete(target, set)) return target;
      // An incomplete or damaged folder: installed again.
      if (isDirectory(target)) output(`nbjob: the cached npm packages in ${target} are incomplete or damaged; installing them again\n`);
      rmSync(target, { recursive: true, force: true });
      const temporary = `${target}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
      try {
        await this.install(temporary, set, output);
        const record: InstallRecord = { installed: new Date().toISOString(), files: fileHashes(join(temporary, "node_modules")) };
        writeFileSync(join(temporary, MARKER), `${JSON.stringify(record)}\n`);
        renameSync(temporary, target);
      } finally {
        rmSync(temporary, { recursive: true, force: true });
      }
      return target;
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }

  private install(dir: string, set: PackageSet, output: (text: string) => void): Promise<void> {
    mkdirSync(dir, { recursive: true });
    const top = Object.keys(set).filter((place) => place.lastIndexOf("node_modules/") === 0);
    const dependencies = Object.fromEntries(top.map((place) => [nameAt(place), set[place].version]));
    const manifest = { name: "nbjob-job-packages", version: "0.0.0", private: true, dependencies };
    const lockPackages: Record<string, object> = { "": { name: manifest.name, version: manifest.version, dependencies } };
    for (const [place, pin] of Object.entries(set)) lockPackages[place] = { ...pin };
    writeFileSync(join(dir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    writeFileSync(join(dir, "package-lock.json"), `${JSON.stringify({ name: manifest.name, version: manifest.version, lockfileVersion: 3, requires: true, packages: lockPackages }, null, 2)}\n`);
    const pins = Object.entries(set).map(([place, pin]) => `${nameAt(place)}@${pin.version}`);
    output(`nbjob: installing ${pins.length} npm package${pins.length === 1 ? "" : "s"} (${pins.join(", ")}) with npm ci\n`);
    this.installs++;
    this.options.log?.(`installing npm packages ${pins.join(", ")} into ${dir}`);
    return new Promise((resolve, reject) => {
      const child = spawn(this.options.npm ?? "npm", ["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--no-update-notifier"], {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, npm_config_loglevel: process.env.npm_config_loglevel ?? "notice" },
      });
      let text = "";
      const take = (chunk: Buffer) => {
        const s = chunk.toString();
        text += s;
        output(s);
      };
      child.stdout!.on("data", take);
      child.stderr!.on("data", take);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill("SIGKILL");
      }, this.timeoutMs);
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(new PackageInstallError(`could not install the job's npm packages (${pins.join(", ")}): npm could not be started: ${err.message}`));
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        if (code === 0 && !timedOut) return resolve();
        const reason = timedOut ? `npm did not finish within ${this.timeoutMs >= 1000 ? `${Math.round(this.timeoutMs / 1000)} s` : `${this.timeoutMs} ms`} (NBJOB_NPM_TIMEOUT_MS)` : npmReason(text) || `npm ci exited with code ${code}`;
        // The package npm complains about, else every pin.
        const named = pins.filter((pin) => text.includes(pin) || text.includes(pin.replace(/@([^@]*)$/, "/-/")));
        const which = named.length > 0 ? named : pins;
        reject(new PackageInstallError(`installing ${which.join(", ")} failed: ${reason}`));
      });
    });
  }
}

/** npm's error lines (`npm error …` in npm 10, `npm ERR! …` before), without the log file pointers. */
function npmReason(text: string): string {
  return text.split("\n")
    .filter((line) => /^npm (?:error|ERR!)/.test(line) && !/(?:A complete log of this run|verbose|^npm (?:error|ERR!)\s*$)/.test(line))
    .map((line) => line.replace(/^npm (?:error|ERR!)\s*/, ""))
    .slice(0, 6)
    .join("; ");
}

/** What the marker file holds. */
interface InstallRecord {
  installed: string;
  /** Path under node_modules (with `/`) → sha256 of its bytes; symbolic links as `-> target`. */
  files: Record<string, string>;
}

/** The sha256 of every file under `dir`, by its path from there; links by their target. */
function fileHashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (at: string, prefix: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      const name = `${prefix}${entry.name}`;
      if (entry.isDirectory()) walk(path, `${name}/`);
      else if (entry.isSymbolicLink()) out[name] = `-> ${readlinkSync(path)}`;
      else if (entry.isFile()) out[name] = createHash("sha256").update(readFileSync(path)).digest("hex");
    }
  };
  walk(dir, "");
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Whether a cache folder holds the set, unchanged since npm installed it (npm checked every
 * tarball against its integrity then): its marker, every pinned package at its place with its
 * version, and every file's bytes as the marker recorded them. A damaged, edited or
 * half-deleted folder is installed again. Reading every file costs about as much as npm's own
 * unpacking; a worker does it once per set per process (PackageCache keeps the answer).
 */
function complete(target: string, set: PackageSet): boolean {
  let record: InstallRecord;
  try {
    record = JSON.parse(readFileSync(join(target, MARKER), "utf8")) as InstallRecord;
  } catch {
    return false;
  }
  if (typeof record !== "object" || record === null || typeof record.files !== "object" || record.files === null) return false;
  for (const [place, pin] of Object.entries(set)) {
    try {
      const manifest = JSON.parse(readFileSync(join(target, place, "package.json"), "utf8")) as { version?: string };
      if (manifest.version !== pin.version) return false;
    } catch {
      return false;
    }
  }
  let found: Record<string, string>;
  try {
    found = fileHashes(join(target, "node_modules"));
  } catch {
    return false;
  }
  const recorded = Object.keys(record.files);
  return recorded.length === Object.keys(found).length && recorded.every((path) => found[path] === record.files[path]);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
