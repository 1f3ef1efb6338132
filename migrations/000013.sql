-- Queries by parameter, metric and result (issue 19 point 2): db.jobs({ params, metrics, result,
-- createdAfter, group, orderBy }) and `nbjob jobs --where ... --order ...` (store/job-query.ts).

-- Each metric's last value, {"loss": 0.12} (NaN and Infinity as strings). The metrics branch adds
-- the same column with the same definition; IF NOT EXISTS lets either migration come first.
ALTER TABLE nbjob.jobs ADD COLUMN IF NOT EXISTS last_metrics jsonb NOT NULL DEFAULT '{}'::jsonb;

-- The job's parameter values, copied from its bundle (bundles are immutable: the params are part
-- of the hashed source). Why a copy: a condition on params joined to nbjob.bundles cost 180-340 ms
-- at 100k jobs on the test machine (a nested loop into the bundles' primary key per job row);
-- on the job row itself the same condition is a filter on the row the scan already reads. A
-- trigger fills it, so every way a job row is written (createJob, sweeps, rerun, resume,
-- nbjob db restore) gets it without knowing about it.
ALTER TABLE nbjob.jobs ADD COLUMN params jsonb NOT NULL DEFAULT '{}'::jsonb;
UPDATE nbjob.jobs j SET params = b.params FROM nbjob.bundles b WHERE b.hash = j.bundle_hash AND b.params <> '{}'::jsonb;
CREATE FUNCTION nbjob.jobs_copy_params() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.params := coalesce((SELECT params FROM nbjob.bundles WHERE hash = NEW.bundle_hash), '{}'::jsonb);
  RETURN NEW;
END $$;
CREATE TRIGGER jobs_copy_params BEFORE INSERT OR UPDATE OF bundle_hash ON nbjob.jobs
  FOR EACH ROW EXECUTE FUNCTION nbjob.jobs_copy_params();

-- The result as JSON when it is JSON data (a number, string, boolean, null, array or plain
-- object of these; the worker decodes the stored v8 bytes to check); NULL otherwise, and for jobs
-- that ended before this migration (v8 bytes cannot be read in SQL).
ALTER TABLE nbjob.jobs ADD COLUMN result_json jsonb;

-- Indexes. What PostgreSQL can use for these conditions, measured on 100k jobs (bench/queries.ts):
--  * Ranges (params.lr < 0.01, metrics.loss < 0.1) on keys nobody knows in advance: no index
--    type does that. GIN (jsonb_ops or jsonb_path_ops) serves containment (@>) and jsonpath
--    equality only; an expression index ((params->'lr')) needs the key at CREATE INDEX time. A
--    side table of (field, number, job_id) with a btree does serve any range, but it tripled
--    the rows to write, had to be kept in step with every metrics update, and at 100k jobs was
--    no faster (77 ms vs 46 ms for a full scan of the jobs rows in the same conditions): the
--    planner cannot tell which of two ranges is selective. So ranges are filters on the row.
--  * The default order (newest first) + LIMIT walks the primary key backwards and stops after
--    LIMIT matches: for a condition that matches often it reads a few hundred rows (~1-2 ms);
--    job-query.ts writes a range as jsonb_path_match(params, 'strict $."lr" < $v', ...), which
--    the planner estimates like an ordinary condition and so keeps that plan (a guard written
--    as jsonb_typeof(...) = 'number' was guessed at 0.5 % and made it sort the whole table); it
--    also cost about half of the CASE forms per row. A rare condition reads every row once.
--  * Equality on params (params.optimizer = "adam", in [...]) is written as containment
--    (params @> '{"optimizer": "adam"}'), which this GIN index answers. jsonb_path_ops: smaller
--    and faster than jsonb_ops for @>, and we never ask "has key" (?) of it. Not on
--    last_metrics: it changes at every metrics flush, and an indexed column changing makes each
--    update write every index of the row (no HOT update).
--  * createdAfter / createdBefore: a btree on queued_at (never updated).
CREATE INDEX jobs_params_idx ON nbjob.jobs USING gin (params jsonb_path_ops);
CREATE INDEX jobs_queued_at_idx ON nbjob.jobs (queued_at);
