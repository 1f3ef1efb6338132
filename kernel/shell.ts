// The notebook kernel's shell and stdin handlers (main thread): one function per request type,
// busy/idle around each, every failure answered with an error reply that says what happened.
import { AsyncLocalStorage } from "node:async_hooks";
import { inspect } from "node:util";
import type { CellOutcome, CellRequest, ExecutionEngine, MimeBundle } from "./engine/types";
import type { MagicContext, PreparedCell } from "../magics/types";
import { CellError } from "../magics/types";
import { replyTo, type JupyterMessage } from "../wire/message";
import type { SendChannel } from "../wire/server";
import type { CommRegistry } from "./comms";
import type { History } from "./history";
import { ExecuteRequestSink } from "./cell-sink";
import {
  isObject, parseCodeAtCursor, parseCommInfoRequest, parseCommMessage, parseCommOpen, parseExecuteRequest,
  parseHistoryRequest, parseInspectRequest, parseIsCompleteRequest, RequestError,
} from "./protocol";

/** Where the handler's messages go (the socket thread, in the notebook kernel). */
export interface KernelTransport {
  send(channel: SendChannel, msg: JupyterMessage<unknown>): void;
}

export type PrepareCell = (code: string, ctx: MagicContext) => Promise<PreparedCell>;

export interface ShellHandlerOptions {
  engine: ExecutionEngine;
  prepareCell: PrepareCell;
  transport: KernelTransport;
  session: string;
  history: History;
  comms: CommRegistry;
  log?: (line: string) => void;
}

type Content = Record<string, unknown>;
type Request = JupyterMessage<Content>;

// Requests that use the engine run one at a time, in arrival order. Comm messages do not wait
// for them: a cell may be awaiting the frontend's answer on a comm (job review).
const ORDERED = new Set(["execute_request", "complete_request", "inspect_request", "is_complete_request", "history_request"]);

interface PendingInput {
  requestId: string;
  resolve(value: string): void;
}

export class ShellHandler {
  private executionCount = 0;
  private readonly queue: Request[] = [];
  private draining = false;
  private pendingInputs: PendingInput[] = [];
  // The request being handled, across awaits: comm messages sent by a cell get it as parent.
  private readonly currentRequest = new AsyncLocalStorage<Request>();
  private lastExecute: Request | undefined;
  // The last cell's sink, which may hold stream text (a cell's timers print after it ended):
  // flushed before every other iopub message, so output keeps the order it was made in.
  private lastSink: ExecuteRequestSink | undefined;
  // Set when a cell failed with stop_on_error: the queue is checked for cells sent behind it.
  private failedCell: { count: number; repliedAt: number } | undefined;
  private readonly log: (line: string) => void;

  constructor(private readonly options: ShellHandlerOptions) {
    this.log = options.log ?? ((line) => process.stderr.write(`nbjob kernel: ${line}\n`));
    options.comms.attach((msgType, content, metadata, buffers) => {
      const parent = this.currentRequest.getStore() ?? this.lastExecute;
      const msg = this.message(parent, msgType, content, metadata);
      this.lastSink?.flush();
      this.options.transport.send("iopub", { ...msg, identities: [], buffers });
    });
  }

  /** Whether no cell or other engine request is running or waiting. */
  get idle(): boolean {
    return !this.draining && this.queue.length === 0;
  }

  /** Entry point for every request the socket thread forwards. */
  receive(channel: "shell" | "stdin", msg: Request): void {
    if (channel === "stdin") return this.stdinMessage(msg);
    if (ORDERED.has(msg.header.msg_type)) {
      this.queue.push(msg);
      void this.drain();
    } else {
      void this.handle(msg);
    }
  }

  /** Output that no cell is waiting for (e.g. an error thrown from a timer) goes to the last cell run. */
  reportStray(text: string): void {
    if (this.lastExecute) this.publish(this.lastExecute, "stream", { name: "stderr", text });
    else this.log(text.trimEnd());
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      for (let msg = this.queue.shift(); msg; msg = this.queue.shift()) {
        await this.handle(msg);
        if (this.failedCell) await this.refuseQueuedCells(this.failedCell);
      }
    } finally {
      this.draining = false;
    }
  }

  private async handle(msg: Request): Promise<void> {
    await this.currentRequest.run(msg, async () => {
      this.publish(msg, "status", { execution_state: "busy" });
      const replyType = msg.header.msg_type.replace(/_request$/, "_reply");
      try {
        await this.dispatch(msg);
      } catch (err) {
        const { ename, evalue, traceback } = describeFailure(err);
        this.log(`${msg.header.msg_type} failed: ${evalue}`);
        if (msg.header.msg_type.endsWith("_request")) this.reply(msg, replyType, { status: "error", ename, evalue, traceback });
      } finally {
        this.publish(msg, "status", { execution_state: "idle" });
      }
    });
  }

  private async dispatch(msg: Request): Promise<void> {
    switch (msg.header.msg_type) {
      case "execute_request": return this.execute(msg);
      case "complete_request": return this.complete(msg);
      case "inspect_request": return this.inspect(msg);
      case "is_complete_request": return this.isComplete(msg);
      case "history_request": return this.history(msg);
      case "comm_info_request": return this.commInfo(msg);
      case "comm_open": return this.commOpen(msg);
      case "comm_msg": return this.commMsg(msg);
      case "comm_close": return this.commClose(msg);
      default: {
        const type = msg.header.msg_type;
        throw new RequestError("UnknownMessageType", `nbjob does not handle ${type} on the shell channel; it answers execute, complete, inspect, is_complete, history, comm_info and kernel_info requests and comm_open/comm_msg/comm_close`);
      }
    }
  }

  private async execute(msg: Request): Promise<void> {
    const request = parseExecuteRequest(msg.content);
    const { code, silent, store_history: storeHistory, allow_stdin: allowStdin, stop_on_error: stopOnError } = request;
    const cellId = typeof msg.metadata.cellId === "string" ? msg.metadata.cellId : undefined;
    if (storeHistory) this.executionCount += 1;
    const count = this.executionCount;
    this.lastExecute = msg;

    if (!silent) this.publish(msg, "execute_input", { code, execution_count: count });
    this.lastSink?.flush();
    const sink = new ExecuteRequestSink(msg, {
      publish: (parent, type, body) => this.options.transport.send("iopub", this.message(parent, type, body)),
      requestInput: (parent, prompt, password) => this.requestInput(parent, prompt, password),
    }, { quiet: silent, allowStdin });
    this.lastSink = sink;

    const outcome = await this.runCell({ code, cellId, allowStdin, sink, executionCount: count });
    // An interrupted input() leaves its request behind; a late input_reply must not answer a later cell.
    this.pendingInputs = this.pendingInputs.filter((p) => p.requestId !== msg.header.msg_id);
    // Everything the cell printed goes out before its result, its reply and the idle status.
    sink.flush();
    if (outcome.status === "ok") {
      if (outcome.result && !silent) this.publish(msg, "execute_result", { execution_count: count, data: outcome.result, metadata: {} });
      if (storeHistory) this.options.history.record(count, code, plainText(outcome.result));
      this.reply(msg, "execute_reply", {
        status: "ok", execution_count: count, payload: sink.payloads, user_expressions: this.userExpressions(request.user_expressions),
      });
      return;
    }
    if (storeHistory) this.options.history.record(count, code);
    const { ename, evalue, traceback } = outcome;
    if (!silent) this.publish(msg, "error", { ename, evalue, traceback });
    this.reply(msg, "execute_reply", { status: "error", execution_count: count, ename, evalue, traceback, payload: [], user_expressions: {} });
    if (stopOnError && !silent) this.failedCell = { count, repliedAt: Date.now() };
  }

  /** magics, then the engine, then the magics' success step; every failure becomes one error outcome. */
  private async runCell(request: CellRequest): Promise<CellOutcome> {
    const { engine, prepareCell } = this.options;
    try {
      const prepared = await prepareCell(request.code, { engine, sink: request.sink, cellId: request.cellId });
      const outcome = await engine.execute({ ...request, code: prepared.code, ...(prepared.code !== request.code ? { shownCode: request.code } : {}) });
      if (outcome.status === "ok") await prepared.onSuccess();
      return outcome;
    } catch (err) {
      return { status: "error" as const, ...describeFailure(err) };
    }
  }

  /**
   * After a failed cell with stop_on_error, the cells the frontend had already sent behind it
   * (Run All) are answered with an error naming the failed cell instead of running on a broken
   * state. Only requests stamped before the failure's reply left count: a client that saw the
   * reply and then sent more cells (nbclient with allow_errors) gets them run, never dropped.
   */
  private async refuseQueuedCells(failed: { count: number; repliedAt: number }): Promise<void> {
    this.failedCell = undefined;
    // Let requests the socket thread already forwarded reach the queue first.
    await new Promise((resolve) => setImmediate(resolve));
    // Strictly before: a client that saw the reply and sent its next cell within the same
    // millisecond (header dates have ms resolution here) must get that cell run, not refused
    // without output (seen as cells with no output in headless runs after a failing cell).
    const sentBefore = (m: Request) => m.header.msg_type === "execute_request" && Date.parse(String(m.header.date)) < failed.repliedAt;
    const refused = this.queue.filter(sentBefore);
    if (refused.length === 0) return;
    this.queue.splice(0, this.queue.length, ...this.queue.filter((m) => !sentBefore(m)));
    for (const msg of refused) {
      const evalue = `not run because cell [${failed.count}] failed before it and stop_on_error was set; fix that cell and run this one again`;
      this.publish(msg, "status", { execution_state: "busy" });
      this.reply(msg, "execute_reply", { status: "error", execution_count: this.executionCount, ename: "CellNotRun", evalue, traceback: [`CellNotRun: ${evalue}`], payload: [], user_expressions: {} });
      this.publish(msg, "status", { execution_state: "idle" });
    }
  }

  private userExpressions(expressions: Record<string, string>): Content {
    const results: Content = {};
    for (const [name, expression] of Object.entries(expressions)) {
      try {
        const value = this.options.engine.evaluate(expression);
        results[name] = { status: "ok", data: { "text/plain": inspect(value, { colors: false }) }, metadata: {} };
      } catch (err) {
        results[name] = { status: "error", ...describeFailure(err) };
      }
    }
    return results;
  }

  private complete(msg: Request): void {
    const { code, cursor_pos } = parseCodeAtCursor("complete_request", msg.content);
    this.reply(msg, "complete_reply", { status: "ok", ...this.options.engine.complete(code, cursor_pos) });
  }

  private inspect(msg: Request): void {
    const { code, cursor_pos, detail_level } = parseInspectRequest(msg.content);
    const found = this.options.engine.inspect(code, cursor_pos, detail_level);
    this.reply(msg, "inspect_reply", { status: "ok", found: found.found, data: found.found ? found.data : {}, metadata: {} });
  }

  private isComplete(msg: Request): void {
    const verdict = this.options.engine.isComplete(parseIsCompleteRequest(msg.content).code);
    this.reply(msg, "is_complete_reply", verdict.status === "incomplete" ? { status: "incomplete", indent: verdict.indent ?? "" } : { status: verdict.status });
  }

  private history(msg: Request): void {
    const request = parseHistoryRequest(msg.content);
    const history = this.options.history;
    const rows =
      request.hist_access_type === "tail" ? history.tail(request.n, request.output)
      : request.hist_access_type === "range" ? history.range(request.session, request.start, request.stop, request.output)
      : history.search(request.pattern, request.n, request.unique, request.output);
    this.reply(msg, "history_reply", { status: "ok", history: rows });
  }

  private commInfo(msg: Request): void {
    const { target_name } = parseCommInfoRequest(msg.content);
    this.reply(msg, "comm_info_reply", { status: "ok", comms: this.options.comms.info(target_name) });
  }

  // comm_open/msg/close are not requests: the spec has no reply for them, so problems are logged.
  private commOpen(msg: Request): void {
    const open = parseCommOpen(msg.content);
    const problem = this.options.comms.handleOpen({ ...open, metadata: msg.metadata, buffers: msg.buffers });
    if (problem) this.log(problem);
  }

  private commMsg(msg: Request): void {
    const { comm_id, data } = parseCommMessage("comm_msg", msg.content);
    const problem = this.options.comms.handleMsg(comm_id, data, msg.metadata, msg.buffers);
    if (problem) this.log(problem);
  }

  private commClose(msg: Request): void {
    const { comm_id, data } = parseCommMessage("comm_close", msg.content);
    const problem = this.options.comms.handleClose(comm_id, data);
    if (problem) this.log(problem);
  }

  private requestInput(parent: JupyterMessage<unknown>, prompt: string, password: boolean): Promise<string> {
    return new Promise((resolve) => {
      this.pendingInputs.push({ requestId: parent.header.msg_id, resolve });
      // input_request goes to the same frontend (routing identity) that sent the execute request.
      this.options.transport.send("stdin", this.message(parent, "input_request", { prompt, password }, {}, parent.identities));
    });
  }

  private stdinMessage(msg: Request): void {
    if (msg.header.msg_type !== "input_reply") {
      this.log(`ignored ${msg.header.msg_type} on stdin; only input_reply is expected there`);
      return;
    }
    // Replies carry the execute request as parent; the oldest waiting input() of that request gets it.
    const parentId = msg.parent_header.msg_id;
    const index = Math.max(0, this.pendingInputs.findIndex((p) => p.requestId === parentId));
    const pending = this.pendingInputs.splice(index, 1)[0];
    if (!pending) {
      this.log("ignored an input_reply: no input() is waiting for one");
      return;
    }
    pending.resolve(isObject(msg.content) && typeof msg.content.value === "string" ? msg.content.value : "");
  }

  private message(parent: JupyterMessage<unknown> | undefined, msgType: string, content: unknown, metadata: Content = {}, identities: Buffer[] = []): JupyterMessage<unknown> {
    const base: JupyterMessage<unknown> = parent ?? { identities: [], header: {} as JupyterMessage["header"], parent_header: {}, metadata: {}, content: {}, buffers: [] };
    return { ...replyTo(base, msgType, content, this.options.session, metadata), identities };
  }

  private publish(parent: JupyterMessage<unknown>, msgType: string, content: Content): void {
    this.lastSink?.flush();
    this.options.transport.send("iopub", this.message(parent, msgType, content));
  }

  private reply(parent: Request, msgType: string, content: Content): void {
    // A client that stops reading at the reply (and does not wait for idle) still has all output.
    this.lastSink?.flush();
    this.options.transport.send("shell", this.message(parent, msgType, content, {}, parent.identities));
  }
}

function describeFailure(err: unknown): { ename: string; evalue: string; traceback: string[] } {
  if (err instanceof CellError) return { ename: err.ename, evalue: err.evalue, traceback: err.traceback };
  if (err instanceof RequestError) return { ename: err.ename, evalue: err.message, traceback: [`${err.ename}: ${err.message}`] };
  if (err instanceof Error) {
    return { ename: err.name || "Error", evalue: err.message, traceback: (err.stack ?? `${err.name}: ${err.message}`).split("\n") };
  }
  return { ename: "Error", evalue: String(err), traceback: [`Error: ${String(err)}`] };
}

function plainText(bundle: MimeBundle | undefined): string | undefined {
  const text = bundle?.["text/plain"];
  return typeof text === "string" ? text : undefined;
}
