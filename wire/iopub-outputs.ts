// Turns the iopub messages of one execute request into nbformat 4 outputs, the way a notebook
// frontend would show them: streams merged, display ids updated in place, clear_output(wait).
import type { JupyterMessage } from "./message";

/** A MIME bundle as nbformat stores it: mime type -> string, or JSON for JSON mime types. */
export type OutputData = Record<string, unknown>;

export interface StreamOutput {
  output_type: "stream";
  name: "stdout" | "stderr";
  text: string;
}

export interface DisplayDataOutput {
  output_type: "display_data";
  data: OutputData;
  metadata: Record<string, unknown>;
}

export interface ExecuteResultOutput {
  output_type: "execute_result";
  execution_count: number | null;
  data: OutputData;
  metadata: Record<string, unknown>;
}

export interface ErrorOutput {
  output_type: "error";
  ename: string;
  evalue: string;
  traceback: string[];
}

export type NotebookOutput = StreamOutput | DisplayDataOutput | ExecuteResultOutput | ErrorOutput;

/**
 * Where display ids live. Shared by all cells of a notebook, because `update_display_data` may
 * target an output that an earlier cell made (a live dashboard updated from a later cell).
 */
export class DisplayRegistry {
  private readonly byId = new Map<string, Array<DisplayDataOutput | ExecuteResultOutput>>();

  remember(displayId: string, output: DisplayDataOutput | ExecuteResultOutput): void {
    const outputs = this.byId.get(displayId) ?? [];
    outputs.push(output);
    this.byId.set(displayId, outputs);
  }

  /** Replaces data and metadata of every output shown with `displayId`; false if there is none. */
  update(displayId: string, data: OutputData, metadata: Record<string, unknown>): boolean {
    const outputs = this.byId.get(displayId);
    if (!outputs) return false;
    for (const output of outputs) {
      output.data = data;
      output.metadata = metadata;
    }
    return true;
  }
}

function displayIdOf(content: Record<string, unknown>): string | undefined {
  const transient = content.transient;
  if (transient && typeof transient === "object") {
    const id = (transient as Record<string, unknown>).display_id;
    if (typeof id === "string" && id !== "") return id;
  }
  return undefined;
}

function asRecord(value: unknown): Record<string, unknown> {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** The outputs of one cell, built from its iopub messages in the order they arrived. */
export class OutputArea {
  readonly outputs: NotebookOutput[] = [];
  /** From execute_input or execute_result; the execute_reply's count wins when it has one. */
  executionCount: number | null = null;
  private clearBeforeNextOutput = false;

  constructor(private readonly displays = new DisplayRegistry()) {}

  /** Applies one iopub message; returns false for message types that are not outputs. */
  handle(msg: JupyterMessage): boolean {
    const content = msg.content;
    switch (msg.header.msg_type) {
      case "execute_input":
        if (typeof content.execution_count === "number") this.executionCount = content.execution_count;
        return true;
      case "clear_output":
        // wait=true: keep what is shown until the next output arrives, so a progress display
        // that redraws itself does not flicker (and an update without new output keeps it).
        if (content.wait === true) this.clearBeforeNextOutput = true;
        else {
          this.outputs.length = 0;
          this.clearBeforeNextOutput = false;
        }
        return true;
      case "update_display_data": {
        const id = displayIdOf(content);
        if (id) this.displays.update(id, asRecord(content.data), asRecord(content.metadata));
        return true;
      }
      case "stream": {
        const name = content.name === "stderr" ? "stderr" : "stdout";
        const text = typeof content.text === "string" ? content.text : "";
        this.applyPendingClear();
        const last = this.outputs[this.outputs.length - 1];
        if (last && last.output_type === "stream" && last.name === name) last.text += text;
        else this.outputs.push({ output_type: "stream", name, text });
        return true;
      }
      case "display_data":
      case "execute_result": {
        const data = asRecord(content.data);
        const metadata = asRecord(content.metadata);
        const id = displayIdOf(content);
        // Showing an existing display id again also refreshes its earlier copies, as frontends do.
        if (id) this.displays.update(id, data, metadata);
        this.applyPendingClear();
        const output: DisplayDataOutput | ExecuteResultOutput =
          msg.header.msg_type === "execute_result"
            ? { output_type: "execute_result", execution_count: typeof content.execution_count === "number" ? content.execution_count : null, data, metadata }
            : { output_type: "display_data", data, metadata };
        if (output.output_type === "execute_result" && output.execution_count !== null) this.executionCount = output.execution_count;
        this.outputs.push(output);
        if (id) this.displays.remember(id, output);
        return true;
      }
      case "error":
        this.applyPendingClear();
        this.outputs.push({
          output_type: "error",
          ename: String(content.ename ?? "Error"),
          evalue: String(content.evalue ?? ""),
          traceback: Array.isArray(content.traceback) ? content.traceback.map(String) : [],
        });
        return true;
      default:
        return false;
    }
  }

  private applyPendingClear(): void {
    if (!this.clearBeforeNextOutput) return;
    this.outputs.length = 0;
    this.clearBeforeNextOutput = false;
  }
}
