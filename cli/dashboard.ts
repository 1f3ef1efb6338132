// `nbjob dashboard`: the web app for looking at, comparing and managing jobs (cli/dashboard/:
// server.ts routes, security.ts who may ask, api.ts what each page reads, events.ts live updates
// through LISTEN/NOTIFY, assets/ the page script). Listens on 127.0.0.1 with a token by default.
import type { Command } from "./args";
import { parseCommandArgs, UsageError } from "./args";
import { STORE_FLAGS, STORE_FLAGS_USAGE, storeFromFlags } from "./db";
import { createDashboardServer } from "./dashboard/server";
import { isLoopback, newToken } from "./dashboard/security";
import { announceDashboard } from "../runtime/dashboard-link";

const USAGE = `usage: nbjob dashboard [--port N] [--host H] [--token T | --no-token]

Serves the jobs (filter, sort, page, compare), each job (status, timeline, parameters, result or
error, log, checkpoints, analyses, code, environment), sweeps, the store's space, and the actions
cancel, rerun, resume, tags, note, delete (jobs selected, or all the list's filters match, as
nbjob rm) and gc. Pages update themselves as jobs change. Runs until Ctrl-C.

It prints its address with a token (http://127.0.0.1:8765/?token=…), as Jupyter does: open that
URL; the browser then keeps the token in a cookie. Scripts send it as "Authorization: token T".

options:
  --port N     port (default 8765; 0 picks a free one)
  --host H     address to listen on (default 127.0.0.1). Another address than loopback exposes
               the jobs and their actions to the network: it requires a token.
  --token T    use this token instead of a random one (or set NBJOB_DASHBOARD_TOKEN)
  --no-token   no token (only with a loopback --host): any local user or program may use it
${STORE_FLAGS_USAGE}`;

function parsePort(text: string | undefined): number {
  if (text === undefined) return 8765;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 65535) throw new UsageError(`--port ${text}: expected a whole number from 0 to 65535`);
  return n;
}

async function cmdDashboard(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { ...STORE_FLAGS, port: { type: "string" }, host: { type: "string" }, token: { type: "string" }, "no-token": { type: "boolean" } },
  }, USAGE);
  if (positionals.length > 0) throw new UsageError(`nbjob dashboard takes no arguments (got ${positionals.join(" ")}); ${USAGE.split("\n", 1)[0]}`);
  const port = parsePort(values.port);
  const host = values.host ?? "127.0.0.1";
  const given = values.token ?? process.env.NBJOB_DASHBOARD_TOKEN;
  if (values["no-token"] && given !== undefined) throw new UsageError("--token and --no-token contradict each other; pass one");
  if (values["no-token"] && !isLoopback(host)) throw new UsageError(`--no-token is allowed only on a loopback address; --host ${host} would let anyone on the network cancel and rerun jobs`);
  if (given !== undefined && !/^[\x21-\x7e]{8,200}$/.test(given)) throw new UsageError("--token: expected 8 to 200 visible ASCII characters without spaces");
  const token = values["no-token"] ? undefined : given ?? newToken();
  const store = storeFromFlags(values, { applicationName: "nbjob dashboard", maxConnections: 6 });
  const access = { host, port, token };
  const { server, feed } = createDashboardServer(store, access);
  let withdraw = () => {};
  try {
    // Connect first: a store that cannot be reached is one clear error, before anything listens.
    await store.ready();
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EADDRINUSE") reject(new UsageError(`port ${port} on ${host} is in use (another dashboard?); pass another with --port N, or --port 0 for any free one`));
        else if (err.code === "EACCES") reject(new UsageError(`port ${port} on ${host} needs privileges; pass a port above 1023 with --port N`));
        else if (err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND") reject(new UsageError(`--host ${host}: no such address on this machine`));
        else reject(err);
      });
      server.listen(port, host, () => resolve());
    });
    feed.start();
    const shownHost = host.includes(":") ? `[${host}]` : host;
    console.log(`nbjob dashboard at http://${shownHost}:${access.port}/${token ? `?token=${token}` : ""} ; Ctrl-C stops it`);
    // Notebooks on this machine using the same store link their jobs here (the wildcard is reached on loopback).
    const linkHost = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "[::1]" : shownHost;
    withdraw = announceDashboard(`http://${linkHost}:${access.port}/`, (await store.where()).url);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    return 0;
  } finally {
    withdraw();
    feed.stop();
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
    await store.close();
  }
}

export const command: Command = { summary: "the web dashboard: jobs, a job, compare, sweeps, actions (127.0.0.1, token)", usage: USAGE, run: cmdDashboard };
