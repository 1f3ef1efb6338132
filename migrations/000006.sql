-- Deleting jobs and collecting what nothing refers to any more (store/cleanup.ts).

-- A rerun or resumed job keeps its parent's number when the parent is deleted: the link is a
-- record of where it came from (`nbjob show` says "job 5 (deleted)"), not something that must
-- exist, so these two are plain columns from now on.
ALTER TABLE nbjob.jobs DROP CONSTRAINT IF EXISTS jobs_rerun_of_fkey;
ALTER TABLE nbjob.jobs DROP CONSTRAINT IF EXISTS jobs_resumed_from_fkey;

-- Garbage collection leaves alone chunks younger than its grace period: a chunk is uploaded and
-- committed before the blob row that lists it (store/blobs.ts), so a brand-new chunk with no
-- reference yet is normally one being written. Existing rows get the time of this migration
-- (a constant default: no table rewrite).
ALTER TABLE nbjob.chunks ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();

-- "Is anything still referring to this?" for each kind of row garbage collection looks at.
CREATE INDEX checkpoint_values_blob_idx ON nbjob.checkpoint_values (blob_hash);
CREATE INDEX blob_chunks_chunk_idx ON nbjob.blob_chunks (chunk_hash);
CREATE INDEX analysis_rows_function_idx ON nbjob.analysis_rows (function_hash);

-- Store-wide settings, one JSON value per key; "retention": the checkpoint retention policy that
-- garbage collection applies ({ "keepLast": 5, "olderThanMs": 1209600000 }).
CREATE TABLE nbjob.settings (
  key         text PRIMARY KEY,
  value       jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
