// Row types of the nbjob schema, one per table, named after it (`DbJob` for nbjob.jobs) with the
// columns' own snake_case names. bigint ids and sizes are JS numbers (safe integers; a larger
// value raises instead of losing digits); timestamps are Dates; jsonb is parsed JSON.
//
// Glossary
//   snippet     one piece of marked code (a declaration or a %%snip cell), stored once by the
//               sha256 of its source
//   bundle      a job's whole program: ordered snippets, parameter values, entry expressions and
//               the generated TypeScript `source` whose sha256 is the bundle's hash
//   blob        a value stored by content (sha256 of its bytes) as an ordered list of chunks
//   checkpoint  the values of a job's registered variables at one moment, by index
//   analysis    functions run against each checkpoint of a job; rows are keyed by (job,
//               checkpoint, function hash) so each is computed once

/** JSON data as stored in jsonb columns. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export const JOB_STATUSES = ["queued", "running", "done", "failed", "cancelled", "lost"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export type SnippetKind = "function" | "class" | "variable" | "interface" | "type" | "enum" | "import" | "cell";

export interface DbSnippet {
  hash: string;
  kind: string;
  names: string[];
  source: string;
  created_at: Date;
}

export interface DbBundle {
  hash: string;
  source: string;
  params: { [name: string]: Json };
  entries: string[];
  /** HMAC-SHA256 (hex) by the cluster key over hash, params and entries (store/signing.ts); null: stored unsigned. */
  signature: string | null;
  created_at: Date;
}

export interface DbBundleSnippet {
  bundle_hash: string;
  position: number;
  snippet_hash: string;
  collector: string | null;
}

export interface DbEnvironment {
  hash: string;
  node_version: string;
  nbjob_version: string;
  lockfile_hash: string | null;
  packages: { [name: string]: string };
  /** name → where it came from (migration 000008); {} when the worker recorded none. */
  package_sources: { [name: string]: string };
  created_at: Date;
}

/** A random search as stored with its group (runtime/random-search.ts draws the values from it). */
export interface DbGroupSample {
  spec: { [name: string]: Json };
  count: number;
  seed: number;
}

export interface DbJobGroup {
  id: number;
  name: string | null;
  grid: { [name: string]: Json };
  /** The random search the sweep drew its values from (migration 000011); null for a grid only. */
  sample: DbGroupSample | null;
  created_at: Date;
}

export interface DbJob {
  id: number;
  bundle_hash: string;
  name: string | null;
  tags: string[];
  status: JobStatus;
  queued_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  target_worker: string | null;
  worker_id: string | null;
  host: string | null;
  pid: number | null;
  /** Set each time the job is marked running (a bigint, as text); the worker's writes must name it (migration 000007). */
  claim: string | null;
  /** The worker stops the job this many ms after it started (failed, TimeoutError); null: no limit (migration 000010). */
  timeout_ms: number | null;
  group_id: number | null;
  resumed_from: number | null;
  resumed_from_checkpoint: number | null;
  rerun_of: number | null;
  /** The notebook that created the job (its path), when known: the job's lineage for `nbjob log`. */
  notebook: string | null;
  environment_hash: string | null;
  /** A free-text note set from the dashboard (migration 000016); absent before it. */
  note?: string | null;
  result: Json | null;
  result_text: string | null;
  error_name: string | null;
  error_message: string | null;
  error_traceback: string[] | null;
  /**
   * The last value of each metric the job logged (migration 000012): name -> number, or array of
   * numbers; NaN and ±Infinity as the strings "NaN", "Infinity", "-Infinity". {} when none.
   */
  last_metrics: { [name: string]: Json };
}

export interface DbLog {
  id: number;
  job_id: number;
  stream: "stdout" | "stderr";
  at: Date;
  line: string;
}

export interface DbChunk {
  hash: string;
  data: Buffer;
}

export interface DbBlob {
  hash: string;
  size: number;
  chunk_count: number;
  created_at: Date;
}

export interface DbBlobChunk {
  blob_hash: string;
  position: number;
  chunk_hash: string;
}

export interface DbCheckpoint {
  job_id: number;
  idx: number;
  created_at: Date;
}

export interface DbCheckpointValue {
  job_id: number;
  idx: number;
  name: string;
  blob_hash: string;
}

export interface DbAnalysis {
  id: number;
  job_id: number;
  function_hashes: string[];
  created_at: Date;
}

export interface DbAnalysisRow {
  function_hash: string;
  job_id: number;
  checkpoint_idx: number;
  value: Json | null;
  error: { name: string; message: string; traceback?: string[] } | null;
  worker_id: string | null;
  computed_at: Date;
}

export interface DbWorker {
  id: string;
  host: string;
  pid: number | null;
  profile: string;
  started_at: Date;
  last_heartbeat_at: Date;
}

export interface DbMigration {
  id: number;
  name: string;
  applied_at: Date;
}
