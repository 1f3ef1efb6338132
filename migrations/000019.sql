-- The claim reads one index entry per claim, not every job claimed since the last VACUUM.
-- The claim asked for the oldest job that is queued and either for any worker or for this one,
-- in one condition with an OR. PostgreSQL answered it with a bitmap scan of jobs_claim_idx, which
-- returns every entry, dead ones included (a claimed job's entry stays in the index until
-- VACUUM), then sorts: in a sweep each claim read all the jobs claimed before it (0.46 ms a claim
-- after 1,000, and growing), or, with other statistics, walked the primary key past every finished
-- job. Now each kind of job has an index in claim order, and the claim (store/queue.ts) takes the
-- first entry of each: an ordered index scan stops at the first live row and marks the dead
-- entries it passes so that later scans skip them.
CREATE INDEX jobs_claim_any_idx ON nbjob.jobs (id) WHERE status = 'queued' AND target_worker IS NULL;
DROP INDEX nbjob.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON nbjob.jobs (target_worker, id) WHERE status = 'queued' AND target_worker IS NOT NULL;
