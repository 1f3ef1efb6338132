// The worker kernel: a Jupyter kernel whose sockets live in the main thread and whose jobs run
// on a job thread, so heartbeats, status and cancel are answered while a job computes. Jobs
// arrive over the `nbjob.worker` comm (see protocol.ts); execute_request runs plain code, which
// is handy for poking at a worker from any Jupyter client.
import { randomBytes, randomUUID } from "node:crypto";
import { renameSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { PROTOCOL_VERSION, replyTo } from "../wire/message";
import type { JupyterMessage } from "../wire/message";
import { KernelSockets } from "../wire/server";
import type { RequestChannel } from "../wire/server";
import { writeConnectionFile } from "../wire/connection";
import type { ConnectionInfo } from "../wire/connection";
import type { Store } from "../store";
import { getFiles, nbjobHome } from "../store";
import { BundleRefusedError, checkLoadedBundle } from "./bundle-integrity";
import { ModuleLayout } from "./module-layout";
import { PackageCache } from "./package-cache";
import { BundleCompiler } from "./compiler";
import { isComplete } from "./is-complete";
import { WorkerStoreLink } from "./store-link";
import { DuplicateJobError, fanOut, JobRunner } from "./job-runner";
import type { JobListener } from "./job-runner";
import { WORKER_COMM_TARGET } from "../runtime/shared/protocol";
import { AnalysisRunner } from "./analysis-runner";
import { readAnalyzeCancel, readAnalyzePrepare, readAnalyzeRequest } from "../runtime/shared/analysis-protocol";
import type { JobBundle, JobId, WorkerEvent, WorkerIdentity, WorkerKernelInfo } from "../runtime/shared/protocol";
import { compilerVersion } from "../runtime/typescript-loader";

export interface WorkerKernelOptions {
  /** Where to bind; ports given as 0 are chosen by the system. */
  info: ConnectionInfo;
  /** How the worker is named in job records and status. Default `<host>:<pid>`. */
  workerId?: string;
  /** The cluster profile that started it, if any. */
  profile?: string | null;
  /** Write the bound connection (actual ports) here once bound, and remove the file at shutdown. */
  connectionFile?: string;
  /**
   * The store: the worker heartbeats there, takes queued jobs and records jobs sent with
   * `record: true`. Without it the worker only runs what arrives over the comm. Closed at shutdown.
   */
  store?: Store;
  /**
   * Heartbeat, lost-worker and queue-poll timing for the store link, and how long an unreachable
   * store is waited for before running jobs wait too (defaults 5 s, 20 s, 2 s, 60 s).
   */
  storeTiming?: { heartbeatMs?: number; staleAfterMs?: number; pollMs?: number; storeWaitMs?: number };
  log?: (line: string) => void;
}

type Message = JupyterMessage;

/** Thrown by request handlers: becomes an error reply whose evalue tells the client what to send. */
class BadRequest extends Error {}

const VERSION: string = (require("../../package.json") as { version: string }).version;

export class WorkerKernel {
  readonly identity: WorkerIdentity;
  /** Resolves once the kernel has shut down and closed its sockets. */
  readonly finished: Promise<void>;

  private sockets!: KernelSockets;
  private readonly runner: JobRunner;
  private readonly analysis: AnalysisRunner;
  private readonly link?: WorkerStoreLink;
  private readonly comms = new Set<string>();
  private readonly log: (line: string) => void;
  private executionCount = 0;
  private shuttingDown?: Promise<void>;
  private markFinished!: () => void;

  private constructor(private readonly options: WorkerKernelOptions) {
    this.log = options.log ?? ((line) => process.stderr.write(`nbjob worker: ${line}\n`));
    this.identity = {
      // host:pid alone can repeat across containers or network namespaces: a random part keeps it unique.
      worker_id: options.workerId ?? `${hostname()}:${process.pid}.${randomBytes(3).toString("hex")}`,
      pid: process.pid,
      host: hostname(),
      profile: options.profile ?? null,
    };
    const store = options.store;
    // Local modules of bundles are read from the store and laid out under $NBJOB_HOME/cache/modules.
    // Their .ts files are compiled on the compiler thread the runner's bundles use.
    const compiler = new BundleCompiler();
    const modules = store ? new ModuleLayout(join(nbjobHome(), "cache", "modules"), (hashes) => getFiles(store, hashes), (files) => compiler.transpileModules(files)) : undefined;
    // npm packages a bundle pins are installed once per set under $NBJOB_HOME/cache/packages.
    const packages = new PackageCache(join(nbjobHome(), "cache", "packages"), { log: this.log });
    this.runner = new JobRunner({ log: this.log, onIdle: () => this.link?.claimSoon(), modules, compiler, packages });
    this.analysis = new AnalysisRunner({ store: options.store, workerId: this.identity.worker_id, log: this.log, modules, packages });
    if (options.store) this.link = new WorkerStoreLink(options.store, this.identity, this.runner, { ...options.storeTiming, log: this.log });
    this.finished = new Promise((resolve) => (this.markFinished = resolve));
  }

  /** Binds the sockets (rejecting with a message naming the address if that fails) and starts serving. */
  static async start(options: WorkerKernelOptions): Promise<WorkerKernel> {
    const kernel = new WorkerKernel(options);
    try {
      kernel.sockets = await KernelSockets.bind({ ...options.info, kernel_name: options.info.kernel_name ?? "nbjob-worker" }, randomUUID(), (channel, msg) => kernel.incoming(channel, msg), { log: kernel.log });
    } catch (err) {
      await kernel.runner.close();
      throw err;
    }
    if (options.connectionFile) {
      // Written whole, then renamed: whoever waits for the file never reads half of it.
      const partial = `${options.connectionFile}.${process.pid}.tmp`;
      try {
        writeConnectionFile(partial, kernel.sockets.info);
        renameSync(partial, options.connectionFile);
      } catch (err) {
        await kernel.runner.close();
        await kernel.sockets.close();
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw new Error(`cannot write the connection file ${options.connectionFile}: ${code}; check that its directory exists and is writable`, { cause: err });
      }
    }
    void kernel.sockets.publish(undefined, "status", { execution_state: "starting" });
    kernel.link?.start();
    return kernel;
  }

  /** The connection as bound (actual ports). */
  get info(): ConnectionInfo {
    return this.sockets.info;
  }

  /** Cancels queued and running jobs, closes the sockets and removes the connection file it wrote. */
  shutdown(): Promise<void> {
    this.shuttingDown ??= (async () => {
      await this.runner.close("the worker shut down");
      await this.analysis.close();
      await this.link?.close();
      await this.sockets.close();
      if (this.options.connectionFile) rmSync(this.options.connectionFile, { force: true });
      this.markFinished();
    })();
    return this.shuttingDown;
  }

  private incoming(channel: RequestChannel, msg: Message): void {
    const type = msg.header.msg_type;
    if (type === "execute_request") {
      this.execute(channel, msg);
      return;
    }
    const isRequest = type.endsWith("_request");
    if (isRequest) this.status(msg, "busy");
    try {
      this.handle(channel, msg);
    } catch (err) {
      const evalue = (err as Error).message;
      if (isRequest) void this.sockets.reply(channel, msg, type.replace(/_request$/, "_reply"), { status: "error", ename: "BadRequest", evalue, traceback: [`BadRequest: ${evalue}`] });
      else this.log(`could not handle ${type}: ${evalue}`);
    }
    if (isRequest) this.status(msg, "idle");
  }

  private handle(channel: RequestChannel, msg: Message): void {
    const content = msg.content;
    switch (msg.header.msg_type) {
      case "kernel_info_request":
        void this.sockets.reply(channel, msg, "kernel_info_reply", this.kernelInfo());
        return;
      case "shutdown_request":
        void this.sockets.reply(channel, msg, "shutdown_reply", { status: "ok", restart: content.restart === true });
        void this.shutdown();
        return;
      case "interrupt_request":
        this.runner.interrupt();
        void this.sockets.reply(channel, msg, "interrupt_reply", { status: "ok" });
        return;
      case "is_complete_request":
        if (typeof content.code !== "string") throw new BadRequest("is_complete_request needs content.code, a string");
        void this.sockets.reply(channel, msg, "is_complete_reply", isComplete(content.code));
        return;
      case "comm_info_request": {
        const wanted = typeof content.target_name === "string" ? content.target_name : undefined;
        const comms = wanted === undefined || wanted === WORKER_COMM_TARGET ? Object.fromEntries([...this.comms].map((id) => [id, { target_name: WORKER_COMM_TARGET }])) : {};
        void this.sockets.reply(channel, msg, "comm_info_reply", { status: "ok", comms });
        return;
      }
      case "history_request":
        void this.sockets.reply(channel, msg, "history_reply", { status: "ok", history: [] });
        return;
      case "complete_request": {
        const cursor = typeof content.cursor_pos === "number" ? content.cursor_pos : 0;
        void this.sockets.reply(channel, msg, "complete_reply", { status: "ok", matches: [], cursor_start: cursor, cursor_end: cursor, metadata: {} });
        return;
      }
      case "inspect_request":
        void this.sockets.reply(channel, msg, "inspect_reply", { status: "ok", found: false, data: {}, metadata: {} });
        return;
      case "comm_open":
        this.commOpen(msg);
        return;
      case "comm_msg":
        this.commMsg(msg);
        return;
      case "comm_close":
        this.comms.delete(String(content.comm_id ?? ""));
        return;
      default:
        if (msg.header.msg_type.endsWith("_request")) {
          throw new BadRequest(`an nbjob worker does not handle ${msg.header.msg_type}; it runs jobs sent over the "${WORKER_COMM_TARGET}" comm and plain code in execute_request`);
        }
    }
  }

  private kernelInfo(): Record<string, unknown> {
    const nbjob: WorkerKernelInfo = { ...this.identity, comm_target: WORKER_COMM_TARGET };
    return {
      status: "ok",
      protocol_version: PROTOCOL_VERSION,
      implementation: "nbjob-worker",
      implementation_version: VERSION,
      language_info: { name: "typescript", version: compilerVersion() ?? "6", mimetype: "text/typescript", file_extension: ".ts", codemirror_mode: "typescript", pygments_lexer: "typescript" },
      banner: `nbjob worker ${this.identity.worker_id} (runs TypeScript jobs; type-checking happens in the notebook)`,
      help_links: [],
      nbjob,
    };
  }

  private status(parent: Message, state: "busy" | "idle"): void {
    void this.sockets.publish(parent, "status", { execution_state: state });
  }

  // ---- comms: the dispatch protocol ----

  private commOpen(msg: Message): void {
    const commId = String(msg.content.comm_id ?? "");
    if (msg.content.target_name !== WORKER_COMM_TARGET) {
      // The spec's way of saying "no such target": close it from our side.
      void this.sockets.publish(msg, "comm_close", { comm_id: commId, data: {} });
      throw new BadRequest(`comm target "${String(msg.content.target_name)}" does not exist here; an nbjob worker has "${WORKER_COMM_TARGET}"`);
    }
    this.comms.add(commId);
    const data = msg.content.data;
    if (data && typeof data === "object" && "action" in data) this.commRequest(commId, msg, data as Record<string, unknown>);
  }

  private commMsg(msg: Message): void {
    const commId = String(msg.content.comm_id ?? "");
    if (!this.comms.has(commId)) {
      if (commId === "") throw new BadRequest(`comm_msg needs content.comm_id; open a "${WORKER_COMM_TARGET}" comm first`);
      // A worker restarted in place (same connection file, see cli/cluster-supervisor.ts) hears
      // from notebooks whose comm its previous process opened. "nbjob.worker" is its only comm
      // target, so the comm can only be one of those: take it over instead of refusing.
      this.comms.add(commId);
      this.log(`took over comm ${commId} (opened with this worker's previous process)`);
    }
    const data = msg.content.data;
    this.commRequest(commId, msg, data && typeof data === "object" ? (data as Record<string, unknown>) : {});
  }

  private sendComm(commId: string, parent: Message, data: WorkerEvent, buffers: Buffer[] = []): void {
    // A client that closed its comm (or went away) still has its job run; only its messages stop.
    if (!this.comms.has(commId)) return;
    const msg = replyTo(parent, "comm_msg", { comm_id: commId, data }, this.sockets.session);
    void this.sockets.send("iopub", { ...msg, identities: [], buffers });
  }

  private commRequest(commId: string, parent: Message, data: Record<string, unknown>): void {
    const requestId = typeof data.request_id === "string" ? data.request_id : undefined;
    const fail = (message: string, jobId?: JobId) => this.sendComm(commId, parent, { action: "error", message, job_id: jobId, request_id: requestId });
    switch (data.action) {
      case "status":
        this.sendComm(commId, parent, { action: "status", busy: this.runner.running, queued: this.runner.queued, request_id: requestId, ...this.identity });
        return;
      case "cancel": {
        const jobId = readJobId(data.job_id);
        if (jobId === undefined) return fail(`cancel needs job_id, a number or a non-empty string; got ${describe(data.job_id)}`);
        if (this.runner.cancel(jobId) === "unknown") fail(`job ${jobId} is neither running nor queued on worker ${this.identity.worker_id}; it may have finished already`, jobId);
        return;
      }
      case "run": {
        const jobId = readJobId(data.job_id);
        if (jobId === undefined) return fail(`run needs job_id, a number or a non-empty string; got ${describe(data.job_id)}`);
        const bundle = readBundle(data.bundle);
        if (typeof bundle === "string") return fail(bundle, jobId);
        let listener = this.commListener(commId, parent, jobId);
        let gate: (() => Promise<true | { skip: string }>) | undefined;
        if (data.record === true) {
          if (!this.link) return fail(`this worker has no store (it was started with --no-store), so it cannot record job ${jobId}; send the run without record, or start the worker with a database`, jobId);
          if (typeof jobId !== "number") return fail(`record: true needs job_id to be the number of a job in the store; got ${describe(jobId)}`, jobId);
          const recorder = this.link.recorder(jobId);
          listener = fanOut(listener, recorder.listener);
          gate = recorder.gate;
        }
        try {
          if (data.record === true && this.runner.attach(jobId, this.commListener(commId, parent, jobId))) {
            // Already taken from the queue by this worker: the client follows that run.
            this.sendComm(commId, parent, { action: "queued", job_id: jobId, position: this.runner.running === jobId ? 0 : this.runner.queued.indexOf(jobId) + 1, request_id: requestId });
            return;
          }
          if (data.record === true && gate) {
            // A stored job's bundle as the notebook sent it (for a rerun, read from the store):
            // the same checks as the claim makes.
            const refused = this.refusal(bundle, jobId);
            if (refused) {
              const failure = { ename: refused.name, evalue: refused.message, traceback: [], durationMs: 0 };
              const toComm = this.commListener(commId, parent, jobId);
              // Taken, then failed at once (recorded when the row could be marked running here).
              this.sendComm(commId, parent, { action: "queued", job_id: jobId, position: 0, request_id: requestId });
              void gate().then((marked) => (marked === true ? listener : toComm).failed(failure), () => toComm.failed(failure));
              return;
            }
          }
          const position = this.runner.submit(jobId, bundle, listener, { gate });
          this.sendComm(commId, parent, { action: "queued", job_id: jobId, position, request_id: requestId });
        } catch (err) {
          if (!(err instanceof DuplicateJobError) && !this.shuttingDown) throw err;
          fail((err as Error).message, jobId);
        }
        return;
      }
      case "analyze": {
        const request = readAnalyzeRequest(data);
        if (typeof request === "string") return fail(request);
        try {
          const position = this.analysis.submit(request, (event) => this.sendComm(commId, parent, event));
          this.sendComm(commId, parent, { action: "analysis_queued", request_id: request.request_id, job_id: request.job_id, position });
        } catch (err) {
          fail((err as Error).message);
        }
        return;
      }
      case "analyze_prepare": {
        const request = readAnalyzePrepare(data);
        if (typeof request === "string") return fail(request);
        this.analysis.prepare(request.job_id, request.functions);
        return;
      }
      case "analyze_cancel": {
        const request = readAnalyzeCancel(data);
        if (typeof request === "string") return fail(request);
        this.analysis.cancel(request.request_id);
        return;
      }
      default:
        fail(`unknown action ${describe(data.action)}; the "${WORKER_COMM_TARGET}" comm takes "run", "cancel", "status", "analyze", "analyze_prepare" and "analyze_cancel"`);
    }
  }

  /** Why a stored job's bundle sent over the comm may not run (see bundle-integrity.ts), or undefined. */
  private refusal(bundle: JobBundle, jobId: JobId): Error | undefined {
    if (bundle.hash === undefined) {
      return new BundleRefusedError("BundleUnsigned", `run with record: true needs bundle.hash and bundle.signature (the stored bundle's); job ${jobId} was not run`);
    }
    try {
      checkLoadedBundle({ hash: bundle.hash, source: bundle.source, params: bundle.params ?? {}, entries: bundle.entries ?? [], signature: bundle.signature ?? null }, jobId);
      return undefined;
    } catch (err) {
      return err as Error;
    }
  }

  private commListener(commId: string, parent: Message, jobId: JobId): JobListener {
    const send = (data: WorkerEvent, buffers?: Buffer[]) => this.sendComm(commId, parent, data, buffers);
    return {
      started: () => send({ action: "started", job_id: jobId, ...this.identity }),
      stream: (name, text) => send({ action: "stream", job_id: jobId, name, text }),
      done: ({ result, resultText, durationMs }) => send({ action: "done", job_id: jobId, result_text: resultText, duration_ms: durationMs }, [result]),
      failed: ({ ename, evalue, traceback, durationMs }) => send({ action: "failed", job_id: jobId, ename, evalue, traceback, duration_ms: durationMs }),
      cancelled: (reason) => send({ action: "cancelled", job_id: jobId, reason }),
    };
  }

  // ---- execute_request: plain code, for debugging a worker from any client ----

  private execute(channel: RequestChannel, msg: Message): void {
    this.status(msg, "busy");
    const code = msg.content.code;
    const silent = msg.content.silent === true;
    if (typeof code !== "string") {
      const evalue = "execute_request needs content.code, a string";
      void this.sockets.reply(channel, msg, "execute_reply", { status: "error", ename: "BadRequest", evalue, traceback: [`BadRequest: ${evalue}`], execution_count: this.executionCount });
      this.status(msg, "idle");
      return;
    }
    if (!silent) this.executionCount += 1;
    const count = this.executionCount;
    void this.sockets.publish(msg, "execute_input", { code, execution_count: count });
    const finish = (content: Record<string, unknown>) => {
      void this.sockets.reply(channel, msg, "execute_reply", { execution_count: count, ...content });
      this.status(msg, "idle");
    };
    const failWith = (ename: string, evalue: string, traceback: string[]) => {
      if (!silent) void this.sockets.publish(msg, "error", { ename, evalue, traceback });
      finish({ status: "error", ename, evalue, traceback });
    };
    const listener: JobListener = {
      started: () => {},
      stream: (name, text) => {
        if (!silent) void this.sockets.publish(msg, "stream", { name, text });
      },
      done: ({ resultText }) => {
        if (!silent && resultText !== "undefined") {
          void this.sockets.publish(msg, "execute_result", { execution_count: count, data: { "text/plain": resultText }, metadata: {} });
        }
        finish({ status: "ok", payload: [], user_expressions: {} });
      },
      failed: ({ ename, evalue, traceback }) => failWith(ename, evalue, traceback),
      cancelled: (reason) => failWith("Interrupted", reason, [`Interrupted: ${reason}`]),
    };
    try {
      this.runner.submit(`execute-${msg.header.msg_id}`, { source: code, entries: [] }, listener);
    } catch (err) {
      failWith((err as Error).name, (err as Error).message, [(err as Error).message]);
    }
  }
}

function readJobId(value: unknown): JobId | undefined {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string" && value.trim() !== "") return value;
  return undefined;
}

/** The bundle, or a message saying what is wrong with it. */
function readBundle(value: unknown): JobBundle | string {
  const expected = "run needs bundle: { source: string, params?: object, entries?: string[] }";
  if (typeof value !== "object" || value === null) return `${expected}; got ${describe(value)}`;
  const bundle = value as Record<string, unknown>;
  if (typeof bundle.source !== "string") return `${expected}; bundle.source is ${describe(bundle.source)}`;
  if (bundle.entries !== undefined && (!Array.isArray(bundle.entries) || !bundle.entries.every((e) => typeof e === "string"))) {
    return `${expected}; bundle.entries must be an array of expression strings`;
  }
  if (bundle.params !== undefined && (typeof bundle.params !== "object" || bundle.params === null || Array.isArray(bundle.params))) {
    return `${expected}; bundle.params must be an object of parameter values`;
  }
  return {
    source: bundle.source,
    hash: typeof bundle.hash === "string" ? bundle.hash : undefined,
    signature: typeof bundle.signature === "string" ? bundle.signature : undefined,
    params: (bundle.params as Record<string, unknown> | undefined) ?? {},
    entries: (bundle.entries as string[] | undefined) ?? [],
  };
}

function describe(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  return typeof value === "string" ? JSON.stringify(value).slice(0, 60) : typeof value;
}
