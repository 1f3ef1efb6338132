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
}

const DELIMITER = "<IDS|MSG>";
// How long iopub messages wait for a first subscriber before they are sent to nobody.
const FIRST_SUBSCRIBER_WAIT_MS = 10_000;

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
  /** Opens the iopub queue: called on the first subscription, after the wait, or on close. */
  private releaseIopub: () => void = () => {};

  private constructor(info: ConnectionInfo, session: string, options: KernelSocketsOptions) {
    this.info = { ...info };
    this.signer = new Signer(info.key, info.signature_scheme);
    this.session = session;
    this.log = options.log ?? ((line) => process.stderr.write(`nbjob kernel: ${line}\n`));
    const linger = options.lingerMs ?? 1000;
    this.sockets = {
      shell: new zmq.Router({ linger }),
      control: new zmq.Router({ linger }),
      stdin: new zmq.Router({ linger }),
      iopub: new zmq.XPublisher({ linger }),
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
      throw new Error(`cannot bind the kernel's ${channel} socket to ${address}: ${(err as Error).message}; is another kernel using this connection file?`, { cause: err });
    }
    if (port === 0) {
      const bound = this.sockets[channel].lastEndpoint ?? "";
      this.info[`${channel}_port` as const] = Number(bound.slice(bound.lastIndexOf(":") + 1));
    }
  }

  /** Signs and sends `msg`. Messages on one channel leave in the order `send` was called. */
  send(channel: SendChannel, msg: JupyterMessage<unknown>): Promise<void> {
    const frames = encodeMessage(msg, this.signer);
    const previous = this.sendQueues.get(channel) ?? Promise.resolve();
    const next = previous.then(async () => {
      if (this.closed) return;
      try {
        await this.sockets[channel].send(frames);
      } catch (err) {
        // A frontend that went away must not take the kernel down; it finds the kernel on reconnect.
        this.log(`could not send ${msg.header.msg_type} on ${channel}: ${(err as Error).message}`);
      }
    });
    this.sendQueues.set(channel, next);
    return next;
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
