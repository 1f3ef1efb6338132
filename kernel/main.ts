// The notebook kernel process: starts the socket thread, then serves shell and stdin requests
// on the main thread, where user code runs.
import { randomUUID } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Worker } from "node:worker_threads";
import { saveCompilerCodeCache } from "../runtime/bundle-ts";
import { endForShutdown } from "../runtime/notebook";
import { readConnectionFile } from "../wire/connection";
import type { ExecutionEngine } from "./engine/types";
import { commRegistry } from "./comms";
import { History } from "./history";
import { ShellHandler, type PrepareCell } from "./shell";
import { SpareCpu } from "./spare-cpu";
import { reviveMessage, type SocketThreadCommand, type SocketThreadData, type SocketThreadEvent } from "./socket-thread";

// Loaded lazily and typed here at the boundary, so the kernel's modules stay independent of
// how the engine and magics are built.
interface EngineModule {
  Engine: new (options: { cwd: string }) => ExecutionEngine;
  typescriptVersion(): string;
}
interface MagicsModule {
  prepareCell: PrepareCell;
}

/** Where each session's inputs are appended ($NBJOB_HOME/history.jsonl). */
function historyFile(): string {
  return join(process.env.NBJOB_HOME || join(homedir(), ".nbjob"), "history.jsonl");
}

/**
 * Runs the notebook kernel for `connectionFile` until a shutdown_request ends the process.
 * Resolves once the kernel answers requests; rejects when the sockets cannot be bound.
 */
export async function startKernel(connectionFile: string): Promise<void> {
  const info = readConnectionFile(connectionFile);
  const session = randomUUID();

  // Installed first: SIGINT is how interrupts arrive, and Node's default would end the kernel.
  let engine: ExecutionEngine | undefined;
  process.on("SIGINT", () => engine?.interrupt());

  const data: SocketThreadData = { role: "nbjob-socket-thread", info, session, implementationVersion: packageVersion() };
  const thread = new Worker(join(__dirname, "socket-thread.js"), { workerData: data });
  const toSockets = (command: SocketThreadCommand) => thread.postMessage(command);

  // One listener from the start: requests that arrive while the engine loads wait in `early`.
  let shell: ShellHandler | undefined;
  const early: Array<Extract<SocketThreadEvent, { kind: "request" }>> = [];
  let bound: (event: SocketThreadEvent) => void = () => undefined;
  let closed: () => void = () => process.exit(0);
  let executeRequests = 0;
  let lastRequestAt = 0;
  // One reading of the machine's load for both kinds of background work.
  const spare = new SpareCpu();
  const collector = idleCollector(() => shell?.idle ?? false, spare, () => {
    // After the first cell the compiler has compiled what cells use: the next kernel loads that.
    if (executeRequests > 0) saveCompilerCodeCache();
  });
  thread.on("message", (event: SocketThreadEvent) => {
    if (event.kind === "request") {
      if (event.msg.header.msg_type === "execute_request") executeRequests++;
      lastRequestAt = performance.now();
      collector.arm();
      if (shell) shell.receive(event.channel, reviveMessage(event.msg));
      else early.push(event);
    } else if (event.kind === "shutdown") {
      // Analyses the notebook started are cancelled on the workers first (within the socket
      // thread's grace before it ends the process).
      void endForShutdown(SHUTDOWN_WORK_MS).finally(() => toSockets({ kind: "close" }));
    }
    else if (event.kind === "closed") closed();
    else bound(event);
  });
  thread.on("error", (err) => {
    process.stderr.write(`nbjob kernel: the socket thread failed: ${err.stack ?? err}\n`);
    process.exit(1);
  });
  const binding = new Promise<void>((resolve, reject) => {
    bound = (event) => (event.kind === "bound" ? resolve() : event.kind === "bind-failed" ? reject(new Error(event.message)) : undefined);
  });
  binding.catch(() => undefined); // awaited below, once the engine has loaded
  const boundOrEnded = async () => {
    try {
      await binding;
    } catch (err) {
      await thread.terminate();
      throw err;
    }
  };

  // The engine loads (the compiler, then its first check: most of the start-up) while the socket
  // thread loads ZeroMQ and binds, not after: the main thread would only wait meanwhile.
  let engineModule: EngineModule | undefined;
  try {
    engineModule = require("./engine") as EngineModule;
    const { Engine } = engineModule;
    const { prepareCell } = require("../magics") as MagicsModule;
    engine = new Engine({ cwd: process.cwd() });
    const ready = new ShellHandler({
      engine, prepareCell, session, comms: commRegistry, history: new History(historyFile()),
      transport: { send: (channel, msg) => toSockets({ kind: "send", channel, msg }) },
    });
    // A cell's timer or promise that fails after the cell finished must not end the kernel.
    process.on("uncaughtException", (err) => ready.reportStray(`Uncaught ${err.stack ?? err}\n`));
    process.on("unhandledRejection", (reason) => ready.reportStray(`Unhandled rejection: ${reason instanceof Error ? reason.stack : inspect(reason)}\n`));
    shell = ready;
    for (const event of early.splice(0)) ready.receive(event.channel, reviveMessage(event.msg));
  } catch (err) {
    // Without an engine the kernel cannot run a cell: close the sockets (a terminate while they
    // are open can abort the process) and let Jupyter report that the kernel died.
    await boundOrEnded();
    await new Promise<void>((resolve) => {
      closed = resolve;
      toSockets({ kind: "close" });
      setTimeout(resolve, 2000).unref();
    });
    await thread.terminate();
    throw new Error(`the nbjob kernel could not load its engine: ${(err as Error).message}`, { cause: err });
  }

  // The first type-check builds the language service (~150 ms); doing it before the kernel says
  // it is ready keeps the first cell as quick as the rest.
  try {
    const warmable = engine as (ExecutionEngine & { warmUp?: () => void }) | undefined;
    if (warmable?.warmUp) warmable.warmUp();
    else engine?.complete("", 0);
  } catch (err) {
    process.stderr.write(`nbjob kernel: warming up the engine failed: ${(err as Error).message}\n`);
  }
  await boundOrEnded();
  // The compiler the engine loaded (not all of ts-morph, which the kernel does not otherwise need).
  toSockets({ kind: "ready", typescriptVersion: engineModule.typescriptVersion() });
  const quiet = () => (shell?.idle ?? false) && performance.now() - lastRequestAt >= WARM_UP_QUIET_MS;
  // The garbage the warm-up leaves is collected once it is done.
  warmUpWhileIdle(engine, quiet, spare, () => collector.arm());
}

// Warm-up steps run once no request has come for this long (a frontend sending cells one after
// another is not slowed by them), looking again after as long.
const WARM_UP_QUIET_MS = 200;
// What cells started on other processes gets this long to end when the kernel shuts down.
const SHUTDOWN_WORK_MS = 1000;
// How long the kernel must have been idle before it collects garbage.
const IDLE_COLLECT_MS = 1000;
/** While other processes leave no core spare, the idle collection looks again this often. */
const SPARE_CHECK_MS = 300;
// Above this much live heap (a notebook holding large data) a full collection takes long enough
// to delay the next request noticeably, and what it frees is a small part: V8 is left to it.
const IDLE_COLLECT_MAX_HEAP = 512 * 1024 * 1024;

/**
 * Once the kernel has been idle for a second after a request, one full garbage collection: every
 * type-checked cell leaves a program and a type checker behind, and V8 would keep the space they
 * took until enough new allocation comes along, which an idle kernel never does. A request that
 * arrives during the collection waits for it (tens of milliseconds at the heap sizes it runs at).
 * It also waits until other processes leave a core spare: with the compiler's code cache saved
 * first, a collection takes 70-170 ms of CPU, which slowed another kernel's cells running then
 * (tslab's took 1.21x their time in the second after nbjob's first cell, 2026-12-08).
 */
function idleCollector(idle: () => boolean, spare: SpareCpu, beforeCollecting: () => void): { arm(): void } {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    if (!idle()) timer = setTimeout(fire, IDLE_COLLECT_MS).unref();
    // Asked often enough that each answer is about the last moments (SpareCpu's longest span).
    else if (!spare.hasSpareCore()) timer = setTimeout(fire, SPARE_CHECK_MS).unref();
    else {
      beforeCollecting();
      if (process.memoryUsage().heapUsed <= IDLE_COLLECT_MAX_HEAP) gc();
    }
  };
  return {
    arm() {
      clearTimeout(timer);
      timer = setTimeout(fire, IDLE_COLLECT_MS).unref();
    },
  };
}

/**
 * Runs the engine's warm-up steps while the kernel is quiet, one at a time with a rest as long as
 * the step after each, so a request that arrives meanwhile waits for one step at most (a few
 * milliseconds) and other processes keep at least half of the core it runs on; while other
 * processes leave less than a core and a half free (kernel/spare-cpu.ts) it waits. The compiler's
 * code is then optimised by the time the user's first cells come, which otherwise ran at about
 * one and a half times the time of later ones.
 */
function warmUpWhileIdle(engine: ExecutionEngine, quiet: () => boolean, spare: SpareCpu, done: () => void): void {
  const steps = engine.warmUpSteps?.() ?? [];
  const next = () => {
    if (steps.length === 0) return done();
    // Quiet ourselves, and other processes leave a core free: the warm-up only makes later
    // cells quicker, never worth slowing another kernel's cells or a job on this machine.
    if (!quiet() || !spare.hasSpareCore()) {
      setTimeout(next, WARM_UP_QUIET_MS).unref();
      return;
    }
    const started = performance.now();
    try {
      steps.shift()!();
    } catch (err) {
      process.stderr.write(`nbjob kernel: a warm-up step failed: ${(err as Error).message}\n`);
      return;
    }
    // Rest as long as the step took: the warm-up never takes more than half a core from the
    // other processes on the machine (other kernels, workers), however long it runs.
    setTimeout(next, Math.max(1, performance.now() - started)).unref();
  };
  setImmediate(next);
}

function packageVersion(): string {
  try {
    return (require("../../package.json") as { version: string }).version;
  } catch {
    return "0.0.0";
  }
}
