// `%nbjob restore JOB [NAME]` and `%nbjob history NAME`: old code back from the store.
//
// restore JOB NAME  a new cell below holds the declaration NAME exactly as job JOB ran it (the
//                   stored snippet's source, byte for byte; a `%%snip` cell that declared several
//                   names comes back whole). Run it to have that version in the notebook again;
//                   add `@sc` (or `%%snip sc`) to collect it again.
// restore JOB       a new cell below holds the job's whole code: its snippets in program order,
//                   after one comment line with its parameters and entries (the generated lines
//                   that bind params and run the entries are left out: `params` is the notebook's).
// history NAME      every stored version of NAME with the jobs that used it.
//
// Both read the store of the notebook's last DBWrapper, or without one the default store
// (NBJOB_DATABASE_URL, else the embedded server, as DBWrapper does), so code
// deleted from the notebook and from every collector long ago comes back all the same.
import type { Store } from "../store";
import { registerNbjobCommand } from "./nbjob";
import type { MagicInvocation } from "./registry";
import { usageError } from "./errors";
import { CellError } from "./types";

const RESTORE_USAGE = "%nbjob restore JOB [NAME]  (e.g. %nbjob restore 12 train)";
const HISTORY_USAGE = "%nbjob history NAME  (e.g. %nbjob history train, or a local module: %nbjob history ./lib/other.ts)";
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** The set_next_input payload: Jupyter frontends open a new cell below holding `text`. */
export function nextInputPayload(text: string): Record<string, unknown> {
  return { source: "set_next_input", text, replace: false };
}

/** The store module, loaded on first use: the kernel starts without pg. */
function storeApi(): typeof import("../store") {
  return require("../store") as typeof import("../store");
}

async function withStore<T>(body: (store: Store) => Promise<T>): Promise<T> {
  // The notebook's own store when it made a DBWrapper (which may name another database than
  // the default); else one short-lived connection to the default store, since these commands
  // are rare and the kernel holds nothing open.
  const { notebookStore } = require("../runtime/dashboard") as typeof import("../runtime/dashboard");
  const shared = notebookStore();
  const store = shared ?? storeApi().openStore({ applicationName: "nbjob notebook", maxConnections: 1 });
  try {
    return await body(store);
  } catch (err) {
    if (err instanceof CellError) throw err;
    throw new CellError((err as Error).name || "Error", (err as Error).message);
  } finally {
    if (!shared) await store.close().catch(() => undefined);
  }
}

function parseJob(text: string | undefined, usage: string, line: number): number {
  if (text === undefined) throw usageError(`missing JOB: ${usage}`, line);
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw usageError(`JOB must be a job id (a positive integer, as db.jobs() or "nbjob jobs" list them), got "${text}"; ${usage}`, line);
  }
  return Number(text);
}

function parseName(text: string | undefined, usage: string, line: number): string {
  if (text === undefined) throw usageError(`missing NAME: ${usage}`, line);
  // `./lib/other.ts`: a local module's versions (history only; restore takes declarations).
  if (!IDENTIFIER.test(text) && !(usage === HISTORY_USAGE && /^\.\.?\/\S+$/.test(text))) throw usageError(`NAME must be the name of a declaration (function, class, variable, type ...), got "${text}"; ${usage}`, line);
  return text;
}

/** The text of the new cell for `%nbjob restore JOB [NAME]`. */
export async function restoreText(store: Store, jobId: number, name?: string): Promise<string> {
  const { bundleDeclarations, declarationInJob, getBundle, requireJob } = storeApi();
  const job = await requireJob(store, jobId);
  if (name !== undefined) {
    const snippet = await declarationInJob(store, jobId, name);
    if (snippet) return snippet.source;
    const names = [...((await bundleDeclarations(store, [job.bundle_hash])).get(job.bundle_hash)?.keys() ?? [])].sort();
    throw new CellError("NameError", `job ${jobId} had no declaration named "${name}"; its declarations: ${names.length ? names.join(", ") : "none"} (%nbjob history ${name} lists every version of ${name})`);
  }
  const bundle = await getBundle(store, job.bundle_hash);
  if (!bundle) throw new CellError("StoreError", `job ${jobId}'s bundle ${job.bundle_hash.slice(0, 12)} is not in the store; its code cannot be restored`);
  const header = `// job ${jobId}'s code (bundle ${bundle.hash.slice(0, 12)}); it ran with params ${JSON.stringify(bundle.params)} and entries ${JSON.stringify(bundle.entries)}`;
  return [header, ...bundle.snippets.map((s) => s.source.replace(/\n+$/, ""))].join("\n\n") + "\n";
}

/** What `%nbjob history NAME` shows. */
export async function historyText(store: Store, name: string): Promise<string> {
  const { declarationHistory } = storeApi();
  const versions = await declarationHistory(store, name);
  if (versions.length === 0) {
    throw new CellError("NameError", `no stored code declares "${name}"; names are case-sensitive (db.jobs() and "nbjob log" show what jobs ran)`);
  }
  const out = [`${name}: ${versions.length} version${versions.length === 1 ? "" : "s"}`];
  versions.forEach((version, i) => {
    const ids = version.jobIds;
    const used = ids.length ? `used by job${ids.length === 1 ? "" : "s"} ${ids.join(", ")}` : "used by no job";
    const restore = ids.length && version.snippet.kind !== "file" ? `  (%nbjob restore ${ids[ids.length - 1]} ${name})` : "";
    out.push("", `version ${i + 1}  ${version.snippet.hash.slice(0, 12)}  ${version.snippet.kind}  ${used}${restore}`);
    out.push(...version.snippet.source.replace(/\n+$/, "").split("\n").map((l) => (l ? `  ${l}` : l)));
  });
  return out.join("\n");
}

function words(args: string): string[] {
  return args.split(/\s+/).filter((w) => w !== "");
}

registerNbjobCommand("restore", async (args: string, { line, ctx }: MagicInvocation) => {
  const [jobText, nameText, extra] = words(args);
  if (extra !== undefined) throw usageError(`unexpected argument "${extra}"; ${RESTORE_USAGE}`, line);
  const jobId = parseJob(jobText, RESTORE_USAGE, line);
  const name = nameText === undefined ? undefined : parseName(nameText, RESTORE_USAGE, line);
  const text = await withStore((store) => restoreText(store, jobId, name));
  ctx.sink.payload(nextInputPayload(text));
});

registerNbjobCommand("history", async (args: string, { line, ctx }: MagicInvocation) => {
  const [nameText, extra] = words(args);
  if (extra !== undefined) throw usageError(`unexpected argument "${extra}"; ${HISTORY_USAGE}`, line);
  const name = parseName(nameText, HISTORY_USAGE, line);
  const text = await withStore((store) => historyText(store, name));
  ctx.sink.display({ "text/plain": text }, {}, {}, false);
});
