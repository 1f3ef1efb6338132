-- The web dashboard (issue 15): a free-text note on a job, and notifications that let a
-- dashboard push changes to its pages instead of its pages polling the store.
--   nbjob_jobs_changed: after any INSERT or UPDATE of jobs; payload: the changed ids joined by
--                       commas, or '*' when a statement changed more than 200 rows (payloads are
--                       limited to 8000 bytes).
--   nbjob_logs_appended: after an INSERT of log lines; payload: the jobs' ids, as above.
-- One notification per statement (transition tables), so a batch of log lines costs one.
ALTER TABLE nbjob.jobs ADD COLUMN note text;

CREATE FUNCTION nbjob.notify_jobs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids text;
BEGIN
  -- A statement changes each row once: its ids are distinct already.
  SELECT CASE WHEN count(*) > 200 THEN '*' ELSE string_agg(id::text, ',') END INTO ids FROM changed;
  IF ids IS NOT NULL THEN
    PERFORM pg_notify('nbjob_jobs_changed', ids);
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION nbjob.notify_logs_appended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids text;
BEGIN
  SELECT CASE WHEN count(DISTINCT job_id) > 200 THEN '*' ELSE string_agg(DISTINCT job_id::text, ',') END INTO ids FROM changed;
  IF ids IS NOT NULL THEN
    PERFORM pg_notify('nbjob_logs_appended', ids);
  END IF;
  RETURN NULL;
END $$;

-- A trigger with transition tables takes one event, hence two for jobs.
CREATE TRIGGER jobs_inserted_notify AFTER INSERT ON nbjob.jobs
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION nbjob.notify_jobs_changed();
CREATE TRIGGER jobs_updated_notify AFTER UPDATE ON nbjob.jobs
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION nbjob.notify_jobs_changed();
CREATE TRIGGER logs_appended_notify AFTER INSERT ON nbjob.logs
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION nbjob.notify_logs_appended();
