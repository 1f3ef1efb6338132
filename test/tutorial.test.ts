// The main job: examples/tutorial.ipynb (the seed's tutorial in TypeScript) run end to end with
// `nbjob run` on a local cluster of 2 workers and a fresh database, as `npm run demo` does.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { listJobs } from "../store";
import { cellText, JobsEnv, ROOT } from "./jobs-env";

const env = new JobsEnv("tutorial");
before(() => env.start());
after(() => env.cleanup());

test("examples/tutorial.ipynb runs end to end: snippets, two collectors, params and overrides, results, sweep, dashboard", async () => {
  const path = join(ROOT, "examples", "tutorial.ipynb");
  const ids = (JSON.parse(readFileSync(path, "utf8")) as { cells: { id: string }[] }).cells.map((c) => c.id);
  assert.equal(new Set(ids).size, ids.length, "cell ids are unique, as nbformat requires");
  const run = await env.runNotebook(path, [], { allowErrors: false });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  const text = (id: string) => cellText(run.cells.get(id));

  assert.match(text("first-job"), /^0$/m, "norm(origin) on worker 0");
  // The worker's console.log streamed into the awaiting cell, then the result.
  assert.match(text("job2"), /distance from \(1, 2\) to \(3, 0\)\n[\s\S]*2\.8284271247461903/);
  assert.match(text("job3"), /distance from \(1, 2\) to \(7, 5\)\n[\s\S]*6\.708203932499369/, "overrides: x = 7 for this job");
  assert.match(text("versions"), /\{ x: 7, y: 5 \}/);
  assert.match(text("versions"), /\+x = 7[\s\S]*-distance\(a, b\)\n\+distance\(a, c\)/);
  assert.match(text("reattach"), /done 6\.708203932499369/);
  assert.match(text("reattach"), /'3 short walk done 6\.708203932499369'/);
  for (const row of [/│ 1 +│ 2 +│ 'done' │ 0 /, /│ 1 +│ 6 +│ 'done' │ 4 /, /│ 4 +│ 2 +│ 'done' │ 3 /, /│ 4 +│ 6 +│ 'done' │ 5 /]) assert.match(text("sweep"), row);

  const dashboard = run.cells.get("dashboard")!.outputs.find((o) => o.output_type === "display_data");
  assert.ok(dashboard, text("dashboard"));
  assert.match(String(dashboard.data?.["text/html"]), /<table>/);
  assert.match(String(dashboard.data?.["text/plain"]), /short walk\s+geometry\s+done\s+default\/0/);

  const jobs = await listJobs(env.store, { limit: 100 });
  assert.equal(jobs.length, 7, "3 single jobs and a sweep of 4");
  assert.ok(jobs.every((j) => j.status === "done"), JSON.stringify(jobs.map((j) => [j.id, j.status, j.error_message])));
  assert.deepEqual(jobs.filter((j) => j.name === "short walk").map((j) => j.tags), [["geometry"]]);
});
