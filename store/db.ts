// The one module that owns the connection pool. Everything else borrows a client for a callback
// (`withClient`, `transaction`), so a transaction cannot be left open and a client cannot leak.
import { Pool, types as pgTypes } from "pg";
import type { PoolClient, QueryResult, QueryResultRow, CustomTypesConfig } from "pg";
import { checkDatabaseUrl, databaseUrlFromEnv, nbjobHome, redactUrl } from "./config";
import { explainDatabaseError, StoreError } from "./errors";
import { ensureSchema } from "./migrate";

/** Anything that runs one parameterised statement: the store itself or an open transaction. */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>>;
}

/**
 * What every store function takes. `transaction` on a Db that is already a transaction opens a
 * savepoint, so store functions compose: a caller can put snippets, a bundle and a job in one
 * transaction, and each function is still atomic on its own.
 */
export interface Db extends Queryable {
  /** Borrows one connection for `cb` (e.g. for LISTEN); it is released when `cb` settles. */
  withClient<T>(cb: (client: PoolClient) => Promise<T>): Promise<T>;
  /** Runs `cb` in a transaction: COMMIT when it resolves, ROLLBACK when it throws. */
  transaction<T>(cb: (tx: Db) => Promise<T>): Promise<T>;
}

export interface StoreOptions {
  /** PostgreSQL URL. Default: NBJOB_DATABASE_URL, else the embedded server under `home`. */
  url?: string;
  /** NBJOB_HOME for the embedded server. Default: $NBJOB_HOME, else ~/.nbjob. */
  home?: string;
  /** Apply pending migrations on first use (default true). When false, an old schema is an error. */
  migrate?: boolean;
  /** Skip the schema check entirely (for `nbjob db status` on a database not migrated yet). */
  skipSchemaCheck?: boolean;
  /** Most connections this process opens (default 10). */
  maxConnections?: number;
  /** Shown in pg_stat_activity (default "nbjob"). */
  applicationName?: string;
}

/** Where a store points, safe to print. */
export interface StoreLocation {
  /** The URL with its password replaced by `***`. */
  url: string;
  embedded: boolean;
  /** NBJOB_HOME of the embedded server, when embedded. */
  home?: string;
}

// bigint columns (ids, sizes) come back as JS numbers: job ids are small integers for users.
// A value past 2^53 would silently lose digits, so it is an error instead.
function parseBigint(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new StoreError(`bigint ${text} does not fit a JavaScript number; nbjob ids and sizes must stay below 2^53`);
  return value;
}
const defaultParser = pgTypes.getTypeParser as (oid: number, format?: "text" | "binary") => (text: string) => unknown;
const parseBigintArray = (text: string): number[] => (defaultParser(1016)(text) as string[]).map(parseBigint);
const INT8_OID = 20;
const INT8_ARRAY_OID = 1016;
const storeTypes: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (format !== "binary" && oid === INT8_OID) return parseBigint;
    if (format !== "binary" && oid === INT8_ARRAY_OID) return parseBigintArray;
    return defaultParser(oid, format);
  }) as CustomTypesConfig["getTypeParser"],
};

/** Errors after which a client must not go back to the pool. */
function isConnectionFailure(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === "ECONNRESET" || code === "EPIPE" || code === "ETIMEDOUT" || code === "57P01" || code === "57P02") return true;
  return /Connection terminated|connection error|not queryable/i.test((err as Error | null)?.message ?? "");
}

/** A transaction's view of the store: one client, nested transactions become savepoints. */
class TransactionDb implements Db {
  private savepoints = 0;
  constructor(private readonly client: PoolClient, private readonly where: string) {}

  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.client.query<R>(text, values as unknown[] | undefined).catch((err: unknown) => { throw explainDatabaseError(err, this.where); });
  }

  withClient<T>(cb: (client: PoolClient) => Promise<T>): Promise<T> {
    return cb(this.client);
  }

  async transaction<T>(cb: (tx: Db) => Promise<T>): Promise<T> {
    const name = `nbjob_sp_${++this.savepoints}`;
    await this.client.query(`SAVEPOINT ${name}`);
    try {
      const result = await cb(this);
      await this.client.query(`RELEASE SAVEPOINT ${name}`);
      return result;
    } catch (err) {
      await this.client.query(`ROLLBACK TO SAVEPOINT ${name}`);
      throw err;
    }
  }
}

/**
 * The store handle. Creating one does nothing; the first query resolves the URL (starting the
 * embedded server if that is the default), opens the pool and checks or migrates the schema.
 */
export class Store implements Db {
  private pool?: Pool;
  private readyPromise?: Promise<Pool>;
  private location?: StoreLocation;
  private closed = false;
  private applied: number[] = [];

  constructor(private readonly options: StoreOptions = {}) {}

  /** Connects, starts the embedded server when needed, and brings the schema up to date. */
  async ready(): Promise<void> {
    await this.getPool();
  }

  /** Ids of the migrations this store applied when it connected (empty when the schema was current). */
  async migrationsApplied(): Promise<number[]> {
    await this.getPool();
    return this.applied;
  }

  /** Where this store points (resolves the URL; may start the embedded server). */
  async where(): Promise<StoreLocation> {
    await this.getPool();
    return this.location!;
  }

  async query<R extends QueryResultRow = QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.withClient((client) => client.query<R>(text, values as unknown[] | undefined));
  }

  async withClient<T>(cb: (client: PoolClient) => Promise<T>): Promise<T> {
    return this.borrow(async (client, markBroken) => {
      try {
        return await cb(client);
      } catch (err) {
        if (isConnectionFailure(err)) markBroken(err as Error);
        throw err;
      }
    });
  }

  async transaction<T>(cb: (tx: Db) => Promise<T>): Promise<T> {
    return this.borrow(async (client, markBroken) => {
      const where = this.location!.url;
      try {
        await client.query("BEGIN");
      } catch (err) {
        markBroken(err as Error);
        throw err;
      }
      try {
        const result = await cb(new TransactionDb(client, where));
        await client.query("COMMIT");
        return result;
      } catch (err) {
        try {
          await client.query("ROLLBACK");
        } catch (rollbackError) {
          // The connection is gone (the server rolls back on its own): do not pool this client.
          markBroken(rollbackError as Error);
        }
        throw err;
      }
    });
  }

  /** Checks a client out for `use` and always gives it back (destroyed if it broke). */
  private async borrow<T>(use: (client: PoolClient, markBroken: (err: Error) => void) => Promise<T>): Promise<T> {
    const pool = await this.getPool();
    const where = this.location!.url;
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw explainDatabaseError(err, where);
    }
    let broken: Error | undefined;
    // While a client is checked out the pool no longer listens for its errors; a connection
    // the server ends between two queries (pg_terminate_backend, a restart) would then be an
    // unhandled 'error' event and end the process. Keep it as the reason not to pool the client.
    const onError = (err: Error) => (broken ??= err);
    client.on("error", onError);
    try {
      return await use(client, onError);
    } catch (err) {
      throw explainDatabaseError(err, where);
    } finally {
      client.off("error", onError);
      client.release(broken);
    }
  }

  /** Closes the pool; later queries fail. Does not stop the embedded server (it is shared). */
  async close(): Promise<void> {
    this.closed = true;
    const pool = this.pool;
    this.pool = undefined;
    if (!pool && this.readyPromise) {
      try {
        await (await this.readyPromise).end();
      } catch {
        // ready() failed: there is no pool to close.
      }
      return;
    }
    await pool?.end();
  }

  private getPool(): Promise<Pool> {
    if (this.closed) return Promise.reject(new StoreError("this nbjob store was closed; open a new one"));
    if (!this.readyPromise) {
      this.readyPromise = this.open();
      // A failed start (server down, bad URL) may be fixed by the user: try again next time.
      this.readyPromise.catch(() => { this.readyPromise = undefined; });
    }
    return this.readyPromise;
  }

  private async open(): Promise<Pool> {
    const explicit = this.options.url ?? databaseUrlFromEnv();
    let url: string;
    if (explicit !== undefined) {
      url = checkDatabaseUrl(explicit, this.options.url !== undefined ? "the database URL" : "NBJOB_DATABASE_URL");
      this.location = { url: redactUrl(url), embedded: false };
    } else {
      // Loaded only when used: most processes with a URL never need the embedded server.
      const { ensureEmbeddedServer } = await import("./embedded");
      const home = nbjobHome(this.options.home);
      url = (await ensureEmbeddedServer({ home })).url;
      this.location = { url: redactUrl(url), embedded: true, home };
    }
    const pool = new Pool({
      connectionString: url,
      max: this.options.maxConnections ?? 10,
      application_name: this.options.applicationName ?? "nbjob",
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 10_000,
      // Idle connections do not keep a script alive that forgot close().
      allowExitOnIdle: true,
      types: storeTypes,
    });
    // An idle client losing its server (restart, pg_terminate_backend) must not crash the
    // process; the pool drops it and the next query opens a fresh connection.
    pool.on("error", () => undefined);
    try {
      const client = await pool.connect().catch((err: unknown) => { throw explainDatabaseError(err, this.location!.url); });
      try {
        if (!this.options.skipSchemaCheck) this.applied = await ensureSchema(client, { migrate: this.options.migrate ?? true, where: this.location.url });
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    this.pool = pool;
    return pool;
  }
}

/** A store for `options` (nothing happens until it is first used). */
export function openStore(options: StoreOptions = {}): Store {
  return new Store(options);
}
