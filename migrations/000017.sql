-- Metrics across a resume (issue 19 point 1): with each checkpoint, where the job's metric series
-- stood when it was taken. `metric_seq`: how many values the series had (the seq the next value
-- gets; a resumed job's series starts with its predecessor's, so this counts those too);
-- `metric_step`: the step a `jobtracker.log` without one would have got next. A job resumed from
-- the checkpoint starts with copies of the rows below metric_seq and goes on from there
-- (runtime/resume.ts). NULL on checkpoints stored before this migration: such a resume starts its
-- metrics afresh, as before. A racing migrator is stopped by the migrations
-- table's key before it gets here (store/migrate.ts).
ALTER TABLE nbjob.checkpoints
  ADD COLUMN IF NOT EXISTS metric_seq bigint CHECK (metric_seq >= 0),
  ADD COLUMN IF NOT EXISTS metric_step bigint CHECK (metric_step >= 0);
