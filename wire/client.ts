// The client side of the Jupyter protocol: talks to any kernel (ours, a worker, ipykernel) from
// its connection info. Used by `nbjob run` and by the notebook to send bundles to worker kernels.
import { randomUUID } from "node:crypto";
import { Dealer, Request, Subscriber } from "zeromq";
import { socketAddress } from "./connection";
import type { ConnectionInfo } from "./connection";
import { DisplayRegistry, OutputArea } from "./iopub-outputs";
import type { NotebookOutput } from "./iopub-outputs";
import { Signer, WireError, decodeMessage, encodeMessage, newHeader } from "./message";
import type { JupyterMessage, MessageHeader } from "./message";

export type ClientRequestChannel = "shell" | "control";
type DealerChannel = ClientRequestChannel | "stdin";
type Content = Record<string, unknown>;

/** The kernel went away (process exited, heartbeats stopped) or the client was closed. */
export class KernelLostError extends Error {
  override name = "KernelLostError";
}

/** A request got no answer in time. The kernel may still be working on it. */
export class KernelTimeoutError extends Error {
  override name = "KernelTimeoutError";
}

export interface LanguageInfo {
  name: string;
  version?: string;
  mimetype?: string;
  file_extension?: string;
  pygments_lexer?: string;
  codemirror_mode?: unknown;
  nbconvert_exporter?: string;
  [extra: string]: unknown;
}

export interface KernelInfoReply {
  status: "ok" | "error";
  protocol_version: string;
  implementation: string;
  implementation_version: string;
  language_info: LanguageInfo;
  banner: string;
  [extra: string]: unknown;
}

export interface ExecuteReply {
  status: "ok" | "error" | "aborted";
  execution_count?: number | null;
  ename?: string;
  evalue?: string;
  traceback?: string[];
  payload?: Content[];
  user_expressions?: Content;
  [extra: string]: unknown;
}

export interface ConnectOptions {
  /** Session id, also the routing id of the shell/control/stdin sockets. Default: a random UUID. */
  session?: string;
  username?: string;
  /** How errors and logs name the kernel. Default: `kernel "<kernel_name>" at <shell address>`. */
  name?: string;
  /** Wait until the kernel answers kernel_info_request and iopub delivers. Default true. */
  waitForReady?: boolean;
  /** How long waiting for the kernel may take. Default 60 000 ms (nbclient's startup_timeout). */
  readyTimeoutMs?: number;
  /** Timeout of requests other than execute_request, unless the call gives one. Default 60 000 ms. */
  requestTimeoutMs?: number;
  /**
   * While requests are pending, heartbeats are checked; after this long without one, pending
   * requests are rejected with KernelLostError. Default 10 000 ms; 0 turns the check off.
   */
  heartbeatDeadMs?: number;
  /**
   * After execute_reply, how long iopub may stay silent before the wait for its `idle` ends
   * anyway (every message of the request starts this wait again, so a long output still
   * arriving is waited for). Default 5 000 ms.
   */
  iopubGraceMs?: number;
  /** Where dropped messages and other warnings go. Default: stderr. */
  log?: (line: string) => void;
}

export interface RequestOptions {
  metadata?: Content;
  buffers?: Buffer[];
  /** Reject with KernelTimeoutError if no reply within this many ms; 0 waits forever. */
  timeoutMs?: number;
}

export interface ExecuteOptions {
  /** Whether the kernel may ask for input. Default: true when `onInput` is given. */
  allowStdin?: boolean;
  silent?: boolean;
  /** Default: !silent, as the spec says. */
  storeHistory?: boolean;
  stopOnError?: boolean;
  userExpressions?: Record<string, string>;
  /** Sent as metadata.cellId, which kernels use to name the cell in errors. */
  cellId?: string;
  /** Every iopub message caused by this request, as it arrives (before it is added to outputs). */
  onIopub?(msg: JupyterMessage): void;
  /** Answers an input_request. Without it, input requests are answered with an empty string. */
  onInput?(prompt: string, password: boolean): Promise<string>;
  /** Display ids shared across cells (so update_display_data can reach an earlier cell). */
  displays?: DisplayRegistry;
  /** Reject with KernelTimeoutError if the kernel has not replied in this many ms. Default: no limit. */
  timeoutMs?: number;
}

export interface ExecuteResult {
  reply: JupyterMessage<ExecuteReply>;
  status: ExecuteReply["status"];
  outputs: NotebookOutput[];
  executionCount: number | null;
  /** False when the wait for iopub's `idle` was given up: outputs may be missing. */
  complete: boolean;
}

interface PendingRequest {
  description: string;
  resolve(msg: JupyterMessage): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
  /** Requests sent before the kernel is known to be up do not count for the heartbeat check. */
  watched: boolean;
}

interface ExecutionState {
  area: OutputArea;
  onIopub?: (msg: JupyterMessage) => void;
  onInput?: (prompt: string, password: boolean) => Promise<string>;
  idle: boolean;
  markIdle(): void;
  /** When the last iopub message of this request arrived (ms, Date.now()). */
  lastIopubAt: number;
  /** Set when the wait ended because the kernel was lost or the client closed, not at idle. */
  lost?: boolean;
}

export type ClientCommHandler = (data: Content, msg: JupyterMessage) => void;

/** One comm (a channel for custom messages) between this client and a kernel. */
export class ClientComm {
  private readonly messageHandlers = new Set<ClientCommHandler>();
  private readonly closeHandlers = new Set<ClientCommHandler>();
  private closedFlag = false;

  constructor(
    readonly commId: string,
    readonly targetName: string,
    private readonly client: KernelClient,
  ) {}

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Sends comm_msg on shell; resolves with the message id once it is queued. */
  async send(data: Content, options: { metadata?: Content; buffers?: Buffer[] } = {}): Promise<string> {
    if (this.closedFlag) throw new Error(`comm ${this.commId} (target "${this.targetName}") is closed; open a new one`);
    return this.client.sendShellMessage("comm_msg", { comm_id: this.commId, data }, options);
  }

  async close(data: Content = {}): Promise<void> {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.client.forgetComm(this.commId);
    await this.client.sendShellMessage("comm_close", { comm_id: this.commId, data });
  }

  /** Called for each comm_msg from the kernel; returns a function that unsubscribes. */
  onMsg(handler: ClientCommHandler): () => void {
    this.messageHandlers.add(handler);
    return () => this.messageHandlers.delete(handler);
  }

  onClose(handler: ClientCommHandler): () => void {
    this.closeHandlers.add(handler);
    return () => this.closeHandlers.delete(handler);
  }

  /** @internal called by the client for iopub comm messages. */
  deliver(msg: JupyterMessage, log: (line: string) => void): void {
    const data = (msg.content.data && typeof msg.content.data === "object" ? msg.content.data : {}) as Content;
    const closing = msg.header.msg_type === "comm_close";
    if (closing) this.closedFlag = true;
    for (const handler of closing ? this.closeHandlers : this.messageHandlers) {
      try {
        handler(data, msg);
      } catch (err) {
        log(`a handler of comm "${this.targetName}" threw: ${(err as Error).message}`);
      }
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

export class KernelClient {
  readonly session: string;
  readonly name: string;
  /** The kernel's kernel_info reply, once asked (connect asks unless waitForReady is false). */
  kernelInfo?: KernelInfoReply;
  /** Messages dropped because their signature was wrong or they were malformed. */
  droppedMessages = 0;

  private readonly signer: Signer;
  private readonly username: string;
  private readonly dealers: Record<DealerChannel, Dealer>;
  private readonly iopub: Subscriber;
  private heartbeat?: Request;
  private heartbeatChain: Promise<unknown> = Promise.resolve();
  private readonly sendChains: Record<DealerChannel, Promise<unknown>> = { shell: Promise.resolve(), control: Promise.resolve(), stdin: Promise.resolve() };
  private readonly pending = new Map<string, PendingRequest>();
  private readonly executions = new Map<string, ExecutionState>();
  private readonly iopubListeners = new Set<(msg: JupyterMessage) => void>();
  private readonly comms = new Map<string, ClientComm>();
  private readonly commTargets = new Map<string, (comm: ClientComm, openMsg: JupyterMessage) => void>();
  private readonly requestTimeoutMs: number;
  private readonly heartbeatDeadMs: number;
  private readonly iopubGraceMs: number;
  private readonly log: (line: string) => void;
  private closedReason?: Error;
  private ready = false;
  private monitorRunning = false;

  private constructor(readonly info: ConnectionInfo, options: ConnectOptions) {
    this.session = options.session ?? randomUUID();
    this.username = options.username ?? "nbjob";
    this.name = options.name ?? `kernel${info.kernel_name ? ` "${info.kernel_name}"` : ""} at ${socketAddress(info, "shell")}`;
    this.signer = new Signer(info.key, info.signature_scheme);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
    this.heartbeatDeadMs = options.heartbeatDeadMs ?? 10_000;
    this.iopubGraceMs = options.iopubGraceMs ?? 5_000;
    this.log = options.log ?? ((line) => process.stderr.write(`nbjob client: ${line}\n`));
    // The kernel routes input_request to the identity that sent the execute_request, so shell
    // and stdin must share one routing id (jupyter_client uses the session id the same way).
    const makeDealer = (channel: DealerChannel) => {
      const socket = new Dealer({ routingId: this.session, linger: 0 });
      socket.connect(socketAddress(info, channel));
      return socket;
    };
    this.dealers = { shell: makeDealer("shell"), control: makeDealer("control"), stdin: makeDealer("stdin") };
    this.iopub = new Subscriber({ linger: 0 });
    this.iopub.subscribe();
    this.iopub.connect(socketAddress(info, "iopub"));
    void this.receiveLoop("shell", this.dealers.shell);
    void this.receiveLoop("control", this.dealers.control);
    void this.receiveLoop("stdin", this.dealers.stdin);
    void this.receiveLoop("iopub", this.iopub);
  }

  /** Connects to a kernel and, unless told not to, waits until it answers. */
  static async connect(info: ConnectionInfo, options: ConnectOptions = {}): Promise<KernelClient> {
    const client = new KernelClient(info, options);
    if (options.waitForReady === false) {
      client.ready = true;
      return client;
    }
    try {
      await client.waitForReady(options.readyTimeoutMs ?? 60_000);
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /**
   * Asks kernel_info until both a reply and an iopub message arrive: a SUB socket misses what
   * was published before its subscription reached the kernel, so a reply alone is not enough.
   */
  async waitForReady(timeoutMs: number): Promise<KernelInfoReply> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !this.closed) {
      let sawIopub = false;
      const stopListening = this.onIopub(() => (sawIopub = true));
      try {
        const attemptMs = Math.max(100, Math.min(2_000, deadline - Date.now()));
        const reply = await this.sendRequest<KernelInfoReply>("shell", "kernel_info_request", {}, { timeoutMs: attemptMs }, false);
        this.kernelInfo = reply.content;
        for (let waited = 0; !sawIopub && waited < 1_000; waited += 20) await sleep(20);
        if (sawIopub) {
          this.ready = true;
          return reply.content;
        }
      } catch (err) {
        if (!(err instanceof KernelTimeoutError)) throw err;
      } finally {
        stopListening();
      }
    }
    if (this.closedReason) throw this.closedReason;
    throw new KernelTimeoutError(
      `${this.name} did not answer kernel_info_request within ${seconds(timeoutMs)}; check that the kernel is running and that the connection file (ports, key) is the kernel's`,
    );
  }

  /** Sends a request on shell or control and resolves with its reply. */
  request<Reply = Content>(channel: ClientRequestChannel, msgType: string, content: Content, options: RequestOptions = {}): Promise<JupyterMessage<Reply>> {
    return this.sendRequest<Reply>(channel, msgType, content, { ...options, timeoutMs: options.timeoutMs ?? this.requestTimeoutMs }, true);
  }

  async requestKernelInfo(options: RequestOptions = {}): Promise<KernelInfoReply> {
    const reply = await this.request<KernelInfoReply>("shell", "kernel_info_request", {}, options);
    this.kernelInfo = reply.content;
    return reply.content;
  }

  /** Interrupts the running cell with a control interrupt_request (kernels with interrupt_mode "message" and ipykernel ≥ 6). */
  async interrupt(options: RequestOptions = {}): Promise<void> {
    await this.request("control", "interrupt_request", {}, options);
  }

  /** Asks the kernel to shut down (or restart) and resolves with its reply. */
  async shutdown(options: { restart?: boolean; timeoutMs?: number } = {}): Promise<Content> {
    const reply = await this.request("control", "shutdown_request", { restart: options.restart ?? false }, { timeoutMs: options.timeoutMs ?? 10_000 });
    return reply.content;
  }

  /** True if the heartbeat echoes within `timeoutMs`. Never throws. */
  isAlive(timeoutMs = 3_000): Promise<boolean> {
    const check = this.heartbeatChain.then(() => this.pingOnce(timeoutMs));
    this.heartbeatChain = check.catch(() => undefined);
    return check;
  }

  /**
   * Runs code and resolves once both its execute_reply and its iopub `idle` arrived (iopub is a
   * separate socket, so its messages may come after the reply). Errors in the code resolve with
   * status "error"; only a lost kernel, a timeout or a closed client reject.
   */
  async execute(code: string, options: ExecuteOptions = {}): Promise<ExecuteResult> {
    const silent = options.silent ?? false;
    const content: Content = {
      code,
      silent,
      store_history: options.storeHistory ?? !silent,
      user_expressions: options.userExpressions ?? {},
      allow_stdin: options.allowStdin ?? options.onInput !== undefined,
      stop_on_error: options.stopOnError ?? true,
    };
    const header = newHeader("execute_request", this.session, this.username);
    let markIdle = () => {};
    const idle = new Promise<void>((resolve) => (markIdle = resolve));
    const state: ExecutionState = {
      area: new OutputArea(options.displays),
      onIopub: options.onIopub,
      onInput: options.onInput,
      idle: false,
      lastIopubAt: Date.now(),
      markIdle: () => {
        state.idle = true;
        markIdle();
      },
    };
    this.executions.set(header.msg_id, state);
    try {
      const metadata = options.cellId ? { cellId: options.cellId } : {};
      const reply = await this.sendRequest<ExecuteReply>("shell", "execute_request", content, { metadata, timeoutMs: options.timeoutMs ?? 0 }, true, header);
      const complete = (state.idle || (await this.waitForIdle(state, idle))) && !state.lost;
      const count = typeof reply.content.execution_count === "number" ? reply.content.execution_count : state.area.executionCount;
      return { reply, status: reply.content.status, outputs: state.area.outputs, executionCount: count ?? null, complete };
    } finally {
      this.executions.delete(header.msg_id);
    }
  }

  /**
   * iopub is a separate socket: a cell's output can still be arriving well after its
   * execute_reply. The wait ends at `idle`, or once iopub has said nothing about the request
   * for iopubGraceMs (a kernel that lost its idle); false then, and it is said in the log.
   */
  private async waitForIdle(state: ExecutionState, idle: Promise<void>): Promise<boolean> {
    state.lastIopubAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<false>((resolve) => {
      const check = () => {
        const quietFor = Date.now() - state.lastIopubAt;
        if (quietFor >= this.iopubGraceMs) resolve(false);
        else timer = setTimeout(check, this.iopubGraceMs - quietFor);
      };
      check();
    });
    const gotIdle = await Promise.race([idle.then(() => true), silent]);
    clearTimeout(timer);
    if (!gotIdle) this.log(`${this.name} sent execute_reply, then nothing on iopub for ${seconds(this.iopubGraceMs)} and no status "idle"; the cell's outputs may be incomplete`);
    return gotIdle;
  }

  /** Every iopub message (after its signature was checked); returns a function that unsubscribes. */
  onIopub(listener: (msg: JupyterMessage) => void): () => void {
    this.iopubListeners.add(listener);
    return () => this.iopubListeners.delete(listener);
  }

  /** Opens a comm to `targetName` in the kernel (which must have registered that target). */
  async openComm(targetName: string, data: Content = {}, options: { metadata?: Content; buffers?: Buffer[] } = {}): Promise<ClientComm> {
    const comm = new ClientComm(randomUUID().replace(/-/g, ""), targetName, this);
    this.comms.set(comm.commId, comm);
    await this.sendShellMessage("comm_open", { comm_id: comm.commId, target_name: targetName, data }, options);
    return comm;
  }

  /** Accepts comms that the kernel opens to `targetName`. */
  registerCommTarget(targetName: string, onOpen: (comm: ClientComm, openMsg: JupyterMessage) => void): void {
    this.commTargets.set(targetName, onOpen);
  }

  /** The kernel's open comms (optionally only those of one target): comm id -> target name. */
  async commInfo(targetName?: string): Promise<Record<string, string>> {
    const reply = await this.request<{ comms?: Record<string, { target_name?: string }> }>("shell", "comm_info_request", targetName ? { target_name: targetName } : {});
    const result: Record<string, string> = {};
    for (const [id, entry] of Object.entries(reply.content.comms ?? {})) result[id] = entry.target_name ?? "";
    return result;
  }

  /** @internal sends a shell message that has no reply (comm messages); resolves with its id. */
  async sendShellMessage(msgType: string, content: Content, options: { metadata?: Content; buffers?: Buffer[] } = {}): Promise<string> {
    if (this.closedReason) throw this.closedReason;
    const header = newHeader(msgType, this.session, this.username);
    await this.send("shell", { identities: [], header, parent_header: {}, metadata: options.metadata ?? {}, content, buffers: options.buffers ?? [] });
    return header.msg_id;
  }

  /** @internal */
  forgetComm(commId: string): void {
    this.comms.delete(commId);
  }

  /**
   * Rejects every pending request with `error` (the launcher calls this when the kernel process
   * exits). The client stays usable: a restarted kernel on the same ports answers it again.
   */
  rejectPending(error: Error): void {
    for (const [msgId, request] of this.pending) {
      this.pending.delete(msgId);
      clearTimeout(request.timer);
      request.reject(error);
    }
    for (const state of this.executions.values()) {
      state.lost = true;
      state.markIdle();
    }
  }

  /** Closes the sockets; pending requests reject with `reason` (or a KernelLostError saying the client closed). */
  close(reason?: Error): void {
    if (this.closedReason) return;
    this.closedReason = reason ?? new KernelLostError(`the client of ${this.name} was closed`);
    this.rejectPending(this.closedReason);
    for (const socket of [...Object.values(this.dealers), this.iopub, this.heartbeat]) socket?.close();
    this.heartbeat = undefined;
  }

  private sendRequest<Reply>(
    channel: ClientRequestChannel,
    msgType: string,
    content: Content,
    options: RequestOptions,
    watched: boolean,
    header: MessageHeader = newHeader(msgType, this.session, this.username),
  ): Promise<JupyterMessage<Reply>> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    const description = `${msgType} on ${channel}`;
    const reply = new Promise<JupyterMessage<Reply>>((resolve, reject) => {
      const request: PendingRequest = { description, resolve: resolve as (msg: JupyterMessage) => void, reject, watched };
      const timeoutMs = options.timeoutMs ?? 0;
      if (timeoutMs > 0) {
        request.timer = setTimeout(() => {
          this.pending.delete(header.msg_id);
          reject(new KernelTimeoutError(`${this.name} did not answer ${description} within ${seconds(timeoutMs)}`));
        }, timeoutMs);
      }
      this.pending.set(header.msg_id, request);
    });
    const message: JupyterMessage = { identities: [], header, parent_header: {}, metadata: options.metadata ?? {}, content, buffers: options.buffers ?? [] };
    this.send(channel, message).catch((err: Error) => {
      const request = this.pending.get(header.msg_id);
      if (!request) return;
      this.pending.delete(header.msg_id);
      clearTimeout(request.timer);
      request.reject(new KernelLostError(`could not send ${description} to ${this.name}: ${err.message}`, { cause: err }));
    });
    if (watched) this.watchHeartbeat();
    return reply;
  }

  /** zeromq allows one send in flight per socket, so sends on a socket are chained. */
  private send(channel: DealerChannel, msg: JupyterMessage<unknown>): Promise<void> {
    const frames = encodeMessage(msg, this.signer);
    const socket = this.dealers[channel];
    const sent = this.sendChains[channel].then(() => socket.send(frames));
    this.sendChains[channel] = sent.catch(() => undefined);
    return sent;
  }

  private async receiveLoop(channel: DealerChannel | "iopub", socket: Dealer | Subscriber): Promise<void> {
    try {
      for await (const frames of socket) {
        let msg: JupyterMessage;
        try {
          msg = decodeMessage(frames, this.signer);
        } catch (err) {
          if (!(err instanceof WireError)) throw err;
          this.droppedMessages += 1;
          // A wrong key makes every message bad: say it a few times, not thousands.
          if (this.droppedMessages <= 3 || this.droppedMessages % 100 === 0) {
            const hint = err.reason === "bad-signature" ? " (is the connection file's key the kernel's?)" : "";
            this.log(`dropped a message on ${channel} from ${this.name}: ${err.message}${hint} [${this.droppedMessages} dropped so far]`);
          }
          continue;
        }
        try {
          if (channel === "iopub") this.handleIopub(msg);
          else if (channel === "stdin") void this.handleStdin(msg);
          else this.handleReply(msg);
        } catch (err) {
          this.log(`failed to handle ${msg.header.msg_type} on ${channel} from ${this.name}: ${(err as Error).message}`);
        }
      }
    } catch (err) {
      if (!this.closed) this.log(`stopped receiving on ${channel} from ${this.name}: ${(err as Error).message}`);
    }
  }

  private handleReply(msg: JupyterMessage): void {
    const parentId = msg.parent_header.msg_id;
    const request = parentId ? this.pending.get(parentId) : undefined;
    // Replies to requests that timed out (or to another client's) are of no use to anyone.
    if (!request || !parentId) return;
    this.pending.delete(parentId);
    clearTimeout(request.timer);
    request.resolve(msg);
  }

  private handleIopub(msg: JupyterMessage): void {
    for (const listener of this.iopubListeners) {
      try {
        listener(msg);
      } catch (err) {
        this.log(`an iopub listener threw: ${(err as Error).message}`);
      }
    }
    const type = msg.header.msg_type;
    if (type === "comm_open" || type === "comm_msg" || type === "comm_close") this.handleCommMessage(msg);
    const parentId = msg.parent_header.msg_id;
    const execution = parentId ? this.executions.get(parentId) : undefined;
    if (!execution) return;
    execution.lastIopubAt = Date.now();
    try {
      execution.onIopub?.(msg);
    } catch (err) {
      this.log(`an onIopub handler threw: ${(err as Error).message}`);
    }
    if (type === "status") {
      if (msg.content.execution_state === "idle") execution.markIdle();
    } else execution.area.handle(msg);
  }

  private handleCommMessage(msg: JupyterMessage): void {
    const commId = String(msg.content.comm_id ?? "");
    if (msg.header.msg_type === "comm_open") {
      const targetName = String(msg.content.target_name ?? "");
      const onOpen = this.commTargets.get(targetName);
      if (!onOpen) {
        // Say no to the kernel, as frontends do, so it does not wait on a comm nobody reads.
        void this.sendShellMessage("comm_close", { comm_id: commId, data: {} }).catch(() => undefined);
        return;
      }
      const comm = new ClientComm(commId, targetName, this);
      this.comms.set(commId, comm);
      onOpen(comm, msg);
      return;
    }
    const comm = this.comms.get(commId);
    if (!comm) return;
    if (msg.header.msg_type === "comm_close") this.comms.delete(commId);
    comm.deliver(msg, this.log);
  }

  private async handleStdin(msg: JupyterMessage): Promise<void> {
    if (msg.header.msg_type !== "input_request") return;
    const parentId = msg.parent_header.msg_id;
    const execution = parentId ? this.executions.get(parentId) : undefined;
    const prompt = String(msg.content.prompt ?? "");
    const password = msg.content.password === true;
    let value = "";
    if (execution?.onInput) {
      try {
        value = await execution.onInput(prompt, password);
      } catch (err) {
        this.log(`answering input_request "${prompt}" failed (${(err as Error).message}); sent an empty answer`);
      }
    } else {
      this.log(`${this.name} asked for input ("${prompt}") but nobody can answer here; sent an empty answer`);
    }
    if (this.closed) return;
    const header = newHeader("input_reply", this.session, this.username);
    await this.send("stdin", { identities: [], header, parent_header: msg.header, metadata: {}, content: { value }, buffers: [] }).catch((err: Error) =>
      this.log(`could not send input_reply to ${this.name}: ${err.message}`),
    );
  }

  private async pingOnce(timeoutMs: number): Promise<boolean> {
    if (this.closed) return false;
    // A REQ socket whose reply never came cannot send again, so each failed ping gets a new one.
    if (!this.heartbeat) {
      this.heartbeat = new Request({ linger: 0 });
      this.heartbeat.connect(socketAddress(this.info, "hb"));
    }
    const socket = this.heartbeat;
    socket.sendTimeout = timeoutMs;
    socket.receiveTimeout = timeoutMs;
    try {
      const payload = Buffer.from(randomUUID());
      await socket.send(payload);
      const [echo] = await socket.receive();
      return echo.equals(payload);
    } catch {
      socket.close();
      if (this.heartbeat === socket) this.heartbeat = undefined;
      return false;
    }
  }

  private hasWatchedWork(): boolean {
    for (const request of this.pending.values()) if (request.watched) return true;
    return false;
  }

  /** While requests wait, checks the heartbeat so a dead kernel fails them instead of hanging. */
  private watchHeartbeat(): void {
    if (this.monitorRunning || this.heartbeatDeadMs <= 0 || !this.ready || this.closed) return;
    this.monitorRunning = true;
    void (async () => {
      let lastBeat = Date.now();
      try {
        while (!this.closed && this.hasWatchedWork()) {
          const alive = await this.isAlive(Math.min(2_000, this.heartbeatDeadMs));
          if (alive) lastBeat = Date.now();
          else if (Date.now() - lastBeat >= this.heartbeatDeadMs) {
            this.rejectPending(new KernelLostError(`${this.name} stopped answering heartbeats for ${seconds(Date.now() - lastBeat)}; it has probably died`));
            break;
          }
          await sleep(alive ? 1_000 : 100);
        }
      } finally {
        this.monitorRunning = false;
        // A request may have arrived just as the loop was leaving.
        if (!this.closed && this.hasWatchedWork()) this.watchHeartbeat();
      }
    })();
  }
}
