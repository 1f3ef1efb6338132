// `nbjob worker --connection-file F`: one worker kernel, in the foreground (`nbjob cluster start`
// launches these detached; on another host, run it yourself and give the notebook the file).
import { existsSync } from "node:fs";
import { anyPortsConnectionInfo, readConnectionFile } from "../wire/connection";
import type { ConnectionInfo } from "../wire/connection";
import { WorkerKernel } from "../worker/kernel";
import { openStore, WORKER_HEARTBEAT_MS, WORKER_STALE_MS } from "../store";
import { oneLineUsageError, parseCommandArgs, UsageError, WILDCARD_ADDRESSES } from "./args";
import type { Command } from "./args";

const usage = `usage: nbjob worker --connection-file FILE [--ip ADDR] [--id NAME] [--profile NAME] [--no-store]

  --connection-file FILE  the kernel's connection file; if FILE does not exist, the worker binds
                          free ports and writes FILE (mode 600) with them and a fresh key
  --ip ADDR               address to bind when writing a new file (default 127.0.0.1); for
                          notebooks on other hosts, an address they reach this host by
  --id NAME               the worker's name in job records (default HOST:PID)
  --profile NAME          the cluster profile it belongs to (set by nbjob cluster start)
  --no-store              do not use the database: no queue, no job records, only jobs sent
                          over the comm (default: NBJOB_DATABASE_URL, else the embedded server)

  environment:
    NBJOB_WORKER_HEARTBEAT_MS (default ${WORKER_HEARTBEAT_MS}) and NBJOB_WORKER_STALE_MS (default ${WORKER_STALE_MS}): how
      often the worker heartbeats in the store, and after how long without a heartbeat another
      worker marks a silent worker's running jobs lost
    NBJOB_STORE_WAIT_MS (default 60000): while the store cannot be reached, a running job goes
      on and its output and checkpoints are kept in memory (output up to 100 000 lines or 32 MB,
      then further lines are dropped and a note in the job's log says how many); once the store
      has been away this long, the job waits at its next output or checkpoint until it is back,
      and its log says how long it waited. Writes are retried until the store is back; a line
      the store refuses (not an outage) is replaced in the log by a note naming the problem`;


export const command: Command = {
  summary: "run one worker kernel that executes jobs",
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(
      {
        args: argv,
        options: {
          "connection-file": { type: "string" },
          ip: { type: "string" },
          id: { type: "string" },
          profile: { type: "string" },
          "no-store": { type: "boolean" },
        },
        strict: true,
        allowPositionals: false,
      },
      usage,
    );
    const file = values["connection-file"];
    if (!file) throw oneLineUsageError("worker", `nbjob worker needs --connection-file FILE, the kernel's connection file`);

    let info: ConnectionInfo;
    let writeFile: string | undefined;
    if (existsSync(file)) {
      info = readConnectionFile(file);
      if (values.ip && values.ip !== info.ip) {
        throw new UsageError(`--ip ${values.ip} differs from the ip "${info.ip}" in ${file}; leave out --ip, or give a path that does not exist yet so a new file is written`);
      }
    } else {
      if (values.ip !== undefined && WILDCARD_ADDRESSES.has(values.ip)) {
        // The file is how a notebook on another host finds the worker; connecting to 0.0.0.0 reaches the notebook's own host.
        throw new UsageError(`--ip ${values.ip} would bind every address but write ${values.ip} in ${file}, where a notebook on another host would connect to itself; give the address other hosts reach this one by (e.g. --ip 10.0.0.5), or leave out --ip for 127.0.0.1`);
      }
      info = anyPortsConnectionInfo(values.ip ?? "127.0.0.1", "nbjob-worker");
      writeFile = file;
    }

    // The store connects in the background: a database that is down delays no kernel reply.
    const store = values["no-store"] ? undefined : openStore({ applicationName: "nbjob worker", maxConnections: 4 });
    const kernel = await WorkerKernel.start({ info, workerId: values.id, profile: values.profile ?? null, connectionFile: writeFile, store,
      storeTiming: { heartbeatMs: msFromEnv("NBJOB_WORKER_HEARTBEAT_MS"), staleAfterMs: msFromEnv("NBJOB_WORKER_STALE_MS"), storeWaitMs: msFromEnv("NBJOB_STORE_WAIT_MS") },
    });
    process.stderr.write(`nbjob worker ${kernel.identity.worker_id} (pid ${process.pid}) listening on ${kernel.info.ip}, shell port ${kernel.info.shell_port}${writeFile ? `; wrote ${writeFile}` : ""}\n`);
    for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
      process.once(signal, () => {
        process.stderr.write(`nbjob worker: ${signal}, shutting down\n`);
        void kernel.shutdown();
      });
    }
    await kernel.finished;
    return 0;
  },
};

function msFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text.trim() === "") return undefined;
  const ms = Number(text);
  if (!Number.isFinite(ms) || ms < 50) throw new UsageError(`${name} must be a number of milliseconds (at least 50); got "${text}"`);
  return ms;
}
