// `nbjob dashboard [--port 8765]`: a small web page on 127.0.0.1 listing recent jobs (the same
// columns as the notebook's dashboard) that refreshes itself, and the same data as JSON at
// /api/jobs. node:http and a few lines of browser script: nothing to install.
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Command } from "./args";
import { parseCommandArgs, UsageError } from "./args";
import { STORE_FLAGS, STORE_FLAGS_USAGE, storeFromFlags } from "./db";
import { getBundle, isJobStatus, JOB_STATUSES, listJobs } from "../store";
import type { DbJobListed, Json, Store } from "../store";

const USAGE = `usage: nbjob dashboard [--port N] [--limit N] [--tag TAG]

Serves a web page on http://127.0.0.1:PORT/ listing the most recent jobs (id, name, tags,
status, worker, started, duration, parameters, result or error); it refreshes itself every
2 s. The same data as JSON: /api/jobs (query: limit, tag, status). Runs until Ctrl-C.

options:
  --port N     port on 127.0.0.1 (default 8765; 0 picks a free one)
  --limit N    how many jobs the page lists (default 50)
  --tag TAG    only jobs with this tag
${STORE_FLAGS_USAGE}`;

const HOST = "127.0.0.1";

/** A job as /api/jobs returns it. */
export interface DashboardJob {
  id: number;
  name: string | null;
  tags: string[];
  status: string;
  worker: string | null;
  queued_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  params: { [name: string]: Json };
  result: string | null;
  error: string | null;
}

function parsePositiveInt(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`${flag} ${text}: expected a whole number from ${min} to ${max}`);
  return n;
}

class JobsSource {
  /** Parameters by bundle hash: bundles never change, so each is read once. */
  private readonly params = new Map<string, { [name: string]: Json }>();

  constructor(private readonly store: Store) {}

  async list(filter: { limit: number; tag?: string; status?: string }): Promise<DashboardJob[]> {
    const rows = await listJobs(this.store, { limit: filter.limit, tag: filter.tag, status: filter.status as DbJobListed["status"] | undefined });
    const now = Date.now();
    return Promise.all(rows.map(async (job) => ({
      id: Number(job.id), name: job.name, tags: job.tags, status: job.status, worker: job.worker_id ?? job.target_worker,
      queued_at: job.queued_at.toISOString(), started_at: job.started_at?.toISOString() ?? null, finished_at: job.finished_at?.toISOString() ?? null,
      duration_ms: job.started_at ? (job.finished_at?.getTime() ?? now) - job.started_at.getTime() : null,
      params: await this.paramsOf(job.bundle_hash),
      result: job.status === "done" ? job.result_text : null,
      error: job.error_name ? `${job.error_name}: ${job.error_message ?? ""}` : null,
    })));
  }

  private async paramsOf(hash: string): Promise<{ [name: string]: Json }> {
    let params = this.params.get(hash);
    if (!params) {
      params = (await getBundle(this.store, hash))?.params ?? {};
      this.params.set(hash, params);
    }
    return params;
  }
}

// The page renders rows with textContent only (job names, results and errors are user data).
const PAGE = (limit: number, tag: string | undefined) => `<!doctype html>
<html><head><meta charset="utf-8"><title>nbjob dashboard</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }
td.result { max-width: 40em; overflow-wrap: anywhere; } #note { color: #666; }
.queued { color: #888 } .running { color: #1a6fd1 } .done { color: #1a7f37 } .failed, .lost { color: #c62828 } .cancelled { color: #8a6d00 }
</style></head>
<body><h1>nbjob jobs</h1><p id="note">loading…</p>
<table><thead><tr><th>id</th><th>name</th><th>tags</th><th>status</th><th>worker</th><th>started</th><th>duration</th><th>parameters</th><th>result or error</th></tr></thead><tbody id="jobs"></tbody></table>
<script>
const query = ${JSON.stringify(`?limit=${limit}${tag ? `&tag=${encodeURIComponent(tag)}` : ""}`)};
const when = (iso) => iso ? new Date(iso).toLocaleString() : "";
const took = (ms) => ms === null ? "" : ms < 1000 ? ms + " ms" : ms < 60000 ? (ms / 1000).toFixed(1) + " s" : Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
async function refresh() {
  try {
    const response = await fetch("/api/jobs" + query);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error);
    const rows = body.jobs.map((j) => {
      const tr = document.createElement("tr");
      const cells = [j.id, j.name ?? "", j.tags.join(", "), j.status, j.worker ?? "(any)", when(j.started_at), took(j.duration_ms),
        Object.entries(j.params).map(([k, v]) => k + "=" + JSON.stringify(v)).join(" "), j.result ?? j.error ?? ""];
      cells.forEach((value, i) => {
        const td = document.createElement("td");
        td.textContent = String(value);
        if (i === 3) td.className = j.status;
        if (i === 8) td.className = "result";
        tr.appendChild(td);
      });
      return tr;
    });
    document.getElementById("jobs").replaceChildren(...rows);
    document.getElementById("note").textContent = body.jobs.length + " most recent jobs; updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("note").textContent = "cannot read the jobs: " + err.message + " (retrying)";
  }
}
refresh();
setInterval(refresh, 2000);
</script></body></html>
`;

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { "content-type": `${type}; charset=utf-8`, "cache-control": "no-store", "x-content-type-options": "nosniff" });
  res.end(body);
}

async function handle(req: IncomingMessage, res: ServerResponse, source: JobsSource, defaults: { limit: number; tag?: string }): Promise<void> {
  const url = new URL(req.url ?? "/", `http://${HOST}`);
  if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "application/json", JSON.stringify({ error: `${req.method} is not supported; the dashboard only reads` }));
  if (url.pathname === "/") return send(res, 200, "text/html", PAGE(defaults.limit, defaults.tag));
  if (url.pathname === "/api/jobs") {
    const limitText = url.searchParams.get("limit");
    const limit = limitText === null ? defaults.limit : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) return send(res, 400, "application/json", JSON.stringify({ error: `limit=${limitText}: expected a whole number from 1 to 10000` }));
    const status = url.searchParams.get("status") ?? undefined;
    if (status !== undefined && !isJobStatus(status)) return send(res, 400, "application/json", JSON.stringify({ error: `status=${status}: expected one of ${JOB_STATUSES.join(", ")}` }));
    const tag = url.searchParams.get("tag") ?? defaults.tag;
    try {
      const jobs = await source.list({ limit, tag, status });
      return send(res, 200, "application/json", JSON.stringify({ jobs }));
    } catch (err) {
      return send(res, 503, "application/json", JSON.stringify({ error: (err as Error).message }));
    }
  }
  return send(res, 404, "application/json", JSON.stringify({ error: `nothing at ${url.pathname}; the page is at / and the data at /api/jobs` }));
}

async function cmdDashboard(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { ...STORE_FLAGS, port: { type: "string" }, limit: { type: "string" }, tag: { type: "string" } },
  }, USAGE);
  if (positionals.length > 0) throw new UsageError(`nbjob dashboard takes no arguments (got ${positionals.join(" ")}); ${USAGE.split("\n", 1)[0]}`);
  const port = parsePositiveInt("--port", values.port, 8765, 0, 65535);
  const limit = parsePositiveInt("--limit", values.limit, 50, 1, 10_000);
  const store = storeFromFlags(values);
  const source = new JobsSource(store);
  const server = createServer((req, res) => {
    handle(req, res, source, { limit, tag: values.tag }).catch((err: Error) => send(res, 500, "application/json", JSON.stringify({ error: err.message })));
  });
  try {
    // Connect first: a store that cannot be reached is one clear error, before anything listens.
    await store.ready();
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EADDRINUSE") reject(new UsageError(`port ${port} on ${HOST} is in use (another dashboard?); pass another with --port N, or --port 0 for any free one`));
        else if (err.code === "EACCES") reject(new UsageError(`port ${port} on ${HOST} needs privileges; pass a port above 1023 with --port N`));
        else reject(err);
      });
      server.listen(port, HOST, () => resolve());
    });
    const address = server.address();
    const actual = typeof address === "object" && address ? address.port : port;
    console.log(`nbjob dashboard at http://${HOST}:${actual}/ (JSON at /api/jobs); Ctrl-C stops it`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    return 0;
  } finally {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
    await store.close();
  }
}

export const command: Command = { summary: "a web page of recent jobs on 127.0.0.1 that updates itself", usage: USAGE, run: cmdDashboard };
