// The in-notebook dashboard: a table of recent jobs shown with a display id and updated in place
// while jobs are queued or running.
import { inspect } from "node:util";
import { formatLastMetrics, getBundle, lastMetricsOf, listJobs, openStore } from "../store";
import type { DbJobListed, Json, Store } from "../store";
import { display } from "./display";
import type { DisplayHandle } from "./display";
import { holdCell } from "./notebook";
import { runningDashboard } from "./dashboard-link";

export interface DashboardOptions {
  /** How many of the newest jobs to show. Default 20. */
  limit?: number;
  /** How often to refresh while jobs are active (ms). Default 1 000. */
  refreshMs?: number;
  /** How often to look for new jobs while none is active (ms). Default 5 000. */
  idleRefreshMs?: number;
  /** Only jobs with this tag. */
  tag?: string;
}

// The store of the last DBWrapper made in this process (the one a notebook means by default).
let defaultStore: Store | undefined;
const liveDashboards = new Set<Dashboard>();

/** @internal set by DBWrapper's constructor. */
export function setDefaultStore(store: Store): void {
  defaultStore = store;
}

/** @internal the store of the last DBWrapper made in this process, if any (what `%nbjob` magics read). */
export function notebookStore(): Store | undefined {
  return defaultStore;
}

/** @internal a job was created here: dashboards start following again. */
export function jobsChanged(): void {
  for (const dashboard of liveDashboards) dashboard.wake();
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function time(d: Date | null): string {
  if (!d) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function duration(job: DbJobListed, now: number): string {
  if (!job.started_at) return "";
  const ms = (job.finished_at?.getTime() ?? now) - job.started_at.getTime();
  if (ms < 1_000) return `${Math.max(0, ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1_000)} s`;
}

const COLUMNS = ["id", "name", "tags", "status", "worker", "started", "duration", "parameters", "metrics", "result or error"] as const;
const STATUS_COLOURS: Record<string, string> = { queued: "#888", running: "#1a6fd1", done: "#1a7f37", failed: "#c62828", cancelled: "#8a6d00", lost: "#c62828" };

/** A live table of recent jobs; `await dashboard.refresh()` redraws it now, `stop()` stops updating it. */
export class Dashboard {
  /** The table's display, made by the first read (so the first thing shown is the table); undefined until then. */
  private shown?: DisplayHandle;
  /** Resolves once the first table is shown. */
  readonly ready: Promise<void>;
  private readonly params = new Map<string, { [name: string]: Json }>();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private rendering?: Promise<void>;

  /** @internal use nbjob.makeDefaultDashboard() */
  constructor(private readonly store: Store, private readonly options: DashboardOptions = {}) {
    liveDashboards.add(this);
    this.ready = this.refresh().catch((err: Error) => this.showError(err));
    // The cell ends once the table is shown: a headless run keeps the table, not a placeholder.
    holdCell(this.ready);
  }

  /** The table's display handle (its display id), once the first table is shown. */
  get handle(): DisplayHandle | undefined {
    return this.shown;
  }

  private show(bundle: { "text/html"?: string; "text/plain": string }): void {
    if (this.shown) this.shown.update(bundle);
    else this.shown = display(bundle);
  }

  /** Reads the jobs again and redraws the table. */
  async refresh(): Promise<void> {
    this.rendering ??= this.render().finally(() => (this.rendering = undefined));
    return this.rendering;
  }

  /** Stops updating (the table stays as it is). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    liveDashboards.delete(this);
  }

  /** @internal a job was created here: look again soon. */
  wake(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.schedule();
  }

  // As a cell's last expression the dashboard adds nothing: its table is already there.
  [Symbol.for("nbjob.mimeBundle")](): null {
    return null;
  }

  [inspect.custom](): string {
    return `Dashboard (${this.stopped ? "stopped" : "live"}${this.shown ? `, display id ${this.shown.id}` : ", not shown yet"})`;
  }

  private schedule(ms: number = this.options.refreshMs ?? 1_000): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh().catch((err: Error) => this.showError(err));
    }, ms);
    this.timer.unref();
  }

  private showError(err: Error): void {
    this.show({ "text/plain": `nbjob dashboard: cannot read the jobs: ${err.message}` });
  }

  private async paramsOf(bundleHash: string): Promise<{ [name: string]: Json }> {
    let params = this.params.get(bundleHash);
    if (!params) {
      params = (await getBundle(this.store, bundleHash))?.params ?? {};
      this.params.set(bundleHash, params);
    }
    return params;
  }

  private async render(): Promise<void> {
    const jobs = await listJobs(this.store, { limit: this.options.limit ?? 20, tag: this.options.tag });
    const now = Date.now();
    const rows: string[][] = [];
    for (const job of jobs) {
      const params = await this.paramsOf(job.bundle_hash);
      const outcome = job.status === "done" ? job.result_text ?? "" : job.error_name ? `${job.error_name}: ${job.error_message ?? ""}` : "";
      rows.push([
        String(job.id), job.name ?? "", job.tags.join(", "), job.status, job.worker_id ?? job.target_worker ?? "(any)", time(job.started_at), duration(job, now),
        Object.entries(params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" "), formatLastMetrics(lastMetricsOf(job)), outcome.length > 120 ? `${outcome.slice(0, 117)}...` : outcome,
      ]);
    }
    const active = jobs.filter((j) => j.status === "queued" || j.status === "running").length;
    const caption = `nbjob: ${jobs.length} most recent job${jobs.length === 1 ? "" : "s"}${active ? `, ${active} active (updating)` : ""}; at ${time(new Date(now))}`;
    // Each job links to its page when a web dashboard (`nbjob dashboard`) serves this store.
    const web = runningDashboard((await this.store.where()).url);
    const html = [
      `<div class="nbjob-dashboard"><table><caption style="text-align:left">${esc(caption)}</caption>`,
      `<thead><tr>${COLUMNS.map((c) => `<th style="text-align:left">${c}</th>`).join("")}</tr></thead><tbody>`,
      ...rows.map((r) => `<tr>${r.map((v, i) => `<td style="text-align:left${i === 3 ? `;color:${STATUS_COLOURS[v] ?? "inherit"}` : ""}">${i === 0 && web ? `<a href="${esc(`${web}jobs/${v}`)}" target="_blank">${esc(v)}</a>` : esc(v)}</td>`).join("")}</tr>`),
      "</tbody></table></div>",
    ].join("");
    // reduce, not Math.max(...rows): there can be more rows than a call takes arguments.
    const widths = COLUMNS.map((c, i) => Math.min(40, rows.reduce((w, r) => Math.max(w, r[i].length), c.length)));
    const line = (cells: readonly string[]) => cells.map((v, i) => (v.length > widths[i] ? `${v.slice(0, widths[i] - 1)}…` : v.padEnd(widths[i]))).join("  ").trimEnd();
    const text = [caption, line(COLUMNS), ...rows.map(line)].join("\n");
    this.show({ "text/html": html, "text/plain": text });
    // While jobs are active it follows them closely; otherwise it looks now and then for jobs
    // other notebooks start (a job created here wakes it at once).
    if (!this.stopped && !this.timer) this.schedule(active > 0 ? this.options.refreshMs ?? 1_000 : this.options.idleRefreshMs ?? 5_000);
  }
}

/** Shows a live table of recent jobs (id, name, tags, status, worker, started, duration, parameters, last metrics, result or error). */
export function makeDefaultDashboard(options: DashboardOptions = {}): Dashboard {
  defaultStore ??= openStore({ applicationName: "nbjob notebook", maxConnections: 4 });
  return new Dashboard(defaultStore, options);
}
