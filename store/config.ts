// Where the database is: NBJOB_DATABASE_URL when given, otherwise the embedded server under
// NBJOB_HOME. Also the one place that checks URLs and hides their passwords for printing.
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { StoreError } from "./errors";

/** `$NBJOB_HOME`, default `~/.nbjob`. */
export function nbjobHome(explicit?: string): string {
  const home = explicit ?? process.env.NBJOB_HOME;
  return resolve(home && home.trim() !== "" ? home : join(homedir(), ".nbjob"));
}

/** The URL from the environment, or undefined when the embedded default should be used. */
export function databaseUrlFromEnv(): string | undefined {
  const url = process.env.NBJOB_DATABASE_URL;
  return url && url.trim() !== "" ? url.trim() : undefined;
}

/**
 * Query parameters that carry a secret: libpq's `password` and `sslpassword`, and the usual
 * names of tokens and keys (`token`, `access_token`, `secret`, `apikey`...).
 */
const SECRET_PARAMETER = /pass|pwd|secret|token|api_?key/i;

/**
 * The URL with every secret replaced by `***`: the password of `user:password@` and the value of
 * any secret-looking query parameter (`?password=…`, `&sslpassword=…`, `?token=…`). The one
 * function for showing a URL anywhere: messages, logs, job records, the CLI.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    for (const key of new Set(parsed.searchParams.keys())) if (SECRET_PARAMETER.test(key)) parsed.searchParams.set(key, "***");
    return parsed.toString();
  } catch {
    // Not a URL we can parse: hide anything between "://user:" and "@", and secret parameters.
    return url
      .replace(/(\/\/[^:/@]*:)[^@]*@/, "$1***@")
      .replace(/([?&;][^=&;#]*=)([^&;#]*)/g, (all, key: string) => (SECRET_PARAMETER.test(key) ? `${key}***` : all));
  }
}

/**
 * Checks that `url` is a PostgreSQL URL (postgres:// or postgresql://) before pg sees it, so
 * that a typo is one clear line instead of a driver error.
 */
export function checkDatabaseUrl(url: string, source = "NBJOB_DATABASE_URL"): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreError(`${source} is not a valid URL (${redactUrl(url)}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE`);
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new StoreError(`${source} must start with postgres:// or postgresql://, got ${parsed.protocol}//; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE`);
  }
  if (parsed.port && !/^\d+$/.test(parsed.port)) {
    throw new StoreError(`${source} has a bad port "${parsed.port}"; expected a number such as 5432`);
  }
  if (!parsed.hostname && !parsed.searchParams.get("host")) {
    throw new StoreError(`${source} names no host (${redactUrl(url)}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE`);
  }
  return url;
}
