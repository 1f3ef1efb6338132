// The versioned record of code: snippets (stored once by the sha256 of their source), bundles
// (a job's program, hash = sha256 of its generated source) and the environments jobs ran in.
import type { Db } from "./db";
import { StoreError } from "./errors";
import { canonicalJson, sha256 } from "./hash";
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
}

/** A bundle with its snippets in program order. */
export interface BundleWithSnippets extends DbBundle {
  snippets: (DbSnippet & { position: number; collector: string | null })[];
}

export interface EnvironmentInput {
  node_version: string;
  nbjob_version: string;
  lockfile_hash?: string | null;
  packages?: { [name: string]: string };
}

/**
 * Locks (FOR KEY SHARE, until the caller's transaction ends) the stored rows a write is about to
 * re-use instead of inserting, so garbage collection (cleanup.ts), which skips locked rows, cannot
 * remove one between this write and the job or analysis that refers to it. Taken before the
 * insert: a row being deleted by a collection is waited for and then inserted anew. Key-share
 * locks do not conflict with each other, so writers of the same code never wait for each other.
 */
async function lockStored(db: Db, bundleHash: string | null, snippetHashes: string[]): Promise<void> {
  await db.query(
    `SELECT (SELECT count(*) FROM (SELECT 1 FROM nbjob.bundles WHERE hash = $1 FOR KEY SHARE) b),
            (SELECT count(*) FROM (SELECT 1 FROM nbjob.snippets WHERE hash = ANY($2::text[]) FOR KEY SHARE) s)`,
    [bundleHash, snippetHashes],
  );
}

export function snippetHash(source: string): string {
  return sha256(source);
}

/** Stores snippets that are not stored yet (one statement); returns their hashes in input order. */
export async function putSnippets(db: Db, snippets: SnippetInput[]): Promise<string[]> {
  const hashes = snippets.map((snippet) => snippetHash(snippet.source));
  if (snippets.length === 0) return hashes;
  await lockStored(db, null, hashes);
  // Names go in as JSON because unnest() cannot take an array of arrays of different lengths.
  await db.query(
    `INSERT INTO nbjob.snippets (hash, kind, names, source)
     SELECT s.hash, s.kind, ARRAY(SELECT jsonb_array_elements_text(s.names)), s.source
       FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[]) AS s(hash, kind, names, source)
     ON CONFLICT (hash) DO NOTHING`,
    [hashes, snippets.map((s) => s.kind), snippets.map((s) => JSON.stringify(s.names)), snippets.map((s) => s.source)],
  );
  return hashes;
}

/**
 * Stores a bundle and its snippets (each only if new) in one statement; returns its hash.
 * Storing the same bundle again changes nothing.
 */
export async function putBundle(db: Db, bundle: BundleInput): Promise<string> {
  const hash = sha256(bundle.source);
  const snippetHashes = bundle.snippets.map((snippet) => snippetHash(snippet.source));
  await lockStored(db, hash, snippetHashes);
  // One statement (so one round trip and atomic without a transaction): new snippets, the
  // bundle if new, and its snippet list only when the bundle row was inserted by us.
  await db.query(
    `WITH new_snippets AS (
       INSERT INTO nbjob.snippets (hash, kind, names, source)
       SELECT s.hash, s.kind, ARRAY(SELECT jsonb_array_elements_text(s.names)), s.source
         FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[]) AS s(hash, kind, names, source)
       ON CONFLICT (hash) DO NOTHING
     ), new_bundle AS (
       INSERT INTO nbjob.bundles (hash, source, params, entries) VALUES ($5, $6, $7, $8)
       ON CONFLICT (hash) DO NOTHING RETURNING hash
     )
     INSERT INTO nbjob.bundle_snippets (bundle_hash, position, snippet_hash, collector)
     SELECT b.hash, u.position - 1, u.snippet_hash, u.collector
       FROM new_bundle b, unnest($1::text[], $9::text[]) WITH ORDINALITY AS u(snippet_hash, collector, position)`,
    [
      snippetHashes, bundle.snippets.map((s) => s.kind), bundle.snippets.map((s) => JSON.stringify(s.names)), bundle.snippets.map((s) => s.source),
      hash, bundle.source, JSON.stringify(bundle.params ?? {}), bundle.entries, bundle.snippets.map((s) => s.collector ?? null),
    ],
  );
  return hash;
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
  return { ...rows[0], snippets: snippets.rows };
}

/** Stores an environment once by content; returns its hash (for jobs.environment_hash). */
export async function putEnvironment(db: Db, env: EnvironmentInput): Promise<string> {
  const normalized = {
    node_version: env.node_version,
    nbjob_version: env.nbjob_version,
    lockfile_hash: env.lockfile_hash ?? null,
    packages: env.packages ?? {},
  };
  if (!normalized.node_version || !normalized.nbjob_version) {
    throw new StoreError("an environment needs node_version and nbjob_version (e.g. process.version and the package version)");
  }
  const hash = sha256(canonicalJson(normalized));
  await db.query(
    `INSERT INTO nbjob.environments (hash, node_version, nbjob_version, lockfile_hash, packages)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING`,
    [hash, normalized.node_version, normalized.nbjob_version, normalized.lockfile_hash, JSON.stringify(normalized.packages)],
  );
  return hash;
}

export async function getEnvironment(db: Db, hash: string): Promise<DbEnvironment | undefined> {
  const { rows } = await db.query<DbEnvironment>("SELECT * FROM nbjob.environments WHERE hash = $1", [hash]);
  return rows[0];
}
