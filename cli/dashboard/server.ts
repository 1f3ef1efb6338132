// The dashboard's HTTP server: the security checks first (security.ts), then the routes.
//   GET  /                      jobs (query: status, tag, name, worker, from, to, older, param, sort, order, offset)
//   GET  /jobs/ID               one job          GET /compare?ids=1,2,3     GET /groups/ID   (a sweep)
//   GET  /history?name=NAME     a declaration's versions and the jobs that used each (/api/history?name=)
//   GET  /store                 space: size on disk, largest tables, biggest jobs (/api/store); gc
//   GET  /api/jobs, /api/jobs/ID, /api/jobs/ID/logs, /api/jobs/ID/value/{result,error,params?name=}
//   GET  /api/compare?ids=…, /api/groups/ID, /api/events (server-sent events)
//   POST /api/jobs/ID/{cancel,rerun,resume,tags,note,delete}, /api/delete {ids} (the selected jobs),
//   POST /api/delete-matching {filter, dryRun} (the list's filters, as nbjob rm --tag/--status/--older-than), /api/gc
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Store } from "../../store";
import { StoreError, UnknownJobError } from "../../store";
import { BadRequest, comparePage, deleteMatching, deleteSelected, groupPage, historyPage, jobPage, listPage, logPage, parseId, runAction, runGc, storePage, wholeValue } from "./api";
import { asset } from "./assets";
import { ChangeFeed } from "./events";
import { pageHtml } from "./pages";
import type { AccessOptions } from "./security";
import { allowedHosts, checkRequest } from "./security";

/** Scripts only from this server (no inline script runs, whatever a page were to contain); Vega compiles its expressions with Function, hence unsafe-eval. */
const CSP = "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const MAX_BODY_BYTES = 256 * 1024;

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    "content-type": `${type}; charset=utf-8`, "cache-control": "no-store", "x-content-type-options": "nosniff",
    "content-security-policy": CSP, "referrer-policy": "no-referrer", ...extra,
  });
  res.end(body);
}

const json = (res: ServerResponse, status: number, value: unknown) => send(res, status, "application/json", JSON.stringify(value));

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) throw new BadRequest("send the action's body as JSON (content-type: application/json)", 415);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BadRequest(`the body is larger than ${MAX_BODY_BYTES} bytes`, 413);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  const value: unknown = JSON.parse(text);
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new BadRequest("the body must be a JSON object");
  return value as Record<string, unknown>;
}

export interface DashboardServer {
  server: Server;
  feed: ChangeFeed;
}

/** A server not yet listening; `access.port` must be the port it will listen on (for the Host check and the cookie). */
export function createDashboardServer(store: Store, access: AccessOptions): DashboardServer {
  const feed = new ChangeFeed(store);
  let hosts = allowedHosts(access);
  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (res.headersSent) return void res.end();
      if (err instanceof BadRequest) return json(res, err.status, { error: err.message });
      if (err instanceof UnknownJobError) return json(res, 404, { error: err.message });
      if (err instanceof SyntaxError) return json(res, 400, { error: `the body is not JSON: ${err.message}` });
      json(res, err instanceof StoreError ? 503 : 500, { error: err.message });
    });
  });
  server.on("listening", () => {
    const address = server.address();
    if (typeof address === "object" && address) {
      access.port = address.port;
      hosts = allowedHosts(access);
    }
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://dashboard.invalid");
    if (url.pathname === "/favicon.ico") return void res.writeHead(204).end();
    const verdict = checkRequest(req, url, access, hosts);
    if (!verdict.ok) return json(res, verdict.status, { error: verdict.message });
    const path = url.pathname;
    if (req.method === "POST") {
      if (path === "/api/delete") return json(res, 200, await deleteSelected(store, await readJson(req)));
      if (path === "/api/delete-matching") return json(res, 200, await deleteMatching(store, await readJson(req)));
      if (path === "/api/gc") return json(res, 200, await runGc(store, await readJson(req)));
      const action = /^\/api\/jobs\/([^/]+)\/([a-z]+)$/.exec(path);
      if (!action) throw new BadRequest(`nothing to POST at ${path}; actions are /api/jobs/ID/{cancel,rerun,resume,tags,note,delete}, /api/delete, /api/delete-matching and /api/gc`, 404);
      return json(res, 200, await runAction(store, parseId(action[1]), action[2], await readJson(req)));
    }
    if (req.method !== "GET" && req.method !== "HEAD") throw new BadRequest(`${req.method} is not supported: pages are GET, actions POST`, 405);
    // The token came in the URL: keep it in the cookie and show the address without it.
    if (verdict.setCookie && url.searchParams.has("token") && !path.startsWith("/api/")) {
      url.searchParams.delete("token");
      res.writeHead(303, { location: `${path}${url.search}`, "set-cookie": verdict.setCookie, "cache-control": "no-store" });
      return void res.end();
    }
    const extra: Record<string, string> = verdict.setCookie ? { "set-cookie": verdict.setCookie } : {};
    const file = asset(path);
    if (file) return send(res, 200, file.type, file.body, { "cache-control": "max-age=300" });
    if (path === "/") return send(res, 200, "text/html", pageHtml("jobs", { token: access.token, title: "jobs" }), extra);
    if (path === "/compare") return send(res, 200, "text/html", pageHtml("compare", { token: access.token, title: "compare" }), extra);
    if (path === "/history") return send(res, 200, "text/html", pageHtml("history", { token: access.token, title: "history" }), extra);
    if (path === "/api/history") return json(res, 200, await historyPage(store, url.searchParams));
    if (path === "/store") return send(res, 200, "text/html", pageHtml("store", { token: access.token, title: "store" }), extra);
    if (path === "/api/store") return json(res, 200, await storePage(store));
    const jobPath = /^\/jobs\/([^/]+)$/.exec(path);
    if (jobPath) {
      const id = parseId(jobPath[1]);
      return send(res, 200, "text/html", pageHtml("job", { id, token: access.token, title: `job ${id}` }), extra);
    }
    const groupPath = /^\/groups\/([^/]+)$/.exec(path);
    if (groupPath) {
      const id = parseId(groupPath[1], "sweep");
      return send(res, 200, "text/html", pageHtml("group", { id, token: access.token, title: `sweep ${id}` }), extra);
    }
    if (path === "/api/events") return feed.attach(res);
    if (path === "/api/jobs") return json(res, 200, await listPage(store, url.searchParams));
    if (path === "/api/compare") return json(res, 200, await comparePage(store, url.searchParams));
    const apiGroup = /^\/api\/groups\/([^/]+)$/.exec(path);
    if (apiGroup) return json(res, 200, await groupPage(store, parseId(apiGroup[1], "sweep")));
    const apiJob = /^\/api\/jobs\/([^/]+)(?:\/(logs|value\/([a-z]+)))?$/.exec(path);
    if (apiJob) {
      const id = parseId(apiJob[1]);
      if (apiJob[2] === undefined) return json(res, 200, await jobPage(store, id));
      if (apiJob[2] === "logs") return json(res, 200, await logPage(store, id, url.searchParams));
      return send(res, 200, "text/plain", await wholeValue(store, id, apiJob[3], url.searchParams));
    }
    throw new BadRequest(`nothing at ${path}; the jobs are at /`, 404);
  }

  return { server, feed };
}
