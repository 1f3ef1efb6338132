// The HTML of each page: a shell naming the page (and its id); assets/app.js draws it from the
// JSON. Nothing from the store is written here; what is (a title's id) goes through escapeHtml.
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export type PageName = "jobs" | "job" | "compare" | "group" | "history" | "store";

export function pageHtml(page: PageName, options: { id?: number; token: string | undefined; title: string }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>nbjob · ${escapeHtml(options.title)}</title>
<meta name="nbjob-token" content="${escapeHtml(options.token ?? "")}">
<link rel="stylesheet" href="/assets/style.css">
<link rel="stylesheet" href="/vendor/highlight.css">
</head>
<body data-page="${page}"${options.id !== undefined ? ` data-id="${options.id}"` : ""}>
<header><a href="/">nbjob</a><a href="/">jobs</a><a href="/store">store</a><span id="live" class="off">connecting…</span></header>
<main id="main"><p class="muted">loading…</p></main>
<script src="/vendor/highlight.js"></script>
<script src="/assets/app.js"></script>
</body></html>
`;
}
