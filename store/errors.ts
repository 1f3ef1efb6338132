// PostgreSQL error codes nbjob reacts to, and the one error class that carries a user-facing
// explanation of what went wrong with the store and what to do about it.

/** SQLSTATE codes (https://www.postgresql.org/docs/current/errcodes-appendix.html) that decide what we do. */
export const PgCode = {
  /** 23505: a racing writer got there first (migrations, content-addressed rows). */
  uniqueViolation: "23505",
  /** 23503: a referenced row (job, bundle, snippet, checkpoint) does not exist. */
  foreignKeyViolation: "23503",
  /** 23514: a CHECK constraint refused the row (bad status, malformed hash). */
  checkViolation: "23514",
  /** 40001 / 40P01: the transaction lost a race; safe to retry. */
  serializationFailure: "40001",
  deadlockDetected: "40P01",
  /** 42P01: a table is missing (schema not migrated). */
  undefinedTable: "42P01",
  /** 42P06 / 42P07: a racing migrator created the schema or table first. */
  duplicateSchema: "42P06",
  duplicateTable: "42P07",
  /** 0A000: not supported; among others "cached plan must not change result type" (a prepared statement's table changed). */
  featureNotSupported: "0A000",
  /** 3D000: the database in the URL does not exist. */
  invalidCatalogName: "3D000",
  /** 28P01 / 28000: the server refused the credentials. */
  invalidPassword: "28P01",
  invalidAuthorization: "28000",
  /** 53100 / 53200: the server's disk or memory is full. */
  diskFull: "53100",
  outOfMemory: "53200",
  /** 58030: an I/O error on the server (ENOSPC on some paths). */
  ioError: "58030",
  /** 57P01-57P03: the server is shutting down or starting. */
  adminShutdown: "57P01",
  crashShutdown: "57P02",
  cannotConnectNow: "57P03",
  /** 53300: max_connections reached. */
  tooManyConnections: "53300",
} as const;

/**
 * A problem with the store explained for the user: the message names the thing, what was
 * expected and what to do. The original error (if any) is kept as `cause`.
 */
export class StoreError extends Error {
  override name = "StoreError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The SQLSTATE of a pg DatabaseError (or undefined for anything else). */
export function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** True for errors that mean "try the same thing again" (lost races, not bad input). */
export function isRetryable(err: unknown): boolean {
  const code = pgCode(err);
  return code === PgCode.serializationFailure || code === PgCode.deadlockDetected;
}

/**
 * Turns a connection or server-side failure into one line for the user. `where` is the
 * database URL with its password redacted.
 */
export function explainDatabaseError(err: unknown, where: string): Error {
  if (err instanceof StoreError) return err;
  const code = pgCode(err);
  const sysCode = (err as NodeJS.ErrnoException | null)?.code;
  const message = (err as Error | null)?.message ?? String(err);
  switch (code ?? sysCode) {
    case "ECONNREFUSED":
      return new StoreError(`cannot reach PostgreSQL at ${where} (connection refused); start the server or point NBJOB_DATABASE_URL at a running one`, { cause: err });
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new StoreError(`cannot reach PostgreSQL at ${where} (unknown host); check the host name in NBJOB_DATABASE_URL`, { cause: err });
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return new StoreError(`cannot reach PostgreSQL at ${where} (${sysCode}); check the host and port in NBJOB_DATABASE_URL and the network`, { cause: err });
    case "ECONNRESET":
      return new StoreError(`PostgreSQL at ${where} closed the connection; check that it is a PostgreSQL server and that it is running`, { cause: err });
    case PgCode.invalidPassword:
    case PgCode.invalidAuthorization:
      return new StoreError(`PostgreSQL at ${where} refused the login (${message}); fix the user or password in NBJOB_DATABASE_URL`, { cause: err });
    case PgCode.invalidCatalogName:
      return new StoreError(`PostgreSQL at ${where}: ${message}; create it (createdb) or fix the database name in NBJOB_DATABASE_URL`, { cause: err });
    case PgCode.diskFull:
      return new StoreError(`PostgreSQL at ${where} has no room left on its disk (${message}); free space on the server's disk and retry; nothing was written`, { cause: err });
    case PgCode.outOfMemory:
      return new StoreError(`PostgreSQL at ${where} ran out of memory (${message}); retry with a smaller value or give the server more memory`, { cause: err });
    case PgCode.tooManyConnections:
      return new StoreError(`PostgreSQL at ${where} has no free connections (${message}); close other clients or raise max_connections`, { cause: err });
    case PgCode.adminShutdown:
    case PgCode.crashShutdown:
    case PgCode.cannotConnectNow:
      return new StoreError(`PostgreSQL at ${where} is shutting down or starting up (${message}); retry in a moment`, { cause: err });
    default:
      if (/timeout/i.test(message) && !code) {
        return new StoreError(`cannot reach PostgreSQL at ${where} (${message}); check the host and port in NBJOB_DATABASE_URL`, { cause: err });
      }
      return err instanceof Error ? err : new Error(message);
  }
}

/**
 * True when `err` says the store cannot be reached right now rather than that it refused what
 * was sent: connection refused, reset or terminated, a timeout, a server shutting down or
 * starting, a full disk or no free connection slot, a lost race. Writing the same thing again later may
 * succeed. Anything else (bad data, a constraint, a closed store) fails the same way every time.
 * Looks through StoreError's `cause` at the original error.
 */
export function isStoreUnreachable(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = pgCode(e);
    if (code !== undefined) {
      // Class 08: connection exception; 57P01-57P03: shutdown or start-up; class 53: no room,
      // memory or connection slot left for now.
      return code.startsWith("08") || code.startsWith("53") || code === PgCode.adminShutdown || code === PgCode.crashShutdown
        || code === PgCode.cannotConnectNow || isRetryable(e);
    }
    const sysCode = (e as NodeJS.ErrnoException).code;
    if (typeof sysCode === "string" && UNREACHABLE_SYSCODES.has(sysCode)) return true;
    if (/Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|Client has encountered a connection error/i.test((e as Error).message ?? "")) return true;
  }
  return false;
}

/**
 * True when `err` says the server's disk has no room: 53100 disk_full, or an I/O error (58030,
 * class 53) whose message is the operating system's "No space left on device" (PostgreSQL
 * reports a failed file extension that way). A write that failed so changed nothing and may
 * succeed once space is freed. Looks through `cause` as isStoreUnreachable does.
 */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = pgCode(e);
    if (code === PgCode.diskFull) return true;
    if (code !== undefined) return (code === PgCode.ioError || code.startsWith("53")) && /no space left on device/i.test((e as Error).message ?? "");
  }
  return false;
}

const UNREACHABLE_SYSCODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ENOTFOUND"]);
