// Which disk is full. PostgreSQL's disk-full error names a file relative to its data directory
// ("base/16384/16400", or "pg_tblspc/16385/..." for a tablespace); a user needs the directory on
// the server's machine, so it is looked up: a tablespace's location is readable by anyone, the
// data directory only by a superuser (or pg_read_all_settings). Best effort: a server that
// refuses the look-up (or cannot answer it) still gets PostgreSQL's own message.
import type { Db, Queryable } from "./db";
import { pgCode, StoreError } from "./errors";

/** PostgreSQL's own message of a disk-full error (the first error in the `cause` chain with a SQLSTATE), and the server from nbjob's explanation. */
export function diskFullMessage(err: unknown): string {
  let server: string | undefined;
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof StoreError && !server) server = /^PostgreSQL at (\S+)/.exec(e.message)?.[1];
    if (pgCode(e) !== undefined) return `${server ? `PostgreSQL at ${server}: ` : ""}${(e as Error).message}`;
  }
  return (err as Error)?.message ?? String(err);
}

/** "/srv/pg/data" or "/mnt/small (tablespace fast)": the directory holding the file a disk-full error names, if the server says. */
export async function fullDiskLocation(db: Queryable & Pick<Db, "embeddedDataDirectory">, err: unknown): Promise<string | undefined> {
  const file = /"((?:base|global|pg_tblspc|pg_wal)\/[^"]*)"/.exec(diskFullMessage(err))?.[1];
  const tablespace = file ? /^pg_tblspc\/(\d+)\//.exec(file)?.[1] : undefined;
  // The embedded server's data directory is known without asking it (it may be restarting after a PANIC).
  const local = tablespace ? undefined : await db.embeddedDataDirectory?.().catch(() => undefined);
  if (local) return `${local} (the data directory)`;
  if (!file) return undefined;
  try {
    if (tablespace) {
      const { rows } = await db.query<{ spcname: string; location: string }>("SELECT spcname, pg_tablespace_location(oid) AS location FROM pg_tablespace WHERE oid = $1::oid", [tablespace]);
      return rows[0] ? `${rows[0].location} (tablespace ${rows[0].spcname})` : undefined;
    }
    const { rows } = await db.query<{ dir: string | null }>("SELECT current_setting('data_directory', true) AS dir");
    return rows[0]?.dir ? `${rows[0].dir} (the data directory)` : undefined;
  } catch {
    return undefined;
  }
}
