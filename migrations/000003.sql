-- Log lines PostgreSQL's text type cannot hold as printed (a NUL, a lone UTF-16 surrogate) are
-- stored as a JSON string with `escaped` set, and restored when read (store/text.ts). Older
-- nbjob versions read such a row as its JSON text; every existing row is plain.
ALTER TABLE nbjob.logs ADD COLUMN escaped boolean NOT NULL DEFAULT false;
