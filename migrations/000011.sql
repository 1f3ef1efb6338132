-- A random search (issue 19 point 4): the sweep's group keeps what its values were drawn from,
-- { "spec": { "lr": { "logUniform": [0.0001, 0.1] }, "layers": [1, 2, 3] }, "count": 20, "seed": 7 },
-- so the draws can be made again and `nbjob group ID` shows them. NULL: a grid only.
ALTER TABLE nbjob.job_groups ADD COLUMN sample jsonb;
