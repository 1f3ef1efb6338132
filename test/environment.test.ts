// The environment record's parts, without a database: which packages a bundle imports (found by
// TypeScript's pre-processor, not fooled by strings or comments), their installed versions from
// the worker's directory, and the process facts (Node, nbjob, lock files).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { bundleEnvironment, importedSpecifiers, packageName, packageVersions, processEnvironment } from "../worker/environment";
import { ROOT } from "./jobs-env";

test("imports and requires of every form are found; strings and comments are not", async () => {
  const source = [
    `import type { T } from "typ";`,
    `import x = require("old-style");`,
    `import { a } from "lodash/fp";`,
    `import * as b from "@scope/pkg/deep";`,
    `const s = "import('in-a-string')"; // require("in-a-comment")`,
    `const c = await import("dynamic");`,
    `const d = require("node:fs"); const f = require("fs"); import "./local";`,
  ].join("\n");
  assert.deepEqual(await importedSpecifiers(source), ["typ", "old-style", "lodash/fp", "@scope/pkg/deep", "dynamic", "node:fs", "fs", "./local"]);
  assert.deepEqual(await importedSpecifiers("const x = 1;"), []);
});

test("package names: subpaths and scopes folded, built-ins and relative paths left out", () => {
  assert.equal(packageName("lodash/fp"), "lodash");
  assert.equal(packageName("@scope/pkg/deep"), "@scope/pkg");
  assert.equal(packageName("diff"), "diff");
  for (const none of ["fs", "node:fs", "fs/promises", "./local", "../up", "/abs/x", "https://x.y/z.js"]) assert.equal(packageName(none), undefined, none);
});

test("versions come from the package.json Node's require would load; missing ones say so", () => {
  const installed = JSON.parse(readFileSync(join(ROOT, "node_modules", "diff", "package.json"), "utf8")).version;
  assert.deepEqual(packageVersions(["diff", "no-such-package-here"], ROOT), { diff: installed, "no-such-package-here": "not installed" });
});

test("a bundle's environment: node, nbjob, lock files (the project's too) and its packages", async () => {
  const project = mkdtempSync(join(tmpdir(), "nbjob-env-"));
  try {
    const bare = processEnvironment(project);
    assert.equal(bare.node_version, process.version);
    assert.equal(bare.nbjob_version, JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version);
    assert.match(bare.lockfile_hash ?? "", /^[0-9a-f]{64}$/);
    // The worker's own project lock file is part of the hash.
    writeFileSync(join(project, "package-lock.json"), '{"lockfileVersion":3}');
    const withLock = processEnvironment(project);
    assert.notEqual(withLock.lockfile_hash, bare.lockfile_hash);
    const env = await bundleEnvironment(`import { createTwoFilesPatch } from "diff";\nimport { readFileSync } from "node:fs";\n`, ROOT);
    assert.deepEqual(Object.keys(env.packages ?? {}), ["diff"]);
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
});
