// Starts a kernel process from a kernelspec (found the way Jupyter finds it), connects a
// KernelClient to it and stops it again: what `nbjob run` and tests use to get a live kernel.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { newConnectionInfo, writeConnectionFile } from "../wire/connection";
import type { ConnectionInfo } from "../wire/connection";
import { KernelClient, KernelLostError } from "../wire/client";
import type { ConnectOptions } from "../wire/client";
import { KERNEL_NAME, kernelSpec as nbjobKernelSpec, sysPrefix, userDataDir } from "./kernelspec";

/** kernel.json as Jupyter reads it. */
export interface KernelSpecFile {
  argv: string[];
  display_name: string;
  language: string;
  interrupt_mode?: "message" | "signal";
  env?: Record<string, string>;
  metadata?: Record<string, unknown>;
}

export interface FoundKernelSpec {
  name: string;
  /** The kernelspec's directory ({resource_dir}); absent for the built-in nbjob spec. */
  dir?: string;
  spec: KernelSpecFile;
}

/** Where Jupyter looks for kernelspecs, in its order of precedence (jupyter_core's jupyter_path). */
export function kernelSearchDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dataDirs = [
    ...(env.JUPYTER_PATH ? env.JUPYTER_PATH.split(delimiter).filter(Boolean) : []),
    userDataDir(env),
    join(sysPrefix(env), "share", "jupyter"),
    "/usr/local/share/jupyter",
    "/usr/share/jupyter",
  ];
  return [...new Set(dataDirs.map((dir) => join(dir, "kernels")))];
}

/** The kernelspec named `name` (first match wins, as in Jupyter). Throws naming where it looked. */
export function findKernelSpec(name: string, env: NodeJS.ProcessEnv = process.env): FoundKernelSpec {
  const searched = kernelSearchDirs(env);
  for (const kernelsDir of searched) {
    const dir = join(kernelsDir, name);
    const file = join(dir, "kernel.json");
    if (!existsSync(file)) continue;
    let spec: KernelSpecFile;
    try {
      spec = JSON.parse(readFileSync(file, "utf8")) as KernelSpecFile;
    } catch (err) {
      throw new Error(`kernelspec ${file} is not valid JSON (${(err as Error).message}); reinstall the kernel "${name}"`, { cause: err });
    }
    if (!Array.isArray(spec.argv) || spec.argv.length === 0) throw new Error(`kernelspec ${file} has no "argv"; reinstall the kernel "${name}"`);
    return { name, dir, spec };
  }
  throw new Error(`no kernelspec named "${name}" in ${searched.join(", ")}; see "jupyter kernelspec list" for the installed ones`);
}

/** The nbjob kernel of this very checkout, so `nbjob run` works before `nbjob install`. */
export function checkoutKernelSpec(): FoundKernelSpec {
  return { name: KERNEL_NAME, spec: nbjobKernelSpec() };
}

export interface LaunchOptions {
  /** A kernelspec name; "nbjob" (the default) means this checkout's kernel. */
  kernelName?: string;
  /** A kernelspec to use instead of looking one up by name. */
  kernelSpec?: FoundKernelSpec;
  /** The kernel's working directory (a notebook's own directory, usually). */
  cwd?: string;
  /** Added to this process's environment (and the spec's `env`). */
  env?: Record<string, string>;
  ip?: string;
  /** "capture" keeps the last lines of the kernel's output for error messages (default); "inherit" shows them. */
  output?: "capture" | "inherit";
  /** Options of the client that connects to it; readyTimeoutMs bounds the whole start-up. */
  client?: ConnectOptions;
}

export interface KernelExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const OUTPUT_TAIL_CHARS = 4_000;

/** How many sets of ports a start tries before it gives up on "Address already in use". */
const PORT_ATTEMPTS = 3;
/** What a kernel prints when a port was taken: the system's message (ZeroMQ's, nbjob's, ipykernel's). */
const PORT_TAKEN = /Address already in use/;

/** A kernel that exited before answering because one of its ports was taken. */
class PortTakenError extends Error {}

/** A running kernel process and the client connected to it. */
export class LaunchedKernel {
  readonly exited: Promise<KernelExit>;
  private exitInfo?: KernelExit;
  private stopping = false;
  private outputTail = "";

  private constructor(
    readonly name: string,
    readonly spec: KernelSpecFile,
    readonly process: ChildProcess,
    readonly info: ConnectionInfo,
    readonly connectionFile: string,
    readonly client: KernelClient,
    private readonly connectionDir: string,
  ) {
    const onParentExit = () => this.signalGroup("SIGKILL");
    globalThis.process.on("exit", onParentExit);
    this.exited = new Promise((resolve) => {
      this.process.on("exit", (code, signal) => {
        globalThis.process.off("exit", onParentExit);
        this.exitInfo = { code, signal };
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        this.client.close(
          new KernelLostError(this.stopping ? `${this.describe()} was shut down` : `${this.describe()} ${how}${this.tailForError()}`),
        );
        rmSync(this.connectionDir, { recursive: true, force: true });
        resolve(this.exitInfo);
      });
    });
    for (const stream of [this.process.stdout, this.process.stderr]) {
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => {
        this.outputTail = (this.outputTail + chunk).slice(-OUTPUT_TAIL_CHARS);
      });
    }
  }

  /**
   * Starts the kernel and resolves once it answers (kernel_info reply and iopub both seen).
   * The ports are chosen free, but the kernel binds them a moment later: on a busy machine
   * another process (any outgoing connection) can be handed one in between, and the kernel
   * exits with "Address already in use". Then it is started again on new ports, as
   * jupyter_client's restarter does for a kernel that dies before it answers.
   */
  static async launch(options: LaunchOptions = {}): Promise<LaunchedKernel> {
    const kernelName = options.kernelName ?? KERNEL_NAME;
    const found = options.kernelSpec ?? (kernelName === KERNEL_NAME ? checkoutKernelSpec() : findKernelSpec(kernelName));
    for (let attempt = 1; ; attempt++) {
      try {
        return await LaunchedKernel.launchOnce(found, options);
      } catch (err) {
        if (!(err instanceof PortTakenError) || attempt === PORT_ATTEMPTS) throw err;
      }
    }
  }

  private static async launchOnce(found: FoundKernelSpec, options: LaunchOptions): Promise<LaunchedKernel> {
    const info = await newConnectionInfo(options.ip ?? "127.0.0.1", found.name);
    const connectionDir = mkdtempSync(join(tmpdir(), "nbjob-kernel-"));
    const connectionFile = join(connectionDir, `kernel-${found.name}.json`);
    writeConnectionFile(connectionFile, info);
    const argv = found.spec.argv.map((arg) =>
      arg.replaceAll("{connection_file}", connectionFile).replaceAll("{resource_dir}", found.dir ?? connectionDir),
    );
    const child = spawn(argv[0], argv.slice(1), {
      cwd: options.cwd,
      // JPY_PARENT_PID lets kernels that watch their parent (ipykernel does) exit with us.
      env: { ...process.env, ...found.spec.env, ...options.env, JPY_PARENT_PID: String(process.pid) },
      // Its own process group: a Ctrl-C in the terminal reaches us, and we decide what the kernel gets.
      detached: true,
      stdio: ["ignore", options.output === "inherit" ? "inherit" : "pipe", options.output === "inherit" ? "inherit" : "pipe"],
    });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", (err) => reject(new Error(`cannot start kernel "${found.name}" with ${argv[0]}: ${err.message}; check the kernelspec's argv`, { cause: err })));
    });
    try {
      await spawned;
    } catch (err) {
      rmSync(connectionDir, { recursive: true, force: true });
      throw err;
    }
    const client = await KernelClient.connect(info, { name: `kernel "${found.name}" (pid ${child.pid})`, ...options.client, waitForReady: false });
    const kernel = new LaunchedKernel(found.name, found.spec, child, info, connectionFile, client, connectionDir);
    try {
      await client.waitForReady(options.client?.readyTimeoutMs ?? 60_000);
    } catch (err) {
      const alreadyExited = !kernel.running;
      await kernel.kill();
      if (alreadyExited && PORT_TAKEN.test(kernel.output)) throw new PortTakenError((err as Error).message, { cause: err });
      // An exit already carries the kernel's output in its message; a hang needs it added.
      if (alreadyExited || !(err instanceof Error)) throw err;
      throw new (err.constructor as ErrorConstructor)(`${err.message}${kernel.tailForError()}`, { cause: err });
    }
    return kernel;
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Interrupts the running cell the way the kernelspec asks: a control message or SIGINT. */
  async interrupt(): Promise<void> {
    if (this.spec.interrupt_mode === "message") await this.client.interrupt({ timeoutMs: 10_000 });
    else this.signalGroup("SIGINT");
  }

  /**
   * Asks the kernel to shut down, then escalates (SIGTERM, SIGKILL) if it does not exit in
   * `timeoutMs`. Cleans up the connection file. Safe to call more than once.
   */
  async shutdown(timeoutMs = 5_000): Promise<KernelExit> {
    if (!this.running) return this.exited;
    this.stopping = true;
    try {
      await this.client.shutdown({ timeoutMs });
    } catch {
      // A kernel that cannot answer is stopped by signals below.
    }
    if (await this.exitsWithin(timeoutMs)) return this.exited;
    this.signalGroup("SIGTERM");
    if (await this.exitsWithin(2_000)) return this.exited;
    return this.kill();
  }

  /** Kills the kernel's process group at once. */
  async kill(): Promise<KernelExit> {
    this.stopping = true;
    this.signalGroup("SIGKILL");
    return this.exited;
  }

  /** The last lines the kernel printed (stdout and stderr), when output is captured. */
  get output(): string {
    return this.outputTail;
  }

  private describe(): string {
    return `kernel "${this.name}" (pid ${this.process.pid})`;
  }

  /** @internal the kernel's last output, formatted for an error message. */
  tailForError(): string {
    const tail = this.outputTail.trim().split("\n").slice(-10).join("\n");
    return tail ? `; its last output:\n${tail}` : "";
  }

  private async exitsWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    const exited = await Promise.race([this.exited.then(() => true as const), timedOut]);
    clearTimeout(timer);
    return exited;
  }

  private signalGroup(signal: NodeJS.Signals): void {
    if (!this.running || this.process.pid === undefined) return;
    try {
      process.kill(-this.process.pid, signal);
    } catch {
      try {
        this.process.kill(signal);
      } catch {
        // Already gone.
      }
    }
  }
}

/** Starts a kernel; see LaunchedKernel.launch. */
export function launchKernel(options: LaunchOptions = {}): Promise<LaunchedKernel> {
  return LaunchedKernel.launch(options);
}
