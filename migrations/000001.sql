-- nbjob schema, first version: content-addressed code and values, jobs with their transitions,
-- logs, checkpoints, analyses and workers. Everything lives in the `nbjob` schema so that a
-- database shared with other tools stays readable. (nbjob.migrations is created by the runner.)

-- Code stored once by content: hash = sha256 (hex) of `source`.
CREATE TABLE nbjob.snippets (
  hash        text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
  kind        text NOT NULL,               -- function, class, variable, interface, type, enum, import, cell
  names       text[] NOT NULL DEFAULT '{}', -- the top-level names the source declares
  source      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
-- `nbjob history DECL` and `nbjob log --name DECL`: which snippets declare a name.
CREATE INDEX snippets_names_idx ON nbjob.snippets USING gin (names);

-- One job's program. hash = sha256 of `source`, the generated TypeScript of the whole bundle.
CREATE TABLE nbjob.bundles (
  hash        text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
  source      text NOT NULL,
  params      jsonb NOT NULL DEFAULT '{}',
  entries     text[] NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- The bundle's snippets in program order (dependencies first).
CREATE TABLE nbjob.bundle_snippets (
  bundle_hash  text NOT NULL REFERENCES nbjob.bundles (hash),
  position     integer NOT NULL CHECK (position >= 0),
  snippet_hash text NOT NULL REFERENCES nbjob.snippets (hash),
  collector    text,                       -- the SnippetCollector's label, when it had one
  PRIMARY KEY (bundle_hash, position)
);
CREATE INDEX bundle_snippets_snippet_idx ON nbjob.bundle_snippets (snippet_hash);

-- The environment a job ran in, stored once by content (hash over the canonical JSON).
CREATE TABLE nbjob.environments (
  hash            text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
  node_version    text NOT NULL,
  nbjob_version   text NOT NULL,
  lockfile_hash   text,
  packages        jsonb NOT NULL DEFAULT '{}', -- name -> version
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- A sweep (db.createJobs): the grid it expanded.
CREATE TABLE nbjob.job_groups (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text,
  grid        jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nbjob.jobs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  bundle_hash      text NOT NULL REFERENCES nbjob.bundles (hash),
  name             text,
  tags             text[] NOT NULL DEFAULT '{}',
  status           text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'lost')),
  -- one timestamp per transition: queued, then running, then exactly one terminal status
  queued_at        timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,
  target_worker    text,                   -- the queue: null = any worker may claim it
  worker_id        text,                   -- the worker that claimed it
  host             text,
  pid              integer,
  group_id         bigint REFERENCES nbjob.job_groups (id),
  resumed_from     bigint REFERENCES nbjob.jobs (id),
  resumed_from_checkpoint integer,
  rerun_of         bigint REFERENCES nbjob.jobs (id),
  environment_hash text REFERENCES nbjob.environments (hash),
  result           jsonb,                  -- the runtime's serialized value of the last entry
  result_text      text,                   -- how it prints (util.inspect), for the CLI
  error_name       text,
  error_message    text,
  error_traceback  text[],
  CHECK (status NOT IN ('running', 'done', 'failed') OR started_at IS NOT NULL),
  CHECK ((finished_at IS NULL) = (status IN ('queued', 'running')))
);
-- Claiming: SELECT ... WHERE status = 'queued' AND (target_worker IS NULL OR target_worker = $1)
-- ORDER BY id FOR UPDATE SKIP LOCKED; the queued set is small, so a partial index keeps it cheap.
CREATE INDEX jobs_claim_idx ON nbjob.jobs (target_worker, id) WHERE status = 'queued';
CREATE INDEX jobs_status_idx ON nbjob.jobs (status, id);
CREATE INDEX jobs_tags_idx ON nbjob.jobs USING gin (tags);
CREATE INDEX jobs_name_idx ON nbjob.jobs (name, id) WHERE name IS NOT NULL;
CREATE INDEX jobs_bundle_idx ON nbjob.jobs (bundle_hash);
CREATE INDEX jobs_group_idx ON nbjob.jobs (group_id) WHERE group_id IS NOT NULL;
CREATE INDEX jobs_running_worker_idx ON nbjob.jobs (worker_id) WHERE status = 'running';

-- stdout/stderr, one row per line; `id` keeps the order across batches.
CREATE TABLE nbjob.logs (
  id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id  bigint NOT NULL REFERENCES nbjob.jobs (id) ON DELETE CASCADE,
  stream  text NOT NULL CHECK (stream IN ('stdout', 'stderr')),
  at      timestamptz NOT NULL DEFAULT now(),
  line    text NOT NULL
);
CREATE INDEX logs_job_idx ON nbjob.logs (job_id, id);

-- Values by content. A value (a blob) is an ordered list of chunks; each chunk is stored once by
-- its own sha256, so an unchanged value costs one lookup and a value that changed only in part
-- shares its unchanged chunks. bytea caps one field at 1 GB, chunks keep each far below that.
CREATE TABLE nbjob.chunks (
  hash  text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
  data  bytea NOT NULL
);
-- Serialized values are mostly incompressible numbers; skipping pglz makes large values faster to
-- write and read.
ALTER TABLE nbjob.chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE nbjob.blobs (
  hash        text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
  size        bigint NOT NULL CHECK (size >= 0),
  chunk_count integer NOT NULL CHECK (chunk_count >= 0),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE nbjob.blob_chunks (
  blob_hash   text NOT NULL REFERENCES nbjob.blobs (hash),
  position    integer NOT NULL CHECK (position >= 0),
  chunk_hash  text NOT NULL REFERENCES nbjob.chunks (hash),
  PRIMARY KEY (blob_hash, position)
);

CREATE TABLE nbjob.checkpoints (
  job_id      bigint NOT NULL REFERENCES nbjob.jobs (id) ON DELETE CASCADE,
  idx         integer NOT NULL CHECK (idx >= 0),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, idx)
);
-- One registered variable's value at one checkpoint.
CREATE TABLE nbjob.checkpoint_values (
  job_id      bigint NOT NULL,
  idx         integer NOT NULL,
  name        text NOT NULL,
  blob_hash   text NOT NULL REFERENCES nbjob.blobs (hash),
  PRIMARY KEY (job_id, idx, name),
  FOREIGN KEY (job_id, idx) REFERENCES nbjob.checkpoints (job_id, idx) ON DELETE CASCADE
);

-- An analyzer request: which functions (snippet hashes, in order) over which job.
CREATE TABLE nbjob.analyses (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id          bigint NOT NULL REFERENCES nbjob.jobs (id) ON DELETE CASCADE,
  function_hashes text[] NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX analyses_job_idx ON nbjob.analyses (job_id);
-- What one function returned at one checkpoint: keyed so that it is computed once, whichever
-- analyzer asked for it.
CREATE TABLE nbjob.analysis_rows (
  function_hash  text NOT NULL REFERENCES nbjob.snippets (hash),
  job_id         bigint NOT NULL,
  checkpoint_idx integer NOT NULL,
  value          jsonb,
  error          jsonb,                     -- { name, message, traceback } when it threw
  worker_id      text,
  computed_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, checkpoint_idx, function_hash),
  FOREIGN KEY (job_id, checkpoint_idx) REFERENCES nbjob.checkpoints (job_id, idx) ON DELETE CASCADE
);

CREATE TABLE nbjob.workers (
  id                text PRIMARY KEY,
  host              text NOT NULL,
  pid               integer,
  profile           text NOT NULL DEFAULT 'default',
  started_at        timestamptz NOT NULL DEFAULT now(),
  last_heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_profile_idx ON nbjob.workers (profile, last_heartbeat_at);
