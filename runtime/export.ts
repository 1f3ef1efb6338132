// `nbjob export JOB DIR`: a stored job as a standalone TypeScript project that re-runs it with
// Node and tsx, without nbjob or a database. The project is:
//   job.ts            the job's snippets (byte for byte), its parameters and its entries
//   nbjob-runtime.ts  `params` (read-only, the job's values) and `jobtracker` (checkpoints to files)
//   package.json      the packages the bundle imports, at the versions its worker had, plus tsx
//   README.md         how to run it and where it came from
//   lib/x.ts, ...     the job's local modules, at their paths from the notebook's folder
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, posix, resolve } from "node:path";
import { getBundle, getEnvironment, requireJob, sha256 } from "../store";
import type { BundleWithSnippets, Db, DbEnvironment, DbJob } from "../store";
import { typescript } from "./bundle-ts";
import { packagesOfSource } from "./shared/bundle-packages";

/** The tsx the exported project runs with (a devDependency of the project, not of nbjob). */
export const TSX_VERSION = "^4.20.0";

export interface ExportedProject {
  dir: string;
  files: string[];
  /** Package name -> version range written into package.json. */
  dependencies: Record<string, string>;
  /** Imports whose version the job's environment did not record ("*" in package.json). */
  unpinned: string[];
  /** Relative imports: files the project needs but nbjob does not have (or that lie outside the notebook's folder). */
  localImports: string[];
  /** The job's local modules written into the project, by path. */
  localFiles: string[];
  /** What it says of a job that was resumed from another's checkpoint: job.ts starts from the beginning instead. */
  resumeNote?: string;
}

/** An export that cannot be made; the message names the problem and what to do. */
export class ExportError extends Error {
  override name = "ExportError";
}

/** `lodash/fp` → `lodash`; undefined for relative paths, `node:` and built-in modules. */
function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith(".") || specifier.startsWith("/") || /^[a-z][a-z0-9+.-]*:/i.test(specifier)) return undefined;
  const parts = specifier.split("/");
  const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
  return require("node:module").builtinModules.includes(name) ? undefined : name;
}

/** Module specifiers the snippets import or require (with `ofFiles`: the local modules' too). */
function importsOf(bundle: BundleWithSnippets, ofFiles = false): string[] {
  const ts = typescript();
  const found = new Set<string>();
  const texts = [...bundle.snippets.map((s) => s.source), ...(ofFiles ? bundle.files.filter((f) => /\.[cm]?[jt]s$/.test(f.path)).map((f) => f.content) : [])];
  for (const text of texts) {
    if (!/\b(import|require)\b/.test(text)) continue;
    for (const file of ts.preProcessFile(text, true, true).importedFiles) found.add(file.fileName);
  }
  return [...found].sort();
}

/** Whether a snippet's relative import names one of the stored local modules (as require would find it). */
function storedModule(specifier: string, paths: ReadonlySet<string>): boolean {
  const base = posix.normalize(specifier).replace(/\/$/, "");
  return [base, ...["", "/index"].flatMap((suffix) => [".js", ".json", ".ts", ".mts", ".cts"].map((ext) => `${base}${suffix}${ext}`))].some((p) => paths.has(p));
}

/** `// entries` ... as entry functions; a trailing `// comment` in an entry needs the newline. */
function entryFunction(entry: string): string {
  return `  async () => (${entry}${/\/\/[^\n]*$/.test(entry) ? "\n  " : ""}),`;
}

export function jobProgram(job: DbJob, bundle: BundleWithSnippets): string {
  const lines = [
    `// Job ${job.id}${job.name ? ` (${job.name})` : ""}, exported by nbjob from bundle ${bundle.hash}.`,
    `// Run it with: npm install && npx tsx job.ts   (prints the job's result)`,
    `import * as nbjob from "./nbjob-runtime";`,
    "",
    "// The job's parameters: params.name reads one, as inside the job.",
    `const params = nbjob.jobParams(${JSON.stringify(bundle.params, null, 2)});`,
    "// Checkpoints go to files: checkpoints/<index>/<name>.bin (v8.serialize).",
    "// (eval reaches the job's top-level variables by name, as nbjob's worker does.)",
    "const jobtracker = nbjob.jobTracker(__dirname, (name: string) => eval(`({ get: () => ${name}, set: (value) => { ${name} = value; } })`));",
  ];
  for (const snippet of bundle.snippets) {
    const names = snippet.names.length ? snippet.names.join(", ") : "(statements only)";
    lines.push("", `// snippet ${names} (${snippet.kind})`, snippet.source.replace(/\n+$/, ""));
  }
  lines.push("", "// The entries, in order; the last one's value is the job's result.", "nbjob.runEntries([", ...bundle.entries.map(entryFunction), "]);", "");
  return lines.join("\n");
}

/** The runtime file: a few dozen lines of plain Node, so the project needs nothing of nbjob. */
export const RUNTIME_FILE = `// params and jobtracker for a job exported by nbjob, and the runner of its entries.
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import { serialize } from "node:v8";

/** The job's parameters, read-only; reading one the job was not given is an error naming it. */
export function jobParams<T extends object>(values: T): Readonly<T> {
  return new Proxy(Object.freeze({ ...values }), {
    get(target, key, receiver) {
      if (typeof key === "symbol" || key in target || key === "then" || key === "toJSON") return Reflect.get(target, key, receiver);
      throw new ReferenceError(\`params.\${key} was not given to this job; its parameters are \${Object.keys(target).join(", ") || "none"}\`);
    },
    set(_target, key) {
      throw new TypeError(\`params.\${String(key)} cannot be set inside a job\`);
    },
  }) as Readonly<T>;
}

type Access = { get: () => unknown; set: (value: unknown) => void };

/** jobtracker: registered variables are written to checkpoints/<index>/<name>.bin at each checkpoint(). */
export function jobTracker(dir: string, access: (name: string) => Access) {
  const registered = new Map<string, Access>();
  let next = 0;
  let nextStep = 0;
  return {
    registerCheckpointer(name: string, accessors: Partial<Access> = {}): void {
      let byName: Access | undefined;
      if (!accessors.get || !accessors.set) {
        if (!/^[A-Za-z_$][\\w$]*$/.test(name)) throw new TypeError(\`jobtracker.registerCheckpointer(name): name must be a variable name, got \${JSON.stringify(name)}\`);
        byName = access(name);
        try {
          byName.get();
        } catch (err) {
          // Declared further down (not initialised yet) is fine; not declared at all is not.
          if (!/before initialization/.test(String((err as Error).message))) throw new ReferenceError(\`jobtracker.registerCheckpointer("\${name}"): the job has no top-level variable \${name}\`);
        }
      }
      registered.set(name, { get: accessors.get ?? byName!.get, set: accessors.set ?? byName!.set });
    },
    checkpoint(): number {
      const index = next++;
      const folder = join(dir, "checkpoints", String(index).padStart(6, "0"));
      mkdirSync(folder, { recursive: true });
      for (const [name, { get }] of registered) writeFileSync(join(folder, \`\${name}.bin\`), serialize(get()));
      return index;
    },
    async flush(): Promise<void> {},
    /** Metrics go to metrics.jsonl, one line per call: { step, values } (NaN and Infinity as strings). */
    log(metrics: Record<string, number | ArrayLike<number>>, step?: number): void {
      const at = step ?? nextStep;
      nextStep = at + 1;
      const values = JSON.stringify(metrics, (_key, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v));
      appendFileSync(join(dir, "metrics.jsonl"), \`{"step":\${at},"values":\${values}}\\n\`);
    },
    get registered(): string[] {
      return [...registered.keys()];
    },
  };
}

/**
 * Runs the entries in order and prints the last one's value as nbjob shows a job's result. Then
 * the program ends, as a job ends on its worker, even if it left timers behind.
 */
export function runEntries(entries: (() => Promise<unknown>)[]): void {
  (async () => {
    let value: unknown;
    for (const entry of entries) value = await entry();
    const text = inspect(value, { colors: false, depth: 6, maxArrayLength: 100, maxStringLength: 10_000, breakLength: 100 });
    process.stdout.write(\`\${text}\\n\`, () => process.exit(0));
  })().catch((err: unknown) => {
    process.stderr.write(\`\${inspect(err, { colors: false })}\\n\`, () => process.exit(1));
  });
}
`;

function readme(job: DbJob, bundle: BundleWithSnippets, environment: DbEnvironment | undefined, project: Omit<ExportedProject, "dir" | "files">): string {
  const lines = [
    `# nbjob job ${job.id}${job.name ? `: ${job.name}` : ""}`,
    "",
    "A job exported by `nbjob export`: it runs without nbjob and without a database.",
    "",
    "```",
    "npm install",
    "npx tsx job.ts      # prints the job's result",
    "```",
    "",
    "- `job.ts`: the job's code (its snippets, byte for byte as stored), its parameters and its",
    "  entries; the last entry's value is printed.",
    "- `nbjob-runtime.ts`: `params` (the job's values, read-only) and `jobtracker`:",
    "  `jobtracker.checkpoint()` writes each registered variable to",
    "  `checkpoints/<index>/<name>.bin` (`v8.serialize`; read back with `v8.deserialize`).",
    "- `package.json`: the packages the code imports, at the versions its worker had.",
    ...(project.localFiles.length ? [`- local modules the code imports, as they were when the job was made: ${project.localFiles.map((p) => `\`${p}\``).join(", ")}.`] : []),
    "",
    "## Where it came from",
    "",
    `- job ${job.id}, status ${job.status}${job.worker_id ? `, ran on worker ${job.worker_id}${job.host ? ` on ${job.host}` : ""}` : ""}`,
    `- bundle ${bundle.hash}`,
  ];
  if (environment) {
    lines.push(`- Node ${environment.node_version}, nbjob ${environment.nbjob_version}${environment.lockfile_hash ? `, lock files ${environment.lockfile_hash}` : ""}`);
  } else {
    lines.push("- its environment was not recorded (the job never ran to the end on a worker)");
  }
  if (project.resumeNote) lines.push(`- ${project.resumeNote}`);
  if (job.status === "done" && job.result_text !== null) lines.push("", "Its result was:", "", "```", job.result_text, "```");
  if (project.unpinned.length) lines.push("", `Not pinned (no recorded version): ${project.unpinned.join(", ")}.`);
  if (project.localImports.length) {
    lines.push("", `The code imports local files that are not in this project (${project.localImports.join(", ")}): copy them to where job.ts expects them.`);
  }
  return lines.join("\n") + "\n";
}

/**
 * Refuses a target that exists and is not an empty directory (nothing is ever overwritten), or
 * that could not be created because one of its parents is a file.
 */
function checkTarget(dir: string): void {
  let entries: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new ExportError(`${dir} exists and is not a directory; give a new or empty directory to export into`);
    entries = readdirSync(dir);
  } catch (err) {
    if (err instanceof ExportError) throw err;
    if (!isMissing(err)) throw new ExportError(`cannot use ${dir} (${reason(err)}); give a new or empty directory to export into`, { cause: err });
    missingLevels(dir);
    return;
  }
  if (entries.length > 0) {
    throw new ExportError(`${dir} is not empty (it holds ${entries.slice(0, 3).join(", ")}${entries.length > 3 ? ", ..." : ""}); give a new or empty directory, nothing was written`);
  }
}

/**
 * The directories to create for `dir`, outermost first, after checking that the nearest one
 * that exists is a directory.
 */
function missingLevels(dir: string): string[] {
  const missing: string[] = [];
  for (let level = dir; ; level = dirname(level)) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(level).isDirectory();
    } catch (err) {
      if (!isMissing(err)) throw new ExportError(`cannot create ${dir}: ${level} cannot be read (${reason(err)}); give a directory that can be created`, { cause: err });
      missing.unshift(level);
      if (dirname(level) === level) return missing;
      continue;
    }
    if (!isDirectory) throw new ExportError(`cannot create ${dir}: ${level} is not a directory; give a directory that can be created`);
    return missing;
  }
}

/**
 * Creates `dir` one level at a time. Node's mkdirSync(dir, { recursive: true }) loops forever
 * (at 100% CPU) on a file system that answers ENOENT for a new directory whose parent exists,
 * such as /proc; here each level is tried once and a refusal is one line naming it.
 */
function makeDirectory(dir: string): void {
  for (const level of missingLevels(dir)) {
    try {
      mkdirSync(level);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST" && statSync(level).isDirectory()) continue;
      const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? `${dirname(level)} does not allow new directories` : reason(err);
      throw new ExportError(`cannot create ${dir}: creating ${level} failed (${why}); give a directory that can be created, nothing was written`, { cause: err });
    }
  }
}

/** Not there: ENOENT, or ENOTDIR when a parent on the way is a file (reported for that parent). */
function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** "permission denied (EACCES)" from a Node file system error. */
function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const text = /^[A-Z]+: ([^,]+)/.exec(e.message ?? "")?.[1] ?? e.message ?? String(err);
  return e.code ? `${text} (${e.code})` : text;
}

/** Writes job `jobId` as a standalone project into `dir` (new or empty). */
export async function exportJob(db: Db, jobId: number, dir: string): Promise<ExportedProject> {
  const target = resolve(dir);
  checkTarget(target);
  const job = await requireJob(db, jobId);
  const bundle = await getBundle(db, job.bundle_hash);
  if (!bundle) throw new ExportError(`job ${jobId}'s bundle ${job.bundle_hash.slice(0, 12)} is not in the store, so it cannot be exported; nothing was written`);
  // The project is run by whoever exports it: code changed in the store is not written out.
  // (Signatures are the workers' check; an export needs no cluster key.)
  const altered = [bundle, ...bundle.snippets].find((code) => sha256(code.source) !== code.hash);
  if (altered) {
    const what = altered === bundle ? `bundle ${bundle.hash}` : `snippet ${altered.hash} of bundle ${bundle.hash}`;
    throw new ExportError(`job ${jobId}'s ${what} was altered in the store (its source no longer matches its hash), so it cannot be exported; nothing was written`);
  }
  const environment = job.environment_hash ? await getEnvironment(db, job.environment_hash) : undefined;
  const specifiers = importsOf(bundle, true);
  const dependencies: Record<string, string> = {};
  const unpinned: string[] = [];
  const pins = packagesOfSource(bundle.source);
  for (const name of new Set(specifiers.map(packageOf).filter((n): n is string => n !== undefined))) {
    // The version the bundle pins (the notebook's project's), else what the worker recorded.
    const version = pins[`node_modules/${name}`]?.version ?? environment?.packages[name];
    if (version && /^\d/.test(version)) dependencies[name] = version;
    else {
      dependencies[name] = "*";
      unpinned.push(name);
    }
  }
  // Local modules are written at their paths from the notebook's folder, which job.ts stands for;
  // one outside that folder (`../x.ts`) would land outside the project, and one named like a file
  // of the project (`./package.json`) would replace it: those are listed instead.
  const generated = new Set(["job.ts", "nbjob-runtime.ts", "package.json", "README.md"]);
  const localFiles = bundle.files.filter((f) => !posix.normalize(f.path).startsWith("../") && !generated.has(posix.normalize(f.path))).map((f) => f.path);
  const paths = new Set(localFiles);
  const outside = bundle.files.filter((f) => !paths.has(f.path)).map((f) => f.path);
  const localImports = [...new Set([...importsOf(bundle).filter((s) => (s.startsWith(".") || s.startsWith("/")) && !storedModule(s, paths)), ...outside])];
  const packageJson = {
    name: `nbjob-job-${job.id}`,
    version: "1.0.0",
    private: true,
    description: `nbjob job ${job.id}${job.name ? ` (${job.name})` : ""}, exported from bundle ${bundle.hash.slice(0, 12)}`,
    type: "commonjs",
    scripts: { start: "tsx job.ts" },
    dependencies: Object.fromEntries(Object.entries(dependencies).sort(([a], [b]) => (a < b ? -1 : 1))),
    devDependencies: { tsx: TSX_VERSION },
    // npm 11 runs no install scripts unless allowed; esbuild's (tsx's compiler) only checks its binary.
    allowScripts: { esbuild: true },
    ...(environment ? { engines: { node: `>=${environment.node_version.replace(/^v/, "").split(".")[0]}` } } : {}),
  };
  // The export holds the code, not the checkpoint a resumed job started from.
  const resumeNote = job.resumed_from === null ? undefined
    : `resumed from job ${job.resumed_from}${job.resumed_from_checkpoint !== null ? ` at checkpoint ${job.resumed_from_checkpoint}` : ""}: job.ts runs the code from its start, not from that checkpoint, so its result can differ from the one below`;
  const files: Record<string, string> = {
    "job.ts": jobProgram(job, bundle),
    "nbjob-runtime.ts": RUNTIME_FILE,
    "package.json": JSON.stringify(packageJson, null, 2) + "\n",
    "README.md": readme(job, bundle, environment, { dependencies, unpinned, localImports, localFiles, resumeNote }),
  };
  for (const file of bundle.files) {
    if (!paths.has(file.path)) continue;
    files[posix.normalize(file.path)] = file.content;
  }
  makeDirectory(target);
  // "wx": fails rather than overwrite, should a file appear meanwhile.
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(target, name)), { recursive: true });
    writeFileSync(join(target, name), text, { flag: "wx" });
  }
  return { dir: target, files: Object.keys(files), dependencies, unpinned, localImports, localFiles, resumeNote };
}
