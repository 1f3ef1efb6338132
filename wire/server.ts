// The kernel side of a Jupyter connection: binds the five sockets a connection file names,
// answers heartbeats, hands out verified messages per channel and signs what it sends.
// Shared by the notebook kernel (inside its socket thread) and the worker kernel.
import * as zmq from "zeromq";
import { decodeMessage, encodeMessage, replyTo, Signer, WireError, type JupyterMessage, type MessageHeader } from "./message";
import { socketAddress, type Channel, type ConnectionInfo } from "./connection";

/** Channels a frontend sends requests on. */
export type RequestChannel = "shell" | "control" | "stdin";
/** Channels the kernel sends on (iopub is publish-only). */
export type SendChannel = RequestChannel | "iopub";

export type MessageHandler = (channel: RequestChannel, msg: JupyterMessage) => void;

export interface KernelSocketsOptions {
  /** Where dropped or unusable messages are reported; default: one line on stderr. */
  log?: (line: string) => void;
  /** Milliseconds unsent messages may linger when closing, so a last reply still leaves. Default 1000. */
  lingerMs?: number;
  /**
   * Bytes of iopub messages that may wait for slow frontends before further `stream` messages
   * are dropped (counted, and reported to the cell by a note in their place). Default 128 MiB.
   */
  iopubBufferBytes?: number;
}

const DELIMITER = "<IDS|MSG>";
// How long iopub messages wait for a first subscriber before they are sent to nobody.
const FIRST_SUBSCRIBER_WAIT_MS = 10_000;
export const DEFAULT_IOPUB_BUFFER_BYTES = 128 * 1024 * 1024;
// While a frontend's queue is full, sending is tried again after 1 ms, doubling up to this.
const IOPUB_RETRY_MAX_MS = 50;

/** Stream output of one request that was dropped because frontends were not reading it. */
interface DroppedOutput {
  parent: MessageHeader;
  messages: number;
  lines: number;
  bytes: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The five bound sockets of one kernel. Incoming messages whose signature is wrong or missing
 * are dropped (and logged) before anyone sees them; a signed request that cannot be decoded
 * gets an error reply, so a frontend is never left waiting without a reason.
 */
export class KernelSockets {
  /** The connection as bound: ports given as 0 are replaced by the ports actually chosen. */
  readonly info: ConnectionInfo;
  readonly signer: Signer;
  /** The kernel's session id, put in the header of every message it sends. */
  readonly session: string;

  private readonly sockets: { shell: zmq.Router; control: zmq.Router; stdin: zmq.Router; iopub: zmq.XPublisher; hb: zmq.Reply };
  // zeromq.js allows one pending send per socket; chaining keeps concurrent senders in order.
  private readonly sendQueues = new Map<SendChannel, Promise<void>>();
  private readonly loops: Promise<void>[] = [];
  private readonly log: (line: string) => void;
  private closed = false;
  // Set by close(): a frontend that is not reading may hold iopub up for lingerMs more, no longer.
  private closingSince: number | undefined;
  private readonly lingerMs: number;
  // iopub never drops silently: bytes waiting to be handed to ZeroMQ, and what was left out.
  private readonly iopubBufferBytes: number;
  private iopubPendingBytes = 0;
  private readonly droppedOutput = new Map<string, DroppedOutput>();
  /** Opens the iopub queue: called on the first subscription, after the wait, or on close. */
  private releaseIopub: () => void = () => {};

  private constructor(info: ConnectionInfo, session: string, options: KernelSocketsOptions) {
    this.info = { ...info };
    this.signer = new Signer(info.key, info.signature_scheme);
    this.session = session;
    this.log = options.log ?? ((line) => process.stderr.write(`nbjob kernel: ${line}\n`));
    const linger = options.lingerMs ?? 1000;
    this.lingerMs = linger;
    this.iopubBufferBytes = options.iopubBufferBytes ?? DEFAULT_IOPUB_BUFFER_BYTES;
    // A frontend that reconnects (jupyter_client's stop_channels/start_channels, a page reload)
    // comes back with the same routing identity (its session id). Without handover a Router
    // ignores the new connection while it still holds the old one, so every request of the
    // reconnected client went unanswered whenever its reconnect beat the old socket's close.
    const router = () => new zmq.Router({ linger, handover: true });
    this.sockets = {
      shell: router(),
      control: router(),
      stdin: router(),
      // A publisher drops what a subscriber's full queue cannot take, silently: output, even the
      // idle status a client waits for. noDrop makes it refuse instead (EAGAIN) and send()
      // tries again once the frontend has read some; the wait is bounded by iopubBufferBytes.
      iopub: new zmq.XPublisher({ linger, noDrop: true }),
      hb: new zmq.Reply({ linger: 0 }),
    };
    // A publisher drops what it sends before a subscriber is connected. A frontend reconnects its
    // shell and iopub sockets independently (after a restart, say), so its first request can be
    // answered before its iopub is back, and the status and outputs it waits for would be lost.
    // Holding iopub until the first subscription arrives closes that window.
    const firstSubscriber = new Promise<void>((resolve) => (this.releaseIopub = resolve));
    const wait = setTimeout(() => this.releaseIopub(), FIRST_SUBSCRIBER_WAIT_MS);
    wait.unref();
    this.sendQueues.set("iopub", firstSubscriber.finally(() => clearTimeout(wait)));
  }

  /**
   * Binds every socket to the address in `info`, then starts delivering messages to `onMessage`.
   * Rejects with a message naming the address when a port is taken.
   */
  static async bind(info: ConnectionInfo, session: string, onMessage: MessageHandler, options: KernelSocketsOptions = {}): Promise<KernelSockets> {
    const kernel = new KernelSockets(info, session, options);
    try {
      for (const channel of ["shell", "control", "stdin", "iopub", "hb"] as const) {
        await kernel.bindOne(channel);
      }
    } catch (err) {
      await kernel.close();
      throw err;
    }
    kernel.loops.push(kernel.heartbeatLoop(), kernel.subscriptionLoop());
    for (const channel of ["shell", "control", "stdin"] as const) kernel.loops.push(kernel.receiveLoop(channel, onMessage));
    return kernel;
  }

  private async bindOne(channel: Channel): Promise<void> {
    const port = this.info[`${channel}_port` as const];
    const address = port === 0 && this.info.transport === "tcp" ? `tcp://${this.info.ip}:*` : socketAddress(this.info, channel);
    try {
      await this.sockets[channel].bind(address);
    } catch (err) {
      throw new Error(`cannot bind the kernel's ${channel} socket to ${address}: ${(err as Error).message}; ${bindHint(err as NodeJS.ErrnoException, this.info.ip)}`, { cause: err });
    }
    if (port === 0) {
      const bound = this.sockets[channel].lastEndpoint ?? "";
      this.info[`${channel}_port` as const] = Number(bound.slice(bound.lastIndexOf(":") + 1));
    }
  }

  /** Signs and sends `msg`. Messages on one channel leave in the order `send` was called. */
  send(channel: SendChannel, msg: JupyterMessage<unknown>): Promise<void> {
    const frames = encodeMessage(msg, this.signer);
    if (channel !== "iopub") return this.enqueue(channel, msg.header.msg_type, frames, 0);
    const bytes = frames.reduce((sum, frame) => sum + frame.length, 0);
    const parentId = String(msg.parent_header.msg_id ?? "");
    if (msg.header.msg_type === "stream" && this.iopubPendingBytes > 0 && this.iopubPendingBytes + bytes > this.iopubBufferBytes) {
      this.recordDropped(parentId, msg);
      return this.sendQueues.get(channel) ?? Promise.resolve();
    }
    // The note goes where the output was left out: before the request's next message (at the
    // latest its idle status), so the cell shows it among its outputs.
    const dropped = this.droppedOutput.get(parentId);
    if (dropped) {
      this.droppedOutput.delete(parentId);
      this.enqueue("iopub", "stream", encodeMessage(this.droppedNote(dropped), this.signer), 0);
    }
    this.iopubPendingBytes += bytes;
    return this.enqueue(channel, msg.header.msg_type, frames, bytes);
  }

  private enqueue(channel: SendChannel, msgType: string, frames: Buffer[], bytes: number): Promise<void> {
    const previous = this.sendQueues.get(channel) ?? Promise.resolve();
    const next = previous.then(async () => {
      try {
        if (!this.closed) await this.sendFrames(channel, frames);
      } catch (err) {
        // A frontend that went away must not take the kernel down; it finds the kernel on reconnect.
        this.log(`could not send ${msgType} on ${channel}: ${(err as Error).message}`);
      } finally {
        this.iopubPendingBytes -= bytes;
        // Output dropped after a request's last message (a timer printing after its cell) gets
        // its note once the frontends have caught up.
        if (channel === "iopub" && this.iopubPendingBytes === 0) this.sendDroppedNotes();
      }
    });
    this.sendQueues.set(channel, next);
    return next;
  }

  /** iopub refuses (EAGAIN) while a subscriber's queue is full: wait for the frontend to read. */
  private async sendFrames(channel: SendChannel, frames: Buffer[]): Promise<void> {
    for (let delay = 1; ; delay = Math.min(delay * 2, IOPUB_RETRY_MAX_MS)) {
      try {
        await this.sockets[channel].send(frames);
        return;
      } catch (err) {
        const full = channel === "iopub" && (err as { code?: string }).code === "EAGAIN";
        const givenUp = this.closingSince !== undefined && Date.now() - this.closingSince >= this.lingerMs;
        if (!full || givenUp || this.closed) throw err;
      }
      await sleep(delay);
    }
  }

  private sendDroppedNotes(): void {
    for (const dropped of this.droppedOutput.values()) this.enqueue("iopub", "stream", encodeMessage(this.droppedNote(dropped), this.signer), 0);
    this.droppedOutput.clear();
  }

  private recordDropped(parentId: string, msg: JupyterMessage<unknown>): void {
    const text = String((msg.content as { text?: unknown }).text ?? "");
    const entry = this.droppedOutput.get(parentId) ?? { parent: msg.parent_header as MessageHeader, messages: 0, lines: 0, bytes: 0 };
    entry.messages += 1;
    entry.lines += text.split("\n").length - 1;
    entry.bytes += Buffer.byteLength(text);
    this.droppedOutput.set(parentId, entry);
    if (entry.messages === 1) this.log(`iopub: ${mib(this.iopubBufferBytes)} of output is waiting for frontends that read slowly; dropping stream output of ${entry.parent.msg_type ?? "a message"} ${parentId} (the cell gets a note saying how much)`);
  }

  private droppedNote(dropped: DroppedOutput): JupyterMessage<unknown> {
    const text = `\n[nbjob: ${dropped.lines.toLocaleString("en-US")} lines (${dropped.bytes.toLocaleString("en-US")} bytes) of output were dropped here: ` +
      `the frontend read them more slowly than the cell printed, and ${mib(this.iopubBufferBytes)} were already waiting to be sent]\n`;
    const parent: JupyterMessage<unknown> = { ...orphan, header: dropped.parent };
    return { ...replyTo(parent, "stream", { name: "stderr", text }, this.session), identities: [] };
  }

  /** Sends a reply to `parent` on `channel` (shell, control or stdin). */
  reply(channel: RequestChannel, parent: JupyterMessage<unknown>, msgType: string, content: unknown, metadata: Record<string, unknown> = {}): Promise<void> {
    return this.send(channel, replyTo(parent, msgType, content, this.session, metadata));
  }

  /** Publishes on iopub with `parent` as the parent header (no routing identities on iopub). */
  publish(parent: JupyterMessage<unknown> | undefined, msgType: string, content: unknown, metadata: Record<string, unknown> = {}): Promise<void> {
    const msg = parent
      ? replyTo(parent, msgType, content, this.session, metadata)
      : replyTo(orphan, msgType, content, this.session, metadata);
    return this.send("iopub", { ...msg, identities: [] });
  }

  /** Closes every socket (letting queued replies leave first) and waits for the receive loops to end. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closingSince ??= Date.now();
    this.releaseIopub();
    await Promise.all([...this.sendQueues.values()]);
    this.closed = true;
    for (const socket of Object.values(this.sockets)) {
      if (!socket.closed) socket.close();
    }
    await Promise.allSettled(this.loops);
  }

  private async heartbeatLoop(): Promise<void> {
    const hb = this.sockets.hb;
    try {
      for await (const frames of hb) await hb.send(frames);
    } catch (err) {
      if (!this.closed) this.log(`heartbeat stopped: ${(err as Error).message}`);
    }
  }

  /** Subscriptions arrive as messages on the XPUB socket: a byte 1 (subscribe) and the topic. */
  private async subscriptionLoop(): Promise<void> {
    try {
      for await (const [frame] of this.sockets.iopub) {
        if (frame?.[0] === 1) this.releaseIopub();
      }
    } catch (err) {
      if (!this.closed) this.log(`iopub stopped reading subscriptions: ${(err as Error).message}`);
    }
  }

  private async receiveLoop(channel: RequestChannel, onMessage: MessageHandler): Promise<void> {
    const socket = this.sockets[channel];
    try {
      for await (const frames of socket) {
        let msg: JupyterMessage;
        try {
          msg = decodeMessage(frames, this.signer);
        } catch (err) {
          if (!(err instanceof WireError)) throw err;
          this.rejectUnusable(channel, frames, err);
          continue;
        }
        try {
          onMessage(channel, msg);
        } catch (err) {
          this.log(`handler for ${msg.header.msg_type} on ${channel} failed: ${(err as Error).stack ?? err}`);
        }
      }
    } catch (err) {
      if (!this.closed) this.log(`${channel} socket stopped receiving: ${(err as Error).message}`);
    }
  }

  /**
   * Unsigned or forged messages are dropped without an answer (answering would help a forger);
   * a correctly signed but malformed request gets an error reply when its header says what it was.
   */
  private rejectUnusable(channel: RequestChannel, frames: Buffer[], err: WireError): void {
    const header = err.reason === "malformed" ? readableHeader(frames, this.signer) : undefined;
    this.log(`dropped a message on ${channel}${header ? ` (${header.msg_type})` : ""}: ${err.message}`);
    if (!header || !header.msg_type.endsWith("_request")) return;
    const at = frames.findIndex((f) => f.toString() === DELIMITER);
    const parent: JupyterMessage<unknown> = { identities: frames.slice(0, at), header, parent_header: {}, metadata: {}, content: {}, buffers: [] };
    const evalue = `the ${header.msg_type} could not be read (${err.message}); send header, parent_header, metadata and content as JSON objects`;
    void this.reply(channel, parent, header.msg_type.replace(/_request$/, "_reply"), {
      status: "error", ename: "MalformedMessage", evalue, traceback: [`MalformedMessage: ${evalue}`],
    });
  }
}

const mib = (bytes: number) => `${Math.round(bytes / 1024 / 1024 * 10) / 10} MiB`;

/** Parent for iopub messages that answer no request (e.g. the first `starting` status). */
const orphan: JupyterMessage<unknown> = { identities: [], header: {} as MessageHeader, parent_header: {}, metadata: {}, content: {}, buffers: [] };

/** The header of a message that failed to decode, when it is signed correctly and its header frame is readable. */
function readableHeader(frames: Buffer[], signer: Signer): MessageHeader | undefined {
  const at = frames.findIndex((f) => f.toString() === DELIMITER);
  if (at < 0 || frames.length < at + 6) return undefined;
  if (!signer.verify(frames[at + 1].toString(), frames.slice(at + 2, at + 6))) return undefined;
  try {
    const header = JSON.parse(frames[at + 2].toString("utf8")) as MessageHeader;
    return typeof header?.msg_type === "string" && typeof header.msg_id === "string" ? header : undefined;
  } catch {
    return undefined;
  }
}

/** What to do about a socket that cannot bind, by the system's reason. */
function bindHint(err: NodeJS.ErrnoException, ip: string): string {
  if (err.code === "EADDRNOTAVAIL") return `${ip} is not an address of this machine; use one it has (127.0.0.1 for this machine only)`;
  if (err.code === "EADDRINUSE") return "the port is taken: is another kernel using this connection file? Start the kernel with a new one";
  return "check the connection file's ip, ports and transport";
}
