// The versioned record of code: snippets (stored once by the sha256 of their source), bundles
// (a job's program, hash = sha256 of its generated source) and the environments jobs ran in.
import type { Db } from "./db";
import { StoreError } from "./errors";
import { canonicalJson, sha256 } from "./hash";
import { clusterKey, signBundle, verifyBundleSignature } from "./signing";
import { checkStorableJson, checkStorableText } from "./text";
import type { DbBundle, DbEnvironment, DbSnippet, Json, SnippetKind } from "./types";

export interface SnippetInput {
  kind: SnippetKind | string;
  /** Top-level names the source declares (what `history NAME` finds it by). */
  names: string[];
  source: string;
}

export interface BundleInput {
  /** The generated TypeScript of the whole bundle; its sha256 is the bundle's hash. */
  source: string;
  /** Snippets in program order (dependencies first). */
  snippets: (SnippetInput & { collector?: string | null })[];
  params: { [name: string]: Json };
  entries: string[];
  /** Local modules the snippets import (paths relative to the notebook's folder); `source` names each with its hash. */
  files?: { path: string; text: string }[];
}

/** A local module of a bundle: its path relative to the notebook's folder, the sha256 and text. */
export interface BundleFileRow {
  path: string;
  hash: string;
  content: string;
}

/** A bundle with its snippets in program order and its local modules by path. */
export interface BundleWithSnippets extends DbBundle {
  snippets: (DbSnippet & { position: number; collector: string | null })[];
  files: BundleFileRow[];
}

export interface EnvironmentInput {
  node_version: string;
  nbjob_version: string;
  lockfile_hash?: string | null;
  packages?: { [name: string]: string };
  /** Where packages came from (name → origin), when the worker knows: the packages a bundle pins. */
  package_sources?: { [name: string]: string };
}

/**
 * Locks (FOR KEY SHARE, until the caller's transaction ends) the stored rows a write is about to
 * re-use instead of inserting, so garbage collection (cleanup.ts), which skips locked rows, cannot
 * remove one between this write and the job or analysis that refers to it. Taken before the
 * insert: a row being deleted by a collection is waited for and then inserted anew. Key-share
 * locks do not conflict with each other, so writers of the same code never wait for each other.
 */
async function lockStored(db: Db, bundleHash: string | null, snippetHashes: string[], fileHashes: string[] = []): Promise<void> {
  await db.query(
    `SELECT (SELECT count(*) FROM (SELECT 1 FROM nbjob.bundles WHERE hash = $1 FOR KEY SHARE) b),
            (SELECT count(*) FROM (SELECT 1 FROM nbjob.snippets WHERE hash = ANY($2::text[]) FOR KEY SHARE) s),
            (SELECT count(*) FROM (SELECT 1 FROM nbjob.files WHERE hash = ANY($3::text[]) FOR KEY SHARE) f)`,
    [bundleHash, snippetHashes, fileHashes],
  );
}

export function snippetHash(source: string): string {
  return sha256(source);
}

/**
 * Inserts the snippets that are not stored yet, from the parameters $1..$4 that snippetValues
 * gives (hashes, kinds, names, sources): a statement, or a CTE of a larger one.
 */
export const INSERT_SNIPPETS = `INSERT INTO nbjob.snippets (hash, kind, names, source)
       SELECT s.hash, s.kind, ARRAY(SELECT jsonb_array_elements_text(s.names)), s.source
         FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[]) AS s(hash, kind, names, source)
       ON CONFLICT (hash) DO NOTHING`;

/**
 * INSERT_SNIPPETS' parameters $1..$4. Names go in as JSON because unnest() cannot take an array
 * of arrays of different lengths.
 */
export function snippetValues(snippets: readonly SnippetInput[]): [string[], string[], string[], string[]] {
  return [snippets.map((s) => snippetHash(s.source)), snippets.map((s) => s.kind), snippets.map((s) => JSON.stringify(s.names)), snippets.map((s) => s.source)];
}

/** Stores snippets that are not stored yet (one statement); returns their hashes in input order. */
export async function putSnippets(db: Db, snippets: SnippetInput[]): Promise<string[]> {
  snippets.forEach(checkSnippetText);
  const values = snippetValues(snippets);
  const hashes = values[0];
  if (snippets.length === 0) return hashes;
  await lockStored(db, null, hashes);
  await db.query(INSERT_SNIPPETS, values);
  return hashes;
}

/**
 * The bundle row's write when its hash is stored already: a row that differs (altered in the
 * store, or signed with another key, or stored before bundles were signed) is put back as this
 * caller made it and signed with its key; an identical row is left alone. Only a holder of the
 * cluster key stores bundles, so its version is the one to keep.
 */
export const BUNDLE_ON_CONFLICT = `ON CONFLICT (hash) DO UPDATE
         SET source = EXCLUDED.source, params = EXCLUDED.params, entries = EXCLUDED.entries, signature = EXCLUDED.signature
       WHERE (nbjob.bundles.source, nbjob.bundles.params, nbjob.bundles.entries, nbjob.bundles.signature)
             IS DISTINCT FROM (EXCLUDED.source, EXCLUDED.params, EXCLUDED.entries, EXCLUDED.signature)`;

/**
 * Stores a bundle and its snippets (each only if new) in one statement, signed with the cluster
 * key (store/signing.ts); returns its hash. Storing the same bundle again changes nothing.
 */
export async function putBundle(db: Db, bundle: BundleInput): Promise<string> {
  checkBundleText(bundle);
  const hash = sha256(bundle.source);
  const signature = signBundle({ hash, params: bundle.params ?? {}, entries: bundle.entries });
  const snippetHashes = bundle.snippets.map((snippet) => snippetHash(snippet.source));
  const files = bundle.files ?? [];
  await lockStored(db, hash, snippetHashes, files.map((f) => sha256(f.text)));
  // One statement (so one round trip and atomic without a transaction): new snippets, the
  // bundle if new (or put back, see BUNDLE_ON_CONFLICT), and its snippet list if missing.
  await db.query(
    `WITH new_snippets AS (
       ${INSERT_SNIPPETS}
     ), new_bundle AS (
       INSERT INTO nbjob.bundles (hash, source, params, entries, signature) VALUES ($5, $6, $7, $8, $10)
       ${BUNDLE_ON_CONFLICT} RETURNING hash
     ), new_files AS (
       INSERT INTO nbjob.files (hash, content)
       SELECT DISTINCT f.hash, f.content FROM unnest($12::text[], $13::text[]) AS f(hash, content)
       ON CONFLICT (hash) DO NOTHING
     ), new_bundle_files AS (
       INSERT INTO nbjob.bundle_files (bundle_hash, path, file_hash)
       SELECT b.hash, f.path, f.hash FROM new_bundle b, unnest($11::text[], $12::text[]) AS f(path, hash)
       ON CONFLICT DO NOTHING
     )
     INSERT INTO nbjob.bundle_snippets (bundle_hash, position, snippet_hash, collector)
     SELECT b.hash, u.position - 1, u.snippet_hash, u.collector
       FROM new_bundle b, unnest($1::text[], $9::text[]) WITH ORDINALITY AS u(snippet_hash, collector, position)
     ON CONFLICT DO NOTHING`,
    [
      ...snippetValues(bundle.snippets),
      hash, bundle.source, JSON.stringify(bundle.params ?? {}), bundle.entries, bundle.snippets.map((s) => s.collector ?? null), signature,
      files.map((f) => f.path), files.map((f) => sha256(f.text)), files.map((f) => f.text),
    ],
  );
  return hash;
}

/** Refuses (before any SQL) a bundle whose text PostgreSQL cannot store: NUL in a parameter, an entry, the code. */
export function checkBundleText(bundle: BundleInput): void {
  checkStorableJson("params", bundle.params);
  bundle.entries.forEach((entry, i) => checkStorableText(`entries[${i}]`, entry));
  checkStorableText("the bundle's source", bundle.source);
  for (const snippet of bundle.snippets) {
    checkSnippetText(snippet);
    checkStorableText("a SnippetCollector's label", snippet.collector);
  }
}

export function checkSnippetText(snippet: SnippetInput): void {
  checkStorableText(`the source of snippet ${snippet.names.join(", ") || snippet.kind}`, snippet.source);
  snippet.names.forEach((name) => checkStorableText("a declared name", name));
}

export async function getSnippet(db: Db, hash: string): Promise<DbSnippet | undefined> {
  const { rows } = await db.query<DbSnippet>("SELECT * FROM nbjob.snippets WHERE hash = $1", [hash]);
  return rows[0];
}

/** The bundle and its snippets in order, or undefined when no bundle has that hash. */
export async function getBundle(db: Db, hash: string): Promise<BundleWithSnippets | undefined> {
  const { rows } = await db.query<DbBundle>("SELECT * FROM nbjob.bundles WHERE hash = $1", [hash]);
  if (rows.length === 0) return undefined;
  const snippets = await db.query<DbSnippet & { position: number; collector: string | null }>(
    `SELECT s.*, bs.position, bs.collector
       FROM nbjob.bundle_snippets bs JOIN nbjob.snippets s ON s.hash = bs.snippet_hash
      WHERE bs.bundle_hash = $1 ORDER BY bs.position`,
    [hash],
  );
  const files = await db.query<BundleFileRow>(
    `SELECT bf.path, f.hash, f.content FROM nbjob.bundle_files bf JOIN nbjob.files f ON f.hash = bf.file_hash
      WHERE bf.bundle_hash = $1 ORDER BY bf.path`,
    [hash],
  );
  return { ...rows[0], snippets: snippets.rows, files: files.rows };
}

/**
 * Signs a stored bundle with this process's cluster key (`nbjob rerun JOB --sign`): for bundles
 * stored before bundles were signed, or made with another key, that the user vouches for. A
 * bundle whose source no longer hashes to its hash was changed in the store and is refused.
 * Returns whether the signature changed and where the key came from (never the key).
 */
export async function signStoredBundle(db: Db, hash: string): Promise<{ changed: boolean; keyFrom: string }> {
  const key = clusterKey();
  const { rows } = await db.query<DbBundle>("SELECT * FROM nbjob.bundles WHERE hash = $1 FOR UPDATE", [hash]);
  const row = rows[0];
  if (!row) throw new StoreError(`bundle ${hash} is not in the store, so it cannot be signed`);
  const actual = sha256(row.source);
  if (actual !== row.hash) {
    throw new StoreError(`bundle ${hash} was altered in the store (its source now hashes to ${actual}), so it was not signed; create the job again from its notebook`);
  }
  if (verifyBundleSignature(row, row.signature, key)) return { changed: false, keyFrom: key.from };
  await db.query("UPDATE nbjob.bundles SET signature = $2 WHERE hash = $1", [hash, signBundle(row, key)]);
  return { changed: true, keyFrom: key.from };
}

/** Stores an environment once by content; returns its hash (for jobs.environment_hash). */
/** An environment as stored (its fields normalized) and its hash. */
function storedEnvironment(env: EnvironmentInput): { hash: string; values: unknown[] } {
  const normalized = {
    node_version: env.node_version,
    nbjob_version: env.nbjob_version,
    lockfile_hash: env.lockfile_hash ?? null,
    packages: env.packages ?? {},
    // Only when there are some: the environments of bundles that pin no package keep their hash.
    ...(env.package_sources && Object.keys(env.package_sources).length > 0 ? { package_sources: env.package_sources } : {}),
  };
  if (!normalized.node_version || !normalized.nbjob_version) {
    throw new StoreError("an environment needs node_version and nbjob_version (e.g. process.version and the package version)");
  }
  const hash = sha256(canonicalJson(normalized));
  return { hash, values: [hash, normalized.node_version, normalized.nbjob_version, normalized.lockfile_hash, JSON.stringify(normalized.packages), JSON.stringify(normalized.package_sources ?? {})] };
}

const INSERT_ENVIRONMENT = `INSERT INTO nbjob.environments (hash, node_version, nbjob_version, lockfile_hash, packages, package_sources)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING`;

export async function putEnvironment(db: Db, env: EnvironmentInput): Promise<string> {
  const { hash, values } = storedEnvironment(env);
  await db.query(INSERT_ENVIRONMENT, values);
  return hash;
}

/**
 * Links finished jobs to the environments they ran in (a job that has one keeps it), in one
 * transaction. A worker keeps an environment for its lifetime and links later jobs to it, while
 * garbage collection removes environments no job refers to: so each is stored again when it is
 * gone, and held FOR KEY SHARE to the commit, so collection skips it meanwhile (cleanup.ts).
 */
export async function linkJobEnvironments(db: Db, links: ReadonlyMap<number, EnvironmentInput>): Promise<void> {
  const hashes = new Map<number, string>();
  const environments = new Map<string, unknown[]>();
  for (const [jobId, env] of links) {
    const { hash, values } = storedEnvironment(env);
    hashes.set(jobId, hash);
    environments.set(hash, values);
  }
  await db.transaction(async (tx) => {
    // A row collection deleted between our insert (which found it) and our lock (which waited
    // for that delete) is not locked: store it again, and lock again.
    for (let attempt = 1; ; attempt++) {
      for (const values of environments.values()) await tx.query(INSERT_ENVIRONMENT, values);
      const { rowCount } = await tx.query("SELECT 1 FROM nbjob.environments WHERE hash = ANY($1::text[]) FOR KEY SHARE", [[...environments.keys()]]);
      if (rowCount === environments.size) break;
      if (attempt === 5) throw new StoreError("could not store the jobs' environments: garbage collection removed them again each time (5 tries)");
    }
    await tx.query(
      `UPDATE nbjob.jobs j SET environment_hash = l.hash
         FROM unnest($1::bigint[], $2::text[]) AS l(id, hash)
        WHERE j.id = l.id AND j.environment_hash IS NULL`,
      [[...hashes.keys()], [...hashes.values()]],
    );
  });
}

export async function getEnvironment(db: Db, hash: string): Promise<DbEnvironment | undefined> {
  const { rows } = await db.query<DbEnvironment>("SELECT * FROM nbjob.environments WHERE hash = $1", [hash]);
  return rows[0];
}

/** The texts of stored local-module files by hash (hashes not stored are absent from the map). */
export async function getFiles(db: Db, hashes: string[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ hash: string; content: string }>("SELECT hash, content FROM nbjob.files WHERE hash = ANY($1::text[])", [[...new Set(hashes)]]);
  return new Map(rows.map((row) => [row.hash, row.content]));
}
