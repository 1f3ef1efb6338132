// Where a running `nbjob dashboard` can be reached, so the notebook's job table can link each job
// to its page. A dashboard writes `$NBJOB_HOME/dashboards/<pid>.json` ({ url, store }) while it
// runs; a notebook links to one that serves the same store and whose process is alive. The file
// holds no token: a link opens the page in a browser that already has the dashboard's cookie
// (from the URL printed at its start), and asks for the token otherwise.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nbjobHome } from "../store/config";

interface Announcement {
  url: string;
  store: string;
  pid: number;
}

function folder(): string {
  return join(nbjobHome(), "dashboards");
}

/** Says that this process serves the dashboard of `store` (a redacted URL) at `url`; returns how to take it back. */
export function announceDashboard(url: string, store: string): () => void {
  const file = join(folder(), `${process.pid}.json`);
  try {
    mkdirSync(folder(), { recursive: true, mode: 0o700 });
    writeFileSync(file, JSON.stringify({ url, store, pid: process.pid } satisfies Announcement), { mode: 0o600 });
  } catch {
    // Links from notebooks are a convenience; a home that cannot be written only loses them.
    return () => undefined;
  }
  return () => rmSync(file, { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The base URL (ending in "/") of a running dashboard of `store` (a redacted URL), if any. */
export function runningDashboard(store: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync(folder());
  } catch {
    return undefined;
  }
  for (const name of names.sort().reverse()) {
    try {
      const found = JSON.parse(readFileSync(join(folder(), name), "utf8")) as Announcement;
      if (found.store === store && Number.isSafeInteger(found.pid) && alive(found.pid) && /^https?:\/\//.test(found.url)) return found.url;
    } catch {
      // A file being written or left half-written: not a dashboard to link to.
    }
  }
  return undefined;
}
