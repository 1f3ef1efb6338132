// The notebook kernel's socket thread: owns the five ZeroMQ sockets so heartbeats, kernel_info
// and control requests (interrupt, shutdown) are answered even while user code blocks the main
// thread. Shell and stdin requests are forwarded to the main thread; what it sends comes back
// here to be signed and sent.
import { isMainThread, parentPort, workerData, type MessagePort } from "node:worker_threads";
import { KernelSockets, type RequestChannel, type SendChannel } from "../wire/server";
import { PROTOCOL_VERSION, type JupyterMessage } from "../wire/message";
import type { ConnectionInfo } from "../wire/connection";

export interface SocketThreadData {
  role: "nbjob-socket-thread";
  info: ConnectionInfo;
  session: string;
  implementationVersion: string;
}

/** Messages from the socket thread to the main thread. */
export type SocketThreadEvent =
  | { kind: "bound" }
  | { kind: "bind-failed"; message: string }
  | { kind: "request"; channel: "shell" | "stdin"; msg: JupyterMessage }
  | { kind: "shutdown"; restart: boolean }
  | { kind: "closed" };

/** Messages from the main thread to the socket thread. */
export type SocketThreadCommand =
  | { kind: "ready"; typescriptVersion: string }
  | { kind: "send"; channel: SendChannel; msg: JupyterMessage<unknown> }
  | { kind: "close" };

// If the main thread cannot act on a shutdown (stuck in user code even after SIGINT), the
// process is ended from here so the frontend's restart is not left waiting.
const SHUTDOWN_GRACE_MS = 3000;

/** Buffers cross threads as plain Uint8Arrays; the codec needs Buffers back. */
export function reviveMessage<C>(msg: JupyterMessage<C>): JupyterMessage<C> {
  const toBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { ...msg, identities: msg.identities.map(toBuffer), buffers: msg.buffers.map(toBuffer) };
}

class SocketThread {
  private sockets: KernelSockets | undefined;
  private typescriptVersion: string | undefined;
  // kernel_info is held until the main thread is ready, so "kernel ready" means cells can run.
  private readonly heldKernelInfo: Array<[RequestChannel, JupyterMessage]> = [];
  private shuttingDown = false;
  // From the status messages the main thread sends: whether it is handling a request right now.
  private mainBusy = false;

  constructor(private readonly port: MessagePort, private readonly data: SocketThreadData) {}

  async start(): Promise<void> {
    this.port.on("message", (command: SocketThreadCommand) => void this.command(command));
    try {
      this.sockets = await KernelSockets.bind(this.data.info, this.data.session, (channel, msg) => this.incoming(channel, msg), {
        iopubBufferBytes: iopubBufferBytes(),
      });
    } catch (err) {
      this.post({ kind: "bind-failed", message: (err as Error).message });
      return;
    }
    void this.sockets.publish(undefined, "status", { execution_state: "starting" });
    this.post({ kind: "bound" });
  }

  private post(event: SocketThreadEvent): void {
    this.port.postMessage(event);
  }

  private async command(command: SocketThreadCommand): Promise<void> {
    const sockets = this.sockets;
    if (!sockets) return;
    switch (command.kind) {
      case "ready":
        this.typescriptVersion = command.typescriptVersion;
        for (const [channel, msg] of this.heldKernelInfo.splice(0)) this.answerKernelInfo(channel, msg);
        break;
      case "send":
        if (command.msg.header.msg_type === "status") this.mainBusy = (command.msg.content as { execution_state?: string }).execution_state === "busy";
        void sockets.send(command.channel, reviveMessage(command.msg));
        break;
      case "close":
        await sockets.close();
        this.post({ kind: "closed" });
        break;
    }
  }

  private incoming(channel: RequestChannel, msg: JupyterMessage): void {
    const type = msg.header.msg_type;
    if (type === "kernel_info_request") {
      if (this.typescriptVersion === undefined) this.heldKernelInfo.push([channel, msg]);
      else this.answerKernelInfo(channel, msg);
    } else if (channel === "control") {
      this.control(msg);
    } else if (channel === "shell" && this.shuttingDown) {
      this.answerAround(channel, msg, type.replace(/_request$/, "_reply"), errorContent("KernelShuttingDown",
        `the kernel is shutting down and did not run this ${type}; wait for it to restart, then send it again`));
    } else {
      this.post({ kind: "request", channel: channel as "shell" | "stdin", msg });
    }
  }

  private control(msg: JupyterMessage): void {
    const type = msg.header.msg_type;
    if (type === "interrupt_request") {
      // The main thread's vm stops a synchronous loop on SIGINT; its SIGINT handler rejects a pending await.
      process.kill(process.pid, "SIGINT");
      this.answerAround("control", msg, "interrupt_reply", { status: "ok" });
    } else if (type === "shutdown_request") {
      const restart = msg.content.restart === true;
      this.answerAround("control", msg, "shutdown_reply", { status: "ok", restart });
      // Protocol 5.4 also broadcasts the reply, so every frontend learns the kernel is going.
      void this.sockets?.publish(msg, "shutdown_reply", { status: "ok", restart });
      if (!this.shuttingDown) this.beginShutdown(restart);
    } else {
      const reply = type.endsWith("_request") ? type.replace(/_request$/, "_reply") : "error";
      this.answerAround("control", msg, reply, errorContent("UnknownMessageType",
        `nbjob's control channel answers kernel_info_request, interrupt_request and shutdown_request, not ${type}`));
    }
  }

  private beginShutdown(restart: boolean): void {
    this.shuttingDown = true;
    this.post({ kind: "shutdown", restart });
    // A running cell would hold the shutdown back until it ends: stop it now (state is going anyway).
    if (this.mainBusy) process.kill(process.pid, "SIGINT");
    const stuck = setTimeout(() => {
      // The main thread did not close us in time: it is blocked. Ask it to stop, then end the process.
      process.kill(process.pid, "SIGINT");
      setTimeout(async () => {
        await this.sockets?.close();
        process.kill(process.pid, "SIGKILL");
      }, 500).unref();
    }, SHUTDOWN_GRACE_MS);
    stuck.unref();
  }

  private answerKernelInfo(channel: RequestChannel, msg: JupyterMessage): void {
    this.answerAround(channel, msg, "kernel_info_reply", {
      status: "ok",
      protocol_version: PROTOCOL_VERSION,
      implementation: "nbjob",
      implementation_version: this.data.implementationVersion,
      language_info: {
        name: "typescript",
        version: this.typescriptVersion ?? "",
        mimetype: "text/typescript",
        file_extension: ".ts",
        pygments_lexer: "typescript",
        codemirror_mode: { name: "javascript", typescript: true },
        nbconvert_exporter: "script",
      },
      banner: `nbjob ${this.data.implementationVersion}: TypeScript ${this.typescriptVersion ?? ""} on Node ${process.versions.node}, with a PostgreSQL-backed job system`,
      help_links: [],
      debugger: false,
    });
  }

  /** busy, reply, idle: what frontends expect around every request. */
  private answerAround(channel: RequestChannel, msg: JupyterMessage, replyType: string, content: Record<string, unknown>): void {
    const sockets = this.sockets!;
    void sockets.publish(msg, "status", { execution_state: "busy" });
    void sockets.reply(channel, msg, replyType, content);
    void sockets.publish(msg, "status", { execution_state: "idle" });
  }
}

/** NBJOB_IOPUB_BUFFER_BYTES: how much output may wait for slow frontends before stream output is dropped (with a note). */
function iopubBufferBytes(): number | undefined {
  const value = Number(process.env.NBJOB_IOPUB_BUFFER_BYTES);
  return Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

function errorContent(ename: string, evalue: string): Record<string, unknown> {
  return { status: "error", ename, evalue, traceback: [`${ename}: ${evalue}`] };
}

if (!isMainThread && parentPort && (workerData as SocketThreadData | undefined)?.role === "nbjob-socket-thread") {
  void new SocketThread(parentPort, workerData as SocketThreadData).start();
}
