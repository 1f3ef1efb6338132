// Static files: the page's own script and style (cli/dashboard/assets/, read from the package's
// source tree as migrations/ is), and Vega, Vega-Lite and vega-embed from their npm packages, so
// charts draw with no internet; highlight.js's browser build colours code.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The package's cli/dashboard/assets folder (this file runs from dist/cli/dashboard/). */
const ASSETS_DIR = join(__dirname, "..", "..", "..", "cli", "dashboard", "assets");

/** A file inside an installed package (its "exports" do not list the browser builds, so require.resolve cannot name them). */
function packageFile(name: string, file: string): string {
  for (const dir of require.resolve.paths(name) ?? []) {
    const candidate = join(dir, name, file);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`cannot find ${name}/${file}; the dashboard's charts need the npm package ${name} (npm install)`);
}

const FILES: Record<string, { file: () => string; type: string }> = {
  "/assets/app.js": { file: () => join(ASSETS_DIR, "app.js"), type: "text/javascript" },
  "/assets/style.css": { file: () => join(ASSETS_DIR, "style.css"), type: "text/css" },
  "/vendor/vega.js": { file: () => packageFile("vega", "build/vega.min.js"), type: "text/javascript" },
  "/vendor/vega-lite.js": { file: () => packageFile("vega-lite", "build/vega-lite.min.js"), type: "text/javascript" },
  "/vendor/vega-embed.js": { file: () => packageFile("vega-embed", "build/vega-embed.min.js"), type: "text/javascript" },
  // Code is highlighted in the page by highlight.js's browser build (TypeScript is in its common set).
  "/vendor/highlight.js": { file: () => packageFile("@highlightjs/cdn-assets", "highlight.min.js"), type: "text/javascript" },
  "/vendor/highlight.css": { file: () => packageFile("@highlightjs/cdn-assets", "styles/github.min.css"), type: "text/css" },
};

const cache = new Map<string, Buffer>();

/** The file served at `path`, or undefined. Read once per process. */
export function asset(path: string): { body: Buffer; type: string } | undefined {
  const entry = FILES[path];
  if (!entry) return undefined;
  let body = cache.get(path);
  if (!body) {
    body = readFileSync(entry.file());
    cache.set(path, body);
  }
  return { body, type: entry.type };
}
