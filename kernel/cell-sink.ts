// One execute request's outputs as Jupyter messages: streams, displays and clear_output on
// iopub, input() as an input_request on stdin, payloads collected for the execute_reply.
import type { CellSink, MimeBundle } from "./engine/types";
import type { JupyterMessage } from "../wire/message";

export interface CellSinkChannels {
  /** Publishes on iopub with the execute request as parent. */
  publish(parent: JupyterMessage<unknown>, msgType: string, content: Record<string, unknown>): void;
  /** Sends input_request on stdin and resolves with the frontend's input_reply value. */
  requestInput(parent: JupyterMessage<unknown>, prompt: string, password: boolean): Promise<string>;
}

type StreamName = "stdout" | "stderr";

// Stream text is coalesced as ipykernel does: a cell printing 200,000 lines one console.log at a
// time sends a few dozen messages instead of 200,000, which frontends (and the socket between
// them and the kernel) keep up with. Text waits at most this long...
export const STREAM_FLUSH_MS = 50;
// ...or until this many characters are waiting (a synchronous loop never lets a timer run).
export const STREAM_FLUSH_CHARS = 64 * 1024;

/**
 * Text written to one stream, held until it is worth a message. Flushed on a timer, when it
 * grows past a size, when the other stream is written (so stdout and stderr keep their order),
 * and by the sink before anything else it sends.
 */
class StreamBuffer {
  private name: StreamName | undefined;
  private parts: string[] = [];
  private chars = 0;
  private firstAt = 0;
  private lastSentAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly send: (name: StreamName, text: string) => void) {}

  write(name: StreamName, text: string): void {
    if (name !== this.name) {
      this.flush();
      this.name = name;
    }
    const now = performance.now();
    if (this.parts.length === 0 && now - this.lastSentAt >= STREAM_FLUSH_MS) {
      // The first write after a quiet spell goes at once: "starting..." before a long
      // computation must show while it runs, and a blocked event loop would hold a timer back.
      this.lastSentAt = now;
      this.send(name, text);
      return;
    }
    if (this.parts.length === 0) {
      this.firstAt = now;
      // unref: buffered text must not keep a process alive; the cell's end flushes it anyway.
      this.timer = setTimeout(() => this.flush(), STREAM_FLUSH_MS).unref();
    }
    this.parts.push(text);
    this.chars += text.length;
    // Checked on every write too: a loop that prints while it blocks the event loop never lets
    // the timer fire, but its text should still show up about every STREAM_FLUSH_MS.
    if (this.chars >= STREAM_FLUSH_CHARS || now - this.firstAt >= STREAM_FLUSH_MS) this.flush();
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.parts.length === 0 || !this.name) return;
    const text = this.parts.join("");
    this.parts = [];
    this.chars = 0;
    this.lastSentAt = performance.now();
    this.send(this.name, text);
  }
}

export class ExecuteRequestSink implements CellSink {
  readonly payloads: Record<string, unknown>[] = [];
  private readonly streams: StreamBuffer;

  /**
   * `quiet` (a silent request) sends no outputs at all, as the spec asks; `allowStdin` false
   * makes input() fail with an explanation instead of waiting for an answer that cannot come.
   */
  constructor(
    private readonly request: JupyterMessage<unknown>,
    private readonly channels: CellSinkChannels,
    private readonly options: { quiet: boolean; allowStdin: boolean },
  ) {
    this.streams = new StreamBuffer((name, text) => this.channels.publish(this.request, "stream", { name, text }));
  }

  /** Whether the frontend may be asked for input (the request's allow_stdin); read by the job review. */
  get allowStdin(): boolean {
    return this.options.allowStdin && !this.options.quiet;
  }

  stream(name: StreamName, text: string): void {
    if (this.options.quiet || text === "") return;
    this.streams.write(name, text);
  }

  /**
   * Sends the stream text still held. The kernel calls it before any message of its own that
   * must come after the cell's output (execute_result, error, comm messages, execute_reply, idle).
   */
  flush(): void {
    this.streams.flush();
  }

  display(data: MimeBundle, metadata: Record<string, unknown>, transient: { display_id?: string }, update: boolean): void {
    if (this.options.quiet) return;
    if (update && !transient.display_id) {
      throw new Error("updating a display needs the display_id it was created with; use the handle display() returned (d.update(...))");
    }
    this.flush();
    this.channels.publish(this.request, update ? "update_display_data" : "display_data", { data, metadata, transient });
  }

  clearOutput(wait: boolean): void {
    if (this.options.quiet) return;
    this.flush();
    this.channels.publish(this.request, "clear_output", { wait });
  }

  input(prompt: string, password: boolean): Promise<string> {
    if (!this.options.allowStdin) {
      return Promise.reject(new Error(
        `input(${JSON.stringify(prompt)}) needs a frontend that answers on the stdin channel, and this cell's request did not allow stdin (allow_stdin false, e.g. a headless run); pass the value another way, e.g. as a parameter`,
      ));
    }
    // What the cell printed before asking is what the user answers to: it must be shown first.
    this.flush();
    return this.channels.requestInput(this.request, prompt, password);
  }

  payload(item: Record<string, unknown>): void {
    this.payloads.push(item);
  }
}
