// input(): asks the notebook's frontend for a line of text (stdin channel) and returns it.
import { currentCellSink } from "./notebook";

export interface InputOptions {
  /** Hide what the user types (e.g. a token). */
  password?: boolean;
}

/** Asks the frontend with `prompt` and resolves with the answer. */
export async function input(prompt = "", options: InputOptions = {}): Promise<string> {
  const sink = currentCellSink();
  if (!sink) {
    throw new Error(`input(${JSON.stringify(prompt)}) needs a notebook kernel whose frontend answers input requests; outside a notebook, read process.stdin or pass the value as a parameter`);
  }
  return sink.input(String(prompt), options.password === true);
}
