// Jupyter comms: named targets that frontends (widgets, job review) open channels to, and the
// channels themselves. One registry per process, so runtime code can register a target or open
// a comm without holding a reference to the kernel.
import { randomUUID } from "node:crypto";

/** What a comm_open carried: the frontend's (or our) first message on the new comm. */
export interface CommOpenMessage {
  comm_id: string;
  target_name: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  buffers: Buffer[];
}

export type CommTargetHandler = (comm: Comm, openMsg: CommOpenMessage) => void;
export type CommMessageHandler = (data: Record<string, unknown>, msg: { metadata: Record<string, unknown>; buffers: Buffer[] }) => void;
export type CommCloseHandler = (data: Record<string, unknown>) => void;

/** How the registry reaches the frontend: the kernel publishes these on iopub. */
export type CommPublisher = (msgType: "comm_open" | "comm_msg" | "comm_close", content: Record<string, unknown>, metadata: Record<string, unknown>, buffers: Buffer[]) => void;

/** One open comm. Messages from the frontend reach `onMsg` handlers; `send` goes to the frontend. */
export class Comm {
  private readonly messageHandlers: CommMessageHandler[] = [];
  private readonly closeHandlers: CommCloseHandler[] = [];
  private open = true;

  constructor(readonly id: string, readonly targetName: string, private readonly registry: CommRegistry) {}

  get isOpen(): boolean {
    return this.open;
  }

  send(data: Record<string, unknown>, metadata: Record<string, unknown> = {}, buffers: Buffer[] = []): void {
    if (!this.open) throw new Error(`comm ${this.id} (target "${this.targetName}") is closed; open a new comm to send more`);
    this.registry.publish("comm_msg", { comm_id: this.id, data }, metadata, buffers);
  }

  /** Closes the comm on both sides; closing twice does nothing. */
  close(data: Record<string, unknown> = {}): void {
    if (!this.open) return;
    this.registry.publish("comm_close", { comm_id: this.id, data }, {}, []);
    this.closedBy(data);
  }

  onMsg(handler: CommMessageHandler): void {
    this.messageHandlers.push(handler);
  }

  onClose(handler: CommCloseHandler): void {
    this.closeHandlers.push(handler);
  }

  /** @internal a comm_msg from the frontend */
  received(data: Record<string, unknown>, msg: { metadata: Record<string, unknown>; buffers: Buffer[] }): void {
    for (const handler of this.messageHandlers) runHandler(() => handler(data, msg), `comm ${this.targetName} message handler`);
  }

  /** @internal closed by either side */
  closedBy(data: Record<string, unknown>): void {
    this.open = false;
    this.registry.forget(this.id);
    for (const handler of this.closeHandlers) runHandler(() => handler(data), `comm ${this.targetName} close handler`);
  }
}

/** Comm targets and open comms of this process; the kernel attaches the publisher once it runs. */
export class CommRegistry {
  private readonly targets = new Map<string, CommTargetHandler>();
  private readonly comms = new Map<string, Comm>();
  private publisher: CommPublisher | undefined;

  attach(publisher: CommPublisher): void {
    this.publisher = publisher;
  }

  /** @internal */
  publish(...args: Parameters<CommPublisher>): void {
    if (!this.publisher) throw new Error("comms need a running nbjob kernel; this process has no frontend to talk to");
    this.publisher(...args);
  }

  /** @internal */
  forget(id: string): void {
    this.comms.delete(id);
  }

  registerTarget(name: string, handler: CommTargetHandler): void {
    this.targets.set(name, handler);
  }

  unregisterTarget(name: string): void {
    this.targets.delete(name);
  }

  hasTarget(name: string): boolean {
    return this.targets.has(name);
  }

  /** Opens a comm from the kernel side (e.g. a widget model); the frontend must know `targetName`. */
  open(targetName: string, data: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}, buffers: Buffer[] = []): Comm {
    const comm = new Comm(randomUUID(), targetName, this);
    this.publish("comm_open", { comm_id: comm.id, target_name: targetName, data }, metadata, buffers);
    this.comms.set(comm.id, comm);
    return comm;
  }

  /** Open comms, optionally only those of one target: what comm_info_reply lists. */
  info(targetName?: string): Record<string, { target_name: string }> {
    const comms: Record<string, { target_name: string }> = {};
    for (const comm of this.comms.values()) {
      if (targetName === undefined || comm.targetName === targetName) comms[comm.id] = { target_name: comm.targetName };
    }
    return comms;
  }

  /**
   * A frontend's comm_open. An unknown target is answered with comm_close, as the spec asks,
   * and the returned message says why (the kernel logs it).
   */
  handleOpen(open: CommOpenMessage): string | undefined {
    const handler = this.targets.get(open.target_name);
    if (!handler) {
      this.publish("comm_close", { comm_id: open.comm_id, data: {} }, {}, []);
      const known = [...this.targets.keys()].join(", ") || "none";
      return `comm_open for unknown target "${open.target_name}" was closed; registered targets: ${known}`;
    }
    const comm = new Comm(open.comm_id, open.target_name, this);
    this.comms.set(comm.id, comm);
    runHandler(() => handler(comm, open), `comm target "${open.target_name}"`);
    return undefined;
  }

  /** Returns a message naming the problem when the comm is not open. */
  handleMsg(commId: string, data: Record<string, unknown>, metadata: Record<string, unknown>, buffers: Buffer[]): string | undefined {
    const comm = this.comms.get(commId);
    if (!comm) return `comm_msg for comm ${commId}, which is not open; it was closed or never opened`;
    comm.received(data, { metadata, buffers });
    return undefined;
  }

  handleClose(commId: string, data: Record<string, unknown>): string | undefined {
    const comm = this.comms.get(commId);
    if (!comm) return `comm_close for comm ${commId}, which is not open`;
    comm.closedBy(data);
    return undefined;
  }
}

/** The registry of this process. */
export const commRegistry = new CommRegistry();

/** Registers `handler` to run when a frontend opens a comm to target `name`. */
export function registerCommTarget(name: string, handler: CommTargetHandler): void {
  commRegistry.registerTarget(name, handler);
}

/** Opens a comm to the frontend's target `name` (needs a running kernel). */
export function openComm(targetName: string, data?: Record<string, unknown>, metadata?: Record<string, unknown>, buffers?: Buffer[]): Comm {
  return commRegistry.open(targetName, data, metadata, buffers);
}

// A failing handler is the target's bug; it must not take down the kernel's message loop.
function runHandler(run: () => void, what: string): void {
  try {
    run();
  } catch (err) {
    process.stderr.write(`nbjob kernel: ${what} threw: ${(err as Error).stack ?? err}\n`);
  }
}
