// Live updates: one LISTEN connection for the whole dashboard (migration 000016's triggers NOTIFY
// on every change of a job row and every batch of log lines), fanned out to the open pages as
// server-sent events. Pages never poll the store; they read again only what an event names.
import type { ServerResponse } from "node:http";
import type { Store } from "../../store";

const CHANNELS: Record<string, string> = { nbjob_jobs_changed: "jobs", nbjob_logs_appended: "logs" };

export class ChangeFeed {
  private readonly pages = new Set<ServerResponse>();
  private stopped = false;
  private release?: () => void;
  private keepAlive?: NodeJS.Timeout;

  constructor(private readonly store: Store) {}

  /** Listens until stop(); a lost connection is opened again after a second (pages are told to read everything again). */
  start(): void {
    const listen = (): void => {
      if (this.stopped) return;
      this.store
        .withClient(async (client) => {
          const ended = new Promise<void>((resolve) => {
            this.release = resolve;
            client.on("error", () => resolve());
            client.on("end", () => resolve());
          });
          client.on("notification", (message) => {
            const event = CHANNELS[message.channel];
            if (event) this.broadcast(event, message.payload ?? "*");
          });
          for (const channel of Object.keys(CHANNELS)) await client.query(`LISTEN ${channel}`);
          await ended;
          client.removeAllListeners("notification");
          if (!this.stopped) await client.query(`UNLISTEN *`).catch(() => undefined);
        })
        .catch(() => undefined)
        .finally(() => {
          if (this.stopped) return;
          this.broadcast("jobs", "*");
          setTimeout(listen, 1_000).unref();
        });
    };
    listen();
    // A comment line now and then keeps proxies and idle timeouts from closing the stream.
    this.keepAlive = setInterval(() => this.broadcast("", ""), 15_000);
    this.keepAlive.unref();
  }

  /** Opens a page's event stream. */
  attach(res: ServerResponse): void {
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-content-type-options": "nosniff" });
    res.write(": nbjob dashboard events\n\n");
    this.pages.add(res);
    res.on("close", () => this.pages.delete(res));
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.keepAlive);
    this.release?.();
    for (const res of this.pages) res.end();
    this.pages.clear();
  }

  private broadcast(event: string, data: string): void {
    const text = event ? `event: ${event}\ndata: ${data.replace(/\n/g, " ")}\n\n` : ": keep-alive\n\n";
    for (const res of this.pages) res.write(text);
  }
}
