-- Metrics by step (issue 19 point 1): what `jobtracker.log({ loss, acc }, step?)` records in a
-- job, one row per metric per call, in the order the job logged them (`seq`, counted by the job's
-- run from 0). A value is a number (double precision, so NaN and ±Infinity are kept as such) or
-- an array of numbers. `step_backwards`: the step was smaller than the previous step of the same
-- metric; the row is kept in arrival order and flagged.
CREATE TABLE nbjob.metrics (
  job_id         bigint NOT NULL REFERENCES nbjob.jobs (id) ON DELETE CASCADE,
  seq            bigint NOT NULL CHECK (seq >= 0),
  name           text NOT NULL CHECK (name <> ''),
  step           bigint NOT NULL CHECK (step >= 0),
  value          double precision,
  value_array    double precision[],
  step_backwards boolean NOT NULL DEFAULT false,
  PRIMARY KEY (job_id, seq),
  CHECK ((value IS NULL) <> (value_array IS NULL))
);
-- One metric's series of a job (job.metrics(), plotMetrics, nbjob metrics JOB NAME).
CREATE INDEX metrics_job_name ON nbjob.metrics (job_id, name, seq);

-- The last value of each metric, { "loss": 0.12, "acc": 0.9 } (an array for an array metric,
-- "NaN", "Infinity", "-Infinity" as strings), updated in the same transaction as each batch of
-- rows, so listings show it without reading nbjob.metrics. Also added (for queries) by another
-- migration with this same definition, hence IF NOT EXISTS.
ALTER TABLE nbjob.jobs ADD COLUMN IF NOT EXISTS last_metrics jsonb NOT NULL DEFAULT '{}'::jsonb;
