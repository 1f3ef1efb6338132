// Asking a worker kernel how it is: heartbeat, then the `status` action of the worker comm.
// Used by `nbjob cluster status` and by clients choosing a worker.
import { randomUUID } from "node:crypto";
import { KernelClient } from "../wire/client";
import type { ConnectionInfo } from "../wire/connection";
import { WORKER_COMM_TARGET } from "../runtime/shared/protocol";
import type { WorkerEvent } from "../runtime/shared/protocol";

export type WorkerStatus = Extract<WorkerEvent, { action: "status" }>;

export interface WorkerProbe {
  /** The heartbeat echoed in time. */
  heartbeat: boolean;
  /** The worker's answer to `status`, when it gave one in time. */
  status?: WorkerStatus;
}

/** Never throws: a worker that does not answer is reported as such. */
export async function probeWorker(info: ConnectionInfo, timeoutMs = 3_000): Promise<WorkerProbe> {
  const client = await KernelClient.connect(info, { waitForReady: false, log: () => {}, requestTimeoutMs: timeoutMs });
  try {
    const heartbeat = await client.isAlive(timeoutMs);
    if (!heartbeat) return { heartbeat };
    const comm = await client.openComm(WORKER_COMM_TARGET);
    const requestId = randomUUID();
    const status = await new Promise<WorkerStatus | undefined>((resolve) => {
      // The SUB socket misses what is published before its subscription lands; ask until answered.
      const ask = () => void comm.send({ action: "status", request_id: requestId }).catch(() => undefined);
      const again = setInterval(ask, 250);
      const finish = (answer: WorkerStatus | undefined) => {
        clearInterval(again);
        clearTimeout(timer);
        resolve(answer);
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      comm.onMsg((data) => {
        const event = data as WorkerEvent;
        if (event.action === "status" && event.request_id === requestId) finish(event);
      });
      ask();
    });
    await comm.close().catch(() => undefined);
    return { heartbeat, status };
  } finally {
    client.close();
  }
}
