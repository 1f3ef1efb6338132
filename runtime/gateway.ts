// Client.connect({ gateway }): worker kernels started and reached through a Jupyter Server (or a
// Kernel / Enterprise Gateway, which speak the same REST and WebSocket API), with
// @jupyterlab/services over Node's fetch and the `ws` WebSocket.
//
// Policy: running kernels of the worker kernelspec are reused first (a worker serves any
// notebook, as on a local cluster); only the missing ones are started, and only those are shut
// down by rc.close(). Kernels started here outlive the notebook unless rc.close() is called, so a
// job goes on when the notebook that submitted it is gone.
import { KernelAPI, KernelConnection, ServerConnection } from "@jupyterlab/services";
import type { Kernel } from "@jupyterlab/services";
import WebSocket from "ws";
import { redactUrl } from "../store";
import type { TransportComm, WorkerTransport } from "./worker-transport";
import { clusterKey, GATEWAY_CLUSTER_KEY_ENV } from "../store";

export const DEFAULT_WORKER_KERNEL = "nbjob-worker";

export interface GatewayOptions {
  /** The server's base URL, e.g. "http://127.0.0.1:8888" (with its base path, if it has one). */
  url: string;
  /** The server's token (Jupyter Server's --ServerApp.token; Enterprise Gateway's auth token). */
  token?: string;
  /** How many workers to connect to (running ones reused, the rest started). Default 1. */
  kernels?: number;
  /** The worker kernelspec's name on the server. Default "nbjob-worker". */
  kernelName?: string;
}

/** The URL as shown in messages: secrets masked by redactUrl (a token may be in the query). */
export function displayUrl(url: string): string {
  return redactUrl(url).replace(/\/$/, "");
}

function checkOptions(gateway: unknown): Required<GatewayOptions> {
  const example = "e.g. { gateway: { url: \"http://127.0.0.1:8888\", token: \"...\" } }";
  if (typeof gateway !== "object" || gateway === null) throw new TypeError(`Client.connect({ gateway }): gateway must be an object, ${example}`);
  const g = gateway as Partial<Record<keyof GatewayOptions, unknown>>;
  const unknown = Object.keys(g).filter((k) => !["url", "token", "kernels", "kernelName"].includes(k));
  if (unknown.length > 0) throw new TypeError(`Client.connect({ gateway }): unknown option${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}; the options are url, token, kernels, kernelName`);
  if (typeof g.url !== "string" || !/^https?:\/\/[^/]/i.test(g.url)) {
    throw new TypeError(`Client.connect({ gateway }): url must be the Jupyter Server's http(s) URL, ${example}; got ${typeof g.url === "string" ? JSON.stringify(displayUrl(g.url)) : typeof g.url}`);
  }
  if (g.token !== undefined && typeof g.token !== "string") throw new TypeError(`Client.connect({ gateway }): token must be a string; got ${typeof g.token}`);
  if (g.kernels !== undefined && (!Number.isInteger(g.kernels) || (g.kernels as number) < 1)) {
    throw new TypeError(`Client.connect({ gateway }): kernels must be a whole number of workers, at least 1; got ${String(g.kernels)}`);
  }
  if (g.kernelName !== undefined && (typeof g.kernelName !== "string" || g.kernelName === "")) {
    throw new TypeError(`Client.connect({ gateway }): kernelName must be a kernelspec name such as "${DEFAULT_WORKER_KERNEL}"`);
  }
  return { url: g.url, token: g.token ?? "", kernels: (g.kernels as number | undefined) ?? 1, kernelName: (g.kernelName as string | undefined) ?? DEFAULT_WORKER_KERNEL };
}

/** One REST call, its failures turned into one message that says what to do. */
async function rest<T>(what: string, url: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw restError(what, url, err);
  }
}

function restError(what: string, url: string, err: unknown): Error {
  const shown = displayUrl(url);
  if (err instanceof ServerConnection.ResponseError) {
    const status = err.response.status;
    if (status === 401 || status === 403) {
      return new Error(`the Jupyter Server at ${shown} refused the token (HTTP ${status}) when asked to ${what}; pass gateway.token: the token the server was started with (--ServerApp.token, or the one in the URL it printed)`, { cause: err });
    }
    if (status === 404) {
      return new Error(`${shown} answered HTTP 404 when asked to ${what}: it does not look like a Jupyter Server's base URL (e.g. http://127.0.0.1:8888, plus the base path if the server has one)`, { cause: err });
    }
    return new Error(`the Jupyter Server at ${shown} failed to ${what}: HTTP ${status} ${err.message}`, { cause: err });
  }
  if (err instanceof ServerConnection.NetworkError || err instanceof TypeError) {
    return new Error(`cannot reach the Jupyter Server at ${shown} (${(err as Error).message}); is it running, and is the URL right (e.g. http://127.0.0.1:8888)?`, { cause: err });
  }
  return new Error(`the Jupyter Server at ${shown} failed to ${what}: ${(err as Error).message}`, { cause: err });
}

/**
 * Node's fetch says only "fetch failed" and @jupyterlab/services keeps only that message, so the
 * reason (ECONNREFUSED, ENOTFOUND, a certificate error…) is put into the message here.
 */
const fetchWithReason: typeof fetch = async (input, init) => {
  try {
    return await fetch(input, init);
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message;
    throw reason ? new TypeError(`${(err as Error).message}: ${reason}`, { cause: err }) : err;
  }
};

/**
 * @jupyterlab/services announces each WebSocket it opens with console.debug, which in a notebook
 * lands in the cell; opening the connection is made quiet (status changes and reconnects still log).
 */
function quietly<T>(make: () => T): T {
  const debug = console.debug;
  console.debug = () => {};
  try {
    return make();
  } finally {
    console.debug = debug;
  }
}

/**
 * The server's kernelspec names. Read from the REST API directly: KernelSpecAPI.getSpecs also
 * validates the server's default kernel and, on a server without one (no ipykernel), prints
 * "Default kernel not found" with console.warn, which in a notebook lands in the user's cell.
 */
async function kernelSpecNames(settings: ServerConnection.ISettings): Promise<string[]> {
  const response = await ServerConnection.makeRequest(`${settings.baseUrl.replace(/\/?$/, "/")}api/kernelspecs`, {}, settings);
  if (!response.ok) throw new ServerConnection.ResponseError(response);
  const body = (await response.json()) as { kernelspecs?: Record<string, unknown> };
  return Object.keys(body.kernelspecs ?? {});
}

/**
 * Shuts a kernel down, best effort. A kernel the server is restarting cannot be shut down for a
 * moment (jupyter_server 1.23 answers HTTP 500), so that is tried again for a few seconds.
 */
async function shutdownKernel(id: string, settings: ServerConnection.ISettings): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await KernelAPI.shutdownKernel(id, settings);
      return;
    } catch (err) {
      const status = err instanceof ServerConnection.ResponseError ? err.response.status : 0;
      if (status === 404 || attempt === 6) return;
      await new Promise((resolve) => setTimeout(resolve, 300 * attempt));
    }
  }
}

/** A comm over the kernel's WebSocket. */
class GatewayComm implements TransportComm {
  private readonly closeHandlers = new Set<() => void>();
  private closedFlag = false;

  constructor(private readonly comm: Kernel.IComm, private readonly transport: GatewayTransport) {
    comm.onClose = () => this.closed();
  }

  /** Sends comm_open; messages sent after it reach the worker in order (one WebSocket). */
  open(): void {
    this.comm.open({});
  }

  async send(data: Record<string, unknown>): Promise<void> {
    if (this.closedFlag || this.comm.isDisposed) throw new Error(`the comm to ${this.transport.where} is closed`);
    this.comm.send(data as Parameters<Kernel.IComm["send"]>[0]);
  }

  onMsg(handler: (data: Record<string, unknown>) => void): void {
    this.comm.onMsg = (msg) => handler((msg.content.data ?? {}) as Record<string, unknown>);
  }

  onClose(handler: () => void): void {
    this.closeHandlers.add(handler);
  }

  /** @internal the kernel closed the comm, or the transport lost the kernel. */
  closed(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    for (const handler of this.closeHandlers) handler();
  }
}

/** One worker kernel on a Jupyter Server, reached over its WebSocket. */
export class GatewayTransport implements WorkerTransport {
  readonly checkHint: string;
  kernelInfo: Record<string, unknown> | undefined;
  private readonly comms = new Set<GatewayComm>();
  private lost = false;
  private closing?: Promise<void>;

  constructor(
    private readonly kernel: Kernel.IKernelConnection,
    private readonly settings: ServerConnection.ISettings,
    readonly url: string,
    /** This client started the kernel, so rc.close() shuts it down. */
    readonly started: boolean,
  ) {
    this.checkHint = `see the Jupyter Server's kernels (GET ${displayUrl(url)}/api/kernels) and its log`;
    const lose = () => this.loseKernel();
    kernel.statusChanged.connect((_, status) => {
      if (status === "dead" || status === "autorestarting" || status === "restarting") lose();
    });
    kernel.connectionStatusChanged.connect((_, status) => {
      if (status === "disconnected") lose();
    });
    kernel.disposed.connect(lose);
  }

  get kernelId(): string {
    return this.kernel.id;
  }

  get where(): string {
    return `kernel ${this.kernel.id} on the Jupyter Server at ${displayUrl(this.url)}`;
  }

  get closed(): boolean {
    return this.lost || this.closing !== undefined || this.kernel.isDisposed;
  }

  get status(): string {
    return this.kernel.isDisposed ? "dead" : this.kernel.status;
  }

  async openComm(targetName: string): Promise<TransportComm> {
    if (this.closed) throw new Error(`${this.where} is gone (${this.status})`);
    const comm = new GatewayComm(this.kernel.createComm(targetName), this);
    this.comms.add(comm);
    comm.onClose(() => this.comms.delete(comm));
    comm.open();
    return comm;
  }

  /** A kernel_info round trip through the server (there is no heartbeat channel over the WebSocket). */
  async isAlive(timeoutMs: number): Promise<boolean> {
    if (this.closed) return false;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      const reply = this.kernel.requestKernelInfo().then((r) => r !== undefined, () => false);
      return await Promise.race([reply, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for the kernel's kernel_info_reply, failing at once if the kernel dies. */
  async waitForInfo(timeoutMs: number): Promise<Record<string, unknown>> {
    let timer: NodeJS.Timeout | undefined;
    let unwatch = () => {};
    const failure = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`it did not answer within ${timeoutMs / 1000} s (status ${this.status})`)), timeoutMs);
      const onStatus = (_: unknown, status: string) => {
        if (status === "dead") reject(new Error("it died while starting"));
      };
      this.kernel.statusChanged.connect(onStatus);
      unwatch = () => this.kernel.statusChanged.disconnect(onStatus);
    });
    try {
      const info = (await Promise.race([this.kernel.info, failure])) as unknown as Record<string, unknown>;
      this.kernelInfo = info;
      return info;
    } finally {
      clearTimeout(timer);
      unwatch();
    }
  }

  /** Closes the WebSocket; shuts the kernel down if this client started it. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const comm of [...this.comms]) comm.closed();
      // Also when the connection is gone: the server may have restarted the kernel, and it is still ours.
      if (this.started) await shutdownKernel(this.kernel.id, this.settings);
      if (!this.kernel.isDisposed) this.kernel.dispose();
    })();
    return this.closing;
  }

  private loseKernel(): void {
    if (this.lost) return;
    this.lost = true;
    for (const comm of [...this.comms]) comm.closed();
  }
}

/**
 * Connects to `kernels` worker kernels on the server: running ones of the worker kernelspec
 * first, then new ones. Each must answer kernel_info as an nbjob worker.
 */

/**
 * The body of the kernel start request. It carries the notebook's cluster key in `env`, under the
 * `KERNEL_` name that Kernel Gateway and Enterprise Gateway pass on to the kernel, so that a worker
 * started there checks bundles with the key they were signed with (store/signing.ts). A plain
 * Jupyter Server ignores `env`: its workers read NBJOB_CLUSTER_KEY or the key file of their
 * NBJOB_HOME (docs/SECURITY.md). The key travels like the token: use https to a remote server.
 */
function workerStartRequest(kernelName: string): Partial<Pick<Kernel.IModel, "name">> {
  return { name: kernelName, env: { [GATEWAY_CLUSTER_KEY_ENV]: clusterKey().key.toString("utf8") } } as Partial<Pick<Kernel.IModel, "name">>;
}

export async function connectGateway(options: unknown, timeoutMs: number): Promise<GatewayTransport[]> {
  const gateway = checkOptions(options);
  const url = gateway.url.replace(/\/+$/, "");
  const shown = displayUrl(url);
  const base = {
    baseUrl: url,
    wsUrl: url.replace(/^http/i, "ws"),
    token: gateway.token,
    appendToken: true,
    fetch: fetchWithReason as unknown as ServerConnection.ISettings["fetch"],
    Request: globalThis.Request as unknown as ServerConnection.ISettings["Request"],
    Headers: globalThis.Headers as unknown as ServerConnection.ISettings["Headers"],
    WebSocket: WebSocket as unknown as ServerConnection.ISettings["WebSocket"],
  };
  const { serializer } = ServerConnection.makeSettings(base);
  const settings = ServerConnection.makeSettings({
    ...base,
    // A kernel the server restarts is a new worker process (new name, its jobs lost): this client
    // treats the restart as the end of the worker it knew, instead of letting @jupyterlab/services
    // reconnect to the new process behind its back (which also leaves an unhandled rejection
    // when the connection is closed during that reconnect).
    serializer: {
      serialize: (msg, protocol) => serializer.serialize(msg, protocol),
      deserialize: (data, protocol) => {
        const msg = serializer.deserialize(data, protocol);
        if (msg.channel === "iopub" && msg.header.msg_type === "status" && (msg.content as { execution_state?: string }).execution_state === "restarting") {
          (msg.content as { execution_state: string }).execution_state = "dead";
        }
        return msg;
      },
    },
  });

  const names = await rest("list its kernelspecs", url, () => kernelSpecNames(settings));
  if (!names.includes(gateway.kernelName)) {
    throw new Error(`the Jupyter Server at ${shown} has no kernelspec "${gateway.kernelName}" (it has: ${names.join(", ") || "none"}); on the server's machine, as the user the server runs as, run "npx nbjob install --worker --user" in an nbjob checkout (and give the server NBJOB_DATABASE_URL, the notebook's store), then connect again`);
  }

  const running = (await rest("list its kernels", url, () => KernelAPI.listRunning(settings)))
    .filter((k) => k.name === gateway.kernelName && k.execution_state !== "dead")
    .slice(0, gateway.kernels);
  const models: { model: Kernel.IModel; started: boolean }[] = running.map((model) => ({ model, started: false }));
  const transports: GatewayTransport[] = [];
  try {
    while (models.length < gateway.kernels) {
      const model = await rest(`start a "${gateway.kernelName}" kernel`, url, () => KernelAPI.startNew(workerStartRequest(gateway.kernelName), settings));
      models.push({ model, started: true });
    }
    for (const { model, started } of models) {
      const kernel = quietly(() => new KernelConnection({ model, serverSettings: settings, handleComms: true }));
      transports.push(new GatewayTransport(kernel, settings, url, started));
    }
    const answers = await Promise.allSettled(transports.map((t) => t.waitForInfo(timeoutMs)));
    const failed = answers.flatMap((a, i) => (a.status === "rejected" ? [`${transports[i].where}: ${(a.reason as Error).message}`] : []));
    if (failed.length > 0) {
      throw new Error(`worker kernels ("${gateway.kernelName}") on the Jupyter Server at ${shown} did not start: ${failed.join("; ")}. The server's log shows why (is NBJOB_DATABASE_URL set in its environment? is the checkout the kernelspec points at built?)`);
    }
    return transports;
  } catch (err) {
    // Nothing half-connected stays behind: kernels started here are shut down again.
    await Promise.all(transports.map((t) => t.close()));
    const orphans = models.slice(transports.length).filter((m) => m.started);
    await Promise.all(orphans.map((m) => shutdownKernel(m.model.id, settings)));
    throw err;
  }
}
