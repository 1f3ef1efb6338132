-- Where a job's npm packages came from (issue 14 point 2): package name (`parent > name` for one
-- nested under another) → its origin, e.g. the npm registry into the worker's package cache for
-- the packages a bundle pins. Empty for environments that pin none; their hash is unchanged
-- (the column enters the environment's hash only when it is not empty).
ALTER TABLE nbjob.environments ADD COLUMN package_sources jsonb NOT NULL DEFAULT '{}'::jsonb;
