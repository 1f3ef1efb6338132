// `nbjob dashboard` driven by a real browser (Debian's chromium through puppeteer-core): a real
// server process over a fresh database with many jobs inserted in SQL (20k; NBJOB_DASHBOARD_TEST_JOBS=100000 for 100k), its security checks over
// HTTP, the jobs list's filters, sorting and paging, a job page that follows status and log
// without reload, 10,000 log lines, compare of a sweep's 3 jobs (chart, code diff), the sweep
// page, actions with and without the token, delete by the list's filters (dry run, then confirm),
// the store page and its gc, and hostile strings that must stay text.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client } from "pg";
import puppeteer from "puppeteer-core";
import type { Browser, Page } from "puppeteer-core";
import { appendLogs, createAnalysis, createJob, createJobGroup, jobSizes, openStore, putAnalysisRow, putBlob, putBundle, putCheckpoint, putMetrics, transitionJob } from "../store";
import type { Json, Store } from "../store";

// The browser's globals as the functions given to page.evaluate/waitForFunction see them (the
// project compiles without the DOM lib; these names are this module's only).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
declare const document: any, window: any;
type HTMLTextAreaElement = { value: string };

const ROOT = resolve(__dirname, "..", "..");
const NBJOB = join(ROOT, "bin", "nbjob.js");
const CHROMIUM = "/usr/bin/chromium";
const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const name = `nbjob_dashboard_${process.pid}_${randomBytes(3).toString("hex")}`;
const url = `postgres://postgres@127.0.0.1:5432/${name}`;
const TOKEN = `t${randomBytes(16).toString("hex")}`;
/** Jobs inserted for the list's paging; NBJOB_DASHBOARD_TEST_JOBS=100000 for the figure of the issue (its insert takes 8-10 s here). */
const BULK = Number(process.env.NBJOB_DASHBOARD_TEST_JOBS ?? 20_000);
/** Screenshots for a person to look at (kept after the run). */
const SHOTS = join(ROOT, "dist", "test", "screenshots");
const HOSTILE = `<img src=x onerror="window.__pwned=1"> "quoted" 'single' ünïcødé ✓ 𝄞`;
const figures: string[] = [];

let store: Store;
let server: ChildProcess | undefined;
let browser: Browser;
let base = "";
const ids: Record<string, number> = {};

async function admin(sql: string): Promise<void> {
  const client = new Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function addJob(params: { [name: string]: Json }, options: { name?: string; tags?: string[]; groupId?: number; code?: string } = {}): Promise<number> {
  const code = options.code ?? "function step(x: number) { return x + 1; }";
  const hash = await putBundle(store, { source: `// ${JSON.stringify(params)}\n${code}\nstep(params.x);\n`, snippets: [{ kind: "function", names: ["step"], source: code }], params, entries: ["step(params.x)"] });
  const job = await createJob(store, { bundleHash: hash, name: options.name ?? null, tags: options.tags ?? [], groupId: options.groupId ?? null });
  return Number(job.id);
}

async function run(id: number): Promise<void> {
  await transitionJob(store, id, "running", { workerId: "default/0@testhost.abc123", host: "testhost", pid: 4242 });
}

function startServer(args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, [NBJOB, "dashboard", "--port", "0", ...args], { env: { ...process.env, NBJOB_DATABASE_URL: url, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolvePromise, reject) => {
    let out = "";
    let err = "";
    child.stderr!.on("data", (c) => (err += c));
    child.stdout!.on("data", (c) => {
      out += c;
      const m = /nbjob dashboard at (http:\/\/[^/ ]+)\//.exec(out);
      if (m) resolvePromise({ child, base: m[1] });
    });
    child.on("close", (code) => reject(new Error(`nbjob dashboard exited (${code}): ${err}`)));
  });
}

function nbjob(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [NBJOB, ...args], { env: { ...process.env, NBJOB_DATABASE_URL: url }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (c) => (stdout += c));
    child.stderr!.on("data", (c) => (stderr += c));
    child.on("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** A POST as the page sends it (the token in its header unless `token` is false). */
function postJson(path: string, body: unknown, options: { token?: boolean; origin?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.token !== false) headers["x-nbjob-token"] = TOKEN;
  if (options.origin) headers.origin = options.origin;
  return fetch(`${base}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
}

/** Makes stored values look older than gc's 10-minute grace period, as a store in use for months has them. */
async function ageValues(blobHashes: string[]): Promise<void> {
  await store.query("UPDATE nbjob.blobs SET created_at = now() - interval '1 hour' WHERE hash = ANY($1::text[])", [blobHashes]);
  await store.query("UPDATE nbjob.chunks SET created_at = now() - interval '1 hour' WHERE hash IN (SELECT chunk_hash FROM nbjob.blob_chunks WHERE blob_hash = ANY($1::text[]))", [blobHashes]);
}

/** A page that reports any script the test did not write (an onerror, a dialog) through window flags and dialogs. */
async function openPage(path: string): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  // The page reports a failed action with alert(); that is a test failure, said in the log.
  page.on("dialog", (dialog) => {
    console.log(`# a dialog opened on ${path}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  page.on("pageerror", (err) => console.log(`# a script error on ${path}: ${(err as Error).message}`));
  await page.goto(`${base}${path}`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("body[data-loaded]", { timeout: 30_000 });
  return page;
}

const text = (page: Page, selector: string) => page.$eval(selector, (el) => el.textContent ?? "");

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  mkdirSync(SHOTS, { recursive: true });
  await admin(`CREATE DATABASE ${name}`);
  store = openStore({ url, maxConnections: 3 });
  await store.ready();
  // Many finished jobs in one statement (what would take a cluster hours), then the few the tests follow.
  const bulkHash = await putBundle(store, { source: "// bulk\n1;\n", snippets: [], params: { x: 1, lr: 0.1 }, entries: ["1"] });
  const started = Date.now();
  await store.query(
    `INSERT INTO nbjob.jobs (bundle_hash, name, tags, status, queued_at, started_at, finished_at, worker_id, result_text)
     SELECT $1, 'bulk-' || g, ARRAY['bulk', 'b' || (g % 10)], (ARRAY['done', 'failed', 'cancelled'])[1 + g % 3],
            now() - make_interval(secs => 300000 - g), now() - make_interval(secs => 300000 - g), now() - make_interval(secs => 299990 - g), 'w' || (g % 4), (g * 2)::text
       FROM generate_series(1, $2::int) g`,
    [bulkHash, BULK],
  );
  await store.query("ANALYZE nbjob.jobs");
  figures.push(`inserted ${BULK} jobs in ${Date.now() - started} ms`);
  const group = await createJobGroup(store, { name: "lr sweep", grid: { lr: [0.1, 0.01, 0.001] } });
  const sweep = [];
  for (const [i, lr] of [0.1, 0.01, 0.001].entries()) {
    const id = await addJob({ x: i, lr }, { name: `sweep lr=${lr}`, tags: ["sweep"], groupId: Number(group.id), code: `function step(x: number) { return x * ${i + 1}; }` });
    await run(id);
    for (let c = 0; c < 5; c++) await putCheckpoint(store, id, c, { loss: new Uint8Array([c]) });
    const analysis = await createAnalysis(store, id, [{ name: "lossAt", source: "function lossAt(s: { loss: number }) { return s.loss; }" }]);
    for (let c = 0; c < 5; c++) await putAnalysisRow(store, { functionHash: analysis.function_hashes[0], jobId: id, checkpointIdx: c, value: [["loss", lr * 10 / (c + 1)]] });
    // 20 steps of a metric as jobtracker.log stores them (a NaN among them is kept, not drawn).
    await putMetrics(store, id, Array.from({ length: 20 }, (_, k) => ({ seq: k, name: "loss", step: k, value: k === 7 ? NaN : lr * 100 / (k + 1), backwards: false })));
    await transitionJob(store, id, "done", { result: null, resultText: String(1 - lr) });
    sweep.push(id);
  }
  ids.group = Number(group.id);
  [ids.sweepA, ids.sweepB, ids.sweepC] = sweep;
  ids.hostile = await addJob({ "<b>k</b>": HOSTILE, quote: `'"\``, x: 1 }, { name: HOSTILE, tags: [`"><script>window.__pwned=2</script>`, "ünï"],
    code: `function step(x: number) { const s = "</pre><img src=x onerror='window.__pwned=7'>"; return x + s.length; }` });
  await run(ids.hostile);
  await appendLogs(store, ids.hostile, [{ stream: "stdout", line: `<script>window.__pwned=3</script>${HOSTILE}` }, { stream: "stderr", line: `<img src=x onerror=window.__pwned=4>` }]);
  await transitionJob(store, ids.hostile, "failed", { error: { name: "Error", message: HOSTILE, traceback: [`    at <img src=x onerror=window.__pwned=5> (bundle.ts:3:1)`] } });
  await store.query("UPDATE nbjob.jobs SET note = $2 WHERE id = $1", [ids.hostile, `<img src=x onerror="window.__pwned=6">`]);
  ids.long = await addJob({ x: 2 }, { name: "many lines" });
  await run(ids.long);
  for (let i = 0; i < 10; i++) await appendLogs(store, ids.long, Array.from({ length: 1000 }, (_, k) => ({ stream: "stdout" as const, line: `line ${i * 1000 + k + 1} of 10000` })));
  ids.live = await addJob({ x: 3 }, { name: "live one" });
  ids.queued = await addJob({ x: 4 }, { name: "to cancel", tags: ["keep-me"] });
  ({ child: server, base } = await startServer(["--token", TOKEN]));
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  // The first visit carries the token, as the printed URL does; the cookie keeps it for the rest.
  const first = await browser.newPage();
  await first.goto(`${base}/?token=${TOKEN}`, { waitUntil: "domcontentloaded" });
  assert.equal(new URL(first.url()).search, "", "the token is taken out of the address bar");
  await first.close();
});

after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
  await store?.close();
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  if (figures.length) console.log(`# dashboard figures:\n${figures.map((f) => `#   ${f}`).join("\n")}`);
});

describe("nbjob dashboard in a browser", () => {
  test("security: token for reads and actions, the Host header, the Origin of actions, --no-token only on loopback", async () => {
    assert.equal((await fetch(`${base}/`)).status, 403);
    assert.equal((await fetch(`${base}/api/jobs`)).status, 403);
    assert.equal((await fetch(`${base}/api/jobs`, { headers: { authorization: "token wrong-token" } })).status, 403);
    const ok = await fetch(`${base}/api/jobs?limit=5`, { headers: { authorization: `token ${TOKEN}` } });
    assert.equal(ok.status, 200);
    // DNS rebinding: the right token under another host name is still refused.
    const { request } = await import("node:http");
    const rebound = await new Promise<number>((done, fail) => {
      const req = request(`${base}/api/jobs`, { headers: { host: "evil.example", authorization: `token ${TOKEN}` } }, (res) => {
        res.resume();
        done(res.statusCode ?? 0);
      });
      req.on("error", fail);
      req.end();
    });
    assert.equal(rebound, 421);
    const cancel = (headers: Record<string, string>) => fetch(`${base}/api/jobs/${ids.queued}/tags`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ add: ["x"] }) });
    assert.equal((await cancel({})).status, 403, "an action without the token");
    assert.equal((await cancel({ cookie: `nbjob_dashboard_${new URL(base).port}=${TOKEN}` })).status, 403, "the cookie alone does not make an action");
    assert.equal((await cancel({ "x-nbjob-token": TOKEN, origin: "http://evil.example" })).status, 403, "an action from another origin");
    assert.equal((await fetch(`${base}/api/jobs/${ids.queued}/cancel`, { headers: { authorization: `token ${TOKEN}` } })).status, 404, "actions are POST only");
    const noToken = await nbjob(["dashboard", "--host", "0.0.0.0", "--no-token", "--port", "0"]);
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /--no-token is allowed only on a loopback address/);
    const badPort = await nbjob(["dashboard", "--port", "99999"]);
    assert.equal(badPort.code, 2);
    assert.equal(badPort.stderr.trim(), "nbjob: --port 99999: expected a whole number from 0 to 65535");
    // Lists never carry whole values: the preview of a 300 kB parameter is cut in SQL.
    const big = await addJob({ blob: "y".repeat(300_000) }, { name: "big param" });
    const listed = (await (await fetch(`${base}/api/jobs?limit=3`, { headers: { authorization: `token ${TOKEN}` } })).json()) as { jobs: { id: number; params_preview: string | null }[] };
    const row = listed.jobs.find((j) => j.id === big)!;
    assert.ok(row.params_preview === null || row.params_preview.length <= 201, "the list row holds at most 200 characters of it");
    const whole = await fetch(`${base}/api/jobs/${big}/value/params?name=blob`, { headers: { authorization: `token ${TOKEN}` } });
    assert.equal((await whole.text()).length, 300_002, "the whole value on request");
  });

  test("jobs: first page of many, filters, sorting and paging in the page; 3 of a sweep compared (params marked, code diff, chart)", async () => {
    const page = await openPage("/");
    // What the browser warns about (Vega-Lite once warned about every chart's older $schema).
    const warnings: string[] = [];
    page.on("console", (message) => { if (message.type() === "warn" || message.type() === "error") warnings.push(message.text()); });
    const count = await text(page, "#count");
    assert.match(count, /^jobs 1–50 of more than \d+ \(server [\d.]+ ms\)$/, count);
    figures.push(`first page of jobs with ${BULK + 10} stored: ${/server ([\d.]+) ms/.exec(count)![1]} ms on the server (browser's first load)`);
    const serverMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const body = (await (await fetch(`${base}/api/jobs`, { headers: { authorization: `token ${TOKEN}` } })).json()) as { ms: number };
      serverMs.push(body.ms);
    }
    figures.push(`first page again, 5 times: ${serverMs.join(", ")} ms`);
    assert.equal(await page.$$eval("#jobs tbody tr", (rows) => rows.length), 50);
    // Filter by status and name through the form.
    await page.select("select[name=status]", "failed");
    await page.type("input[name=name]", "bulk-99");
    await Promise.all([page.waitForNavigation(), page.click("form.filters button[type=submit]")]);
    await page.waitForSelector("body[data-loaded]");
    assert.match(page.url(), /status=failed/);
    const statuses = await page.$$eval("#jobs tbody tr [data-status]", (els) => els.map((e) => e.getAttribute("data-status")));
    assert.ok(statuses.length > 0 && statuses.every((s) => s === "failed"), statuses.join());
    const names = await page.$$eval("#jobs tbody tr td:nth-child(3)", (els) => els.map((e) => e.textContent ?? ""));
    assert.ok(names.every((n) => n.includes("bulk-99")), names.join());
    // A parameter condition and a tag, from the URL (the page's state is its address).
    await page.goto(`${base}/?param=lr%3C0.05&tag=sweep`);
    await page.waitForSelector("body[data-loaded]");
    assert.deepEqual(await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => Number(r.getAttribute("data-id")))), [ids.sweepC, ids.sweepB]);
    // Paging: the next page starts where this one ended; sorting by id ascending starts at 1.
    await page.goto(`${base}/?tag=bulk`);
    await page.waitForSelector("body[data-loaded]");
    const firstPage = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => Number(r.getAttribute("data-id"))));
    await Promise.all([page.waitForNavigation(), page.click("a.page")]);
    await page.waitForSelector("body[data-loaded]");
    const secondPage = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => Number(r.getAttribute("data-id"))));
    assert.equal(secondPage[0], firstPage[49] - 1);
    assert.match(await text(page, "#count"), /^jobs 51–100 of/);
    await page.goto(`${base}/?tag=bulk&sort=id&order=asc`);
    await page.waitForSelector("body[data-loaded]");
    assert.equal(await page.$eval("#jobs tbody tr", (r) => r.getAttribute("data-id")), "1");
    // Select the sweep's 3 jobs and compare them.
    await page.goto(`${base}/?tag=sweep`);
    await page.waitForSelector("body[data-loaded]");
    for (const id of [ids.sweepA, ids.sweepB, ids.sweepC]) await page.click(`tr[data-id="${id}"] input[type=checkbox]`);
    await Promise.all([page.waitForNavigation(), page.click("#compare")]);
    await page.waitForSelector("body[data-loaded]", { timeout: 30_000 });
    assert.match(page.url(), new RegExp(`/compare\\?ids=${ids.sweepA},${ids.sweepB},${ids.sweepC}$`));
    assert.equal(await page.$eval('tr[data-param="lr"]', (r) => r.className), "differs");
    assert.match(await text(page, "pre.diff"), /-function step\(x: number\) \{ return x \* 1; \}\n\+function step\(x: number\) \{ return x \* 2; \}/);
    assert.equal(await page.$eval("#chart", (el) => el.getAttribute("data-rendered")), "yes");
    assert.ok((await page.$$("#chart svg")).length > 0, "the chart is drawn (Vega served by the dashboard)");
    // The metric the 3 jobs logged: last values side by side, and one chart with a line per job.
    assert.deepEqual(await page.$$eval('tr[data-metric="loss"] td', (cells) => cells.map((c) => c.textContent)), ["0.5", "0.05", "0.005"]);
    assert.equal(await page.$eval('.metric-chart[data-metric="loss"]', (el) => el.getAttribute("data-rendered")), "yes");
    assert.equal(await page.$$eval('.metric-chart[data-metric="loss"] svg path[aria-roledescription="line mark"]', (lines) => lines.length), 3, "a line per job");
    await page.screenshot({ path: join(SHOTS, "compare.png"), fullPage: true });
    await page.goto(`${base}/jobs/${ids.sweepB}`);
    await page.waitForFunction(() => document.querySelector('.metric-chart[data-metric="loss"]')?.getAttribute("data-rendered") === "yes", { timeout: 20_000 });
    assert.deepEqual(await page.$$eval("#metrics td", (cells) => cells.map((c) => c.textContent)), ["loss", "0.05"]);
    await page.goto(`${base}/groups/${ids.group}`);
    await page.waitForSelector("body[data-loaded]");
    assert.equal(await page.$$eval("#sweep tr", (rows) => rows.length), 4);
    await page.waitForFunction(() => document.querySelector("#chart")?.getAttribute("data-rendered") === "yes", { timeout: 20_000 });
    // A declaration's history: every stored version of step (5: the hostile job has its own), each with its jobs and its diff from the one before.
    await page.goto(`${base}/history?name=step`);
    await page.waitForSelector("body[data-loaded]");
    assert.equal(await page.$$eval("section.version", (els) => els.length), 5);
    const history = await text(page, "main");
    assert.match(history, /\+function step\(x: number\) \{ return x \* 2; \}/);
    assert.match(history, new RegExp(`used by 1 job: ${ids.sweepB}`));
    await page.screenshot({ path: join(SHOTS, "history.png"), fullPage: true });
    await page.goto(`${base}/?limit=20`);
    await page.waitForSelector("body[data-loaded]");
    await page.screenshot({ path: join(SHOTS, "jobs.png") });
    assert.deepEqual(warnings.filter((w) => /Vega|vega/.test(w)), [], "the charts drew without warnings");
    // A job that does not exist: the error alone, no empty log or details under it.
    await page.goto(`${base}/jobs/987654`);
    await page.waitForSelector("body[data-loaded]");
    assert.match(await text(page, "main"), /^there is no job 987654/);
    assert.equal(await page.$("#log"), null);
    await page.close();
  });

  test("a job page follows its status and log without reload; 10,000 lines paint fast", async () => {
    await run(ids.live);
    const page = await openPage(`/jobs/${ids.live}`);
    await page.waitForFunction(() => document.querySelector("#live")?.textContent === "live");
    assert.equal(await page.$eval("h1 [data-status]", (e) => e.getAttribute("data-status")), "running");
    await page.evaluate(() => ((window as unknown as { __marker: number }).__marker = 1));
    await appendLogs(store, ids.live, [{ stream: "stdout", line: "epoch 1 loss 0.5" }, { stream: "stderr", line: "warning: slow" }]);
    await page.waitForFunction(() => (document.querySelector("#log")?.textContent ?? "").includes("warning: slow"), { timeout: 15_000 });
    const changed = Date.now();
    await transitionJob(store, ids.live, "done", { result: null, resultText: "0.25" });
    await page.waitForFunction(() => document.querySelector("h1 [data-status]")?.getAttribute("data-status") === "done", { timeout: 15_000, polling: "mutation" });
    figures.push(`status change in the store → shown on the job page: ${Date.now() - changed} ms`);
    assert.equal(await text(page, "#result"), "0.25");
    assert.equal(await page.evaluate(() => (window as unknown as { __marker?: number }).__marker), 1, "the page was not reloaded");
    await page.close();
    // A job with 10,000 lines: the last 1,000 are shown at once, earlier ones on request.
    const long = await openPage(`/jobs/${ids.long}`);
    const timing = await long.evaluate(() => {
      const paint = performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1;
      return { paint, log: Number(document.body.dataset.loaded) - performance.timeOrigin };
    });
    figures.push(`job page with 10,000 log lines: first paint ${Math.round(timing.paint)} ms, log drawn ${Math.round(timing.log)} ms after navigation`);
    assert.equal(await text(long, "#log-count"), "1000 of 10000 lines");
    assert.match(await text(long, "#log"), /line 10000 of 10000\n$/);
    await long.click("#earlier");
    await long.waitForFunction(() => document.querySelector("#log-count")?.textContent === "2000 of 10000 lines");
    assert.match(await text(long, "#log"), /^line 8001 of 10000\n/);
    await long.screenshot({ path: join(SHOTS, "job-log.png") });
    await long.close();
  });

  test("actions from the page: cancel, tags, note, rerun, delete; hostile strings stay text everywhere", async () => {
    const page = await openPage(`/jobs/${ids.queued}`);
    await page.click("#cancel");
    await page.waitForFunction(() => document.querySelector("h1 [data-status]")?.getAttribute("data-status") === "cancelled", { timeout: 15_000 });
    await page.type("#new-tag", "looked-at");
    // Clicks in the page in one step: a redraw that follows a change may move the buttons under a mouse click.
    const click = (selector: string) => page.evaluate((s: string) => document.querySelector(s).click(), selector);
    await click("#add-tag");
    await page.waitForFunction(() => [...document.querySelectorAll("#actions .tag")].some((t) => t.textContent?.startsWith("looked-at")), { timeout: 15_000 });
    await click('[data-remove-tag="keep-me"]');
    await page.waitForFunction(() => ![...document.querySelectorAll("#actions .tag")].some((t) => t.textContent?.startsWith("keep-me")), { timeout: 15_000 });
    await page.type("#note", "checked <b>by hand</b>");
    await click("#save-note");
    // The save is seen in the store (the box shows the typed text either way).
    const readRow = async () => (await store.query<{ tags: string[]; status: string; note: string | null }>("SELECT tags, status, note FROM nbjob.jobs WHERE id = $1", [ids.queued])).rows[0];
    for (let tries = 0; (await readRow()).note === null && tries < 150; tries++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await readRow(), { tags: ["looked-at"], status: "cancelled", note: "checked <b>by hand</b>" });
    assert.equal(await page.$eval("#note", (el) => (el as HTMLTextAreaElement).value), "checked <b>by hand</b>", "the saved note stays in its box");
    await Promise.all([page.waitForNavigation(), click("#rerun")]);
    await page.waitForSelector("body[data-loaded]");
    const rerunId = Number(/\/jobs\/(\d+)$/.exec(page.url())![1]);
    const rerun = await store.query<{ rerun_of: number; status: string }>("SELECT rerun_of, status FROM nbjob.jobs WHERE id = $1", [rerunId]);
    assert.deepEqual(rerun.rows[0], { rerun_of: ids.queued, status: "queued" });
    assert.match(await text(page, "#links"), new RegExp(`rerun of job ${ids.queued}`));
    await page.close();
    // Resume: a failed job resumes as a new job; a done one is refused with the reason.
    const post = (id: number, action: string) => fetch(`${base}/api/jobs/${id}/${action}`, { method: "POST", headers: { "content-type": "application/json", "x-nbjob-token": TOKEN }, body: "{}" });
    const resumed = await post(ids.hostile, "resume");
    assert.equal(resumed.status, 200);
    const { created } = (await resumed.json()) as { created: number };
    assert.equal((await store.query<{ resumed_from: number }>("SELECT resumed_from FROM nbjob.jobs WHERE id = $1", [created])).rows[0].resumed_from, ids.hostile);
    const refused = await post(ids.sweepA, "resume");
    assert.equal(refused.status, 409);
    assert.match(((await refused.json()) as { error: string }).error, /is done; there is nothing to resume/);
    // The hostile job, in the list and on its page.
    for (const path of [`/?name=${encodeURIComponent("<img")}`, `/jobs/${ids.hostile}`]) {
      const hostile = await openPage(path);
      await new Promise((r) => setTimeout(r, 300)); // let any injected handler fire, had there been one
      const state = await hostile.evaluate(() => ({
        pwned: (window as unknown as { __pwned?: number }).__pwned,
        images: document.querySelectorAll("img").length,
        scripts: [...document.querySelectorAll("script")].map((s) => s.getAttribute("src")),
        text: document.body.textContent ?? "",
      }));
      assert.equal(state.pwned, undefined, path);
      assert.equal(state.images, 0, path);
      assert.deepEqual(state.scripts.filter((s) => !s?.startsWith("/")), [], path);
      assert.ok(state.text.includes(HOSTILE), `${path} shows the name as text`);
      if (path.startsWith("/jobs/")) {
        assert.ok(state.text.includes(`<script>window.__pwned=3</script>`), "the log line as text");
        assert.ok(state.text.includes(`"><script>window.__pwned=2</script>`), "the tag as text");
        assert.equal(await hostile.$eval("#note", (el) => (el as HTMLTextAreaElement).value), `<img src=x onerror="window.__pwned=6">`);
        // The code is highlighted (highlight.js from npm, served by the dashboard), its strings still text.
        const code = await hostile.evaluate(() => {
          const pre = document.querySelector("pre.code.hljs");
          return { keywords: pre?.querySelectorAll(".hljs-keyword").length ?? 0, text: pre?.textContent ?? "" };
        });
        assert.ok(code.keywords >= 3, `keywords highlighted: ${code.keywords}`);
        assert.match(code.text, /const s = "<\/pre><img src=x onerror='window.__pwned=7'>"/);
        await hostile.screenshot({ path: join(SHOTS, "hostile-job.png"), fullPage: true });
      }
      await hostile.close();
    }
    // Delete, as `nbjob rm`: a queued job and one tagged keep are refused with the reason; from
    // the page, after the user confirms, the job is gone and the page goes back to the list.
    const queuedRefused = await post(rerunId, "delete");
    assert.equal(queuedRefused.status, 409);
    assert.match(((await queuedRefused.json()) as { error: string }).error, new RegExp(`job ${rerunId} is queued; cancel it first`));
    await fetch(`${base}/api/jobs/${ids.hostile}/tags`, { method: "POST", headers: { "content-type": "application/json", "x-nbjob-token": TOKEN }, body: JSON.stringify({ add: ["keep"] }) });
    const keptRefused = await post(ids.hostile, "delete");
    assert.equal(keptRefused.status, 409);
    assert.match(((await keptRefused.json()) as { error: string }).error, /is tagged "keep"; remove the tag first/);
    assert.equal((await fetch(`${base}/api/jobs/${ids.queued}/delete`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status, 403, "delete without the token");
    const doomed = await openPage(`/jobs/${ids.queued}`);
    await doomed.evaluate(() => { (window as unknown as { confirm: () => boolean }).confirm = () => true; });
    await Promise.all([doomed.waitForNavigation(), doomed.evaluate(() => (document.querySelector("#delete") as { click(): void }).click())]);
    assert.equal(new URL(doomed.url()).pathname, "/");
    await doomed.close();
    assert.equal((await store.query("SELECT 1 FROM nbjob.jobs WHERE id = $1", [ids.queued])).rowCount, 0, "the job is deleted");
    assert.equal((await store.query<{ rerun_of: number }>("SELECT rerun_of FROM nbjob.jobs WHERE id = $1", [rerunId])).rows[0].rerun_of, ids.queued, "its rerun stays, pointing at the deleted parent");
    // Several at once from the list, as `nbjob rm JOB...`: all or none.
    const lot = await fetch(`${base}/api/delete`, { method: "POST", headers: { "content-type": "application/json", "x-nbjob-token": TOKEN }, body: JSON.stringify({ ids: [ids.sweepC, rerunId] }) });
    assert.equal(lot.status, 409);
    assert.match(((await lot.json()) as { error: string }).error, new RegExp(`job ${rerunId} is queued; cancel it first.*nothing was deleted`));
    assert.equal((await fetch(`${base}/api/delete`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ids: [ids.sweepC] }) })).status, 403, "without the token");
    const list = await openPage("/?tag=sweep");
    await list.evaluate(() => { (window as unknown as { confirm: () => boolean }).confirm = () => true; });
    for (const id of [ids.sweepA, ids.sweepB]) await list.click(`tr[data-id="${id}"] input[type=checkbox]`);
    await list.evaluate(() => (document.querySelector("#delete-selected") as { click(): void }).click());
    await list.waitForFunction((gone: number[]) => gone.every((id) => !document.querySelector(`tr[data-id="${id}"]`)), { timeout: 15_000 }, [ids.sweepA, ids.sweepB]);
    await list.close();
    const left = await store.query<{ id: number }>("SELECT id FROM nbjob.jobs WHERE id = ANY($1::bigint[]) ORDER BY id", [[ids.sweepA, ids.sweepB, ids.sweepC]]);
    assert.deepEqual(left.rows.map((r) => Number(r.id)), [ids.sweepC], "the two selected are deleted; the one refused before is still there");
  });

  test("delete by the list's filters: a dry run saying what nbjob rm --dry-run says, then on confirm exactly those jobs go and gc follows; kept and running ones left and named", async () => {
    // Five jobs tagged purge: three ended (each with a checkpoint value of its own), one tagged keep, one still running.
    const purge: number[] = [];
    for (const [i, end] of (["done", "failed", "cancelled"] as const).entries()) {
      const id = await addJob({ x: 100 + i }, { name: `purge ${i}`, tags: ["purge"] });
      if (end !== "cancelled") await run(id);
      await putCheckpoint(store, id, 0, { state: randomBytes(40_000) });
      await transitionJob(store, id, end, end === "done" ? { result: null, resultText: "1" } : { error: { name: end === "failed" ? "Error" : "Cancelled", message: end } });
      purge.push(id);
    }
    const kept = await addJob({ x: 110 }, { name: "purge kept", tags: ["purge", "keep"] });
    await run(kept);
    await transitionJob(store, kept, "done", { result: null, resultText: "2" });
    const running = await addJob({ x: 111 }, { name: "purge running", tags: ["purge"] });
    await run(running);
    const purgeValues = (await store.query<{ blob_hash: string }>("SELECT blob_hash FROM nbjob.checkpoint_values WHERE job_id = ANY($1::bigint[])", [purge])).rows.map((r) => r.blob_hash);
    assert.equal(purgeValues.length, 3);
    await ageValues(purgeValues);
    const tagged = async () => (await store.query<{ id: number }>("SELECT id FROM nbjob.jobs WHERE tags @> ARRAY['purge'] ORDER BY id")).rows.map((r) => Number(r.id));

    // Refused without the token or from another origin; nothing goes.
    assert.equal((await postJson("/api/delete-matching", { filter: { tag: "purge" }, dryRun: false }, { token: false })).status, 403, "without the token");
    assert.equal((await postJson("/api/delete-matching", { filter: { tag: "purge" }, dryRun: false }, { origin: "http://evil.example" })).status, 403, "from another origin");
    assert.deepEqual(await tagged(), [...purge, kept, running]);
    // A filter deletion does not take, or does not know, is a 400 naming it; so are a missing dryRun and an empty filter.
    const refusals: Array<[unknown, RegExp]> = [
      [{ filter: { tag: "purge", worker: "w1" }, dryRun: true }, /^filter field "worker" cannot select jobs to delete: deleting by filter takes status, tag and older/],
      [{ filter: { colour: "red" }, dryRun: true }, /^filter field "colour" is not supported/],
      [{ filter: { status: "failed,done" }, dryRun: true }, /^filter field "status" is "failed,done": expected one status of queued/],
      [{ filter: { older: "soon" }, dryRun: true }, /^filter field older=soon: a duration looks like 30d/],
      [{ filter: {}, dryRun: true }, /^the filter is empty/],
      [{ filter: { tag: "purge" } }, /^dryRun must be true/],
    ];
    for (const [body, message] of refusals) {
      const answer = await postJson("/api/delete-matching", body);
      assert.equal(answer.status, 400, JSON.stringify(body));
      assert.match(((await answer.json()) as { error: string }).error, message);
    }

    // What the CLI's dry run says, to hold the page's against.
    const cli = await nbjob(["rm", "--tag", "purge", "--dry-run"]);
    assert.equal(cli.code, 0, cli.stderr);
    const page = await openPage("/?tag=purge");
    assert.deepEqual(await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => Number(r.getAttribute("data-id")))), [running, kept, ...purge].sort((a, b) => b - a));
    await page.evaluate(() => document.querySelector("#delete-matching").click());
    await page.waitForSelector("#delete-matching-confirm", { timeout: 15_000 });
    const dry = await page.$$eval("#delete-plan p", (els) => els.map((e) => e.textContent ?? ""));
    assert.deepEqual(dry, cli.stdout.trimEnd().split("\n"), "the page shows what nbjob rm --dry-run prints");
    assert.match(dry[0], new RegExp(`^would delete 3 jobs: ${purge.join(", ")}; frees \\d+(\\.\\d)? KiB \\(values 1\\d\\d KiB, `));
    assert.equal(dry[1], `left 1 job tagged keep: ${kept}`);
    assert.equal(dry[2], `left 1 job still queued or running: ${running} (cancel first: nbjob cancel JOB)`);
    assert.equal(await text(page, "#delete-matching-confirm"), "delete 3 jobs");
    assert.deepEqual(await tagged(), [...purge, kept, running], "a dry run deletes nothing");
    await page.screenshot({ path: join(SHOTS, "delete-matching.png") });
    const confirmed = Date.now();
    await page.evaluate(() => document.querySelector("#delete-matching-confirm").click());
    await page.waitForSelector("#delete-plan[data-done]", { timeout: 60_000 });
    figures.push(`delete by filter, confirm → deleted, gc + VACUUM done, list redrawn: ${Date.now() - confirmed} ms`);
    const done = await page.$$eval("#delete-plan p", (els) => els.map((e) => e.textContent ?? ""));
    assert.match(done[0], new RegExp(`^deleted 3 jobs: ${purge.join(", ")}; frees `));
    assert.equal(done[1], `left 1 job tagged keep: ${kept}`);
    assert.equal(done[2], `left 1 job still queued or running: ${running} (cancel first: nbjob cancel JOB)`);
    const collected = /^collected (\d+) values? \((\d+) chunks?, [\d.]+ \w+\), .* database [\d.]+ \w+ -> [\d.]+ \w+$/.exec(done[3]);
    assert.ok(collected && Number(collected[1]) >= 3, `gc followed and took the three jobs' values: ${done[3]}`);
    assert.deepEqual(await tagged(), [kept, running], "exactly the three matching jobs are deleted");
    assert.equal((await store.query("SELECT 1 FROM nbjob.blobs WHERE hash = ANY($1::text[])", [purgeValues])).rowCount, 0, "their values are collected");
    assert.deepEqual(await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => Number(r.getAttribute("data-id")))), [running, kept], "the list shows what is left");
    // Jobs that match but are all left (tagged keep) are not "no match": the answer says why nothing would go.
    const allKept = (await (await postJson("/api/delete-matching", { filter: { tag: "keep" }, dryRun: true })).json()) as { counts: { jobs: number; kept: number }; lines: string[] };
    assert.equal(allKept.counts.jobs, 0);
    assert.equal(allKept.lines[0], "no jobs to delete: every job that matches is left (below)");
    assert.match(allKept.lines[1], new RegExp(`^left ${allKept.counts.kept} jobs? tagged keep: .*\\b${kept}\\b`));
    // A filter that matches nothing says so, in the list and in the dry run (older, as --older-than: these jobs are seconds old).
    await page.goto(`${base}/?tag=purge&older=1h`);
    await page.waitForSelector("body[data-loaded]");
    assert.equal(await text(page, "#count"), "no job matches");
    await page.evaluate(() => document.querySelector("#delete-matching").click());
    await page.waitForSelector("#delete-plan p", { timeout: 15_000 });
    assert.deepEqual(await page.$$eval("#delete-plan p", (els) => els.map((e) => e.textContent ?? "")), ["no jobs match"]);
    assert.equal(await page.$("#delete-matching-confirm"), null, "nothing to confirm");
    // A list filter deletion does not take: the page says which, and deletes nothing.
    await page.goto(`${base}/?tag=purge&name=purge`);
    await page.waitForSelector("body[data-loaded]");
    await page.evaluate(() => document.querySelector("#delete-matching").click());
    await page.waitForSelector("#delete-plan p.error", { timeout: 15_000 });
    assert.match(await text(page, "#delete-plan p.error"), /^delete: filter field "name" cannot select jobs to delete/);
    await page.close();
    assert.deepEqual(await tagged(), [kept, running]);
  });

  test("the store page shows the space as nbjob db status does; its gc button, with a grace period and VACUUM FULL, frees a value nothing refers to", async () => {
    // Just written, so inside gc's default 10-minute grace: only a grace of 0s collects it.
    const orphan = await putBlob(store, randomBytes(100_000));
    const chunks = (await store.query<{ chunk_hash: string }>("SELECT chunk_hash FROM nbjob.blob_chunks WHERE blob_hash = $1", [orphan.hash])).rows.map((r) => r.chunk_hash);
    const stored = async () => (await store.query("SELECT 1 FROM nbjob.blobs WHERE hash = $1", [orphan.hash])).rowCount;
    assert.equal((await postJson("/api/gc", {}, { token: false })).status, 403, "gc without the token");
    assert.equal((await postJson("/api/gc", {}, { origin: "http://evil.example" })).status, 403, "gc from another origin");
    for (const [body, error] of [
      [{ vacuum: true }, /^gc takes \{grace\?: "10m", full\?: true\} \(as nbjob gc --grace AGE --full\); got vacuum$/],
      [{ grace: "soon" }, /^gc: grace: .*soon/],
      [{ grace: 600 }, /^gc: grace must be an age such as "10m", "2h" or "0s", got 600$/],
      [{ full: "yes" }, /^gc: full must be true or false, got "yes"$/],
    ] as const) {
      const refused = await postJson("/api/gc", body);
      assert.equal(refused.status, 400, JSON.stringify(body));
      assert.match(((await refused.json()) as { error: string }).error, error);
    }
    assert.equal(await stored(), 1, "nothing collected by the refused requests");

    const status = await nbjob(["db", "status"]);
    assert.equal(status.code, 0, status.stderr);
    const cliBiggest = [...status.stdout.matchAll(/^ {2}job (\d+)/gm)].map((m) => Number(m[1]));
    const page = await openPage("/store");
    assert.match(await text(page, "#size"), /^[\d.]+ (KiB|MiB|GiB)$/);
    const tables = await page.$$eval("#tables tr td:first-child", (els) => els.map((e) => e.textContent));
    assert.ok(tables.includes("jobs") && tables.includes("logs"), tables.join());
    const biggest = await page.$$eval("#biggest tr[data-id]", (rows) => rows.map((r) => Number(r.getAttribute("data-id"))));
    assert.ok(biggest.length > 0);
    assert.deepEqual(biggest, cliBiggest, "the biggest jobs, as nbjob db status lists them");
    assert.equal(biggest[0], (await jobSizes(store, { limit: 1 }))[0].id);
    // As a user would: replace the grace period's 10m, tick VACUUM FULL.
    await page.click("#gc-grace", { clickCount: 3 });
    await page.type("#gc-grace", "0s");
    await page.click("#gc-full");
    const clicked = Date.now();
    await page.evaluate(() => document.querySelector("#gc").click());
    await page.waitForSelector("#gc-result[data-done]", { timeout: 60_000 });
    figures.push(`store page gc, grace 0s (collect + VACUUM FULL, page redrawn): ${Date.now() - clicked} ms`);
    const line = await text(page, "#gc-result");
    const collected = /^collected (\d+) values? \((\d+) chunks?, ([\d.]+ \w+)\), .* in [\d.]+ s; database [\d.]+ \w+ -> [\d.]+ \w+ \(VACUUM FULL\)$/.exec(line);
    assert.ok(collected && Number(collected[1]) >= 1 && Number(collected[2]) >= 1, line);
    assert.equal(await stored(), 0, "the value nothing referred to is gone");
    assert.equal((await store.query("SELECT 1 FROM nbjob.chunks WHERE hash = ANY($1::text[])", [chunks])).rowCount, 0, "and its chunk");
    await page.screenshot({ path: join(SHOTS, "store.png"), fullPage: true });
    await page.close();
  });

  test("in a notebook, nbjob.makeDefaultDashboard() shows the table in its first display (a headless nbjob run keeps it)", async () => {
    const work = mkdtempSync(join(tmpdir(), "nbjob-dashboard-nb-"));
    // A web dashboard of the same store under the notebook's NBJOB_HOME: the table links each job to its page.
    const web = await startServer(["--token", TOKEN], { NBJOB_HOME: join(work, "home") });
    try {
      const path = join(work, "dash.ipynb");
      const cells = ["nbjob.makeDefaultDashboard({ limit: 20 });", "1 + 1"].map((source, i) => ({ cell_type: "code", id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null }));
      writeFileSync(path, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: { kernelspec: { name: "nbjob", display_name: "nbjob", language: "typescript" } }, cells }));
      const result = await new Promise<{ code: number | null; stderr: string }>((done) => {
        const child = spawn(process.execPath, [NBJOB, "run", path], { cwd: work, env: { ...process.env, NBJOB_DATABASE_URL: url, NBJOB_HOME: join(work, "home") }, stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr!.on("data", (c) => (stderr += c));
        child.on("close", (code) => done({ code, stderr }));
      });
      assert.equal(result.code, 0, result.stderr);
      const notebook = JSON.parse(readFileSync(join(work, "dash.nbconvert.ipynb"), "utf8")) as { cells: { outputs: { output_type: string; data?: Record<string, string | string[]> }[] }[] };
      const outputs = notebook.cells[0].outputs.filter((o) => o.output_type === "display_data");
      assert.equal(outputs.length, 1, JSON.stringify(notebook.cells[0].outputs));
      const html = [outputs[0].data?.["text/html"] ?? ""].flat().join("");
      assert.match(html, /<table>/);
      assert.doesNotMatch(html, /loading/);
      assert.match(html, /&lt;img src=x onerror=/, "the hostile job's name, escaped");
      assert.match(html, new RegExp(`<a href="${web.base}/jobs/${ids.hostile}" target="_blank">${ids.hostile}</a>`), "each job links to its dashboard page");
      assert.ok(existsSync(join(work, "home", "dashboards", `${web.child.pid}.json`)));
    } finally {
      web.child.kill("SIGTERM");
      await new Promise((r) => web.child.once("close", r));
      assert.ok(!existsSync(join(work, "home", "dashboards", `${web.child.pid}.json`)), "a stopped dashboard takes its address back");
      rmSync(work, { recursive: true, force: true });
    }
  });
});
