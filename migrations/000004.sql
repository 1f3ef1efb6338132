-- The lineage of a job: the notebook that created it (its path, as the kernel knows it from
-- Jupyter's JPY_SESSION_NAME), so `nbjob log` and `nbjob history` compare a job with the previous
-- job of the same notebook instead of whichever job came just before it in the whole store.
-- Null when unknown (a script, an older job): those jobs are compared by their collectors.
ALTER TABLE nbjob.jobs ADD COLUMN notebook text;
CREATE INDEX jobs_notebook_idx ON nbjob.jobs (notebook, id) WHERE notebook IS NOT NULL;
