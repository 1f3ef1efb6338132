// Indexes on the number at one params, metrics or result field (`nbjob db index params.lr`,
// db.createIndex): ranges on that field (params.lr < 0.0002) and orders by it (orderBy
// "metrics.loss") then read the index instead of every job row. Why there is no index for every
// key: migrations/000013.sql. Each index holds numberAt(field) (job-query.ts), the expression the
// queries write for an indexed field, is named from a hash of the field and carries the field as
// its comment, which is how queries find it (indexedFields).
//
// DDL takes no parameters, so the field's path is in the statement's text: only after the same
// field grammar as --where accepted it (params and result names of letters, digits, _ and $; a
// metric's name may hold any printable character), and even then each name quoted in the array
// literal, the whole as a quoted literal (escapeLiteral), the index name a quoted identifier.
import { escapeIdentifier, escapeLiteral } from "pg";
import type { Db } from "./db";
import { StoreError } from "./errors";
import { JSON_COLUMNS, JobQueryError, fieldIndexName, fieldRef, numberAt } from "./job-query";

/** An index `nbjob db index` made (or one it left unfinished). */
export interface FieldIndex {
  /** "params.lr"; null when the comment naming the field is missing (a build cut short before it). */
  field: string | null;
  /** The index's name in schema nbjob (jobs_field_<hash>). */
  name: string;
  /** false: being built in another session, or a build that failed (drop it and make it again). */
  valid: boolean;
  bytes: number;
  /** Index scans since statistics were reset: whether queries use it. */
  scans: number;
}

export const INDEXABLE_FIELDS_HELP = "params.NAME, metrics.NAME, result or result.NAME (nested: params.model.width)";

/** The field as an index takes it: "params.lr", "metrics.loss", "result", "result.acc"; anything else is a JobQueryError naming it. */
export function indexableField(text: unknown): { field: string; kind: "params" | "metrics" | "result"; path: string[] } {
  if (typeof text !== "string" || text === "") throw new JobQueryError(`expected a field to index such as params.lr; got ${JSON.stringify(text) ?? String(text)}`);
  const ref = fieldRef(text);
  if (!("path" in ref)) throw new JobQueryError(`${text} is a column of the job, not a params, metrics or result field; an index on a field's number is for ${INDEXABLE_FIELDS_HELP}`);
  return { field: [ref.kind, ...ref.path].join("."), kind: ref.kind, path: ref.path };
}

/**
 * The indexed expression with the path as a literal: `{"model","width"}` (each name quoted, so a
 * name like NULL stays a name, and a metric's "a,b" or "{x}" one element; " and \ escaped).
 */
function indexExpression(kind: "params" | "metrics" | "result", path: string[]): string {
  const column = JSON_COLUMNS[kind];
  if (path.length === 0) return numberAt(column);
  const element = (name: string) => `"${name.replace(/["\\]/g, "\\$&")}"`;
  return numberAt(`(${column} #> ${escapeLiteral(`{${path.map(element).join(",")}}`)}::text[])`);
}

const LIST_SQL = `
  SELECT c.relname AS name, d.description AS field, i.indisvalid AND i.indisready AS valid,
         pg_relation_size(c.oid)::bigint AS bytes, coalesce(s.idx_scan, 0)::bigint AS scans
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
    LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = c.oid
   WHERE i.indrelid = 'nbjob.jobs'::regclass AND c.relname LIKE 'jobs\\_field\\_%'`;

/** Every index on a field's number, by field. */
export async function listFieldIndexes(db: Db): Promise<FieldIndex[]> {
  const { rows } = await db.query<FieldIndex>(`${LIST_SQL} ORDER BY d.description, c.relname`);
  return rows;
}

async function findFieldIndex(db: Db, name: string): Promise<FieldIndex | undefined> {
  const { rows } = await db.query<FieldIndex>(`${LIST_SQL} AND c.relname = $1`, [name]);
  return rows[0];
}

/**
 * Creates the index on `field`'s number (CREATE INDEX CONCURRENTLY: jobs keep being written while
 * it is built), names it by its comment, and updates the table's statistics (ANALYZE gathers the
 * indexed values' distribution, which tells the planner when a range is rare enough to use it).
 * `created: false` when it was already there. Not inside a transaction (PostgreSQL refuses
 * CONCURRENTLY there): pass the store itself.
 */
export async function createFieldIndex(db: Db, text: string): Promise<{ field: string; index: FieldIndex; created: boolean }> {
  const { field, kind, path } = indexableField(text);
  const name = fieldIndexName(field);
  const existing = await findFieldIndex(db, name);
  if (existing && !existing.valid) {
    throw new StoreError(`an index on ${field} (nbjob.${name}) exists but is not usable: it is being built in another session, or a build failed; if none is running, "nbjob db index --drop ${field}" and create it again`);
  }
  if (!existing) {
    try {
      await db.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${escapeIdentifier(name)} ON nbjob.jobs (${indexExpression(kind, path)})`);
    } catch (err) {
      // A failed concurrent build leaves an invalid index behind; it would only cost writes.
      await db.query(`DROP INDEX CONCURRENTLY IF EXISTS nbjob.${escapeIdentifier(name)}`).catch(() => undefined);
      throw new StoreError(`creating the index on ${field} failed: ${(err as Error).message}`, { cause: err });
    }
  }
  if (existing?.field !== field) await db.query(`COMMENT ON INDEX nbjob.${escapeIdentifier(name)} IS ${escapeLiteral(field)}`);
  if (!existing) await db.query("ANALYZE nbjob.jobs");
  const index = await findFieldIndex(db, name);
  if (!index) throw new StoreError(`the index on ${field} (nbjob.${name}) was dropped while it was being made; run the command again`);
  return { field, index, created: !existing };
}

/** Drops the index on `field`'s number (concurrently); false when there was none. */
export async function dropFieldIndex(db: Db, text: string): Promise<{ field: string; dropped: boolean }> {
  const { field } = indexableField(text);
  const name = fieldIndexName(field);
  const existing = await findFieldIndex(db, name);
  if (existing) await db.query(`DROP INDEX CONCURRENTLY IF EXISTS nbjob.${escapeIdentifier(name)}`);
  return { field, dropped: existing !== undefined };
}
