// The shell-channel requests the notebook kernel answers, as the Jupyter messaging spec (5.3)
// describes them, and their parsing: a field of the wrong type becomes one clear error that
// names it, instead of a crash deep in a handler.

/** execute_request: run `code`. */
export interface ExecuteRequest {
  /** Source code to be executed by the kernel, one or more lines. */
  code: string;
  /** Execute as quietly as possible: no broadcast on iopub, no execute_result; forces store_history off. */
  silent: boolean;
  /** Increment the execution count and store the input in the history. */
  store_history: boolean;
  /** Names mapped to expressions evaluated after the code runs, answered in the reply. */
  user_expressions: Record<string, string>;
  /** Whether the code may send input_request on stdin (false for frontends that cannot answer). */
  allow_stdin: boolean;
  /** Abort the execution queue if an error occurs. */
  stop_on_error: boolean;
}

/** complete_request and inspect_request: a position in some code. */
export interface CodeAtCursor {
  code: string;
  /** The cursor position within `code`, in UTF-16 code units (spec 5.2+); defaults to the end. */
  cursor_pos: number;
}

export interface InspectRequest extends CodeAtCursor {
  /** 0: the signature and docs; 1: more detail (e.g. source). */
  detail_level: 0 | 1;
}

/** is_complete_request: would `code` run as it is, or does the frontend need another line? */
export interface IsCompleteRequest {
  code: string;
}

/** history_request: past inputs (and outputs), by tail, range or glob search. */
export type HistoryRequest =
  | { hist_access_type: "tail"; output: boolean; n: number }
  | { hist_access_type: "range"; output: boolean; session: number; start: number; stop?: number }
  | { hist_access_type: "search"; output: boolean; pattern: string; n?: number; unique: boolean };

/** comm_info_request: the open comms, optionally of one target only. */
export interface CommInfoRequest {
  target_name?: string;
}

/** comm_open / comm_msg / comm_close from the frontend. */
export interface CommOpen {
  comm_id: string;
  target_name: string;
  data: Record<string, unknown>;
}
export interface CommMessage {
  comm_id: string;
  data: Record<string, unknown>;
}

/** A request whose content the kernel cannot use; becomes an error reply with this name. */
export class RequestError extends Error {
  constructor(readonly ename: string, message: string) {
    super(message);
  }
}

type Content = Record<string, unknown>;

export function isObject(value: unknown): value is Content {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads the fields of one request's content, each checked against the spec's type. */
class Fields {
  constructor(private readonly msgType: string, private readonly content: Content) {}

  private wrong(field: string, expected: string): RequestError {
    const got = this.content[field];
    return new RequestError("MalformedMessage", `${this.msgType} needs content.${field} as ${expected}, got ${got === undefined ? "nothing" : JSON.stringify(got)}`);
  }

  string(field: string): string {
    const value = this.content[field];
    if (typeof value !== "string") throw this.wrong(field, "a string");
    return value;
  }

  optionalString(field: string): string | undefined {
    return this.content[field] === undefined || this.content[field] === null ? undefined : this.string(field);
  }

  boolean(field: string, fallback: boolean): boolean {
    const value = this.content[field];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "boolean") throw this.wrong(field, "true or false");
    return value;
  }

  optionalNumber(field: string): number | undefined {
    const value = this.content[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "number" || !Number.isFinite(value)) throw this.wrong(field, "a number");
    return value;
  }

  object(field: string): Content {
    const value = this.content[field];
    if (value === undefined || value === null) return {};
    if (!isObject(value)) throw this.wrong(field, "a JSON object");
    return value;
  }
}

function fields(msgType: string, content: unknown): Fields {
  if (!isObject(content)) throw new RequestError("MalformedMessage", `${msgType} content must be a JSON object, got ${JSON.stringify(content)}`);
  return new Fields(msgType, content);
}

export function parseExecuteRequest(content: unknown): ExecuteRequest {
  const f = fields("execute_request", content);
  const silent = f.boolean("silent", false);
  const expressions = f.object("user_expressions");
  return {
    code: f.string("code"),
    silent,
    store_history: !silent && f.boolean("store_history", true),
    user_expressions: Object.fromEntries(Object.entries(expressions).map(([name, expression]) => [name, String(expression)])),
    allow_stdin: f.boolean("allow_stdin", true),
    stop_on_error: f.boolean("stop_on_error", true),
  };
}

export function parseCodeAtCursor(msgType: string, content: unknown): CodeAtCursor {
  const f = fields(msgType, content);
  const code = f.string("code");
  const cursor = f.optionalNumber("cursor_pos");
  return { code, cursor_pos: cursor === undefined || cursor < 0 ? code.length : Math.min(cursor, code.length) };
}

export function parseInspectRequest(content: unknown): InspectRequest {
  const at = parseCodeAtCursor("inspect_request", content);
  return { ...at, detail_level: fields("inspect_request", content).optionalNumber("detail_level") === 1 ? 1 : 0 };
}

export function parseIsCompleteRequest(content: unknown): IsCompleteRequest {
  return { code: fields("is_complete_request", content).string("code") };
}

export function parseHistoryRequest(content: unknown): HistoryRequest {
  const f = fields("history_request", content);
  const output = f.boolean("output", false);
  const type = f.string("hist_access_type");
  switch (type) {
    case "tail": return { hist_access_type: "tail", output, n: f.optionalNumber("n") ?? 10 };
    case "range": return { hist_access_type: "range", output, session: f.optionalNumber("session") ?? 0, start: f.optionalNumber("start") ?? 0, stop: f.optionalNumber("stop") };
    case "search": return { hist_access_type: "search", output, pattern: f.optionalString("pattern") ?? "*", n: f.optionalNumber("n"), unique: f.boolean("unique", false) };
    default: throw new RequestError("MalformedMessage", `history_request hist_access_type must be "tail", "range" or "search", got ${JSON.stringify(type)}`);
  }
}

export function parseCommInfoRequest(content: unknown): CommInfoRequest {
  return { target_name: fields("comm_info_request", content).optionalString("target_name") };
}

export function parseCommOpen(content: unknown): CommOpen {
  const f = fields("comm_open", content);
  return { comm_id: f.string("comm_id"), target_name: f.string("target_name"), data: f.object("data") };
}

export function parseCommMessage(msgType: "comm_msg" | "comm_close", content: unknown): CommMessage {
  const f = fields(msgType, content);
  return { comm_id: f.string("comm_id"), data: f.object("data") };
}
