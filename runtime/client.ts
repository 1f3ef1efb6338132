// Client and views: the notebook's connection to worker kernels (a local cluster profile,
// connection files from anywhere, or kernels a Jupyter Server starts) and the views jobs are
// created on (one worker, or any idle one).
import { randomUUID } from "node:crypto";
import { inspect } from "node:util";
import type { GatewayOptions } from "./gateway";
import { ZmqTransport } from "./worker-transport";
import type { TransportComm, WorkerTransport } from "./worker-transport";
import { DEFAULT_PROFILE, listClusterWorkers, processAlive, readWorkerPid } from "./shared/cluster-files";
import { WORKER_COMM_TARGET } from "./shared/protocol";
import type { WorkerEvent, WorkerIdentity, WorkerKernelInfo } from "./shared/protocol";

export interface ConnectOptions {
  /** The local cluster profile whose workers to reach (default "default"). Ignored with `connectionFiles`. */
  profile?: string;
  /** Connection files of worker kernels (`nbjob worker --connection-file F`), on any host. */
  connectionFiles?: string[];
  /**
   * A Jupyter Server or Kernel/Enterprise Gateway that starts worker kernels (kernelspec
   * "nbjob-worker", from `npx nbjob install --worker`): running ones are reused, the missing ones
   * started; rc.close() shuts down the ones this client started.
   */
  gateway?: GatewayOptions;
  /** How long each worker may take to answer when connecting (ms). Default 10 000 (30 000 for a gateway, which starts kernels). */
  timeoutMs?: number;
}

/** What a job dispatched over the comm carries: the bundle's whole program (entries included) and its parameters. */
export interface DispatchBundle {
  source: string;
  hash: string;
  params: Record<string, unknown>;
  entries: string[];
  /** The stored bundle's signature; undefined when it has none (the worker then refuses it). */
  signature: string | undefined;
}

/** Receives the worker's events about one job (started, stream, done, failed, cancelled, error). */
export type JobEventHandler = (event: WorkerEvent) => void;

const ACK_TIMEOUT_MS = 15_000;

/** One worker kernel this notebook is connected to (over ZeroMQ or a Jupyter Server), and its `nbjob.worker` comm. */
export class WorkerConnection {
  private comm?: Promise<TransportComm>;
  private readonly jobHandlers = new Map<string, JobEventHandler>();
  private readonly acks = new Map<string, (event: WorkerEvent) => void>();

  constructor(
    readonly index: number,
    readonly transport: WorkerTransport,
    readonly identity: WorkerIdentity,
  ) {}

  get workerId(): string {
    return this.identity.worker_id;
  }

  /** Where the worker is: "connection file F" or "kernel ID on the Jupyter Server at URL". */
  get where(): string {
    return this.transport.where;
  }

  /** The worker's connection file; for a kernel reached through a Jupyter Server, what stands in for one. */
  get connectionFile(): string {
    return this.transport instanceof ZmqTransport ? this.transport.connectionFile : `(none: ${this.transport.where})`;
  }

  /**
   * Whether the worker answers its heartbeat. A busy machine can delay one echo, so a worker is
   * only called gone after `attempts` misses in a row.
   */
  async alive(timeoutMs = 2_000, attempts = 3): Promise<boolean> {
    for (let i = 0; i < attempts; i++) {
      if (this.transport.closed) return false;
      if (await this.transport.isAlive(timeoutMs)) return true;
    }
    return false;
  }

  /**
   * Sends a stored job (status queued, targeted at this worker) to run; resolves once the worker
   * accepted it. The worker records its progress in the store; `onEvent` gets the live events.
   */
  async run(jobId: number, bundle: DispatchBundle, onEvent: JobEventHandler): Promise<void> {
    this.jobHandlers.set(String(jobId), onEvent);
    const answer = await this.request({ action: "run", job_id: jobId, bundle, record: true });
    if (answer.action === "error") {
      this.jobHandlers.delete(String(jobId));
      throw new Error(`worker ${this.workerId} did not take job ${jobId}: ${answer.message}`);
    }
  }

  /** Asks the worker to stop a job it runs or queues (best effort: the store is what decides). */
  async cancel(jobId: number): Promise<void> {
    const comm = await this.openComm();
    await comm.send({ action: "cancel", job_id: jobId });
  }

  /** Stops delivering events of a job (e.g. once it finished). */
  forget(jobId: number): void {
    this.jobHandlers.delete(String(jobId));
  }

  /** Closes the connection (a kernel this client started on a Jupyter Server is shut down). */
  close(): Promise<void> {
    return this.transport.close();
  }

  private async request(data: Record<string, unknown>): Promise<WorkerEvent> {
    const comm = await this.openComm();
    const requestId = randomUUID();
    return new Promise<WorkerEvent>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(requestId);
        reject(new Error(`worker ${this.workerId} (${this.where}) did not acknowledge "${String(data.action)}" within ${ACK_TIMEOUT_MS / 1000} s; ${this.transport.checkHint}`));
      }, ACK_TIMEOUT_MS);
      this.acks.set(requestId, (event) => {
        clearTimeout(timer);
        this.acks.delete(requestId);
        resolve(event);
      });
      comm.send({ ...data, request_id: requestId }).catch((err: Error) => {
        clearTimeout(timer);
        this.acks.delete(requestId);
        reject(new Error(`could not send to worker ${this.workerId}: ${err.message}`, { cause: err }));
      });
    });
  }

  private openComm(): Promise<TransportComm> {
    this.comm ??= this.transport.openComm(WORKER_COMM_TARGET).then((comm) => {
      comm.onMsg((data) => this.deliver(data as WorkerEvent));
      comm.onClose(() => (this.comm = undefined));
      return comm;
    });
    return this.comm;
  }

  private deliver(event: WorkerEvent): void {
    const requestId = "request_id" in event ? event.request_id : undefined;
    if (requestId !== undefined) {
      const ack = this.acks.get(requestId);
      if (ack && (event.action === "queued" || event.action === "error")) {
        ack(event);
        return;
      }
    }
    const jobId = "job_id" in event && event.job_id !== undefined ? String(event.job_id) : undefined;
    if (jobId !== undefined) this.jobHandlers.get(jobId)?.(event);
  }
}

/** One worker: jobs created on it run there, queued behind its current job. */
export class DirectView {
  readonly kind = "direct" as const;
  constructor(readonly client: Client, readonly index: number, readonly worker: WorkerConnection) {}

  get workerId(): string {
    return this.worker.workerId;
  }

  [inspect.custom](): string {
    return `DirectView(worker ${this.index}: ${this.workerId})`;
  }
}

/** Any worker: jobs are queued in the store and each is taken by whichever worker is idle first. */
export class LoadBalancedView {
  readonly kind = "loadBalanced" as const;
  constructor(readonly client: Client) {}

  [inspect.custom](): string {
    return `LoadBalancedView(${this.client.workers.length} connected worker${this.client.workers.length === 1 ? "" : "s"}, and any other worker of the store)`;
  }
}

export type View = DirectView | LoadBalancedView;

const VIEW_BRAND = Symbol.for("nbjob.View");
for (const cls of [DirectView, LoadBalancedView]) Object.defineProperty(cls.prototype, VIEW_BRAND, { value: true });

/** Whether `value` is a view made by rc.view(i) or rc.loadBalanced(). */
export function isView(value: unknown): value is View {
  return typeof value === "object" && value !== null && (value as { [VIEW_BRAND]?: unknown })[VIEW_BRAND] === true;
}

/** A connected kernel as a worker: its kernel_info_reply must carry the `nbjob` field that names it. */
async function asWorker(index: number, transport: WorkerTransport, remedy: string): Promise<WorkerConnection> {
  const nbjob = transport.kernelInfo?.nbjob as WorkerKernelInfo | undefined;
  if (!nbjob || typeof nbjob.worker_id !== "string") {
    await transport.close();
    throw new Error(`the kernel of ${transport.where} is not an nbjob worker (it is "${String(transport.kernelInfo?.implementation ?? "unknown")}"); ${remedy}`);
  }
  const identity: WorkerIdentity = { worker_id: nbjob.worker_id, pid: nbjob.pid, host: nbjob.host, profile: nbjob.profile };
  return new WorkerConnection(index, transport, identity);
}

async function connectWorker(index: number, file: string, timeoutMs: number): Promise<WorkerConnection> {
  const transport = await ZmqTransport.connect(file, timeoutMs);
  return asWorker(index, transport, "jobs need worker kernels started with \"npx nbjob worker --connection-file FILE\" or \"npx nbjob cluster start\"");
}

/** Workers started (or found running) on a Jupyter Server; the module loads only when a gateway is used. */
async function connectGatewayWorkers(gateway: unknown, timeoutMs: number): Promise<{ workers: WorkerConnection[]; url: string }> {
  const { connectGateway, displayUrl } = await import("./gateway");
  const transports = await connectGateway(gateway, timeoutMs);
  const settled = await Promise.allSettled(transports.map((t, i) => asWorker(i, t, "give gateway.kernelName the kernelspec that \"npx nbjob install --worker\" wrote (default \"nbjob-worker\")")));
  const failures = settled.filter((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failures.length > 0) {
    await Promise.all(transports.map((t) => t.close()));
    throw new Error(failures.map((f) => (f.reason as Error).message).join("\n"));
  }
  return { workers: settled.map((s) => (s as PromiseFulfilledResult<WorkerConnection>).value), url: displayUrl((gateway as { url: string }).url) };
}

/** The notebook's connection to its workers: `await Client.connect()`, then `rc.view(i)` or `rc.loadBalanced()`. */
export class Client {
  private constructor(
    readonly workers: WorkerConnection[],
    readonly profile: string | null,
    /** The Jupyter Server the workers were reached through (URL without credentials), if any. */
    readonly gatewayUrl: string | null = null,
  ) {}

  /**
   * Connects to the workers of a local cluster profile (default "default"), to kernels named by
   * connection files, or to worker kernels on a Jupyter Server (`gateway`). Rejects naming the
   * file, profile or server when a worker cannot be reached.
   */
  static async connect(options: ConnectOptions = {}): Promise<Client> {
    if (typeof options !== "object" || options === null) throw new TypeError("Client.connect(options): options must be an object such as { profile: \"default\" } or { connectionFiles: [\"worker.json\"] }");
    if (options.timeoutMs !== undefined && (typeof options.timeoutMs !== "number" || !(options.timeoutMs > 0))) {
      throw new TypeError(`Client.connect({ timeoutMs }): timeoutMs must be a positive number of milliseconds; got ${String(options.timeoutMs)}`);
    }
    if (options.gateway !== undefined) {
      if (options.connectionFiles !== undefined || options.profile !== undefined) {
        throw new TypeError("Client.connect(): pass one of gateway, connectionFiles and profile");
      }
      const { workers, url } = await connectGatewayWorkers(options.gateway, options.timeoutMs ?? 30_000);
      return new Client(workers, null, url);
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    let files: string[];
    let profile: string | null = null;
    if (options.connectionFiles !== undefined) {
      if (!Array.isArray(options.connectionFiles) || options.connectionFiles.length === 0 || !options.connectionFiles.every((f) => typeof f === "string" && f !== "")) {
        throw new TypeError("Client.connect({ connectionFiles }): expected a non-empty array of connection file paths, e.g. [\"/tmp/worker-0.json\"]");
      }
      files = options.connectionFiles;
    } else {
      profile = options.profile ?? DEFAULT_PROFILE;
      const running = listClusterWorkers(profile).filter((w) => {
        const pid = readWorkerPid(w);
        return pid !== undefined && processAlive(pid);
      });
      if (running.length === 0) {
        throw new Error(`no workers of cluster profile "${profile}" are running; start them with "npx nbjob cluster start -n 2${profile === DEFAULT_PROFILE ? "" : ` --profile ${profile}`}", or pass { connectionFiles }`);
      }
      files = running.map((w) => w.connectionFile);
    }
    const settled = await Promise.allSettled(files.map((file, i) => connectWorker(i, file, timeoutMs)));
    const failures = settled.filter((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failures.length > 0) {
      for (const s of settled) if (s.status === "fulfilled") void s.value.close();
      throw new Error(failures.map((f) => (f.reason as Error).message).join("\n"));
    }
    return new Client(settled.map((s) => (s as PromiseFulfilledResult<WorkerConnection>).value), profile);
  }

  /** The connected workers' names, by index. */
  get ids(): string[] {
    return this.workers.map((w) => w.workerId);
  }

  /** A view on worker `index` (0-based, in the order of the profile or of connectionFiles). */
  view(index: number): DirectView {
    if (!Number.isInteger(index) || index < 0 || index >= this.workers.length) {
      throw new RangeError(`rc.view(${String(index)}): this client has ${this.workers.length} worker${this.workers.length === 1 ? "" : "s"} (indices 0 to ${this.workers.length - 1})`);
    }
    return new DirectView(this, index, this.workers[index]);
  }

  /** A view whose jobs run on whichever worker is idle; the rest wait in the store's queue. */
  loadBalanced(): LoadBalancedView {
    return new LoadBalancedView(this);
  }

  /** The connection to the worker with this name, if this client has one. */
  workerById(workerId: string): WorkerConnection | undefined {
    return this.workers.find((w) => w.workerId === workerId);
  }

  /**
   * Closes the connections. Workers and their jobs go on, except kernels this client started on a
   * Jupyter Server (gateway): those are shut down, cancelling what runs on them.
   */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.close()));
  }

  [inspect.custom](): string {
    const where = this.gatewayUrl !== null ? `Jupyter Server ${this.gatewayUrl}` : this.profile !== null ? `profile "${this.profile}"` : "connection files";
    return `Client(${where}: ${this.workers.map((w, i) => `${i}=${w.workerId}`).join(", ")})`;
  }
}
