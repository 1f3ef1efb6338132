// display() and its helpers: rich outputs (HTML, Markdown, images, JSON, Vega-Lite) sent to
// the current cell, each with a display id so that `handle.update(...)` replaces it in place.
import { randomUUID } from "node:crypto";
import { inspect } from "node:util";
import type { MimeBundle } from "./cell-types";
import { currentCellSink } from "./notebook";

/** What every display call returns: the output's display id and a way to replace it. */
export interface DisplayHandle {
  readonly id: string;
  /** Replaces the output in place; takes the same kind of value that created it. */
  update(value: unknown): void;
}

type Bytes = Uint8Array | ArrayBuffer | string;

export interface Display {
  /** Shows a MIME bundle (`{ "text/html": "...", "text/plain": "..." }`) or, for any other value, its inspect() text. */
  (bundle: MimeBundle | unknown): DisplayHandle;
  html(html: string): DisplayHandle;
  markdown(markdown: string): DisplayHandle;
  svg(svg: string): DisplayHandle;
  /** PNG bytes (or a base64 string). */
  png(bytes: Bytes): DisplayHandle;
  /** JPEG bytes (or a base64 string). */
  jpeg(bytes: Bytes): DisplayHandle;
  json(value: unknown): DisplayHandle;
  /** A Vega-Lite (v5) specification object. */
  vegaLite(spec: object): DisplayHandle;
  text(text: string): DisplayHandle;
  /** Clears the cell's output; with `wait`, only when the next output arrives (avoids flicker). */
  clear(wait?: boolean): void;
}

function isMimeBundle(value: unknown): value is MimeBundle {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.length > 0 && keys.every((key) => /^[a-z]+\/[\w.+-]+$/i.test(key));
}

function toBase64(bytes: Bytes, what: string): string {
  if (typeof bytes === "string") return bytes;
  if (bytes instanceof ArrayBuffer) return Buffer.from(bytes).toString("base64");
  if (ArrayBuffer.isView(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  throw new TypeError(`display.${what}() expects the image's bytes (Uint8Array, Buffer, ArrayBuffer) or a base64 string, got ${inspect(bytes)}`);
}

function expectString(value: unknown, what: string): string {
  if (typeof value !== "string") {
    throw new TypeError(`display.${what}() expects a string, got ${inspect(value, { depth: 0 })}`);
  }
  return value;
}

/** Sends the bundle, or prints its text when no kernel is running (scripts, workers' logs). */
function show(bundle: MimeBundle, id: string, update: boolean): void {
  const sink = currentCellSink();
  if (!sink) {
    const text = bundle["text/plain"];
    process.stdout.write(`${typeof text === "string" ? text : inspect(bundle)}\n`);
    return;
  }
  sink.display(bundle, {}, { display_id: id }, update);
}

function makeDisplay(toBundle: (value: unknown) => MimeBundle): (value: unknown) => DisplayHandle {
  return (value) => {
    const id = randomUUID();
    show(toBundle(value), id, false);
    return {
      id,
      update(next: unknown) {
        show(toBundle(next), id, true);
      },
      // As a cell's last expression a handle shows nothing more: its output is already there.
      [Symbol.for("nbjob.mimeBundle")]: () => null,
    };
  };
}

const generic = makeDisplay((value) => (isMimeBundle(value) ? value : { "text/plain": inspect(value, { colors: false }) }));

export const display: Display = Object.assign((bundle: MimeBundle | unknown) => generic(bundle), {
  html: makeDisplay((value) => ({ "text/html": expectString(value, "html"), "text/plain": "<HTML>" })),
  markdown: makeDisplay((value) => ({ "text/markdown": expectString(value, "markdown"), "text/plain": expectString(value, "markdown") })),
  svg: makeDisplay((value) => ({ "image/svg+xml": expectString(value, "svg"), "text/plain": "<SVG image>" })),
  png: makeDisplay((value) => ({ "image/png": toBase64(value as Bytes, "png"), "text/plain": "<PNG image>" })),
  jpeg: makeDisplay((value) => ({ "image/jpeg": toBase64(value as Bytes, "jpeg"), "text/plain": "<JPEG image>" })),
  json: makeDisplay((value) => ({ "application/json": value, "text/plain": inspect(value, { colors: false, depth: 4 }) })),
  vegaLite: makeDisplay((value) => ({ "application/vnd.vegalite.v5+json": value, "text/plain": "<Vega-Lite chart>" })),
  text: makeDisplay((value) => ({ "text/plain": expectString(value, "text") })),
  clear(wait = false): void {
    const sink = currentCellSink();
    if (sink) sink.clearOutput(wait);
  },
}) as Display;
