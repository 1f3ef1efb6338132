// What a running cell's side effects go through and what it declared: the types the kernel's
// engine hands to the runtime (display(), input(), a job's source of a function). They live
// here, below the kernel, so that the runtime does not import the kernel.

/** A Jupyter MIME bundle: mime type -> data (string, or JSON for application/json-like types). */
export type MimeBundle = Record<string, unknown>;

/** Where one cell's side effects go. The kernel implements it with iopub/stdin messages. */
export interface CellSink {
  stream(name: "stdout" | "stderr", text: string): void;
  /** display_data, or update_display_data when `update` is true (needs transient.display_id). */
  display(data: MimeBundle, metadata: Record<string, unknown>, transient: { display_id?: string }, update: boolean): void;
  clearOutput(wait: boolean): void;
  /** Asks the frontend on the stdin channel; rejects when the request did not allow stdin. */
  input(prompt: string, password: boolean): Promise<string>;
  /** Adds a payload to the execute_reply (e.g. { source: "page", data, start } or set_next_input). */
  payload(item: Record<string, unknown>): void;
}

/** One top-level declaration that a cell ran, with its exact TypeScript text. */
export interface DeclarationRecord {
  name: string;
  kind: "function" | "class" | "variable" | "interface" | "type" | "enum" | "import";
  source: string;
}
