// The one module that owns the connection pool. Everything else borrows a client for a callback
// (`withClient`, `transaction`), so a transaction cannot be left open and a client cannot leak.
import { Pool, types as pgTypes } from "pg";
import type { PoolClient, QueryResult, QueryResultRow, CustomTypesConfig } from "pg";
import { checkDatabaseUrl, databaseUrlFromEnv, nbjobHome, redactUrl } from "./config";
import { explainDatabaseError, isDiskFull, isStoreUnreachable, pgCode, PgCode, StoreError } from "./errors";
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
  /**
   * The embedded store only (disk-reserve.ts): rejects with a disk-full error while nbjob's disk
   * reserve is released for a full disk and no gc has finished since, so that a waiting
   * checkpoint does not take the room meant for recovery and cleanup.
   */
  holdCheckpoints?(): Promise<void>;
  /** The embedded store only: a gc finished; checkpoints may go on and the reserve is made again if there is room. */
  cleanedUp?(): Promise<void>;
  /** The embedded store only: its data directory (undefined for a server by URL), for messages about its disk. */
  embeddedDataDirectory?(): Promise<string | undefined>;
}

/** The current name of each prepared statement (queryPrepared): a new one after its tables changed. */
const preparedGenerations = new Map<string, number>();

/**
 * Runs `text` as a statement prepared on each connection under `name`: PostgreSQL parses and
 * plans it at its first use there, not at every call. For the statements each job runs (its
 * claim, its status changes), whose planning cost as much as running them. One text per name.
 *
 * A migration applied while this process runs (by a newer notebook, `nbjob db migrate`) may
 * change what `RETURNING *` returns; PostgreSQL then refuses the prepared statement on every
 * connection that has it ("cached plan must not change result type") until it is prepared again.
 * So the statement gets a new name, prepared afresh, and runs again (once; inside a
 * transaction the error has aborted it, and the caller's retry of the transaction finds the new name).
 */
export async function queryPrepared<R extends QueryResultRow = QueryResultRow>(db: Db, name: string, text: string, values: readonly unknown[]): Promise<QueryResult<R>> {
  const generation = preparedGenerations.get(name) ?? 0;
  const run = (g: number) => db.withClient((client) => client.query<R>({ name: `${name}_${g}`, text, values: values as unknown[] }));
  try {
    return await run(generation);
  } catch (err) {
    if (pgCode(err) !== PgCode.featureNotSupported || !/cached plan/.test((err as Error).message)) throw err;
    if ((preparedGenerations.get(name) ?? 0) === generation) preparedGenerations.set(name, generation + 1);
    return run(preparedGenerations.get(name)!);
  }
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

/** revive(): the server is down for another reason than a full disk; not started again. */
class NotStoppedForSpace extends Error {}

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
  /** The embedded server's URL the pool uses (it changes if a restart had to take another port). */
  private url?: string;
  private reviving?: Promise<void>;
  private lastRevive = 0;
  private reviveError?: string;

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
    let pool = await this.getPool();
    const where = this.location!.url;
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      // The embedded server may have stopped (a PANIC on a full disk): start it again, once.
      if (!isStoreUnreachable(err) || !(await this.revive())) throw explainDatabaseError(err, where);
      try {
        pool = await this.getPool();
        client = await pool.connect();
      } catch (again) {
        throw explainDatabaseError(again, where);
      }
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
      if (this.location?.embedded && isDiskFull(err)) await this.releaseReserve(err);
      throw explainDatabaseError(err, where);
    } finally {
      client.off("error", onError);
      client.release(broken);
    }
  }

  /**
   * The embedded server is not answering: if it stopped because its disk filled (a PANIC, as its
   * log says), start it again; ensureEmbeddedServer releases the disk reserve first so recovery
   * has room. A server stopped on purpose (`nbjob db stop`) is left alone: writers wait for it as
   * before. One attempt at a time, at most one a second; returns whether it was tried and
   * succeeded. A failed start is said on stderr and the caller keeps its own error (a worker
   * retries; its next attempt tries to start the server again).
   */
  private async revive(): Promise<boolean> {
    const home = this.location?.embedded ? this.location.home : undefined;
    if (home === undefined || this.closed) return false;
    if (!this.reviving) {
      if (Date.now() - this.lastRevive < 1_000) return false;
      this.lastRevive = Date.now();
      this.reviving = (async () => {
        const { ensureEmbeddedServer, embeddedLayout, stoppedForSpace } = await import("./embedded");
        if (!stoppedForSpace(embeddedLayout(home))) throw new NotStoppedForSpace();
        const { url } = await ensureEmbeddedServer({ home });
        if (url !== this.url && this.pool && !this.closed) {
          const old = this.pool;
          this.pool = this.newPool(url);
          this.url = url;
          this.location = { url: redactUrl(url), embedded: true, home };
          this.readyPromise = Promise.resolve(this.pool);
          void old.end().catch(() => undefined);
        }
      })().finally(() => {
        this.reviving = undefined;
      });
    }
    try {
      await this.reviving;
      return true;
    } catch (err) {
      if (err instanceof NotStoppedForSpace) return false;
      // Said once per different reason: a worker retries every few seconds.
      const message = (err as Error).message;
      if (message !== this.reviveError) process.stderr.write(`nbjob: could not restart the embedded PostgreSQL: ${message}\n`);
      this.reviveError = message;
      return false;
    }
  }

  /** A write was refused for want of disk space on the embedded server: release the reserve (once; disk-reserve.ts). */
  private async releaseReserve(err: unknown): Promise<void> {
    let reason = (err as Error).message;
    for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
      if (pgCode(e) !== undefined) {
        reason = (e as Error).message;
        break;
      }
    }
    try {
      const { releaseReserveFor, embeddedLayout } = await import("./embedded");
      releaseReserveFor(embeddedLayout(this.location!.home!), reason);
    } catch {
      // Best effort: the caller's disk-full error says what matters.
    }
  }

  async holdCheckpoints(): Promise<void> {
    if (!this.location?.embedded) return;
    const { embeddedDataDir } = await import("./embedded");
    const { checkpointsHeld, formatMiB } = await import("./disk-reserve");
    const dataDir = embeddedDataDir(this.location.home!);
    const hold = checkpointsHeld(dataDir);
    if (!hold.held) return;
    const since = Math.round((Date.now() - Date.parse(hold.released.at)) / 1000);
    // Coded as PostgreSQL's disk_full, so that writers treat it as the full disk it stands for.
    const cause = Object.assign(new Error(`no room for new checkpoints on the disk holding ${dataDir}: ${formatMiB(hold.free)} free, and nbjob's ${formatMiB(hold.released.bytes)} disk reserve was released ${since} s ago for the server to recover and clean up ("nbjob rm <old jobs> && nbjob gc" lets checkpoints go on)`), { code: "53100" });
    throw new StoreError(`the embedded PostgreSQL has no room left on its disk (${cause.message})`, { cause });
  }

  async embeddedDataDirectory(): Promise<string | undefined> {
    if (!this.location?.embedded) return undefined;
    const { embeddedDataDir } = await import("./embedded");
    return embeddedDataDir(this.location.home!);
  }

  async cleanedUp(): Promise<void> {
    if (!this.location?.embedded) return;
    const { embeddedDataDir } = await import("./embedded");
    const { noteCleanedUp, reserveState } = await import("./disk-reserve");
    const dataDir = embeddedDataDir(this.location.home!);
    if (reserveState(dataDir).released) {
      // Recovering from a full disk: a checkpoint lets the server reuse its old WAL segments
      // instead of needing new room for every write until its next scheduled checkpoint.
      await this.query("CHECKPOINT").catch(() => undefined);
    }
    noteCleanedUp(dataDir);
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
    this.url = url;
    const pool = this.newPool(url);
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

  private newPool(url: string): Pool {
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
    return pool;
  }
}

/** A store for `options` (nothing happens until it is first used). */
export function openStore(options: StoreOptions = {}): Store {
  return new Store(options);
}
