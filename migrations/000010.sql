-- A job's time limit (issue 19 point 3): the worker stops a job still running this many ms after
-- it started, and marks it failed with TimeoutError. NULL: no limit. integer because that is
-- also the longest delay a Node timer takes (2^31 - 1 ms, about 24.8 days).
ALTER TABLE nbjob.jobs ADD COLUMN timeout_ms integer CHECK (timeout_ms > 0);
