// Reading the versioned record of code back: which declarations each bundle holds, what changed
// between a job and the previous job of its lineage (`nbjob log`, local modules included by path), every version of one declaration (`nbjob history`), and
// the unified diff of two jobs' code and parameters (`nbjob diff`, `job.diff`).
import { createTwoFilesPatch } from "diff";
import type { Db } from "./db";
import { getBundle } from "./code";
import { LISTED_COLUMNS, listJobsByIds, requireJob } from "./jobs";
import type { DbJobListed } from "./jobs";
import type { DbJob, DbSnippet } from "./types";

export interface DeclarationChange {
  name: string;
  change: "added" | "changed" | "removed";
  /** Snippet hash before (absent when added). */
  from?: string;
  /** Snippet hash after (absent when removed). */
  to?: string;
}

export interface JobLogEntry {
  job: DbJobListed;
  /** The job this one is compared with: the job just before it in the same lineage, if any. */
  previousId: number | null;
  /** The job's lineage, for messages: `notebook /path/a.ipynb`, or `collectors "walks", unlabelled`. */
  lineage: string;
  changes: DeclarationChange[];
}

/**
 * A job's lineage as SQL over the jobs row `alias`: the notebook that created it, else (a script,
 * or a job stored before notebooks were recorded) the labels of the collectors its snippets came
 * from. A job is compared with the previous job of its own lineage, never with another
 * notebook's job that happened to come just before it.
 */
function lineageSql(alias: string): string {
  return `COALESCE('notebook:' || ${alias}.notebook, 'collectors:' || COALESCE(
    (SELECT jsonb_agg(DISTINCT COALESCE(bs.collector, '') ORDER BY COALESCE(bs.collector, ''))::text
       FROM nbjob.bundle_snippets bs WHERE bs.bundle_hash = ${alias}.bundle_hash), '[]'))`;
}

/** The lineage key of lineageSql as words. */
export function describeLineage(key: string): string {
  if (key.startsWith("notebook:")) return `notebook ${key.slice("notebook:".length)}`;
  let labels: string[] = [];
  try {
    labels = JSON.parse(key.slice("collectors:".length)) as string[];
  } catch {
    // not ours: shown as it is below
  }
  if (labels.length === 0) return "no notebook recorded, no collectors";
  return `no notebook recorded, collectors ${labels.map((label) => (label === "" ? "unlabelled" : JSON.stringify(label))).join(", ")}`;
}

export interface DeclarationVersion {
  snippet: DbSnippet;
  /** Jobs whose bundle holds this version, ascending. */
  jobIds: number[];
}

/** For each bundle: declared name -> hash of the snippet that declares it (a later snippet wins, as in the program). */
export async function bundleDeclarations(db: Db, bundleHashes: string[]): Promise<Map<string, Map<string, string>>> {
  const result = new Map<string, Map<string, string>>();
  for (const hash of bundleHashes) result.set(hash, new Map());
  if (bundleHashes.length === 0) return result;
  const { rows } = await db.query<{ bundle_hash: string; name: string; snippet_hash: string }>(
    `SELECT bs.bundle_hash, n.name, bs.snippet_hash
       FROM nbjob.bundle_snippets bs
       JOIN nbjob.snippets s ON s.hash = bs.snippet_hash
       CROSS JOIN LATERAL unnest(s.names) AS n(name)
      WHERE bs.bundle_hash = ANY($1::text[])
      ORDER BY bs.bundle_hash, bs.position`,
    [[...new Set(bundleHashes)]],
  );
  for (const row of rows) result.get(row.bundle_hash)!.set(row.name, row.snippet_hash);
  return result;
}

/**
 * The stored path a name stands for when it names a local module (`./lib/other.ts`,
 * `../shared/x.ts`, as `nbjob log` shows them); undefined for a declaration's name.
 */
export function localModulePath(name: string): string | undefined {
  if (name.startsWith("./")) return name.slice(2);
  if (name.startsWith("../")) return name;
  return undefined;
}

/** What changed from `before` to `after` (name -> snippet hash maps), sorted by name. */
export function compareDeclarations(before: Map<string, string>, after: Map<string, string>): DeclarationChange[] {
  const changes: DeclarationChange[] = [];
  for (const [name, to] of after) {
    const from = before.get(name);
    if (from === undefined) changes.push({ name, change: "added", to });
    else if (from !== to) changes.push({ name, change: "changed", from, to });
  }
  for (const [name, from] of before) if (!after.has(name)) changes.push({ name, change: "removed", from });
  return changes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Jobs newest first, each with what changed in its code since the previous job of its lineage
 * (see lineageSql). With `name`, only the jobs where that declaration changed (appeared, changed
 * or went away) within their lineage.
 */
export async function jobLog(db: Db, options: { name?: string; limit?: number; beforeId?: number } = {}): Promise<JobLogEntry[]> {
  const limit = options.limit ?? 20;
  if (options.name !== undefined) return declarationLog(db, options.name, limit, options.beforeId);
  const { rows: jobs } = await db.query<DbJobListed & { lineage: string; previous_id: number | null; previous_bundle: string | null }>(
    `SELECT j.*, p.id AS previous_id, p.bundle_hash AS previous_bundle
       FROM (SELECT ${LISTED_COLUMNS}, ${lineageSql("n")} AS lineage FROM nbjob.jobs n
              WHERE ($2::bigint IS NULL OR n.id < $2) ORDER BY n.id DESC LIMIT $1) j
       LEFT JOIN LATERAL (
         SELECT p.id, p.bundle_hash FROM nbjob.jobs p
          WHERE p.id < j.id AND p.notebook IS NOT DISTINCT FROM j.notebook AND ${lineageSql("p")} = j.lineage
          ORDER BY p.id DESC LIMIT 1) p ON true
      ORDER BY j.id DESC`,
    [limit, options.beforeId ?? null],
  );
  const declarations = await bundleDeclarations(db, jobs.flatMap((job) => (job.previous_bundle ? [job.bundle_hash, job.previous_bundle] : [job.bundle_hash])));
  // Local modules count as changes too, named by their path (`./lib/other.ts`).
  const { rows: files } = await db.query<{ bundle_hash: string; path: string; file_hash: string }>(
    "SELECT bundle_hash, path, file_hash FROM nbjob.bundle_files WHERE bundle_hash = ANY($1::text[])",
    [[...declarations.keys()]],
  );
  for (const file of files) declarations.get(file.bundle_hash)!.set(file.path.startsWith("../") ? file.path : `./${file.path}`, file.file_hash);
  return jobs.map(({ lineage, previous_id, previous_bundle, ...job }) => ({
    job,
    previousId: previous_id,
    lineage: describeLineage(lineage),
    changes: compareDeclarations(previous_bundle ? declarations.get(previous_bundle)! : new Map<string, string>(), declarations.get(job.bundle_hash)!),
  }));
}

async function declarationLog(db: Db, name: string, limit: number, beforeId?: number): Promise<JobLogEntry[]> {
  const path = localModulePath(name);
  // A local module's versions are its file hashes; a declaration's, the snippet that declares it.
  const version = path !== undefined
    ? "(SELECT bf.file_hash FROM nbjob.bundle_files bf WHERE bf.bundle_hash = j.bundle_hash AND bf.path = $1)"
    : `(SELECT bs.snippet_hash FROM nbjob.bundle_snippets bs JOIN nbjob.snippets s ON s.hash = bs.snippet_hash
                WHERE bs.bundle_hash = j.bundle_hash AND s.names @> ARRAY[$1::text]
                ORDER BY bs.position DESC LIMIT 1)`;
  const { rows } = await db.query<{ id: number; lineage: string; decl: string | null; prev: string | null; prev_id: number | null }>(
    `WITH per_job AS (
       SELECT j.id, ${lineageSql("j")} AS lineage, ${version} AS decl
         FROM nbjob.jobs j
     ), compared AS (
       SELECT id, lineage, decl, lag(decl) OVER lineage_order AS prev, lag(id) OVER lineage_order AS prev_id
         FROM per_job WINDOW lineage_order AS (PARTITION BY lineage ORDER BY id)
     )
     SELECT id, lineage, decl, prev, prev_id FROM compared
      WHERE decl IS DISTINCT FROM prev AND ($3::bigint IS NULL OR id < $3)
      ORDER BY id DESC LIMIT $2`,
    [path ?? name, limit, beforeId ?? null],
  );
  const jobs = new Map((await listJobsByIds(db, rows.map((row) => row.id))).map((job) => [job.id, job]));
  return rows.map((row) => ({
    job: jobs.get(row.id)!,
    previousId: row.prev_id,
    lineage: describeLineage(row.lineage),
    changes: [
      row.prev === null
        ? { name, change: "added" as const, to: row.decl! }
        : row.decl === null
          ? { name, change: "removed" as const, from: row.prev }
          : { name, change: "changed" as const, from: row.prev, to: row.decl },
    ],
  }));
}

/** Every distinct version of a declaration (snippets that declare `name`), oldest use first, with the jobs that used each. */
export async function declarationHistory(db: Db, name: string): Promise<DeclarationVersion[]> {
  const path = localModulePath(name);
  if (path !== undefined) return fileHistory(db, name, path);
  const { rows } = await db.query<DbSnippet & { job_ids: number[] | null }>(
    `SELECT s.hash, s.kind, s.names, s.source, s.created_at,
            array_agg(DISTINCT j.id ORDER BY j.id) FILTER (WHERE j.id IS NOT NULL) AS job_ids
       FROM nbjob.snippets s
       LEFT JOIN nbjob.bundle_snippets bs ON bs.snippet_hash = s.hash
       LEFT JOIN nbjob.jobs j ON j.bundle_hash = bs.bundle_hash
      WHERE s.names @> ARRAY[$1::text]
      GROUP BY s.hash
      ORDER BY min(j.id) NULLS LAST, s.created_at`,
    [name],
  );
  return rows.map(({ job_ids, ...snippet }) => ({ snippet, jobIds: job_ids ?? [] }));
}

/** Every distinct version of a local module (by its path from the notebook's folder), as snippet-like versions of kind "file". */
async function fileHistory(db: Db, name: string, path: string): Promise<DeclarationVersion[]> {
  const { rows } = await db.query<{ hash: string; source: string; created_at: Date; job_ids: number[] | null }>(
    `SELECT f.hash, f.content AS source, f.created_at,
            array_agg(DISTINCT j.id ORDER BY j.id) FILTER (WHERE j.id IS NOT NULL) AS job_ids
       FROM nbjob.bundle_files bf
       JOIN nbjob.files f ON f.hash = bf.file_hash
       LEFT JOIN nbjob.jobs j ON j.bundle_hash = bf.bundle_hash
      WHERE bf.path = $1
      GROUP BY f.hash
      ORDER BY min(j.id) NULLS LAST, f.created_at`,
    [path],
  );
  return rows.map(({ job_ids, ...file }) => ({ snippet: { ...file, kind: "file", names: [name] }, jobIds: job_ids ?? [] }));
}

/** A job's code and parameters as plain text, the form `diffJobs` compares. */
export async function jobCodeText(db: Db, job: DbJob): Promise<string> {
  const bundle = await getBundle(db, job.bundle_hash);
  if (!bundle) return `// bundle ${job.bundle_hash} is missing from the store\n`;
  const lines: string[] = ["// parameters"];
  for (const name of Object.keys(bundle.params).sort()) lines.push(`${name} = ${JSON.stringify(bundle.params[name])}`);
  lines.push("", "// entries", ...bundle.entries, "");
  for (const snippet of bundle.snippets) {
    lines.push(`// ${snippet.kind} ${snippet.names.join(", ")}`.trimEnd(), snippet.source.replace(/\n+$/, ""), "");
  }
  // Local modules the snippets import, by path: a change in one shows in the diff like a snippet's.
  for (const file of bundle.files) {
    lines.push(`// file ${file.path}`, file.content.replace(/\n+$/, ""), "");
  }
  // The npm packages the bundle pins, one per line: an upgrade shows as a changed version.
  const packages = pinnedVersions(bundle.source);
  if (packages.length > 0) lines.push("// npm packages", ...packages, "");
  return `${lines.join("\n")}`;
}

/**
 * `name version` for each package a bundle's `// packages:` header line pins (nested ones as
 * `parent > name`), sorted; [] when it pins none. Read here, not through runtime/, which the
 * store must not import; the line's format is runtime/shared/bundle-packages.ts's.
 */
export function pinnedVersions(source: string): string[] {
  const line = source.split("\n", 5).find((l) => l.startsWith("// packages: "));
  if (!line) return [];
  let pins: unknown;
  try {
    pins = JSON.parse(line.slice("// packages: ".length));
  } catch {
    return [];
  }
  if (typeof pins !== "object" || pins === null) return [];
  return Object.entries(pins as Record<string, { version?: unknown }>)
    .map(([place, pin]) => `${place.replace(/^node_modules\//, "").split("/node_modules/").join(" > ")} ${String(pin?.version)}`)
    .sort();
}

/** The unified diff of two jobs' code and parameters ("" when they are the same). */
export async function diffJobs(db: Db, jobA: number, jobB: number): Promise<string> {
  const [a, b] = await Promise.all([requireJob(db, jobA), requireJob(db, jobB)]);
  const [textA, textB] = await Promise.all([jobCodeText(db, a), jobCodeText(db, b)]);
  if (textA === textB) return "";
  const label = (job: DbJob) => `job ${job.id}${job.name ? ` (${job.name})` : ""}`;
  return createTwoFilesPatch(label(a), label(b), textA, textB, `bundle ${a.bundle_hash.slice(0, 12)}`, `bundle ${b.bundle_hash.slice(0, 12)}`);
}

/** The snippet that declares `name` in a job's bundle (the last one, as in the program), for `%nbjob restore JOB NAME`. */
export async function declarationInJob(db: Db, jobId: number, name: string): Promise<DbSnippet | undefined> {
  const job = await requireJob(db, jobId);
  const { rows } = await db.query<DbSnippet>(
    `SELECT s.* FROM nbjob.bundle_snippets bs JOIN nbjob.snippets s ON s.hash = bs.snippet_hash
      WHERE bs.bundle_hash = $1 AND s.names @> ARRAY[$2::text]
      ORDER BY bs.position DESC LIMIT 1`,
    [job.bundle_hash, name],
  );
  return rows[0];
}
