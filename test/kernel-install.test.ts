// `nbjob install` as a user runs it: the kernelspec lands where Jupyter looks, and Jupyter lists it.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const checkout = resolve(__dirname, "..", "..");
const nbjob = join(checkout, "bin", "nbjob.js");
const dir = mkdtempSync(join(tmpdir(), "nbjob-install-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function nbjobInstall(args: string[], env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, [nbjob, "install", ...args], { env, encoding: "utf8" });
}

test("install --user writes kernelspec nbjob into JUPYTER_DATA_DIR and jupyter kernelspec list shows it", () => {
  const env = { ...process.env, JUPYTER_DATA_DIR: join(dir, "user"), PYDEVD_DISABLE_FILE_VALIDATION: "1" };
  const run = nbjobInstall(["--user"], env);
  assert.equal(run.status, 0, run.stderr);
  const listed = JSON.parse(execFileSync("/usr/bin/jupyter", ["kernelspec", "list", "--json"], { env, encoding: "utf8" })) as {
    kernelspecs: Record<string, { resource_dir: string; spec: { argv: string[]; display_name: string; language: string; interrupt_mode: string; env?: Record<string, string> } }>;
  };
  const nbjobSpec = listed.kernelspecs.nbjob;
  assert.ok(nbjobSpec, `jupyter kernelspec list has no nbjob: ${Object.keys(listed.kernelspecs).join(", ")}`);
  assert.equal(nbjobSpec.resource_dir, join(dir, "user", "kernels", "nbjob"));
  assert.equal(nbjobSpec.spec.display_name, "TypeScript (nbjob)");
  assert.equal(nbjobSpec.spec.language, "typescript");
  assert.equal(nbjobSpec.spec.interrupt_mode, "message");
  assert.deepEqual(nbjobSpec.spec.argv, [process.execPath, nbjob, "kernel", "--connection-file", "{connection_file}"]);
  assert.deepEqual(nbjobSpec.spec.env, { MALLOC_ARENA_MAX: "1" }, "the notebook kernel keeps one malloc arena (memory growth per cell)");
});

test("install --prefix DIR writes DIR/share/jupyter/kernels/nbjob/kernel.json", () => {
  const prefix = join(dir, "prefix");
  const run = nbjobInstall(["--prefix", prefix], process.env);
  assert.equal(run.status, 0, run.stderr);
  const spec = JSON.parse(readFileSync(join(prefix, "share", "jupyter", "kernels", "nbjob", "kernel.json"), "utf8")) as { display_name: string };
  assert.equal(spec.display_name, "TypeScript (nbjob)");
});

test("conflicting or unknown options fail with one clear line and exit code 2", () => {
  const both = nbjobInstall(["--user", "--prefix", dir], process.env);
  assert.equal(both.status, 2);
  assert.match(both.stderr, /choose one of --user, --sys-prefix and --prefix DIR/);
  assert.doesNotMatch(both.stderr, /\n\s+at /, "no stack trace");
  const unknown = nbjobInstall(["--global"], process.env);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /--global/);
});
