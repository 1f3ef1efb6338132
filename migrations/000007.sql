-- Fencing (issue 16): each time a job is marked running (claimed from the queue, or started by a
-- direct view over the comm) it gets a new claim number from one sequence, in the same
-- statement. A worker's writes for the job (log lines, checkpoints, its final status) name the
-- claim they were made under and are refused unless the job is still running under it; so a
-- worker that was presumed dead (its job marked lost, cancelled, or resumed as a new job) and
-- comes back cannot write over what happened since.
CREATE SEQUENCE nbjob.job_claims;
ALTER TABLE nbjob.jobs ADD COLUMN claim bigint;
