// The test PostgreSQL's admin side, shared by the test files: statements as the admin user, and
// fresh databases that a test file drops when it ends.
import { randomBytes } from "node:crypto";
import { Client } from "pg";

/** The server the tests use (trust auth); NBJOB_TEST_ADMIN_URL points them elsewhere. */
export const ADMIN_URL = process.env.NBJOB_TEST_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Runs `cb` with a connection as the admin user, closed afterwards. */
export async function admin<T>(cb: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    return await cb(client);
  } finally {
    await client.end();
  }
}

/** The URL of database `name` on the test server. */
export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Empty databases named `nbjob_test_<prefix>_<label>_<pid>_<random>`, all dropped by dropAll(). */
export class TestDatabases {
  private readonly names: string[] = [];

  constructor(private readonly prefix: string) {}

  /** A fresh, empty database; returns its URL. */
  async fresh(label: string): Promise<string> {
    const name = `nbjob_test_${this.prefix}_${label}_${process.pid}_${randomBytes(3).toString("hex")}`;
    await admin((c) => c.query(`CREATE DATABASE ${name}`));
    this.names.push(name);
    return databaseUrl(name);
  }

  /** Drops every database made here (FORCE: a test's leftover connections do not keep one). */
  async dropAll(): Promise<void> {
    const names = this.names.splice(0);
    await admin(async (c) => {
      for (const name of names) await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    });
  }
}
