-- A worker's claim (queued -> running) commits without its notification. PostgreSQL lets one
-- notifying transaction commit at a time: it takes a database-wide lock before the commit and
-- holds it until the commit is flushed. Claims (committed without waiting for the flush) queued
-- there behind other workers' final writes (flushed): with 2 workers a claim took 2.4 ms against
-- 1.3 ms without the notification, and claims are the chain a sweep's throughput hangs on. A
-- claim sets nbjob.quiet_jobs_changed for its own transaction; the worker then notifies the ids
-- it claimed in a transaction of its own that writes nothing (store/queue.ts, announceClaims).
CREATE OR REPLACE FUNCTION nbjob.notify_jobs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids text;
BEGIN
  IF current_setting('nbjob.quiet_jobs_changed', true) = 'on' THEN
    RETURN NULL;
  END IF;
  -- A statement changes each row once: its ids are distinct already.
  SELECT CASE WHEN count(*) > 200 THEN '*' ELSE string_agg(id::text, ',') END INTO ids FROM changed;
  IF ids IS NOT NULL THEN
    PERFORM pg_notify('nbjob_jobs_changed', ids);
  END IF;
  RETURN NULL;
END $$;
