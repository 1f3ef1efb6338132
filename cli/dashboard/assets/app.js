// The dashboard's pages, drawn in the browser from the JSON under /api. Every value from the
// store goes into the page as text (textContent / text nodes), never as HTML; links are built
// here from ids. Live: one EventSource on /api/events; a page reads again only what an event names.
"use strict";
(() => {
  const TOKEN = document.querySelector('meta[name="nbjob-token"]')?.getAttribute("content") ?? "";
  const main = document.getElementById("main");
  const page = document.body.dataset.page;
  const STATUSES = ["queued", "running", "done", "failed", "cancelled", "lost"];

  /** An element with attributes and children; strings become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs ?? {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "href") el.setAttribute("href", /^[/?#]/.test(String(value)) ? String(value) : "#");
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  /**
   * A block of TypeScript (or JSON, by a file's name), highlighted by highlight.js when it loaded:
   * it reads the text set here and writes its own escaped markup, so stored code stays text.
   */
  function codeBlock(source, path = "") {
    const el = h("pre", { class: "code" }, source);
    if (window.hljs && source.length < 200000) {
      el.classList.add(/\.json$/.test(path) ? "language-json" : "language-typescript");
      window.hljs.highlightElement(el);
    }
    return el;
  }

  /** Replaces an element's children (arrays flattened, null and false left out, strings as text). */
  function fill(el, ...children) {
    el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false).map((c) => (c instanceof Node ? c : String(c))));
  }

  async function api(path) {
    const response = await fetch(path, { headers: { accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw Object.assign(new Error(body.error ?? `${response.status}`), { status: response.status });
    return body;
  }

  async function post(path, body) {
    const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json", "x-nbjob-token": TOKEN }, body: JSON.stringify(body ?? {}) });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error ?? `${response.status}`);
    return answer;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function took(start, end) {
    if (!start) return "";
    const ms = (end ? new Date(end) : new Date()) - new Date(start);
    if (ms < 1000) return `${Math.max(0, ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  }
  const status = (s) => h("span", { class: `status ${STATUSES.includes(s) ? s : ""}`, "data-status": s }, s);
  const jobLink = (id, text) => h("a", { href: `/jobs/${Number(id)}` }, text ?? `job ${Number(id)}`);
  const outcome = (result, error) => (error ? error : result === "undefined" ? "" : result ?? "");
  function showError(where, err) {
    where.replaceChildren(h("p", { class: "error" }, String(err.message ?? err)));
  }

  // ------------------------------------------------------------------ live events
  const listeners = [];
  function onChange(fn) {
    listeners.push(fn);
  }
  const live = document.getElementById("live");
  if (window.EventSource) {
    const events = new EventSource("/api/events");
    const dispatch = (kind) => (e) => {
      const ids = e.data === "*" ? "*" : new Set(e.data.split(",").map(Number));
      for (const fn of listeners) fn(kind, ids);
    };
    events.addEventListener("jobs", dispatch("jobs"));
    events.addEventListener("logs", dispatch("logs"));
    events.onopen = () => { live.textContent = "live"; live.className = ""; };
    events.onerror = () => { live.textContent = "reconnecting…"; live.className = "off"; };
  }
  const names = (ids, id) => ids === "*" || ids.has(id);
  function debounce(fn, ms) {
    let timer;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  // ------------------------------------------------------------------ charts
  let vegaLoaded;
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = h("script", { src });
      s.onload = resolve;
      s.onerror = () => reject(new Error(`cannot load ${src}`));
      document.head.append(s);
    });
  }
  async function chart(container, spec) {
    vegaLoaded ??= loadScript("/vendor/vega.js").then(() => loadScript("/vendor/vega-lite.js")).then(() => loadScript("/vendor/vega-embed.js"));
    try {
      await vegaLoaded;
      // The specs name Vega-Lite 5 (Jupyter's renderers read them); the dashboard draws them with
      // the version it serves, which would warn about the older $schema in the console.
      const { $schema, ...drawn } = spec;
      await window.vegaEmbed(container, drawn, { actions: false, renderer: "svg", mode: "vega-lite" });
      container.dataset.rendered = "yes";
    } catch (err) {
      showError(container, err);
    }
  }

  // ------------------------------------------------------------------ jobs list
  /** A list cell cut to one line; the title (an attribute, set as text) shows the preview on hover. */
  const preview = (text) => h("td", { class: "preview", title: text }, text);

  async function jobsPage() {
    const query = new URLSearchParams(location.search);
    const field = (name, label, attrs = {}) => h("label", {}, label, h("input", { name, value: query.get(name) ?? "", ...attrs }));
    const statusSelect = h("select", { name: "status" }, h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s, selected: query.get("status") === s }, s)));
    const form = h("form", { class: "filters", method: "get", action: "/" },
      h("label", {}, "status", statusSelect), field("tag", "tag", { size: 10 }), field("name", "name contains", { size: 14 }),
      field("worker", "worker contains", { size: 12 }), field("from", "queued from", { type: "date" }), field("to", "queued before", { type: "date" }),
      field("older", "queued over … ago", { size: 5, placeholder: "30d" }),
      h("label", {}, "parameters (e.g. lr<0.01; opt=adam)", h("input", { name: "params", size: 24, value: query.getAll("param").join("; ") })),
      h("input", { type: "hidden", name: "sort", value: query.get("sort") ?? "" }), h("input", { type: "hidden", name: "order", value: query.get("order") ?? "" }),
      h("button", { type: "submit" }, "filter"), h("a", { href: "/" }, "clear"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const next = new URLSearchParams();
      for (const [k, v] of new FormData(form)) {
        if (k === "params") String(v).split(";").map((p) => p.trim()).filter(Boolean).forEach((p) => next.append("param", p));
        else if (v) next.set(k, String(v));
      }
      location.search = next.toString();
    });
    const info = h("span", { class: "muted", id: "count" });
    const compare = h("button", { id: "compare", disabled: true }, "compare selected");
    const remove = h("button", { id: "delete-selected", disabled: true }, "delete selected");
    const removeMatching = h("button", { id: "delete-matching", title: "as nbjob rm --status S --tag T --older-than AGE: first says what would go" }, "delete all matching…");
    const plan = h("div", { id: "delete-plan", hidden: true });
    const table = h("table", { id: "jobs" });
    const pager = h("div", { class: "bar" });
    fill(main, h("h1", {}, "Jobs"), form, h("div", { class: "bar" }, compare, remove, removeMatching, info), plan, table, pager);
    const selected = new Set();
    compare.addEventListener("click", () => { location.href = `/compare?ids=${[...selected].join(",")}`; });
    // As `nbjob rm JOB...`: all of them or none (a queued, running or keep-tagged one refuses the lot, named).
    remove.addEventListener("click", async () => {
      const ids = [...selected];
      if (!confirm(`Delete ${ids.length} job${ids.length === 1 ? "" : "s"} (${ids.join(", ")}): logs, checkpoints, results and analyses?`)) return;
      try {
        await post("/api/delete", { ids });
        selected.clear();
        remove.disabled = compare.disabled = true;
        await load();
      } catch (err) {
        alert(`delete: ${err.message}`);
      }
    });
    // As `nbjob rm --tag T --status S --older-than AGE`: the list's filters, first as a dry run
    // (which jobs, the bytes freed, the ones left because kept or still queued/running), then on
    // confirm the deletion and gc. The server refuses a filter deletion cannot take, naming it.
    const listFilter = () => {
      const filter = {};
      for (const key of new Set(query.keys())) {
        if (["sort", "order", "offset", "limit"].includes(key)) continue;
        filter[key] = key === "param" ? query.getAll(key) : query.get(key);
      }
      return filter;
    };
    const closeButton = (label) => h("button", { id: "delete-matching-cancel", onclick: () => { plan.hidden = true; } }, label);
    const showPlan = (lines, buttons, className = "") => {
      plan.hidden = false;
      fill(plan, lines.map((line) => h("p", { class: className }, line)), h("div", { class: "bar" }, buttons));
    };
    removeMatching.addEventListener("click", async () => {
      const filter = listFilter();
      delete plan.dataset.done;
      try {
        const dry = await post("/api/delete-matching", { filter, dryRun: true });
        if (dry.counts.jobs === 0) return showPlan(dry.lines, [closeButton("close")]);
        const go = h("button", { id: "delete-matching-confirm" }, `delete ${dry.counts.jobs} job${dry.counts.jobs === 1 ? "" : "s"}`);
        const cancel = closeButton("cancel");
        go.addEventListener("click", async () => {
          go.disabled = cancel.disabled = true;
          try {
            const done = await post("/api/delete-matching", { filter, dryRun: false });
            showPlan(done.lines, [closeButton("close")]);
            selected.clear();
            remove.disabled = compare.disabled = true;
            await load();
            plan.dataset.done = "yes";
          } catch (err) {
            showPlan([`delete: ${err.message}`], [closeButton("close")], "error");
          }
        });
        showPlan(dry.lines, [go, cancel]);
      } catch (err) {
        showPlan([`delete: ${err.message}`], [closeButton("close")], "error");
      }
    });
    const sortLink = (key, label) => {
      const next = new URLSearchParams(query);
      const current = (query.get("sort") || "id") === key;
      const order = current && (query.get("order") || "desc") === "desc" ? "asc" : "desc";
      next.set("sort", key);
      next.set("order", order);
      next.delete("offset");
      return h("th", {}, h("a", { href: `/?${next}` }, label, current ? ((query.get("order") || "desc") === "desc" ? " ▼" : " ▲") : ""));
    };
    async function load() {
      try {
        const body = await api(`/api/jobs?${query}`);
        const head = h("tr", {}, h("th", {}, ""), sortLink("id", "id"), sortLink("name", "name"), h("th", {}, "tags"), sortLink("status", "status"),
          sortLink("worker", "worker"), sortLink("queued_at", "queued"), sortLink("duration", "duration"), h("th", {}, "parameters"), h("th", {}, "result or error"), h("th", {}, "note"));
        const rows = body.jobs.map((j) => {
          const box = h("input", { type: "checkbox", checked: selected.has(j.id), "aria-label": `select job ${j.id}` });
          box.addEventListener("change", () => {
            box.checked ? selected.add(j.id) : selected.delete(j.id);
            compare.disabled = selected.size < 2;
            remove.disabled = selected.size === 0;
          });
          return h("tr", { "data-id": j.id }, h("td", {}, box), h("td", {}, jobLink(j.id, String(j.id))), h("td", { title: j.name ?? "" }, j.name ?? ""),
            h("td", {}, j.tags.map((t) => h("span", { class: "tag" }, t))), h("td", {}, status(j.status)), h("td", {}, j.worker ?? "(any)"),
            h("td", {}, when(j.queued_at)), h("td", {}, took(j.started_at, j.finished_at)),
            preview(j.params_preview ?? "(large; open the job)"), preview(outcome(j.result_preview, j.error_preview)), preview(j.note_preview ?? ""));
        });
        fill(table, h("thead", {}, head), h("tbody", {}, rows));
        const last = body.offset + body.jobs.length;
        info.textContent = body.total === 0 ? "no job matches" : `jobs ${body.offset + 1}–${last} of ${body.more ? "more than " : ""}${body.total} (server ${body.ms} ms)`;
        const link = (offset, text) => {
          const next = new URLSearchParams(query);
          next.set("offset", String(offset));
          return h("a", { href: `/?${next}`, class: "page" }, text);
        };
        fill(pager, 
          body.offset > 0 ? link(Math.max(0, body.offset - body.limit), "← newer") : "",
          last < body.total || body.more ? link(last, "older →") : "",
        );
        document.body.dataset.loaded = String(Date.now());
      } catch (err) {
        showError(table, err);
      }
    }
    await load();
    const reload = debounce(load, 250);
    onChange((kind) => { if (kind === "jobs") reload(); });
  }

  // ------------------------------------------------------------------ one job
  async function jobPage() {
    const id = Number(document.body.dataset.id);
    const summary = h("div", { id: "summary" });
    const logPre = h("pre", { id: "log" });
    const logInfo = h("span", { class: "muted", id: "log-count" });
    const earlier = h("button", { id: "earlier", hidden: true }, "earlier lines");
    const details = h("div", { id: "details" });
    fill(main, summary, h("h2", {}, "Log"), h("div", { class: "bar" }, earlier, logInfo), logPre, details);
    let firstLogId = 0;
    let lastLogId = 0;
    let shown = 0;
    let total = 0;
    const lineNodes = (lines) => lines.map((l) => (l.stream === "stderr" ? h("span", { class: "stderr" }, `${l.line}\n`) : `${l.line}\n`));
    function countLog() {
      logInfo.textContent = total === 0 ? "no output" : `${shown} of ${total} lines`;
      earlier.hidden = shown >= total;
    }
    async function loadTail() {
      const body = await api(`/api/jobs/${id}/logs?limit=1000`);
      total = body.total;
      shown = body.lines.length;
      if (body.lines.length) {
        firstLogId = body.lines[0].id;
        lastLogId = body.lines[body.lines.length - 1].id;
      }
      const frag = document.createDocumentFragment();
      frag.append(...lineNodes(body.lines));
      logPre.replaceChildren(frag);
      logPre.scrollTop = logPre.scrollHeight;
      countLog();
    }
    earlier.addEventListener("click", async () => {
      const body = await api(`/api/jobs/${id}/logs?limit=1000&before=${firstLogId}`);
      if (body.lines.length) firstLogId = body.lines[0].id;
      shown += body.lines.length;
      logPre.prepend(...lineNodes(body.lines));
      countLog();
    });
    let following = false;
    async function followLog() {
      if (following) return;
      following = true;
      try {
        for (;;) {
          const body = await api(`/api/jobs/${id}/logs?after=${lastLogId}&limit=5000`);
          if (body.lines.length === 0) break;
          lastLogId = body.lines[body.lines.length - 1].id;
          const atBottom = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 4;
          logPre.append(...lineNodes(body.lines));
          shown += body.lines.length;
          total += body.lines.length;
          if (atBottom) logPre.scrollTop = logPre.scrollHeight;
          countLog();
          if (body.lines.length < 5000) break;
        }
      } finally {
        following = false;
      }
    }

    async function act(action, body) {
      try {
        const answer = await post(`/api/jobs/${id}/${action}`, body);
        if (answer.created) location.href = `/jobs/${answer.created}`;
        else if (answer.deleted) location.href = "/";
        else await load();
      } catch (err) {
        alert(`${action}: ${err.message}`);
      }
    }

    // The controls are made once and kept across redraws (a redraw comes with every change of the
    // job): what the user is typing survives, and a click never lands on a replaced button.
    const tagInput = h("input", { id: "new-tag", size: 12, placeholder: "tag" });
    const note = h("textarea", { id: "note", rows: 2 });
    let noteEdited = false;
    note.addEventListener("input", () => { noteEdited = true; });
    const cancelButton = h("button", { id: "cancel", onclick: () => act("cancel") }, "cancel");
    const resumeButton = h("button", { id: "resume", onclick: () => act("resume") }, "resume");
    const deleteButton = h("button", { id: "delete", onclick: () => { if (confirm(`Delete job ${id}: its logs, checkpoints, result and analyses?`)) act("delete"); } }, "delete");
    const tagList = h("span", { id: "tags" });
    const actions = h("div", { class: "bar", id: "actions" }, cancelButton, h("button", { id: "rerun", onclick: () => act("rerun") }, "rerun"), resumeButton, deleteButton,
      "tags: ", tagList, tagInput, h("button", { id: "add-tag", onclick: () => { const t = tagInput.value.trim(); if (t) act("tags", { add: [t] }).then(() => { tagInput.value = ""; }); } }, "add tag"));
    const [titleBox, infoBox, bodyBox] = [h("div"), h("div"), h("div")];
    const noteBar = h("div", { class: "bar" }, note, h("button", { id: "save-note", onclick: () => act("note", { note: note.value }).then(() => { noteEdited = false; }) }, "save note"));

    function renderSummary(data) {
      const j = data.job;
      const kv = (...pairs) => h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
      if (!noteEdited && document.activeElement !== note) note.value = j.note ?? "";
      cancelButton.disabled = !(j.status === "queued" || j.status === "running");
      resumeButton.disabled = !["failed", "cancelled", "lost"].includes(j.status);
      deleteButton.disabled = j.status === "queued" || j.status === "running";
      fill(tagList, j.tags.map((t) => h("span", { class: "tag" }, t, h("button", { title: `remove tag ${t}`, "data-remove-tag": t, onclick: () => act("tags", { remove: [t] }) }, "×"))));
      const links = [
        j.group_id ? h("a", { href: `/groups/${Number(j.group_id)}` }, `sweep ${j.group_id}`) : null,
        j.rerun_of ? ["rerun of ", jobLink(j.rerun_of)] : null,
        j.resumed_from ? ["resumed from ", jobLink(j.resumed_from), j.resumed_from_checkpoint !== null ? ` at checkpoint ${j.resumed_from_checkpoint}` : ""] : null,
        ...data.derived.map((d) => [d.kind === "rerun" ? "rerun as " : "resumed as ", jobLink(d.id), " (", status(d.status), ")"]),
      ].filter(Boolean);
      const params = h("table", { id: "params" }, h("tr", {}, h("th", {}, "parameter"), h("th", {}, "value")),
        data.params.map((p) => h("tr", {}, h("td", {}, p.name), h("td", { class: "preview" }, p.preview,
          p.cut ? [" ", h("a", { href: `/api/jobs/${id}/value/params?name=${encodeURIComponent(p.name)}`, target: "_blank" }, "whole value")] : ""))));
      let outcomeBlock = null;
      if (j.error_name) {
        outcomeBlock = [h("h2", {}, "Error"), h("pre", { id: "error" }, `${j.error_name}: ${j.error_message ?? ""}\n${(j.error_traceback ?? []).join("\n")}`),
          h("a", { href: `/api/jobs/${id}/value/error`, target: "_blank" }, "whole error")];
      } else if (j.status === "done") {
        outcomeBlock = [h("h2", {}, "Result"), h("pre", { id: "result" }, j.result_text === "undefined" ? "" : j.result_text ?? ""),
          j.result_cut ? h("a", { href: `/api/jobs/${id}/value/result`, target: "_blank" }, "whole result") : ""];
      }
      // The kept controls are never taken out of the page (that would take the focus from a typing user).
      if (!summary.contains(actions)) fill(summary, titleBox, actions, infoBox, noteBar, bodyBox);
      fill(titleBox, h("h1", {}, `job ${j.id}`, j.name ? ` · ${j.name}` : "", " ", status(j.status)));
      fill(infoBox, kv(["queued", when(j.queued_at)], ["started", when(j.started_at)], ["ended", when(j.finished_at)], ["duration", took(j.started_at, j.finished_at)],
          ["worker", j.worker_id ?? (j.target_worker ? `${j.target_worker} (sent to)` : "(any)")], ["host", j.host ? `${j.host}${j.pid ? ` pid ${j.pid}` : ""}` : ""],
          ["notebook", j.notebook ?? ""], ["time limit", j.timeout_ms ? `${j.timeout_ms / 1000} s` : ""], ["bundle", j.bundle_hash.slice(0, 12)],
          ["links", links.length ? h("span", { id: "links" }, links.map((l, i) => [i ? " · " : "", l])) : ""]));
      fill(bodyBox, h("h2", {}, "Parameters"), data.params.length ? params : h("p", { class: "muted" }, "none"),
        outcomeBlock,
      );
    }

    function renderDetails(data) {
      const code = data.code;
      const chartBox = h("div", { id: "chart" });
      const metricBoxes = data.metrics.map((m) => h("div", { class: "metric-chart", "data-metric": m.name }));
      fill(details, 
        h("h2", {}, "Metrics"),
        data.metrics.length
          ? [h("table", { id: "metrics" }, h("tr", {}, h("th", {}, "metric"), h("th", {}, "last value")),
            data.metrics.map((m) => h("tr", {}, h("td", {}, m.name), h("td", {}, m.last[0] ?? "")))), metricBoxes]
          : h("p", { class: "muted" }, "none logged"),
        h("h2", {}, `Checkpoints (${data.checkpointCount})`),
        data.checkpoints.length
          ? h("table", { id: "checkpoints" }, h("tr", {}, h("th", {}, "index"), h("th", {}, "time"), h("th", {}, "names"), h("th", {}, "bytes")),
            data.checkpoints.map((c) => h("tr", {}, h("td", {}, c.idx), h("td", {}, when(c.created_at)), h("td", {}, c.names.join(", ")), h("td", {}, c.bytes))))
          : h("p", { class: "muted" }, "none"),
        h("h2", {}, "Analyses"), data.chart ? chartBox : h("p", { class: "muted" }, "none stored"),
        h("h2", {}, "Code"),
        h("p", { class: "muted" }, "entries: ", code.entries.join("; ")),
        code.snippets.map((s) => h("details", { open: true }, h("summary", {}, `${s.kind} ${s.names.join(", ")}${s.collector ? ` (${s.collector})` : ""} · ${s.hash.slice(0, 10)} `,
          s.names.length ? h("a", { href: `/history?name=${encodeURIComponent(s.names[0])}`, class: "history" }, "history") : ""), codeBlock(s.source))),
        code.files.map((f) => h("details", {}, h("summary", {}, `file ${f.path} · ${f.hash.slice(0, 10)}`), codeBlock(f.content, f.path))),
        h("h2", {}, "Environment"),
        data.environment
          ? h("div", {}, h("p", {}, `Node ${data.environment.node_version}, nbjob ${data.environment.nbjob_version}`),
            h("table", {}, Object.entries(data.environment.packages).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v)))))
          : h("p", { class: "muted" }, "not recorded yet"),
      );
      if (data.chart) chart(chartBox, data.chart);
      data.metrics.forEach((m, i) => chart(metricBoxes[i], m.spec));
    }

    async function load() {
      try {
        const data = await api(`/api/jobs/${id}`);
        renderSummary(data);
        renderDetails(data);
        document.title = `nbjob · job ${id} · ${data.job.status}`;
      } catch (err) {
        // No such job: the error alone, without an empty log and details under it.
        if (err.status === 404) fill(main, summary);
        showError(summary, err);
      }
    }
    await Promise.all([load(), loadTail().catch((err) => showError(logPre, err))]);
    document.body.dataset.loaded = String(Date.now());
    const reload = debounce(load, 100);
    onChange((kind, ids) => {
      if (!names(ids, id)) return;
      if (kind === "jobs") reload();
      else followLog();
    });
  }

  /** A unified diff with its added, removed and hunk lines marked. */
  const diffBlock = (d) => h("pre", { class: "diff" }, d.diff === "" ? "(same code and parameters)" : d.diff.split("\n").map((line) =>
    h("span", { class: line.startsWith("@@") ? "hunk" : line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "" }, `${line}\n`)));

  // ------------------------------------------------------------------ compare
  async function comparePage() {
    const query = new URLSearchParams(location.search);
    try {
      const data = await api(`/api/compare?ids=${encodeURIComponent(query.get("ids") ?? "")}`);
      const head = h("tr", {}, h("th", {}, ""), data.jobs.map((j) => h("th", {}, jobLink(j.id), j.name ? ` · ${j.name}` : "")));
      const row = (label, cells, attrs = {}) => h("tr", attrs, h("th", {}, label), cells.map((c) => h("td", { class: "preview" }, c)));
      const chartBox = h("div", { id: "chart" });
      const metricBoxes = data.metrics.map((m) => h("div", { class: "metric-chart", "data-metric": m.name }));
      fill(main, 
        h("h1", {}, `Compare ${data.jobs.length} jobs`),
        h("table", { id: "compare-table" }, head,
          row("status", data.jobs.map((j) => status(j.status))),
          row("tags", data.jobs.map((j) => j.tags.join(", "))),
          data.params.map((p) => row(p.name, p.values.map((v) => v ?? "—"), { class: p.differs ? "differs" : "", "data-param": p.name })),
          row("result or error", data.jobs.map((j) => outcome(j.result, j.error))),
          data.metrics.map((m) => row(`${m.name} (last)`, m.last.map((v) => v ?? "—"), { "data-metric": m.name }))),
        h("p", { class: "muted" }, "highlighted rows: parameters that differ"),
        data.metrics.length ? [h("h2", {}, "Metrics"), metricBoxes] : null,
        h("h2", {}, "Analyses"), data.chart ? chartBox : h("p", { class: "muted" }, "none stored"),
        h("h2", {}, "Code"), data.diffs.map((d) => [h("h3", {}, `job ${d.from} → job ${d.to}`), diffBlock(d)]),
      );
      if (data.chart) await chart(chartBox, data.chart);
      await Promise.all(data.metrics.map((m, i) => chart(metricBoxes[i], m.spec)));
      document.body.dataset.loaded = String(Date.now());
    } catch (err) {
      showError(main, err);
    }
  }

  // ------------------------------------------------------------------ a sweep
  async function groupPage() {
    const id = Number(document.body.dataset.id);
    async function load() {
      try {
        const data = await api(`/api/groups/${id}`);
        const params = [...new Set(data.jobs.flatMap((j) => Object.keys(j.params)))].sort();
        const numeric = params.filter((p) => data.jobs.some((j) => Number.isFinite(Number(j.params[p]))));
        const select = h("select", { id: "x-param" }, numeric.map((p) => h("option", { value: p }, p)));
        const chartBox = h("div", { id: "chart" });
        const draw = () => {
          const x = select.value;
          const values = data.jobs
            .map((j) => ({ job: j.id, [x]: Number(j.params[x]), result: Number(j.result_preview) }))
            .filter((v) => Number.isFinite(v[x]) && Number.isFinite(v.result));
          if (!x || values.length === 0) {
            chartBox.replaceChildren(h("p", { class: "muted" }, "no numeric results to plot"));
            return;
          }
          chart(chartBox, { $schema: "https://vega.github.io/schema/vega-lite/v5.json", title: `result against ${x}`, width: 480, height: 260, data: { values },
            mark: { type: "point", filled: true }, encoding: { x: { field: x, type: "quantitative" }, y: { field: "result", type: "quantitative" }, tooltip: [{ field: "job" }] } });
        };
        select.addEventListener("change", draw);
        fill(main, 
          h("h1", {}, `sweep ${id}`, data.group.name ? ` · ${data.group.name}` : ""),
          h("p", { class: "muted" }, `grid ${JSON.stringify(data.group.grid)}`, data.group.sample ? `; random search ${JSON.stringify(data.group.sample)}` : "", `; ${data.total} jobs`),
          h("table", { id: "sweep" }, h("tr", {}, h("th", {}, "job"), h("th", {}, "status"), params.map((p) => h("th", {}, p)), h("th", {}, "result or error")),
            data.jobs.map((j) => h("tr", {}, h("td", {}, jobLink(j.id, String(j.id))), h("td", {}, status(j.status)), params.map((p) => h("td", { class: "preview" }, j.params[p] ?? "")),
              h("td", { class: "preview" }, outcome(j.result_preview, j.error_preview))))),
          h("h2", {}, "Result against a parameter"), numeric.length ? h("div", { class: "bar" }, "x: ", select) : "", chartBox,
        );
        draw();
        document.body.dataset.loaded = String(Date.now());
      } catch (err) {
        showError(main, err);
      }
    }
    await load();
    const reload = debounce(load, 300);
    onChange((kind) => { if (kind === "jobs") reload(); });
  }

  // ------------------------------------------------------------------ a declaration's history
  async function historyPage() {
    const name = new URLSearchParams(location.search).get("name") ?? "";
    try {
      const data = await api(`/api/history?name=${encodeURIComponent(name)}`);
      fill(main, h("h1", {}, `history of ${data.name}`), h("p", { class: "muted" }, `${data.versions.length} stored version${data.versions.length === 1 ? "" : "s"}, oldest first`),
        data.versions.map((v, i) => h("section", { class: "version", "data-hash": v.hash },
          h("h2", {}, `version ${i + 1} · ${v.kind} · ${v.hash.slice(0, 10)} · ${when(v.created_at)}`),
          h("p", {}, v.jobCount ? [`used by ${v.jobCount} job${v.jobCount === 1 ? "" : "s"}: `, v.jobIds.map((id, k) => [k ? ", " : "", jobLink(id, String(id))]), v.jobCount > v.jobIds.length ? " …" : ""] : "used by no job"),
          v.diff ? diffBlock({ diff: v.diff }) : codeBlock(v.source))));
      document.body.dataset.loaded = String(Date.now());
    } catch (err) {
      showError(main, err);
    }
  }

  // ------------------------------------------------------------------ the store: space and gc
  async function storePage() {
    const space = h("div", { id: "space" });
    const gcButton = h("button", { id: "gc" }, "collect garbage");
    const gcGrace = h("input", { id: "gc-grace", value: "10m", size: "6", title: "leave rows younger than this (a value being written by a running job is committed in pieces before it is referred to)" });
    const gcFull = h("input", { id: "gc-full", type: "checkbox" });
    const gcResult = h("p", { id: "gc-result" });
    fill(main, h("h1", {}, "Store"), space, h("h2", {}, "Garbage collection"),
      h("p", { class: "muted" }, "Removes stored values, bundles and snippets that no job, checkpoint or analysis refers to any more and that are older than the grace period, then VACUUMs nbjob's tables: as nbjob gc. Safe while jobs run. VACUUM FULL gives all freed space back to the operating system, but locks each table while it is rewritten (running jobs' checkpoints wait) and needs room for the copy."),
      h("div", { class: "bar" }, h("label", {}, "grace ", gcGrace), h("label", {}, gcFull, " VACUUM FULL"), gcButton), gcResult);
    async function load() {
      try {
        const data = await api("/api/store");
        fill(space, h("dl", { class: "kv" }, h("dt", {}, "database"), h("dd", {}, data.database), h("dt", {}, "size on disk"), h("dd", { id: "size" }, data.size.text)),
          h("h2", {}, "Largest tables"),
          h("table", { id: "tables" }, h("tr", {}, h("th", {}, "table"), h("th", {}, "size")), data.tables.slice(0, 8).map((t) => h("tr", {}, h("td", {}, t.table), h("td", {}, t.text)))),
          h("h2", {}, "Biggest jobs"),
          h("p", { class: "muted" }, "Checkpoint values count for every job that has them; deleting a job frees only what no other job uses (the dry run of delete says how much)."),
          data.biggest.length
            ? h("table", { id: "biggest" }, h("tr", {}, ["job", "name", "status", "total", "checkpoints", "logs", "results"].map((c) => h("th", {}, c))),
              data.biggest.map((j) => h("tr", { "data-id": j.id }, h("td", {}, jobLink(j.id, String(j.id))), h("td", {}, j.name ?? ""), h("td", {}, status(j.status)),
                h("td", {}, j.total.text), h("td", {}, j.checkpoints.text), h("td", {}, j.logs.text), h("td", {}, j.results.text))))
            : h("p", { class: "muted" }, "no job holds any bytes"));
      } catch (err) {
        showError(space, err);
      }
    }
    gcButton.addEventListener("click", async () => {
      gcButton.disabled = true;
      gcResult.className = "muted";
      gcResult.textContent = "collecting…";
      try {
        const answer = await post("/api/gc", { grace: gcGrace.value.trim(), full: gcFull.checked });
        gcResult.className = "";
        gcResult.textContent = answer.line;
        await load();
      } catch (err) {
        gcResult.className = "error";
        gcResult.textContent = `gc: ${err.message}`;
      } finally {
        gcButton.disabled = false;
        gcResult.dataset.done = "yes";
      }
    });
    await load();
    document.body.dataset.loaded = String(Date.now());
  }

  const pages = { jobs: jobsPage, job: jobPage, compare: comparePage, group: groupPage, history: historyPage, store: storePage };
  (pages[page] ?? (() => showError(main, new Error("unknown page"))))();
})();
