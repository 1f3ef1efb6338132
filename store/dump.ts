// Back-up and restore of nbjob's rows as a file of JSON lines (`nbjob db dump FILE` / `restore`).
// The embedded server ships no pg_dump (only initdb, pg_ctl, postgres), and a system pg_dump older
// than the server refuses to run, so nbjob writes its own dump: it needs nothing but a connection,
// works the same for the embedded server and a user's own, and restores into a store of the same
// schema version. (For a user's own server, pg_dump --schema=nbjob is the usual alternative.)
//
// Format: a header line {"nbjob-dump":1,"migrations":[...],"tables":[...]}, then lines
// {"t":TABLE,"rows":[row as to_jsonb, ...]} in foreign-key order, then {"end":true,"rows":N}.
// bytea comes out of to_jsonb as "\x…" hex text and goes back in through bytea's input function.
import { createReadStream, createWriteStream } from "node:fs";
import { once } from "node:events";
import { createInterface } from "node:readline";
import type { Db } from "./db";
import { StoreError } from "./errors";

const FORMAT = 1;
/** Left out: the worker registry is about running processes, and the migrations table is the schema's. */
const SKIPPED = new Set(["migrations", "workers"]);
/** Rows per line (chunks: one, each up to 8 MiB, 16 MiB of hex). */
const ROWS_PER_LINE = 500;

/** nbjob's tables, each after the tables its foreign keys point at. */
async function tablesInOrder(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ table: string; refs: string[] | null }>(
    `SELECT c.relname::text AS table,
            array_agg(DISTINCT r.relname::text) FILTER (WHERE r.relname IS NOT NULL AND r.relname <> c.relname) AS refs
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'
            LEFT JOIN pg_class r ON r.oid = k.confrelid
      WHERE n.nspname = 'nbjob' AND c.relkind = 'r'
      GROUP BY c.relname ORDER BY c.relname`,
  );
  const refs = new Map(rows.map((row) => [row.table, row.refs ?? []]));
  const order: string[] = [];
  const visit = (table: string, path: string[]) => {
    if (order.includes(table)) return;
    if (path.includes(table)) throw new StoreError(`nbjob tables refer to each other in a cycle (${[...path, table].join(" -> ")}); cannot order a dump`);
    for (const ref of refs.get(table) ?? []) visit(ref, [...path, table]);
    order.push(table);
  };
  for (const table of refs.keys()) visit(table, []);
  return order.filter((table) => !SKIPPED.has(table));
}

async function appliedMigrations(db: Db): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>("SELECT id FROM nbjob.migrations ORDER BY id");
  return rows.map((row) => Number(row.id));
}

/**
 * Writes every nbjob row to `file`, from one consistent snapshot (a REPEATABLE READ, READ ONLY
 * transaction: jobs may go on writing meanwhile; their later rows are simply not in the dump).
 */
export async function dumpStore(db: Db, file: string): Promise<{ rows: number; tables: number }> {
  const out = createWriteStream(file, { flags: "wx" });
  await once(out, "open").catch((err: Error) => {
    throw new StoreError(`cannot write the dump to ${file}: ${err.message}${(err as NodeJS.ErrnoException).code === "EEXIST" ? " (it exists; nbjob does not overwrite a file)" : ""}`, { cause: err });
  });
  const write = async (value: unknown) => {
    if (!out.write(`${JSON.stringify(value)}\n`)) await once(out, "drain");
  };
  let total = 0;
  let tableCount = 0;
  try {
    await db.transaction(async (tx) => {
      await tx.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      const tables = await tablesInOrder(tx);
      tableCount = tables.length;
      await write({ "nbjob-dump": FORMAT, migrations: await appliedMigrations(tx), tables, at: new Date().toISOString() });
      for (const table of tables) {
        const perLine = table === "chunks" ? 1 : ROWS_PER_LINE;
        await tx.query(`DECLARE dump_rows NO SCROLL CURSOR FOR SELECT to_jsonb(t) AS r FROM nbjob.${table} t`);
        for (;;) {
          const { rows } = await tx.query<{ r: unknown }>(`FETCH ${perLine} FROM dump_rows`);
          if (rows.length === 0) break;
          total += rows.length;
          await write({ t: table, rows: rows.map((row) => row.r) });
        }
        await tx.query("CLOSE dump_rows");
      }
    });
    await write({ end: true, rows: total });
  } finally {
    out.end();
    await once(out, "close");
  }
  return { rows: total, tables: tableCount };
}

/**
 * Loads a dump into this store, in one transaction. The store must be empty (no jobs, values or
 * code) and at the dump's schema version. Identity counters continue after the restored ids, so
 * new jobs get new numbers.
 */
export async function restoreStore(db: Db, file: string): Promise<{ rows: number; jobs: number }> {
  const input = createReadStream(file);
  await once(input, "open").catch((err: Error) => {
    throw new StoreError(`cannot read the dump ${file}: ${err.message}`, { cause: err });
  });
  const lines = createInterface({ input, crlfDelay: Infinity });
  // Taken now: readline drops lines emitted before an iterator exists, and we await the store first.
  const next = lines[Symbol.asyncIterator]();
  try {
    return await db.transaction(async (tx) => {
      type Header = { "nbjob-dump"?: number; migrations?: number[]; tables?: string[] };
      let header: Header | undefined;
      let rows = 0;
      let ended = false;
      const tables = await tablesInOrder(tx);
      for (let step = await next.next(); !step.done; step = await next.next()) {
        const line = step.value;
        if (line === "") continue;
        let record: { t?: string; rows?: unknown[]; end?: boolean };
        try {
          record = JSON.parse(line);
        } catch {
          throw new StoreError(`${file} is not an nbjob dump (a line is not JSON); "nbjob db dump FILE" makes one`);
        }
        if (!header) {
          header = record as unknown as Header;
          if (header!["nbjob-dump"] !== FORMAT) throw new StoreError(`${file} is not an nbjob dump of format ${FORMAT}; "nbjob db dump FILE" makes one`);
          const here = await appliedMigrations(tx);
          if (JSON.stringify(here) !== JSON.stringify(header!.migrations)) {
            throw new StoreError(`the dump was made at schema migrations ${header!.migrations?.join(", ")}, this store is at ${here.join(", ")}; restore with the nbjob version that made it`);
          }
          const { rows: [{ used }] } = await tx.query<{ used: boolean }>(
            "SELECT EXISTS (SELECT 1 FROM nbjob.jobs) OR EXISTS (SELECT 1 FROM nbjob.snippets) OR EXISTS (SELECT 1 FROM nbjob.chunks) AS used");
          if (used) throw new StoreError(`this store is not empty; restore into a new one (another NBJOB_HOME, or a new database in NBJOB_DATABASE_URL)`);
          continue;
        }
        if (record.end) {
          ended = true;
          if (Number((record as { rows?: number }).rows) !== rows) throw new StoreError(`${file} says it holds ${(record as { rows?: number }).rows} rows but ${rows} were read; the dump is damaged`);
          break;
        }
        if (!record.t || !tables.includes(record.t) || !Array.isArray(record.rows)) throw new StoreError(`${file} has rows for an unknown table "${record.t}"; the dump is damaged or from another nbjob`);
        // Identity columns are GENERATED ALWAYS: the restored ids are kept.
        await tx.query(
          `INSERT INTO nbjob.${record.t} OVERRIDING SYSTEM VALUE SELECT * FROM jsonb_populate_recordset(NULL::nbjob.${record.t}, $1::jsonb)`,
          [JSON.stringify(record.rows)],
        );
        rows += record.rows.length;
      }
      if (!header) throw new StoreError(`${file} is empty; "nbjob db dump FILE" makes a dump`);
      if (!ended) throw new StoreError(`${file} ends early (no end line); the dump is incomplete`);
      const { rows: identities } = await tx.query<{ table: string; column: string }>(
        `SELECT c.relname::text AS table, a.attname::text AS column FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'nbjob' AND a.attidentity <> '' AND NOT a.attisdropped`,
      );
      for (const { table, column } of identities) {
        await tx.query(
          `SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max(${column}) FROM nbjob.${table}), 0) + 1, false)`,
          [`nbjob.${table}`, column],
        );
      }
      // The fencing claims' sequence belongs to no column: continue it past every stored claim, so
      // a new run never gets a claim a restored job already holds.
      await tx.query("SELECT setval('nbjob.job_claims', coalesce((SELECT max(claim) FROM nbjob.jobs), 0) + 1, false)");
      const { rows: [{ jobs }] } = await tx.query<{ jobs: number }>("SELECT count(*)::int AS jobs FROM nbjob.jobs");
      return { rows, jobs };
    });
  } finally {
    lines.close();
    input.destroy();
  }
}
