// job.plotMetrics(name) and group.plotMetrics(name): a metric's values by step as a line chart
// (Vega-Lite with the SVG fallback, analyzer-plot.ts), one line per job, shown with a display id
// and updated in place while the jobs run: the store is read again for rows logged since the
// last look (by arrival order), until every job has ended.
import { inspect } from "node:util";
import { listJobsByIds, metricNameProblem, readMetrics } from "../store";
import type { JobStatus, Store } from "../store";
import { chartBundle } from "./analyzer-plot";
import type { PlotOptions, PlotSeries } from "./analyzer-plot";
import { display } from "./display";
import type { DisplayHandle } from "./display";

export interface MetricsPlotOptions extends PlotOptions {
  /** How often to look for new values while a job runs (ms). Default 1 000. */
  refreshMs?: number;
  /** Most points drawn per job (a longer series is thinned evenly; its last point is kept). Default 2 000. */
  maxPoints?: number;
}

const FINAL: readonly JobStatus[] = ["done", "failed", "cancelled", "lost"];

interface Followed {
  id: number;
  label: string;
  lastSeq: number;
  steps: number[];
  values: number[];
  /** Values that cannot be drawn: NaN, ±Infinity, arrays. */
  undrawn: number;
  status?: JobStatus;
  /** Ended, and read after that: nothing more will come. */
  complete?: boolean;
}

/** Checks the arguments of plotMetrics; a TypeError names what is wrong. */
export function checkPlotArguments(what: string, name: unknown, options: unknown): void {
  const problem = metricNameProblem(name);
  if (problem) throw new TypeError(`${what}(name): ${problem}; give the name a job logged with jobtracker.log, e.g. "loss"`);
  if (options !== undefined && (typeof options !== "object" || options === null)) throw new TypeError(`${what}(name, options): options must be an object such as { logY: true }; got ${inspect(options)}`);
  const { refreshMs, maxPoints } = (options ?? {}) as MetricsPlotOptions;
  if (refreshMs !== undefined && !(typeof refreshMs === "number" && refreshMs >= 50 && Number.isFinite(refreshMs))) throw new TypeError(`${what}(name, { refreshMs }): refreshMs must be a number of milliseconds, at least 50; got ${inspect(refreshMs)}`);
  if (maxPoints !== undefined && !(Number.isInteger(maxPoints) && maxPoints >= 2)) throw new TypeError(`${what}(name, { maxPoints }): maxPoints must be an integer of at least 2; got ${inspect(maxPoints)}`);
}

/** A live chart of one metric of some jobs; `stop()` stops updating it, `refresh()` reads again now. */
export class MetricsPlot {
  readonly handle: DisplayHandle;
  /** Resolves once the chart shows what the store held when it was made. */
  readonly ready: Promise<void>;
  /** Resolves once every job has ended and the chart shows all its values (or it was stopped). */
  readonly finished: Promise<void>;
  private readonly jobs: Followed[];
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private reading?: Promise<boolean>;
  private endFollowing!: () => void;
  /** How many times the chart was drawn (the first display, then each update). */
  updates = 0;

  /** @internal made by Job.plotMetrics and JobGroup.plotMetrics. */
  constructor(private readonly store: Store, jobs: { id: number; label: string }[], readonly metric: string, private readonly title: string, private readonly options: MetricsPlotOptions = {}) {
    this.jobs = jobs.map((j) => ({ ...j, lastSeq: -1, steps: [], values: [], undrawn: 0 }));
    this.handle = display(this.bundle());
    this.updates = 1;
    this.finished = new Promise((resolve) => (this.endFollowing = resolve));
    this.ready = this.tick();
  }

  /** Reads what is new and redraws if anything changed. */
  async refresh(): Promise<void> {
    this.reading ??= this.read().finally(() => (this.reading = undefined));
    if (await this.reading) {
      this.handle.update(this.bundle());
      this.updates++;
    }
  }

  /** Stops updating (the chart stays as it is). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.endFollowing();
  }

  // As a cell's last expression the plot adds nothing: its chart is already there.
  [Symbol.for("nbjob.mimeBundle")](): null {
    return null;
  }

  [inspect.custom](): string {
    const points = this.jobs.reduce((n, j) => n + j.steps.length, 0);
    return `MetricsPlot ${JSON.stringify(this.metric)} (${this.jobs.length} job${this.jobs.length === 1 ? "" : "s"}, ${points} points, ${this.stopped ? "not updating" : "live"}, display id ${this.handle.id})`;
  }

  private async tick(): Promise<void> {
    try {
      await this.refresh();
    } catch {
      // The store is away for a moment: look again later (the chart stays as it was meanwhile).
    }
    if (this.stopped) return;
    if (this.jobs.every((j) => j.complete)) {
      this.stopped = true;
      this.endFollowing();
      return;
    }
    this.timer = setTimeout(() => void this.tick(), this.options.refreshMs ?? 1_000);
    this.timer.unref();
  }

  /** Reads each job's status, then its new rows (in that order: a job seen ended has all its rows stored). True when something changed. */
  private async read(): Promise<boolean> {
    const rows = await listJobsByIds(this.store, this.jobs.map((j) => j.id));
    const status = new Map(rows.map((r) => [Number(r.id), r.status]));
    let changed = false;
    for (const job of this.jobs) {
      if (job.complete) continue;
      const now = status.get(job.id) ?? "lost";
      if (now !== job.status) changed = true;
      job.status = now;
      const { series, lastSeq } = await readMetrics(this.store, job.id, { name: this.metric, afterSeq: job.lastSeq });
      job.lastSeq = lastSeq;
      // Seen ended before this read: every value it logged was stored before it ended.
      if (FINAL.includes(now)) job.complete = true;
      const s = series[this.metric];
      if (!s) continue;
      changed = true;
      s.values.forEach((value, i) => {
        if (typeof value !== "number" || !Number.isFinite(value)) {
          job.undrawn++;
          return;
        }
        job.steps.push(s.steps[i]);
        job.values.push(value);
      });
    }
    return changed;
  }

  private bundle(): Record<string, unknown> {
    const max = this.options.maxPoints ?? 2_000;
    const series: PlotSeries[] = this.jobs.filter((j) => j.steps.length > 0).map((j) => ({ name: j.label, points: thin(j.steps, j.values, max) }));
    const notes = this.jobs.filter((j) => j.undrawn > 0).map((j) => `${j.label}: ${j.undrawn} value${j.undrawn === 1 ? "" : "s"} not drawn (NaN, Infinity or arrays)`);
    const running = this.jobs.filter((j) => j.status === undefined || !FINAL.includes(j.status)).length;
    const state = running > 0 ? `${running} running or queued (updating)` : "ended";
    if (series.length === 0) {
      const text = `${this.title}: no values of ${this.metric} yet; ${state}${notes.length ? `\n${notes.join("\n")}` : ""}`;
      return { "text/plain": text, "text/html": `<p>${text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/\n/g, "<br>")}</p>` };
    }
    const bundle = chartBundle(series, "step", this.metric, { ...this.options, title: this.title });
    bundle["text/plain"] = [bundle["text/plain"] as string, `jobs: ${state}`, ...notes].join("\n");
    return bundle;
  }
}

/** At most `max` points, evenly spaced in the series, the last one always kept. */
function thin(steps: number[], values: number[], max: number): { x: number; y: number }[] {
  const n = steps.length;
  const every = n <= max ? 1 : Math.ceil(n / (max - 1));
  const points: { x: number; y: number }[] = [];
  for (let i = 0; i < n; i += every) points.push({ x: steps[i], y: values[i] });
  if ((n - 1) % every !== 0) points.push({ x: steps[n - 1], y: values[n - 1] });
  return points;
}
