// Applies migrations/NNNNNN.sql in order, each in its own transaction that first claims its row
// in nbjob.migrations, so two racing migrators collide on the primary key instead of both
// applying it. Refuses a database that belongs to another application or a schema that is newer
// than this code.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClientBase } from "pg";
import { PgCode, pgCode, StoreError } from "./errors";

/** Where the numbered .sql files live (the package's migrations/ folder; this file is in dist/store/). */
export const MIGRATIONS_DIR = join(__dirname, "..", "..", "migrations");

export interface Migration {
  id: number;
  /** File name, e.g. "000001.sql". */
  name: string;
  sql: string;
}

export interface SchemaStatus {
  /** Ids of migrations applied to the database, ascending. */
  applied: { id: number; name: string; applied_at: Date }[];
  /** The highest migration this code knows. */
  latestKnown: number;
  /** Known migrations not yet applied. */
  pending: number[];
  /** False when the database has no nbjob schema yet. */
  initialised: boolean;
}

let cachedMigrations: Migration[] | undefined;

/** The migrations shipped with this nbjob, ascending. */
export function knownMigrations(): Migration[] {
  if (!cachedMigrations) {
    cachedMigrations = readdirSync(MIGRATIONS_DIR)
      .filter((name) => /^\d{6}\.sql$/.test(name))
      .sort()
      .map((name) => ({ id: Number(name.slice(0, 6)), name, sql: readFileSync(join(MIGRATIONS_DIR, name), "utf8") }));
  }
  return cachedMigrations;
}

async function hasMigrationsTable(client: ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ present: boolean }>("SELECT to_regclass('nbjob.migrations') IS NOT NULL AS present");
  return rows[0].present;
}

/** Tables of someone else in a database that has no nbjob schema: a sign it is another application's. */
async function foreignTables(client: ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables
      WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'nbjob')
      ORDER BY 1 LIMIT 4`,
  );
  return rows.map((row) => row.name);
}

/** Reads what is applied, without changing anything. */
export async function schemaStatus(client: ClientBase): Promise<SchemaStatus> {
  const known = knownMigrations();
  const latestKnown = known.length ? known[known.length - 1].id : 0;
  if (!(await hasMigrationsTable(client))) {
    return { applied: [], latestKnown, pending: known.map((m) => m.id), initialised: false };
  }
  const { rows } = await client.query<{ id: number; name: string; applied_at: Date }>("SELECT id, name, applied_at FROM nbjob.migrations ORDER BY id");
  const appliedIds = new Set(rows.map((row) => row.id));
  return { applied: rows, latestKnown, pending: known.filter((m) => !appliedIds.has(m.id)).map((m) => m.id), initialised: true };
}

async function createMigrationsTable(client: ClientBase): Promise<void> {
  try {
    await client.query(
      `CREATE SCHEMA IF NOT EXISTS nbjob;
       CREATE TABLE IF NOT EXISTS nbjob.migrations (
         id integer PRIMARY KEY,
         name text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
  } catch (err) {
    // IF NOT EXISTS is not race-free: a concurrent creator can still make us hit the catalog's
    // unique index. The other one won; the table is there.
    const code = pgCode(err);
    if (code !== PgCode.uniqueViolation && code !== PgCode.duplicateSchema && code !== PgCode.duplicateTable) throw err;
  }
}

/** Applies one migration unless a racing migrator has (or is) applying it. Returns true if we did. */
async function applyMigration(client: ClientBase, migration: Migration): Promise<boolean> {
  await client.query("BEGIN");
  try {
    await client.query("INSERT INTO nbjob.migrations (id, name) VALUES ($1, $2)", [migration.id, migration.name]);
  } catch (err) {
    await client.query("ROLLBACK");
    if (pgCode(err) === PgCode.uniqueViolation) return false;
    throw err;
  }
  try {
    await client.query(migration.sql);
    await client.query("COMMIT");
    return true;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw new StoreError(`migration ${migration.name} failed and was rolled back (${(err as Error).message}); nothing of it was applied`, { cause: err });
  }
}

export interface EnsureSchemaOptions {
  /** Apply pending migrations (true) or only check that none are pending (false). */
  migrate: boolean;
  /** The redacted URL, for messages. */
  where: string;
}

/**
 * Makes sure the database holds the schema this code expects. Returns the ids it applied.
 * Throws a StoreError (and changes nothing) for another application's database or a schema
 * newer than this code.
 */
export async function ensureSchema(client: ClientBase, options: EnsureSchemaOptions): Promise<number[]> {
  const known = knownMigrations();
  const latestKnown = known.length ? known[known.length - 1].id : 0;
  if (!(await hasMigrationsTable(client))) {
    const foreign = await foreignTables(client);
    if (foreign.length > 0) {
      throw new StoreError(
        `the database at ${options.where} holds tables of another application (${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", ..." : ""}) and no nbjob schema; nbjob leaves it untouched: point NBJOB_DATABASE_URL at an empty database (e.g. createdb nbjob)`,
      );
    }
    if (!options.migrate) throw new StoreError(`the database at ${options.where} has no nbjob schema yet; run "nbjob db migrate"`);
    await createMigrationsTable(client);
  }
  const { rows } = await client.query<{ id: number }>("SELECT id FROM nbjob.migrations ORDER BY id");
  const newest = rows.length ? rows[rows.length - 1].id : 0;
  if (newest > latestKnown) {
    throw new StoreError(
      `the database at ${options.where} has nbjob schema version ${newest}, newer than this nbjob knows (${latestKnown}); upgrade nbjob (npm install nbjob@latest) or use another database`,
    );
  }
  const appliedIds = new Set(rows.map((row) => row.id));
  const pending = known.filter((m) => !appliedIds.has(m.id));
  if (pending.length === 0) return [];
  if (!options.migrate) {
    throw new StoreError(`the database at ${options.where} has nbjob schema version ${newest} but this nbjob needs ${latestKnown}; run "nbjob db migrate"`);
  }
  const applied: number[] = [];
  for (const migration of pending) {
    if (await applyMigration(client, migration)) applied.push(migration.id);
  }
  return applied;
}
