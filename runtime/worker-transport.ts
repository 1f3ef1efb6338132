// How the notebook reaches one worker kernel: over ZeroMQ with a connection file, or through a
// Jupyter Server's WebSocket (runtime/gateway.ts). WorkerConnection speaks the `nbjob.worker`
// comm protocol over either, so the same job code runs on both.
import { KernelClient, KernelTimeoutError } from "../wire/client";
import { readConnectionFile } from "../wire/connection";

/** One open comm to the worker. */
export interface TransportComm {
  send(data: Record<string, unknown>): Promise<unknown>;
  onMsg(handler: (data: Record<string, unknown>) => void): unknown;
  /** Called when the comm is closed by the kernel, or the transport loses the kernel. */
  onClose(handler: () => void): unknown;
}

export interface WorkerTransport {
  /** Where the worker is, for messages: "connection file F" or "kernel ID on the Jupyter Server at URL". */
  readonly where: string;
  /** What to tell a user to check when the worker stops answering. */
  readonly checkHint: string;
  /** The kernel_info_reply's content (its `nbjob` field names the worker). */
  readonly kernelInfo: Record<string, unknown> | undefined;
  readonly closed: boolean;
  openComm(targetName: string): Promise<TransportComm>;
  /** Whether the kernel answers within `timeoutMs` (the heartbeat, or a kernel_info round trip). */
  isAlive(timeoutMs: number): Promise<boolean>;
  /** Ends the connection (and, for kernels this client started on a Jupyter Server, the kernel). */
  close(): Promise<void>;
}

/** A worker reached over ZeroMQ through its connection file. */
export class ZmqTransport implements WorkerTransport {
  readonly checkHint = "check it with \"nbjob cluster status\"";

  private constructor(readonly connectionFile: string, private readonly client: KernelClient) {}

  static async connect(file: string, timeoutMs: number): Promise<ZmqTransport> {
    const info = readConnectionFile(file);
    let client: KernelClient;
    try {
      client = await KernelClient.connect(info, { readyTimeoutMs: timeoutMs, log: () => {}, name: `the worker kernel of connection file ${file}` });
    } catch (err) {
      // A timeout's message already says which kernel did not answer and what to check.
      const why = err instanceof KernelTimeoutError ? err.message.replace(/; check that the kernel is running and/, "; is it running? Check") : `the worker kernel of connection file ${file} did not answer (${(err as Error).message}); is it running?`;
      throw new Error(`${why}. Start workers with "npx nbjob cluster start -n 2" or "npx nbjob worker --connection-file ${file}"`, { cause: err });
    }
    return new ZmqTransport(file, client);
  }

  get where(): string {
    return `connection file ${this.connectionFile}`;
  }

  get kernelInfo(): Record<string, unknown> | undefined {
    return this.client.kernelInfo as Record<string, unknown> | undefined;
  }

  get closed(): boolean {
    return this.client.closed;
  }

  openComm(targetName: string): Promise<TransportComm> {
    return this.client.openComm(targetName);
  }

  isAlive(timeoutMs: number): Promise<boolean> {
    return this.client.isAlive(timeoutMs);
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
