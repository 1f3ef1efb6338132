// Sends what cells print (console.log, process.stdout/stderr.write) to the cell's sink as
// stream outputs. Output from timers after a cell finished goes to the last cell's stdout;
// stderr outside a cell stays on the process's stderr, where the kernel logs.
import type { CellSink } from "./types";

type Write = typeof process.stdout.write;

export class OutputCapture {
  /** The last cell's sink (receives late stdout). */
  sink: CellSink | undefined;
  /** Whether a cell is running now. */
  running = false;
  private readonly originals: { stdout: Write; stderr: Write };

  constructor() {
    this.originals = { stdout: process.stdout.write, stderr: process.stderr.write };
    process.stdout.write = this.patch("stdout", this.originals.stdout);
    process.stderr.write = this.patch("stderr", this.originals.stderr);
  }

  dispose(): void {
    process.stdout.write = this.originals.stdout;
    process.stderr.write = this.originals.stderr;
  }

  private patch(name: "stdout" | "stderr", original: Write): Write {
    const stream = name === "stdout" ? process.stdout : process.stderr;
    const capture = this;
    return function write(this: unknown, chunk: unknown, encodingOrCallback?: unknown, callback?: unknown): boolean {
      const sink = capture.sink;
      if (!sink || (name === "stderr" && !capture.running)) {
        return (original as (...args: unknown[]) => boolean).call(stream, chunk, encodingOrCallback, callback);
      }
      const encoding = typeof encodingOrCallback === "string" ? (encodingOrCallback as BufferEncoding) : "utf8";
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString(encoding);
      sink.stream(name, text);
      const done = typeof encodingOrCallback === "function" ? encodingOrCallback : callback;
      if (typeof done === "function") process.nextTick(done as () => void);
      return true;
    } as Write;
  }
}
