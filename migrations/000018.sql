-- A worker's claim (queued -> running) commits without its notification. PostgreSQL lets one
-- notifying transaction commit at a time: it takes a database-wide lock before the commit and
-- holds it until the commit is flushed. Claims (committed without waiting for the flush) queued
-- there behind other workers' final writes (flushed): with 2 workers a claim took 2.4 ms against
-- 1.3 ms without the notification, and claims are the chain a sweep's throughput hangs on. A
-- claim sets nbjob.quiet_jobs_changed for its own transaction, and migration 000016's update
-- trigger now skips such a statement; the worker then notifies the ids it claimed in a
-- transaction of its own that writes nothing (store/queue.ts, announceClaims).
DROP TRIGGER jobs_updated_notify ON nbjob.jobs;
CREATE TRIGGER jobs_updated_notify AFTER UPDATE ON nbjob.jobs
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
  WHEN (current_setting('nbjob.quiet_jobs_changed', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION nbjob.notify_jobs_changed();
