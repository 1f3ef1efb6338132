// job.plotMetrics(name) and group.plotMetrics(name): a metric's values by step as a line chart
// (Vega-Lite with the SVG fallback, analyzer-plot.ts), one line per job, shown with a display id
// and updated in place while the jobs run: the store is read again for rows logged since the
// last look (by arrival order), until every job has ended. The first display waits for the first
// read (its cell is held open meanwhile), so it never guesses the jobs' state.
import { inspect } from "node:util";
import { lastMetricsOf, listJobsByIds, metricNameProblem, missingMetricText, readMetrics } from "../store";
import type { JobStatus, Store } from "../store";
import { chartBundle } from "./analyzer-plot";
import type { PlotOptions, PlotSeries } from "./analyzer-plot";
import { display } from "./display";
import type { DisplayHandle } from "./display";
import { holdCell } from "./notebook";

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
  /** The metrics it has logged so far (any name), to name them when it logged none of this one. */
  logged: string[];
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
  /** The chart's display, made by the first read of the store; undefined until then. */
  private shown?: DisplayHandle;
  /** Resolves once the chart shows what the store held when it was made (or that the store did not answer). */
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
    this.jobs = jobs.map((j) => ({ ...j, lastSeq: -1, steps: [], values: [], undrawn: 0, logged: [] }));
    this.finished = new Promise((resolve) => (this.endFollowing = resolve));
    this.ready = this.tick();
    // The cell ends once the first chart is shown: a headless run keeps the chart, not a placeholder.
    holdCell(this.ready);
  }

  /** The chart's display handle (its display id), once the first read has shown it. */
  get handle(): DisplayHandle | undefined {
    return this.shown;
  }

  /** Reads what is new and redraws if anything changed. */
  async refresh(): Promise<void> {
    this.reading ??= this.read().finally(() => (this.reading = undefined));
    if ((await this.reading) || !this.shown) this.show(this.bundle());
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
    return `MetricsPlot ${JSON.stringify(this.metric)} (${this.jobs.length} job${this.jobs.length === 1 ? "" : "s"}, ${points} points, ${this.stopped ? "not updating" : "live"}, ${this.shown ? `display id ${this.shown.id}` : "not shown yet"})`;
  }

  private show(bundle: Record<string, unknown>): void {
    if (this.shown) this.shown.update(bundle);
    else this.shown = display(bundle);
    this.updates++;
  }

  private async tick(): Promise<void> {
    try {
      await this.refresh();
    } catch (err) {
      // The store is away for a moment: look again later (the chart stays as it was meanwhile);
      // the first time, say why there is no chart yet.
      if (!this.shown) this.show(textBundle(`${this.title}: the store did not answer (${(err as Error).message}); trying again every ${(this.options.refreshMs ?? 1_000) / 1000} s`));
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
    const byId = new Map(rows.map((r) => [Number(r.id), r]));
    let changed = false;
    for (const job of this.jobs) {
      if (job.complete) continue;
      const row = byId.get(job.id);
      const now = row?.status ?? "lost";
      if (now !== job.status) changed = true;
      job.status = now;
      job.logged = row ? Object.keys(lastMetricsOf(row)) : [];
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
      if (running > 0) return textBundle([`${this.title}: no values of ${this.metric} yet; ${state}`, ...notes].join("\n"));
      // Nothing more will come: say so, and name what each job logged instead (a misspelled name).
      const ended = this.jobs.length === 1 ? `job ${this.jobs[0].id} ended (${this.jobs[0].status})` : `all ${this.jobs.length} jobs ended`;
      const missing = this.jobs.filter((j) => j.steps.length === 0 && j.undrawn === 0).map((j) => missingMetricText(j.id, this.metric, j.logged)).filter((text) => text !== undefined);
      const shownMissing = missing.length > 5 ? [...missing.slice(0, 5), `(${missing.length - 5} more jobs alike)`] : missing;
      return textBundle([`${this.title}: no values of ${this.metric} to draw; ${ended}`, ...shownMissing, ...notes].join("\n"));
    }
    const bundle = chartBundle(series, "step", this.metric, { ...this.options, title: this.title });
    bundle["text/plain"] = [bundle["text/plain"] as string, `jobs: ${state}`, ...notes].join("\n");
    return bundle;
  }
}

/** Text alone, as plain text and as HTML (line breaks kept). */
function textBundle(text: string): Record<string, unknown> {
  return { "text/plain": text, "text/html": `<p>${text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/\n/g, "<br>")}</p>` };
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
