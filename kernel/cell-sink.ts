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

export class ExecuteRequestSink implements CellSink {
  readonly payloads: Record<string, unknown>[] = [];

  /**
   * `quiet` (a silent request) sends no outputs at all, as the spec asks; `allowStdin` false
   * makes input() fail with an explanation instead of waiting for an answer that cannot come.
   */
  constructor(
    private readonly request: JupyterMessage<unknown>,
    private readonly channels: CellSinkChannels,
    private readonly options: { quiet: boolean; allowStdin: boolean },
  ) {}

  /** Whether the frontend may be asked for input (the request's allow_stdin); read by the job review. */
  get allowStdin(): boolean {
    return this.options.allowStdin && !this.options.quiet;
  }

  stream(name: "stdout" | "stderr", text: string): void {
    if (this.options.quiet || text === "") return;
    this.channels.publish(this.request, "stream", { name, text });
  }

  display(data: MimeBundle, metadata: Record<string, unknown>, transient: { display_id?: string }, update: boolean): void {
    if (this.options.quiet) return;
    if (update && !transient.display_id) {
      throw new Error("updating a display needs the display_id it was created with; use the handle display() returned (d.update(...))");
    }
    this.channels.publish(this.request, update ? "update_display_data" : "display_data", { data, metadata, transient });
  }

  clearOutput(wait: boolean): void {
    if (this.options.quiet) return;
    this.channels.publish(this.request, "clear_output", { wait });
  }

  input(prompt: string, password: boolean): Promise<string> {
    if (!this.options.allowStdin) {
      return Promise.reject(new Error(
        `input(${JSON.stringify(prompt)}) needs a frontend that answers on the stdin channel, and this cell's request did not allow stdin (allow_stdin false, e.g. a headless run); pass the value another way, e.g. as a parameter`,
      ));
    }
    return this.channels.requestInput(this.request, prompt, password);
  }

  payload(item: Record<string, unknown>): void {
    this.payloads.push(item);
  }
}
