// `nbjob db migrate | status | start | stop | destroy`: the schema and the embedded PostgreSQL server. Also
// how every CLI command opens the store (flag > NBJOB_DATABASE_URL > the embedded default).
import type { Command } from "./args";
import { actionError, oneLineUsageError, parseCommandArgs, UsageError } from "./args";
import {
  openStore, databaseUrlFromEnv, nbjobHome, redactUrl, schemaStatus, ensureEmbeddedServer, embeddedServerStatus,
  stopEmbeddedServer, destroyEmbeddedServer, embeddedServerFiles, embeddedLayout, dataPlace, describeDataPlace, describeDiskReserve, JOB_STATUSES,
} from "../store";
import type { Store, StoreOptions } from "../store";

/** The options every command that reads the store accepts. */
export const STORE_FLAGS = {
  "database-url": { type: "string" },
  home: { type: "string" },
} as const;

export const STORE_FLAGS_USAGE = `  --database-url URL  PostgreSQL to use (default: $NBJOB_DATABASE_URL, else the embedded server)
  --home DIR          NBJOB_HOME of the embedded server (default: $NBJOB_HOME, else ~/.nbjob)`;

/** Opens the store the flags point at; callers close it in `finally`. */
export function storeFromFlags(flags: { "database-url"?: string; home?: string }, options: StoreOptions = {}): Store {
  return openStore({ url: flags["database-url"], home: flags.home, applicationName: "nbjob cli", maxConnections: 2, ...options });
}

/** Runs `body` with a store and always closes it, so the CLI process can exit. */
export async function withCliStore<T>(flags: { "database-url"?: string; home?: string }, body: (store: Store) => Promise<T>, options: StoreOptions = {}): Promise<T> {
  const store = storeFromFlags(flags, options);
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

const DB_ACTIONS = ["migrate", "status", "start", "stop", "destroy", "dump", "restore", "retention", "index"] as const;

const USAGE = `usage: nbjob db migrate | status | start | stop | destroy --yes | dump FILE | restore FILE | retention [options] | index FIELD | index --list | index --drop FIELD

  migrate   apply the schema migrations this nbjob ships (also done on first use)
  status    where the database is, whether the embedded server runs, the schema version
  start     initialise and start the embedded PostgreSQL (detached; it keeps running)
  stop      stop the embedded PostgreSQL
  destroy   stop the embedded PostgreSQL and delete it with all its data (every job, log and
            checkpoint), wherever it is: $NBJOB_HOME/postgres, and the directory outside
            NBJOB_HOME that holds the data when the postgres user cannot reach NBJOB_HOME (as root
            with a private parent directory: /var/lib/nbjob/<hash>). Only with --yes.
  dump FILE     every job (logs, checkpoints, results, analyses) and the code and values they
                use, to FILE (JSON lines, one consistent snapshot; jobs may keep running)
  restore FILE  load such a FILE into an empty store of the same schema version
  retention [--checkpoints keep-last N --older-than AGE | --off]
                show or set the checkpoint retention policy "nbjob gc" applies: of jobs that
                ended more than AGE ago (14d) and are not tagged keep, all but the last N
                checkpoints go
  index FIELD   index the number at a params, metrics or result field (params.lr, metrics.loss,
                result, result.acc), so queries with a range on it or an order by it read the index
                instead of every job; built concurrently (jobs keep running). --list shows them,
                --drop FIELD removes one. An index on a metric adds a write to each metrics update.

options:
  --yes               (destroy) really delete
${STORE_FLAGS_USAGE}`;

function embeddedOnly(flags: { "database-url"?: string }, action: string): void {
  const url = flags["database-url"] ?? databaseUrlFromEnv();
  if (url !== undefined) {
    throw new UsageError(`nbjob db ${action} manages only the embedded server, but ${flags["database-url"] ? "--database-url" : "NBJOB_DATABASE_URL"} points at ${redactUrl(url)}; unset it to use the embedded default`);
  }
}

async function migrate(flags: { "database-url"?: string; home?: string }): Promise<number> {
  return withCliStore(flags, async (store) => {
    const applied = await store.migrationsApplied();
    const where = (await store.where()).url;
    const status = await store.withClient((client) => schemaStatus(client));
    if (applied.length === 0) console.log(`schema of ${where} is up to date (migration ${status.latestKnown})`);
    else console.log(`applied migration${applied.length > 1 ? "s" : ""} ${applied.map((id) => String(id).padStart(6, "0")).join(", ")} to ${where}`);
    return 0;
  });
}

async function status(flags: { "database-url"?: string; home?: string }): Promise<number> {
  const url = flags["database-url"] ?? databaseUrlFromEnv();
  if (url === undefined) {
    const home = nbjobHome(flags.home);
    const embedded = await embeddedServerStatus({ home });
    const place = dataPlace(embedded.layout);
    console.log(`database:  embedded PostgreSQL in ${embedded.layout.dir}${place.outside ? `, data in ${describeDataPlace(embedded.layout)}` : ""}`);
    if (!embedded.running) {
      // NBJOB_HOME deleted while the data lived outside it: say where it was left.
      const leftOver = embeddedServerFiles({ home }).filter((path) => path !== embedded.layout.dir);
      if (!embedded.initialised && leftOver.length) console.log(`data:      left behind in ${leftOver.join(", ")} ("nbjob db destroy --yes" removes it)`);
      console.log(`server:    ${embedded.initialised ? "stopped" : "not initialised"} (it starts on first use, or with "nbjob db start")`);
      return 0;
    }
    console.log(`server:    running, pid ${embedded.pid}, ${embedded.redactedUrl}`);
    console.log(`reserve:   ${describeDiskReserve(home)}`);
  } else {
    console.log(`database:  ${redactUrl(url)}`);
  }
  return withCliStore(flags, async (store) => {
    const schema = await store.withClient((client) => schemaStatus(client));
    if (!schema.initialised) {
      console.log(`schema:    none yet (run "nbjob db migrate", or use nbjob once)`);
      return 0;
    }
    const current = schema.applied.length ? schema.applied[schema.applied.length - 1].id : 0;
    const state = current > schema.latestKnown ? `newer than this nbjob (${schema.latestKnown}): upgrade nbjob` : schema.pending.length ? `${schema.pending.length} pending: run "nbjob db migrate"` : "up to date";
    console.log(`schema:    migration ${current}, ${state}`);
    if (current > 0 && schema.pending.length === 0 && current <= schema.latestKnown) {
      const { rows } = await store.query<{ status: string; count: number }>("SELECT status, count(*)::int AS count FROM nbjob.jobs GROUP BY status");
      const counts = new Map(rows.map((row) => [row.status, row.count]));
      const total = rows.reduce((sum, row) => sum + row.count, 0);
      console.log(`jobs:      ${total}${total ? ` (${JOB_STATUSES.filter((s) => counts.has(s)).map((s) => `${counts.get(s)} ${s}`).join(", ")})` : ""}`);
      console.log(await require("./db-size").storeSizeReport(store));
    }
    return 0;
  }, { skipSchemaCheck: true });
}

async function start(flags: { "database-url"?: string; home?: string }): Promise<number> {
  embeddedOnly(flags, "start");
  const home = nbjobHome(flags.home);
  const server = await ensureEmbeddedServer({ home });
  // Bring the schema up to date now rather than in the first notebook.
  await withCliStore(flags, (store) => store.ready());
  console.log(`${server.started ? "started" : "already running:"} embedded PostgreSQL at ${redactUrl(server.url)}; data in ${describeDataPlace(embeddedLayout(home))}`);
  return 0;
}

async function stop(flags: { "database-url"?: string; home?: string }): Promise<number> {
  embeddedOnly(flags, "stop");
  const home = nbjobHome(flags.home);
  const stopped = await stopEmbeddedServer({ home });
  const place = describeDataPlace(embeddedLayout(home));
  console.log(stopped ? `stopped the embedded PostgreSQL; data kept in ${place}` : `the embedded PostgreSQL was not running; data in ${place}`);
  return 0;
}

async function destroy(flags: { "database-url"?: string; home?: string; yes?: boolean }): Promise<number> {
  embeddedOnly(flags, "destroy");
  const home = nbjobHome(flags.home);
  const paths = embeddedServerFiles({ home });
  if (paths.length === 0) {
    console.log(`nothing to destroy: there is no embedded PostgreSQL for NBJOB_HOME ${home}`);
    return 0;
  }
  if (!flags.yes) {
    throw new UsageError(`nbjob db destroy would stop the embedded PostgreSQL and delete ${paths.join(" and ")} with every job, log and checkpoint in it; run "nbjob db destroy --yes" to do it`);
  }
  const { stopped, removed } = await destroyEmbeddedServer({ home });
  console.log(`${stopped ? "stopped the embedded PostgreSQL and " : ""}deleted ${removed.join(" and ")}`);
  return 0;
}

export const command: Command = {
  summary: "database schema and the embedded PostgreSQL server (migrate, status, start, stop, destroy, dump, restore, retention, index)",
  usage: USAGE,
  async run(argv) {
    if (argv[0] === "retention") return require("./db-retention").retentionCommand(argv.slice(1), STORE_FLAGS, withCliStore);
    if (argv[0] === "index") return require("./db-index").indexCommand(argv.slice(1), STORE_FLAGS, withCliStore);
    const { values, positionals } = parseCommandArgs({ args: argv, options: { ...STORE_FLAGS, yes: { type: "boolean" } }, allowPositionals: true, strict: true }, USAGE);
    if (values.yes && positionals[0] !== "destroy") throw oneLineUsageError("db", `--yes is an option of "nbjob db destroy"`);
    if (positionals.length === 0) throw actionError("db", DB_ACTIONS);
    if (positionals[0] === "dump" || positionals[0] === "restore") {
      const action = positionals[0];
      if (positionals.length !== 2) throw oneLineUsageError("db", `nbjob db ${action} takes one FILE, e.g. nbjob db ${action} nbjob-backup.jsonl`);
      return withCliStore(values, (store) => require("./db-dump").dumpOrRestore(action, positionals[1], store));
    }
    if (positionals.length > 1) throw oneLineUsageError("db", `nbjob db takes one action, got "${positionals.join(" ")}"`);
    switch (positionals[0]) {
      case "migrate":
        return migrate(values);
      case "status":
        return status(values);
      case "start":
        return start(values);
      case "stop":
        return stop(values);
      case "destroy":
        return destroy(values);
      default:
        throw actionError("db", DB_ACTIONS, positionals[0]);
    }
  },
};
