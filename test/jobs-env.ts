// Shared by the job tests: a fresh database on 127.0.0.1:5432, a private NBJOB_HOME with a local
// cluster of 2 real worker kernels, and notebooks run as a user runs them (`nbjob run`).
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before } from "node:test";
import { Client as PgClient } from "pg";
import { openStore } from "../store";
import type { Store } from "../store";
import { kernelTestEnv } from "./kernel-helpers";
import type { KernelTestEnv } from "./kernel-helpers";

export const ROOT = resolve(__dirname, "..", "..");
export const NBJOB = join(ROOT, "bin", "nbjob.js");
const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";

export interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[]>;
  transient?: unknown;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

export interface RanCell {
  id: string;
  source: string;
  outputs: Output[];
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Code cells of the executed notebook, by id. */
  cells: Map<string, RanCell>;
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

const joined = (text: string | string[] | undefined) => (Array.isArray(text) ? text.join("") : text ?? "");

/** All the text a cell showed: streams, results and displays (text/plain), and errors. */
export function cellText(cell: RanCell | undefined): string {
  if (!cell) return "(no such cell)";
  return cell.outputs.map((o) => {
    if (o.output_type === "stream") return joined(o.text);
    if (o.output_type === "error") return `${o.ename}: ${o.evalue}\n${(o.traceback ?? []).join("\n")}`;
    return joined(o.data?.["text/plain"]);
  }).join("\n");
}

/** Cells written as `### code ID` blocks (first line `### code ID`, then the cell's source). */
export function notebookFrom(text: string): object {
  const cells: { id: string; source: string; tags: string[] }[] = [];
  for (const block of text.split(/^### code /m).slice(1)) {
    const [header, ...lines] = block.split("\n");
    const [id, ...tags] = header.trim().split(/\s+/);
    cells.push({ id, source: lines.join("\n").trimEnd(), tags });
  }
  return {
    nbformat: 4, nbformat_minor: 5,
    metadata: { kernelspec: { name: "nbjob", display_name: "TypeScript (nbjob)", language: "typescript" } },
    cells: cells.map((c) => ({ cell_type: "code", id: c.id, metadata: c.tags.length ? { tags: c.tags } : {}, source: c.source, outputs: [], execution_count: null })),
  };
}

export class JobsEnv {
  readonly work: string;
  readonly env: NodeJS.ProcessEnv;
  readonly database: string;
  readonly url: string;
  readonly store: Store;
  private readonly children = new Set<ChildProcess>();
  private runs = 0;
  private readonly extraDatabases: string[] = [];

  constructor(name: string) {
    this.work = mkdtempSync(join(tmpdir(), `nbjob-${name}-`));
    this.database = `nbjob_${name.replace(/\W/g, "_")}_${process.pid}`;
    this.url = `postgres://postgres@127.0.0.1:5432/${this.database}`;
    this.env = { ...process.env, NBJOB_HOME: join(this.work, "home"), NBJOB_DATABASE_URL: this.url, JUPYTER_DATA_DIR: join(this.work, "jupyter") };
    delete this.env.NBJOB_DEBUG;
    this.store = openStore({ url: this.url, maxConnections: 2 });
  }

  private async admin(sql: string): Promise<void> {
    const client = new PgClient({ connectionString: ADMIN_URL });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  }

  /**
   * Creates the database and starts the local cluster of 2 workers (`workers`), in the
   * repository or in `cwd` (the workers' current directory: jobs see its node_modules).
   */
  async start(options: { cwd?: string; workers?: number } = {}): Promise<void> {
    await this.admin(`DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`);
    await this.admin(`CREATE DATABASE ${this.database}`);
    await this.store.ready();
    const started = await this.exec(process.execPath, [NBJOB, "cluster", "start", "-n", String(options.workers ?? 2)], { cwd: options.cwd });
    if (started.code !== 0) throw new Error(`nbjob cluster start failed: ${started.stderr}`);
  }

  /** Another fresh database (dropped by cleanup); returns its URL. */
  async createExtraDatabase(suffix: string): Promise<string> {
    const name = `${this.database}_${suffix}`;
    await this.admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await this.admin(`CREATE DATABASE ${name}`);
    this.extraDatabases.push(name);
    return `postgres://postgres@127.0.0.1:5432/${name}`;
  }

  /** Runs a command as a subprocess with this environment. */
  exec(command: string, args: string[], options: { cwd?: string } = {}): Promise<Finished> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(command, args, { cwd: options.cwd ?? ROOT, env: this.env, stdio: ["ignore", "pipe", "pipe"] });
      this.children.add(child);
      let stdout = "";
      let stderr = "";
      child.stdout!.on("data", (chunk) => (stdout += chunk));
      child.stderr!.on("data", (chunk) => (stderr += chunk));
      child.on("error", reject);
      child.on("close", (code) => {
        this.children.delete(child);
        resolvePromise({ code, stdout, stderr });
      });
    });
  }

  nbjob(...args: string[]): Promise<Finished> {
    return this.exec(process.execPath, [NBJOB, ...args]);
  }

  /** A long-running subprocess (e.g. a standalone worker) that cleanup() kills. */
  spawnBackground(args: string[]): ChildProcess {
    const child = spawn(process.execPath, [NBJOB, ...args], { cwd: ROOT, env: this.env, stdio: ["ignore", "ignore", "pipe"] });
    this.children.add(child);
    child.on("close", () => this.children.delete(child));
    return child;
  }

  /** Runs a notebook (a path, or cells in `### code ID` form) with `nbjob run --allow-errors` and reads the executed copy. */
  async runNotebook(notebook: string, extraArgs: string[] = [], options: { allowErrors?: boolean } = {}): Promise<RunResult> {
    const n = ++this.runs;
    let path = notebook;
    if (notebook.includes("### code ")) {
      path = join(this.work, `nb-${n}.ipynb`);
      writeFileSync(path, JSON.stringify(notebookFrom(notebook)));
    }
    const out = join(this.work, `nb-${n}.out.ipynb`);
    const args = ["run", path, "-o", out, ...extraArgs];
    if (options.allowErrors !== false) args.push("--allow-errors");
    const finished = await this.nbjob(...args);
    const cells = new Map<string, RanCell>();
    try {
      const executed = JSON.parse(readFileSync(out, "utf8")) as { cells: { cell_type: string; id: string; source: string | string[]; outputs?: Output[] }[] };
      for (const cell of executed.cells) {
        if (cell.cell_type === "code") cells.set(cell.id, { id: cell.id, source: joined(cell.source), outputs: cell.outputs ?? [] });
      }
    } catch {
      // No executed notebook: the caller sees the exit code and stderr.
    }
    return { ...finished, cells };
  }

  /** Stops the cluster and anything else started, closes the store, drops the database. */
  async cleanup(): Promise<void> {
    await this.nbjob("cluster", "stop").catch(() => undefined);
    for (const child of this.children) child.kill("SIGKILL");
    await this.store.close().catch(() => undefined);
    for (const name of [this.database, ...this.extraDatabases]) await this.admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    // NBJOB_TEST_KEEP=1 keeps the folder (the workers' logs are under cluster/) to look into a failure.
    if (process.env.NBJOB_TEST_KEEP === "1") console.log(`# kept ${this.work}`);
    else rmSync(this.work, { recursive: true, force: true });
  }
}

/** The cells both jobs test files start from: two collectors, a Point, params x=3 y=4, and walk(steps). */
export const POINT_NOTEBOOK_SETUP = `
### code setup
const sc = new SnippetCollector();
const sc2 = new SnippetCollector("walks");
const db = new DBWrapper();
const rc = await Client.connect();
const view = rc.view(0);
### code decl
@sc
class Point {
  constructor(public x: number, public y: number) {}
}
@sc
function norm(p: Point): number {
  return Math.sqrt(p.x ** 2 + p.y ** 2);
}
### code params
const params = new ParamLogger();
params.x = 3;
params.y = 4;
### code walk
@sc2
function walk(steps: number): Point {
  for (let i = 1; i <= steps; i++) console.log(\`step \${i}\`);
  return new Point(params.x * steps, params.y);
}
`;

/**
 * A JobsEnv, and kernels for jupyter_client (withJupyterClient) that find the same cluster and
 * database: started before the file's tests, cleaned up after them.
 */
export function jobsEnvWithKernels(name: string): { env: JobsEnv; kernels: KernelTestEnv } {
  const env = new JobsEnv(name);
  const kernels = kernelTestEnv();
  before(async () => {
    await env.start();
    kernels.env.NBJOB_HOME = env.env.NBJOB_HOME;
    kernels.env.NBJOB_DATABASE_URL = env.url;
  });
  after(async () => {
    kernels.cleanup();
    await env.cleanup();
  });
  return { env, kernels };
}
