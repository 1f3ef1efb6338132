-- Bundle authorship: an HMAC-SHA256 (hex) by the cluster key over the bundle's hash, params and
-- entries (store/signing.ts). Workers refuse a bundle without one or with one they cannot
-- reproduce. Bundles stored before this migration have none: `nbjob rerun JOB --sign` signs one.
ALTER TABLE nbjob.bundles ADD COLUMN signature text CHECK (signature ~ '^[0-9a-f]{64}$');
