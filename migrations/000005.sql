-- Local modules a bundle's snippets import (issue 14): each file stored once by the sha256 of
-- its text, like snippets; a bundle lists its files by path, relative to the notebook's folder
-- (`lib/other.ts`, `../shared/x.ts`). The bundle's source names every path and file hash in its
-- `// files:` line, so the bundle hash (and a signature over it) covers them.
CREATE TABLE nbjob.files (
  hash        text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
  content     text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nbjob.bundle_files (
  bundle_hash text NOT NULL REFERENCES nbjob.bundles (hash),
  path        text NOT NULL CHECK (path <> '' AND path !~ '^/'),
  file_hash   text NOT NULL REFERENCES nbjob.files (hash),
  PRIMARY KEY (bundle_hash, path)
);
CREATE INDEX bundle_files_file_idx ON nbjob.bundle_files (file_hash);
