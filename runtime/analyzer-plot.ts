// analyzer.plot(x, y): a line chart as a Vega-Lite v5 spec (for frontends that render it, such
// as JupyterLab) with an SVG drawn here as the fallback (classic Notebook, nbconvert, GitHub) and a
// text/plain summary. No browser or charting library is needed to draw the SVG.

import type { MimeBundle } from "./cell-types";

const pointsText = (n: number) => `${n} point${n === 1 ? "" : "s"}`;

export interface PlotOptions {
  /** Chart title. Default "<y> by <x> (job N)". */
  title?: string;
  /** A logarithmic y axis (for errors that shrink geometrically). Non-positive values are left out. Default false. */
  logY?: boolean;
  /** Size in pixels. Defaults 480 x 300. */
  width?: number;
  height?: number;
}

export interface PlotSeries {
  name: string;
  points: { x: number; y: number }[];
}

const PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d"];

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** About `count` round tick values spanning [min, max] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function label(value: number): string {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 1e-3) return value.toExponential(1).replace("e+", "e");
  return String(Number(value.toPrecision(4)));
}

/**
 * The smallest and largest of `values`, by a loop: Math.min(...values) throws "Maximum call
 * stack size exceeded" past about 100,000 values (each one is an argument of the call).
 */
export function extent(values: readonly number[]): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

/** The chart as SVG: axes with ticks and labels, one polyline (with dots) per series, a legend when there are several. */
export function renderSvg(series: PlotSeries[], xLabel: string, yLabel: string, options: PlotOptions & { title: string }): string {
  const width = options.width ?? 480;
  const height = options.height ?? 300;
  const margin = { left: 64, right: series.length > 1 ? 120 : 20, top: 32, bottom: 48 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const ty = (y: number) => (options.logY ? Math.log10(y) : y);
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => ty(p.y));
  let [x0, x1] = extent(xs);
  let [y0, y1] = extent(ys);
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const sx = (x: number) => margin.left + ((x - x0) / (x1 - x0)) * plotW;
  const sy = (y: number) => margin.top + plotH - ((ty(y) - y0) / (y1 - y0)) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${esc(options.title)}</text>`,
  ];
  const axisBottom = margin.top + plotH;
  out.push(`<line x1="${margin.left}" y1="${axisBottom}" x2="${margin.left + plotW}" y2="${axisBottom}" stroke="#333"/>`);
  out.push(`<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${axisBottom}" stroke="#333"/>`);
  for (const t of niceTicks(x0, x1)) {
    const x = sx(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${axisBottom}" x2="${x}" y2="${axisBottom + 5}" stroke="#333"/><text x="${x}" y="${axisBottom + 17}" text-anchor="middle">${label(t)}</text>`);
  }
  const yTicks = options.logY ? niceTicks(Math.floor(y0), Math.ceil(y1)).filter((t) => Number.isInteger(t) && t >= y0 - 1e-9 && t <= y1 + 1e-9) : niceTicks(y0, y1);
  for (const t of yTicks) {
    const y = (margin.top + plotH - ((t - y0) / (y1 - y0)) * plotH).toFixed(1);
    const text = options.logY ? label(10 ** t) : label(t);
    out.push(`<line x1="${margin.left - 5}" y1="${y}" x2="${margin.left}" y2="${y}" stroke="#333"/><line x1="${margin.left}" y1="${y}" x2="${margin.left + plotW}" y2="${y}" stroke="#eee"/><text x="${margin.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${text}</text>`);
  }
  out.push(`<text x="${margin.left + plotW / 2}" y="${height - 10}" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(`<text x="14" y="${margin.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 14 ${margin.top + plotH / 2})">${esc(yLabel)}${options.logY ? " (log)" : ""}</text>`);
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const points = s.points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`);
    out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.join(" ")}"/>`);
    if (s.points.length <= 200) for (const p of points) out.push(`<circle cx="${p.split(",")[0]}" cy="${p.split(",")[1]}" r="2.5" fill="${colour}"/>`);
    if (series.length > 1) {
      const ly = margin.top + 14 * i + 6;
      out.push(`<line x1="${width - margin.right + 10}" y1="${ly}" x2="${width - margin.right + 26}" y2="${ly}" stroke="${colour}" stroke-width="2"/><text x="${width - margin.right + 30}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`);
    }
  });
  out.push("</svg>");
  return out.join("\n");
}

/** The Vega-Lite v5 spec of the same chart: one row per point, a colour per series when there are several. */
export function vegaLiteSpec(series: PlotSeries[], xLabel: string, yLabel: string, options: PlotOptions & { title: string }): object {
  const several = series.length > 1;
  const values = series.flatMap((s) => s.points.map((p) => (several ? { [xLabel]: p.x, value: p.y, series: s.name } : { [xLabel]: p.x, [yLabel]: p.y })));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: options.title,
    width: options.width ?? 480,
    height: options.height ?? 300,
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: xLabel, type: "quantitative", title: xLabel },
      y: { field: several ? "value" : yLabel, type: "quantitative", title: yLabel, ...(options.logY ? { scale: { type: "log" } } : {}) },
      ...(several ? { color: { field: "series", type: "nominal", title: null } } : {}),
    },
  };
}

/** The whole display bundle: Vega-Lite, SVG and a text summary. */
export function chartBundle(series: PlotSeries[], xLabel: string, yLabel: string, options: PlotOptions & { title: string }): MimeBundle {
  const count = series.reduce((n, s) => n + s.points.length, 0);
  const ranges = series.map((s) => {
    const ys = s.points.map((p) => p.y);
    const [min, max] = extent(ys);
    return `${s.name}: ${pointsText(s.points.length)}, from ${label(ys[0])} to ${label(ys[ys.length - 1])} (min ${label(min)}, max ${label(max)})`;
  });
  return {
    "application/vnd.vegalite.v5+json": vegaLiteSpec(series, xLabel, yLabel, options),
    "image/svg+xml": renderSvg(series, xLabel, yLabel, options),
    "text/plain": [`<line chart: ${options.title}; ${pointsText(count)}>`, ...ranges].join("\n"),
  };
}
