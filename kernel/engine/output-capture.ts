// Sends what cells print (console.*, process.stdout/stderr.write) to the cell's sink as
// stream outputs. Output from timers after a cell finished goes to the last cell's stdout;
// stderr outside a cell stays on the process's stderr, where the kernel logs.
import { Console } from "node:console";
import { Writable } from "node:stream";
import type { CellSink } from "./types";

type Write = typeof process.stdout.write;
type StreamName = "stdout" | "stderr";

export interface CaptureOptions {
  /** Whether stdout written after a cell finished still goes to that cell. */
  lateStdout: boolean;
  /**
   * Whether process.stdout/stderr.write are captured too (not only console.*). Off where the
   * process's own stdout must stay untouched (a test runner reporting on it).
   */
  processStreams: boolean;
}

export class OutputCapture {
  /** The last cell's sink (receives late stdout). */
  sink: CellSink | undefined;
  /** Whether a cell is running now. */
  running = false;
  private readonly originalWrites: { stdout: Write; stderr: Write };
  private readonly originalConsole: Console;

  constructor(private readonly options: CaptureOptions) {
    this.originalWrites = { stdout: process.stdout.write, stderr: process.stderr.write };
    this.originalConsole = globalThis.console;
    // Cells and the kernel share one realm; a console of our own keeps cells' logs in cells.
    globalThis.console = new Console({ stdout: this.stream("stdout"), stderr: this.stream("stderr"), colorMode: false });
    if (options.processStreams) {
      process.stdout.write = this.patch("stdout");
      process.stderr.write = this.patch("stderr");
    }
  }

  dispose(): void {
    globalThis.console = this.originalConsole;
    process.stdout.write = this.originalWrites.stdout;
    process.stderr.write = this.originalWrites.stderr;
  }

  /** Sends `text` to the cell's sink; false when it belongs on the process's own stream. */
  private route(name: StreamName, text: string): boolean {
    const sink = this.sink;
    if (!sink || (!this.running && (name === "stderr" || !this.options.lateStdout))) return false;
    sink.stream(name, text);
    return true;
  }

  private original(name: StreamName): (chunk: unknown, ...rest: unknown[]) => boolean {
    const stream = name === "stdout" ? process.stdout : process.stderr;
    const write = this.originalWrites[name] as (chunk: unknown, ...rest: unknown[]) => boolean;
    return (chunk, ...rest) => write.call(stream, chunk, ...rest);
  }

  private stream(name: StreamName): Writable {
    const original = this.original(name);
    return new Writable({
      decodeStrings: false,
      write: (chunk: unknown, encoding: BufferEncoding, done: () => void) => {
        const text = typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString(encoding === ("buffer" as BufferEncoding) ? "utf8" : encoding);
        if (!this.route(name, text)) original(text);
        done();
      },
    });
  }

  private patch(name: StreamName): Write {
    const original = this.original(name);
    return ((chunk: unknown, encodingOrCallback?: unknown, callback?: unknown): boolean => {
      const encoding = typeof encodingOrCallback === "string" ? (encodingOrCallback as BufferEncoding) : "utf8";
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString(encoding);
      if (!this.route(name, text)) return original(chunk, encodingOrCallback, callback);
      const done = typeof encodingOrCallback === "function" ? encodingOrCallback : callback;
      if (typeof done === "function") process.nextTick(done as () => void);
      return true;
    }) as Write;
  }
}
